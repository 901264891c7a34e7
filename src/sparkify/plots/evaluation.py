"""Charts of a model's held-out scores: how well they rank, separate and are calibrated.

In:  scores and labels of test rows, or the curves and tables made of them
     (:mod:`sparkify.report_curves`; reliability bins of
     :func:`sparkify.modeling.calibration.reliability` as stored in ``metrics.json`` and
     ``backtest.json``), a confusion matrix.
Out: one Plotly figure per call: score histogram, ROC and precision-recall curves,
     confusion matrix, calibration and reliability curves, cumulative gains and lift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sparkify.plots.base import GROUP_COLORS, NEUTRAL_COLOR, empty_figure, group_label, layout


def score_distribution(probabilities: Sequence[float], labels: Sequence[int] | None = None,
                       threshold: float | None = None, bins: int = 30,
                       title: str | None = "Predicted churn probability", unit: str = "users",
                       xaxis_title: str = "score") -> go.Figure:
    """Histogram of scores, split by true label when given, with the threshold line;
    ``unit`` names what is counted (y axis)."""
    p = pd.Series(probabilities, dtype="float64")
    if p.empty:
        return empty_figure("no scores", title)
    fig = go.Figure()
    if labels is not None:
        groups = group_label(pd.Series(labels))
        for group in ("stayed", "churned"):
            fig.add_histogram(x=p[groups.values == group], name=group, opacity=0.65,
                              marker_color=GROUP_COLORS[group], nbinsx=bins)
        fig.update_layout(barmode="overlay")
    else:
        fig.add_histogram(x=p, marker_color=NEUTRAL_COLOR, nbinsx=bins, showlegend=False)
    if threshold is not None:
        fig.add_vline(x=float(threshold), line_dash="dash", line_color="black",
                      annotation_text=f"threshold {threshold:.2f}")
    fig.update_xaxes(title_text=xaxis_title)
    fig.update_yaxes(title_text=unit)
    return layout(fig, title, height=320)


def roc_curve(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
              title: str | None = "ROC curve") -> go.Figure:
    """ROC curves, one per model: ``{name: (false_positive_rates, true_positive_rates)}``."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#adb5bd"},
                    showlegend=False)
    for name, (fpr, tpr) in curves.items():
        fig.add_scatter(x=list(fpr), y=list(tpr), mode="lines", name=str(name))
    fig.update_xaxes(title_text="false positive rate", range=[0, 1])
    fig.update_yaxes(title_text="true positive rate", range=[0, 1.02])
    return layout(fig, title, height=380)


def precision_recall_curve(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                           base_rate: float | None = None,
                           title: str | None = "Precision-recall curve") -> go.Figure:
    """Precision-recall curves, one per model: ``{name: (recalls, precisions)}``; a
    dotted line at the churn base rate (what a random ranking achieves)."""
    fig = go.Figure()
    if base_rate is not None:
        fig.add_scatter(x=[0, 1], y=[base_rate, base_rate], mode="lines", name=f"random ({base_rate:.2f})",
                        line={"dash": "dot", "color": "#adb5bd"})
    for name, (recall, precision) in curves.items():
        fig.add_scatter(x=list(recall), y=list(precision), mode="lines", name=str(name),
                        line={"shape": "hv"})
    fig.update_xaxes(title_text="recall", range=[0, 1])
    fig.update_yaxes(title_text="precision", range=[0, 1.02])
    return layout(fig, title, height=380)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str] = ("stayed", "churned"),
                     title: str | None = "Confusion matrix") -> go.Figure:
    """A 2x2 (or n x n) confusion matrix heatmap; rows are actual, columns predicted."""
    z = [[int(v) for v in row] for row in matrix]
    fig = go.Figure(go.Heatmap(z=z, x=[f"predicted {label}" for label in labels],
                               y=[f"actual {label}" for label in labels], colorscale="Blues",
                               text=z, texttemplate="%{text}", showscale=False))
    fig.update_yaxes(autorange="reversed")
    return layout(fig, title, height=320)


def calibration_plot(bins: Mapping[str, pd.DataFrame],
                     title: str | None = "Calibration (reliability)") -> go.Figure:
    """Predicted probability vs observed churn rate, one line per model.

    In: ``{name: DataFrame[mean_predicted, observed_rate, users]}`` (e.g. from
    :func:`sparkify.report_curves.calibration_bins`). A well-calibrated model follows
    the diagonal; marker size grows with the users in the bin."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#adb5bd"},
                    name="perfect calibration")
    usable = {k: v for k, v in bins.items() if v is not None and len(v)}
    if not usable:
        return empty_figure("no calibrated probabilities", title)
    for name, table in usable.items():
        size = (6 + 14 * table["users"] / max(1, table["users"].max())).tolist() if "users" in table else 8
        fig.add_scatter(x=table["mean_predicted"], y=table["observed_rate"], mode="lines+markers",
                        name=str(name), marker={"size": size},
                        customdata=table["users"] if "users" in table else None,
                        hovertemplate="predicted %{x:.2f}, observed %{y:.2f}<br>%{customdata} users<extra></extra>")
    fig.update_xaxes(title_text="mean predicted churn probability", range=[0, 1])
    fig.update_yaxes(title_text="observed churn rate", range=[0, 1.02])
    return layout(fig, title, height=380)


def _reliability_frame(bins: Any) -> pd.DataFrame:
    """Reliability bins (a list of dicts or a DataFrame) as a DataFrame with the columns of
    :func:`sparkify.modeling.calibration.reliability`: ``rows``, ``predicted``,
    ``observed``, ``observed_lo``, ``observed_hi`` (and ``lo``/``hi``, ``within`` when
    given). The older ``calibration_bins`` names (``users``, ``mean_predicted``,
    ``observed_rate``) are accepted too (no interval then)."""
    frame = bins.copy() if isinstance(bins, pd.DataFrame) else pd.DataFrame(list(bins or []))
    if frame.empty:
        return frame
    frame = frame.rename(columns={"users": "rows", "mean_predicted": "predicted", "observed_rate": "observed",
                                  "low": "lo", "high": "hi"})
    for col in ("observed_lo", "observed_hi"):
        if col not in frame:
            frame[col] = frame["observed"]
    if "rows" not in frame:
        frame["rows"] = float("nan")
    return frame.sort_values("predicted").reset_index(drop=True)


def reliability_curve(curves: Mapping[str, Any], title: str | None = "Reliability: predicted vs observed churn",
                      unit: str = "rows", height: int = 420) -> go.Figure:
    """Reliability curves: in each bin of rows with similar predicted probability, the
    mean prediction (x) against the observed churn rate (y), with the 95 % Wilson
    interval of that rate as error bars (on the bin's effective rows when the rows of a
    user were grouped), and the diagonal (a calibrated model's points lie on it within
    their bars).

    In: ``{name: bins}``, bins as :func:`sparkify.modeling.calibration.reliability`
    returns them (list of dicts with ``lo``, ``hi``, ``rows``, ``predicted``,
    ``observed``, ``observed_lo``, ``observed_hi``, ``within``; as stored in
    ``metrics.json`` and ``backtest.json``) or a DataFrame of those columns; ``unit``
    names what a bin counts (hover text). Both axes share one range, from 0 to a little
    above the largest prediction or interval end, so small probabilities stay readable.
    """
    usable = {str(k): _reliability_frame(v) for k, v in curves.items() if v is not None}
    usable = {k: v for k, v in usable.items() if len(v)}
    if not usable:
        return empty_figure("no calibrated probabilities", title)
    # room for every point; error bars may run off the top (their ends are in the hover text)
    top = max(max(float(v["predicted"].max()), float(v["observed"].max())) for v in usable.values())
    reach = max(float(v["observed_hi"].max()) for v in usable.values())
    top = min(1.0, max(0.05, min(top * 1.3, reach * 1.02)))
    fig = go.Figure()
    fig.add_scatter(x=[0, top], y=[0, top], mode="lines", name="perfect calibration",
                    line={"dash": "dot", "color": "#adb5bd"}, hoverinfo="skip")
    palette = ["#d6452f", "#2f6fb0", "#3a9d5d", "#8e6bb8", "#e0a030"]
    for i, (name, t) in enumerate(usable.items()):
        color = palette[i % len(palette)]
        rng = (t["lo"].map("{:.3f}".format) + "–" + t["hi"].map("{:.3f}".format)) if {"lo", "hi"} <= set(t) \
            else pd.Series([""] * len(t))
        inside = t["within"].map({True: "inside", False: "outside"}) if "within" in t else pd.Series([""] * len(t))
        custom = list(zip(t["rows"], t["observed_lo"], t["observed_hi"], rng, inside))
        fig.add_scatter(
            x=t["predicted"], y=t["observed"], mode="lines+markers", name=name,
            line={"color": color, "width": 1.5}, marker={"size": 8, "color": color},
            error_y={"type": "data", "symmetric": False, "array": (t["observed_hi"] - t["observed"]).clip(lower=0),
                     "arrayminus": (t["observed"] - t["observed_lo"]).clip(lower=0), "thickness": 1.2,
                     "width": 4, "color": color},
            customdata=custom,
            hovertemplate=("predicted %{x:.3f}, observed %{y:.3f} (95 % interval %{customdata[1]:.3f}–"
                           "%{customdata[2]:.3f}: prediction %{customdata[4]})<br>%{customdata[0]:,} " + unit
                           + ", probabilities %{customdata[3]}<extra>" + name + "</extra>"))
    fig.update_xaxes(title_text="mean predicted churn probability (bin)", range=[0, top])
    fig.update_yaxes(title_text="observed churn rate (95 % Wilson interval)", range=[0, top])
    return layout(fig, title, height=height)


def gains_chart(gains: Mapping[str, pd.DataFrame],
                title: str | None = "Cumulative gains and lift") -> go.Figure:
    """Who to contact first: share of churners caught vs share of users contacted
    (left) and the lift over a random pick (right), one line per model.

    In: ``{name: DataFrame[contacted, captured, lift]}`` (e.g. from
    :func:`sparkify.report_curves.gains_table`)."""
    usable = {k: v for k, v in gains.items() if v is not None and len(v)}
    if not usable:
        return empty_figure("no scores", title)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=["Cumulative gains", "Lift"])
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="random",
                             line={"dash": "dot", "color": "#adb5bd"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[1, 1], mode="lines", showlegend=False,
                             line={"dash": "dot", "color": "#adb5bd"}), row=1, col=2)
    palette = ["#2f6fb0", "#d6452f", "#3a9d5d", "#8e6bb8"]
    for i, (name, table) in enumerate(usable.items()):
        color = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=table["contacted"], y=table["captured"], mode="lines", name=str(name),
                                 legendgroup=str(name), line={"color": color},
                                 hovertemplate="contact %{x:.0%} -> catch %{y:.0%} of churners<extra></extra>"),
                      row=1, col=1)
        lift = table.dropna(subset=["lift"])
        fig.add_trace(go.Scatter(x=lift["contacted"], y=lift["lift"], mode="lines", showlegend=False,
                                 legendgroup=str(name), line={"color": color},
                                 hovertemplate="top %{x:.0%}: lift %{y:.2f}<extra></extra>"),
                      row=1, col=2)
    fig.update_xaxes(title_text="share of users contacted (highest scores first)", tickformat=".0%",
                     range=[0, 1])
    fig.update_yaxes(title_text="share of churners caught", tickformat=".0%", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="lift (x random)", rangemode="tozero", row=1, col=2)
    return layout(fig, title, height=380)
