"""Plotly charts shared by the web app and the HTML report.

Every function takes small, already-aggregated data (pandas objects or plain
dicts read from a model directory) and returns a ``plotly.graph_objects.Figure``.
Nothing here reads files, starts Spark or renders HTML: callers decide where a
figure goes (``fig.to_html(include_plotlyjs=False)`` in the app, a
self-contained page in the report).

Conventions: the label column is ``churn`` (1 = churned, 0 = stayed); churners
are drawn in :data:`CHURN_COLOR`, stayers in :data:`STAY_COLOR`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

CHURN_COLOR = "#d6452f"
STAY_COLOR = "#2f6fb0"
NEUTRAL_COLOR = "#6c757d"
GROUP_NAMES = {0: "stayed", 1: "churned"}
GROUP_COLORS = {"stayed": STAY_COLOR, "churned": CHURN_COLOR}
_TEMPLATE = "plotly_white"

# Spark's class names as people say them (axis labels).
MODEL_NAMES = {
    "LogisticRegression": "Logistic regression",
    "LinearSVC": "Linear SVM",
    "RandomForestClassifier": "Random forest",
    "GBTClassifier": "Gradient-boosted trees",
}

# Metric columns shown first (and in this order) in model comparison tables: held-out
# test figures, then out-of-fold validation ones, then flat names.
PREFERRED_METRICS = (
    "test_f1", "test_pr_auc", "test_roc_auc", "test_precision", "test_recall",
    "validation_f1", "validation_pr_auc",
    "f1", "pr_auc", "auc_pr", "areaUnderPR", "roc_auc", "auc_roc", "areaUnderROC",
    "precision", "recall", "accuracy", "threshold", "train_seconds",
)


def _layout(fig: go.Figure, title: str | None, height: int | None = None) -> go.Figure:
    fig.update_layout(
        template=_TEMPLATE,
        title={"text": title, "x": 0.01, "xanchor": "left"} if title else None,
        margin={"l": 60, "r": 20, "t": 80 if title else 50, "b": 45},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "xanchor": "right", "x": 1},
        font={"size": 12},
    )
    if height:
        fig.update_layout(height=height)
    return fig


def empty_figure(message: str, title: str | None = None) -> go.Figure:
    """A blank figure carrying ``message`` in its centre (for missing data)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": NEUTRAL_COLOR})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=260)


_GROUP_WORDS = {"churner": "churned", "churners": "churned", "churned": "churned", "churn": "churned",
                "1": "churned", "1.0": "churned", "true": "churned",
                "stayer": "stayed", "stayers": "stayed", "stayed": "stayed", "stay": "stayed",
                "0": "stayed", "0.0": "stayed", "false": "stayed"}


def group_label(values: pd.Series) -> pd.Series:
    """Map a churn column (0/1, bool, or text such as "churner"/"stayer") to
    "stayed" / "churned" labels; anything else keeps its text."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return pd.to_numeric(values, errors="coerce").map(
            lambda v: GROUP_NAMES.get(int(v), "unknown") if pd.notna(v) else "unknown")
    text = values.astype(str)
    return text.map(lambda v: _GROUP_WORDS.get(v.strip().lower(), v))


def pretty_name(name: str) -> str:
    """``songs_per_day`` -> ``Songs per day`` (axis and table labels)."""
    text = str(name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------- churn rate

def _row_unit(frame: pd.DataFrame, user: str = "userId") -> str:
    """'rows' when ``frame`` holds several rows per user (one per user and observation
    date, as a training table does), else 'users'."""
    if user in frame and frame[user].duplicated().any():
        return "rows"
    return "users"


def churn_rate(features: pd.DataFrame, label: str = "churn", by: str | None = None,
               title: str | None = "Churn rate", unit: str | None = None) -> go.Figure:
    """Rows (or users) that churned vs stayed, with the churn rate in the title.

    In: a table with a 0/1 ``label`` column: one row per user, or one per (user,
    observation date) as in a training table; optional ``by`` column (e.g. ``split`` or
    ``level``) to show one bar pair per value; ``unit``: what a row is, 'users' or 'rows'
    (default: 'rows' when a ``userId`` repeats, and the title then also gives the users).
    Out: a bar chart of counts per group (percentages on the bars).
    """
    if features is None or len(features) == 0 or label not in features:
        return empty_figure("no labelled users", title)
    unit = unit or _row_unit(features)
    keep = [label] + ([by] if by else []) + (["userId"] if "userId" in features and by != "userId" else [])
    frame = features[keep].dropna(subset=[label]).copy()
    frame["group"] = group_label(frame[label])
    rate = float(frame[label].astype(float).mean())
    of = f"{len(frame):,} {unit}"
    if unit == "rows" and "userId" in frame:
        of += f" of {frame['userId'].nunique():,} users"
    full_title = f"{title}: {rate:.1%} of {of}" if title else None
    fig = go.Figure()
    if by:
        counts = frame.groupby([by, "group"], observed=True).size().unstack("group", fill_value=0)
        totals = counts.sum(axis=1)
        for group in ("stayed", "churned"):
            if group not in counts:
                continue
            share = counts[group] / totals
            fig.add_bar(x=[str(i) for i in counts.index], y=counts[group], name=group,
                        marker_color=GROUP_COLORS[group],
                        text=[f"{s:.0%}" for s in share], textposition="auto",
                        hovertemplate="%{x}: %{y:,} " + unit + "<extra>" + group + "</extra>")
        fig.update_layout(barmode="stack", xaxis_title=pretty_name(by))
    else:
        counts = frame["group"].value_counts().reindex(["stayed", "churned"], fill_value=0)
        fig.add_bar(x=list(counts.index), y=list(counts.values),
                    marker_color=[GROUP_COLORS[g] for g in counts.index],
                    text=[f"{c:,} ({c / max(1, counts.sum()):.1%})" for c in counts.values],
                    textposition="auto", showlegend=False)
    fig.update_yaxes(title_text=unit)
    return _layout(fig, full_title, height=320)


# --------------------------------------------------------------------------- churners vs stayers

def group_comparison(features: pd.DataFrame, columns: Sequence[str], label: str = "churn",
                     kind: str = "box", units: Mapping[str, str] | None = None,
                     cols: int = 3, title: str | None = "Churners vs stayers",
                     log_columns: Sequence[str] = ()) -> go.Figure:
    """Distributions of numeric ``columns`` for churners and stayers, one panel each.

    In: one row per user (or per user and date) with a 0/1 ``label`` column; the numeric
    columns to show; ``kind`` one of ``box``, ``violin``, ``hist``; optional units per
    column (axis titles); ``log_columns``: panels drawn on a log value axis (positive
    ratios with heavy tails). Out: a grid of panels.
    """
    if kind not in ("box", "violin", "hist"):
        raise ValueError(f"kind must be box, violin or hist, not {kind!r}")
    columns = [c for c in columns if c in features]
    if features is None or len(features) == 0 or not columns or label not in features:
        return empty_figure("no feature rows to compare", title)
    units = units or {}
    groups = group_label(features[label])
    cols = max(1, min(cols, len(columns)))
    rows = math.ceil(len(columns) / cols)
    fig = make_subplots(
        rows=rows, cols=cols,
        subplot_titles=[pretty_name(c) + (f" ({units[c]})" if units.get(c) else "") for c in columns],
        horizontal_spacing=0.08, vertical_spacing=0.16 if rows > 1 else 0.1,
    )
    for i, column in enumerate(columns):
        r, c = divmod(i, cols)
        values = pd.to_numeric(features[column], errors="coerce")
        for group in ("stayed", "churned"):
            v = values[groups == group].dropna()
            common = dict(name=group, legendgroup=group, showlegend=(i == 0),
                          marker_color=GROUP_COLORS[group])
            if kind == "box":
                trace = go.Box(y=v, boxpoints="outliers", marker_size=3, **common)
            elif kind == "violin":
                trace = go.Violin(y=v, box_visible=True, meanline_visible=True, points=False,
                                  line_color=GROUP_COLORS[group], **common)
            else:
                trace = go.Histogram(x=v, opacity=0.6, histnorm="probability", nbinsx=30, **common)
            fig.add_trace(trace, row=r + 1, col=c + 1)
        if column in log_columns:
            if kind == "hist":
                fig.update_xaxes(type="log", row=r + 1, col=c + 1)
            else:
                fig.update_yaxes(type="log", row=r + 1, col=c + 1)
    if kind == "hist":
        fig.update_layout(barmode="overlay")
    return _layout(fig, title, height=max(320, 290 * rows))


def feature_histogram(features: pd.DataFrame, column: str, label: str = "churn",
                      unit: str | None = None, bins: int = 40) -> go.Figure:
    """One feature's distribution for churners and stayers (overlaid, normalised)."""
    return group_comparison(features, [column], label=label, kind="hist",
                            units={column: unit} if unit else None, cols=1,
                            title=pretty_name(column))


# --------------------------------------------------------------------------- activity over time

def _pick(frame: pd.DataFrame, candidates: Iterable[str]) -> str | None:
    lower = {c.lower(): c for c in frame.columns}
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def activity_over_time(activity: pd.DataFrame, date: str | None = None, group: str | None = None,
                       values: Sequence[str] | None = None,
                       title: str | None = "Activity over time") -> go.Figure:
    """Daily activity of churners and stayers, one panel per measure.

    In: a long table with a date column (default: the first of ``date``,
    ``day``, ``ts``), an optional group column (``group``/``churn``; 0/1 or text)
    and numeric measures (default: every other numeric column, e.g.
    ``active_users``, ``events``). Out: stacked line panels sharing the date axis.
    """
    if activity is None or len(activity) == 0:
        return empty_figure("no activity data", title)
    date = date or _pick(activity, ("date", "day", "ts", "event_date"))
    if date is None:
        return empty_figure("no date column in the activity data", title)
    group = group or _pick(activity, ("group", "churn", "label", "cohort"))
    if values is None:
        values = [c for c in activity.columns if c not in (date, group)
                  and pd.api.types.is_numeric_dtype(activity[c])]
    if not values:
        return empty_figure("no numeric measures in the activity data", title)
    frame = activity.copy()
    frame[date] = pd.to_datetime(frame[date], errors="coerce", utc=True)
    frame = frame.dropna(subset=[date]).sort_values(date)
    if group is not None:
        frame["_group"] = group_label(frame[group])
    else:
        frame["_group"] = "all users"
    fig = make_subplots(rows=len(values), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[pretty_name(v) for v in values])
    for i, value in enumerate(values):
        for name, part in frame.groupby("_group", sort=True):
            fig.add_trace(go.Scatter(
                x=part[date], y=part[value], mode="lines", name=str(name), legendgroup=str(name),
                showlegend=(i == 0), line={"color": GROUP_COLORS.get(str(name), NEUTRAL_COLOR)},
            ), row=i + 1, col=1)
    return _layout(fig, title, height=max(320, 230 * len(values) + 60))


# --------------------------------------------------------------------------- model comparison

def metrics_frame(metrics: Mapping[str, Any] | None) -> pd.DataFrame:
    """One row per model with its numeric figures, from a ``metrics.json`` dict.

    Accepts ``{"models": {name: {metric: value}}}``, ``{"models": [{"model": name,
    ...}]}`` or a flat ``{name: {metric: value}}``; nested dicts of a model (e.g.
    ``{"test": {"f1": ..}}``) become ``test_f1`` columns. Non-numeric values are
    dropped. Out: a DataFrame indexed by model name, preferred metrics first
    (empty when nothing usable is found).
    """
    if not metrics:
        return pd.DataFrame()
    models: Any = metrics.get("models", metrics) if isinstance(metrics, Mapping) else metrics
    rows: dict[str, dict[str, float]] = {}

    def flatten(prefix: str, obj: Any, out: dict[str, float]) -> None:
        if isinstance(obj, bool):
            return
        if isinstance(obj, (int, float)):
            if math.isfinite(float(obj)):
                out[prefix] = float(obj)
        elif isinstance(obj, Mapping):
            for k, v in obj.items():
                flatten(f"{prefix}_{k}" if prefix else str(k), v, out)

    if isinstance(models, Mapping):
        items = [(str(v.get("name") or k), {kk: vv for kk, vv in v.items() if kk != "name"})
                 for k, v in models.items() if isinstance(v, Mapping)]
    elif isinstance(models, list):
        items = []
        for i, entry in enumerate(models):
            if isinstance(entry, Mapping):
                name = entry.get("model") or entry.get("name") or entry.get("model_type") or f"model {i + 1}"
                items.append((str(name), {k: v for k, v in entry.items() if k not in ("model", "name")}))
    else:
        items = []
    for name, entry in items:
        out: dict[str, float] = {}
        flatten("", {k: v for k, v in entry.items() if k not in ("params", "importances")}, out)
        if out:
            rows[name] = out
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if frame.empty:
        return frame
    preferred = [p for p in PREFERRED_METRICS if p in frame.columns]
    ordered = list(dict.fromkeys(preferred + list(frame.columns)))
    frame = frame[ordered]
    frame.index.name = "model"
    return frame


def summary_columns(frame: pd.DataFrame, limit: int = 7) -> list[str]:
    """The columns of :func:`metrics_frame` worth a table: the preferred metrics present
    (test before validation), else the first ``limit`` columns."""
    chosen = [p for p in PREFERRED_METRICS if p in frame.columns]
    if "test_f1" in chosen:  # with test figures, flat duplicates are noise
        chosen = [c for c in chosen if c.startswith(("test_", "validation_")) or c in ("threshold", "train_seconds")]
    return (chosen or list(frame.columns))[:limit]


def model_comparison(metrics: Mapping[str, Any] | pd.DataFrame | None,
                     columns: Sequence[str] | None = None,
                     title: str | None = "Model comparison") -> go.Figure:
    """Grouped bars of the models' scores (metrics between 0 and 1 only).

    In: a ``metrics.json`` dict or the output of :func:`metrics_frame`; optional
    metric columns to show (default: up to four preferred ones). Out: a bar chart.
    """
    frame = metrics if isinstance(metrics, pd.DataFrame) else metrics_frame(metrics)
    if frame.empty:
        return empty_figure("no model metrics", title)
    if columns is None:
        unit = [c for c in summary_columns(frame, limit=len(frame.columns))
                if frame[c].between(0, 1).all() and "threshold" not in c and "seed" not in c]
        columns = unit[:4]
    if not columns:
        return empty_figure("no 0-1 metrics to compare", title)
    fig = go.Figure()
    palette = ["#2f6fb0", "#d6452f", "#3a9d5d", "#8e6bb8", "#e0a030", "#5bc0de"]
    for i, column in enumerate(columns):
        fig.add_bar(x=[MODEL_NAMES.get(str(m), str(m)) for m in frame.index], y=frame[column],
                    name=pretty_name(column),
                    marker_color=palette[i % len(palette)],
                    text=[f"{v:.3f}" for v in frame[column]], textposition="outside")
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.1])
    return _layout(fig, title, height=360)


def metrics_table(metrics: Mapping[str, Any] | pd.DataFrame | None, digits: int = 3,
                  title: str | None = None) -> go.Figure:
    """The model comparison as a Plotly table (for the report; the app uses HTML)."""
    frame = metrics if isinstance(metrics, pd.DataFrame) else metrics_frame(metrics)
    if frame.empty:
        return empty_figure("no model metrics", title)
    fig = go.Figure(go.Table(
        header={"values": ["model"] + [pretty_name(c) for c in frame.columns],
                "fill_color": "#e9ecef", "align": "left"},
        cells={"values": [list(frame.index)] + [[f"{v:.{digits}f}" if pd.notna(v) else ""
                                                 for v in frame[c]] for c in frame.columns],
               "align": "left"},
    ))
    return _layout(fig, title, height=80 + 30 * len(frame))


# --------------------------------------------------------------------------- importances, reasons

def feature_importances(importances: Mapping[str, float] | pd.Series, top: int = 15,
                        signed: bool = False, title: str | None = "Feature importance",
                        xaxis_title: str = "importance") -> go.Figure:
    """Horizontal bars of the ``top`` largest importances (by absolute value).

    In: feature -> importance (tree importances, |coefficients|, mean |SHAP|);
    ``signed=True`` colours negative values (e.g. coefficients) differently.
    Out: a bar chart, largest on top.
    """
    series = pd.Series(importances, dtype="float64").dropna()
    if series.empty:
        return empty_figure("no feature importances", title)
    series = series.reindex(series.abs().sort_values(ascending=False).index)[:top][::-1]
    colors = [CHURN_COLOR if (signed and v > 0) else (STAY_COLOR if signed else "#2f6fb0")
              for v in series.values]
    fig = go.Figure(go.Bar(x=series.values, y=[pretty_name(i) for i in series.index],
                           orientation="h", marker_color=colors))
    fig.update_xaxes(title_text=xaxis_title)
    return _layout(fig, title, height=max(260, 26 * len(series) + 90))


def contributions(reasons: Sequence[Mapping[str, Any]], title: str | None = "Why this score") -> go.Figure:
    """Bars of one customer's per-feature contributions (positive = towards churn).

    In: dicts with ``feature``, ``contribution`` and optionally ``value``.
    """
    if not reasons:
        return empty_figure("no contributions", title)
    rows = list(reasons)[::-1]
    x = [float(r["contribution"]) for r in rows]
    labels = [f"{pretty_name(r['feature'])} = {r.get('value')}" for r in rows]
    fig = go.Figure(go.Bar(x=x, y=labels, orientation="h",
                           marker_color=[CHURN_COLOR if v > 0 else STAY_COLOR for v in x]))
    fig.update_xaxes(title_text="contribution to the score (+ raises churn risk)")
    return _layout(fig, title, height=max(220, 30 * len(rows) + 90))


# --------------------------------------------------------------------------- scores (report)

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
    return _layout(fig, title, height=320)


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
    return _layout(fig, title, height=380)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str] = ("stayed", "churned"),
                     title: str | None = "Confusion matrix") -> go.Figure:
    """A 2x2 (or n x n) confusion matrix heatmap; rows are actual, columns predicted."""
    z = [[int(v) for v in row] for row in matrix]
    fig = go.Figure(go.Heatmap(z=z, x=[f"predicted {label}" for label in labels],
                               y=[f"actual {label}" for label in labels], colorscale="Blues",
                               text=z, texttemplate="%{text}", showscale=False))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, height=320)


# --------------------------------------------------------------------------- report: exploration
# (added for the HTML report; the dashboard may reuse them)

def churn_rate_by_category(features: pd.DataFrame, columns: Sequence[str], label: str = "churn",
                           cols: int = 2, min_users: int = 1, names: Mapping[str, str] | None = None,
                           title: str | None = "Churn rate by category", unit: str | None = None) -> go.Figure:
    """Churn rate of each value of categorical ``columns`` (e.g. level, gender, os,
    region), one panel per column, the number of users on each bar.

    In: one row per user with a 0/1 ``label`` column; categories with fewer than
    ``min_users`` users are left out; ``names`` gives panel titles (default: the column
    name); ``unit``: what a row is ('users' or 'rows'; default: 'rows' when a ``userId``
    repeats), shown as n on each bar. Out: a grid of bar panels (rate in %), with the
    overall churn rate dotted.
    """
    columns = [c for c in columns if features is not None and c in features]
    if features is None or len(features) == 0 or not columns or label not in features:
        return empty_figure("no categorical features to compare", title)
    unit = unit or _row_unit(features)
    n_unit = "" if unit == "users" else f" {unit}"
    overall = float(features[label].astype(float).mean())
    cols = max(1, min(cols, len(columns)))
    rows = math.ceil(len(columns) / cols)
    names = names or {}
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[names.get(c, pretty_name(c)) for c in columns],
                        horizontal_spacing=0.1, vertical_spacing=0.22 if rows > 1 else 0.1)
    for i, column in enumerate(columns):
        r, c = divmod(i, cols)
        stats = (features.assign(_value=features[column].fillna("Unknown").astype(str))
                 .groupby("_value")[label].agg(["mean", "size"]))
        stats = stats[stats["size"] >= min_users].sort_values("mean", ascending=False)
        fig.add_trace(go.Bar(
            x=list(stats.index), y=(stats["mean"] * 100).round(1), marker_color=CHURN_COLOR,
            text=[f"{m:.0%}<br>n={n:,}{n_unit}" for m, n in zip(stats["mean"], stats["size"])],
            textposition="auto", showlegend=False, customdata=list(stats["size"]),
            hovertemplate="%{x}: %{y:.1f} % churn of %{customdata:,} " + unit + "<extra></extra>"),
            row=r + 1, col=c + 1)
        fig.add_hline(y=overall * 100, line_dash="dot", line_color=NEUTRAL_COLOR, row=r + 1, col=c + 1)
        fig.update_yaxes(title_text="churn rate (%)" if c == 0 else None, rangemode="tozero",
                         row=r + 1, col=c + 1)
    return _layout(fig, title, height=max(320, 300 * rows))


def page_mix(mix: pd.DataFrame, value: str = "share", exclude: Sequence[str] = ("NextSong",),
             title: str | None = "Page mix: share of each group's events") -> go.Figure:
    """How churners and stayers spend their events, page by page.

    In: a long table with ``page``, a 0/1 ``churn`` column and ``value`` (``share`` of
    the group's events, or ``per_user``), e.g. from
    :func:`sparkify.report_data.page_mix`; pages in ``exclude`` are left out (NextSong
    dwarfs the rest). Out: horizontal grouped bars, most frequent page on top.
    """
    if mix is None or len(mix) == 0 or value not in mix or "page" not in mix:
        return empty_figure("no page counts", title)
    frame = mix[~mix["page"].isin(list(exclude))].copy()
    if frame.empty:
        return empty_figure("no page counts", title)
    frame["group"] = group_label(frame["churn"])
    order = frame.groupby("page")[value].mean().sort_values().index.tolist()
    fig = go.Figure()
    pct = value == "share"
    for group in ("stayed", "churned"):
        part = frame[frame["group"] == group].set_index("page").reindex(order)
        y = part[value] * (100 if pct else 1)
        fig.add_bar(y=order, x=y, orientation="h", name=group, marker_color=GROUP_COLORS[group],
                    hovertemplate="%{y}: %{x:.2f}" + (" %" if pct else "") + "<extra>" + group + "</extra>")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="% of the group's events" if pct else pretty_name(value))
    return _layout(fig, title, height=max(320, 34 * len(order) + 120))


def weeks_before_churn(weekly: pd.DataFrame, measures: Sequence[str],
                       units: Mapping[str, str] | None = None,
                       title: str | None = "Behaviour in the weeks before cancellation") -> go.Figure:
    """How behaviour changes in the weeks before churn, churners vs stayers.

    In: one row per (``churn``, ``week``) with ``week`` = 1 for the 7 days just before
    the cancellation (stayers: a matched calendar date) and the ``measures`` columns
    (e.g. from :func:`sparkify.report_data.weeks_before_churn`); optional ``users``
    column shown on hover. Out: one line panel per measure, time running left to right
    (x = -week).
    """
    if weekly is None or len(weekly) == 0 or "week" not in weekly or "churn" not in weekly:
        return empty_figure("no churners to align on", title)
    measures = [m for m in measures if m in weekly]
    if not measures:
        return empty_figure("no measures to show", title)
    units = units or {}
    frame = weekly.sort_values("week").copy()
    frame["group"] = group_label(frame["churn"])
    cols = min(2, len(measures))
    rows = math.ceil(len(measures) / cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.1,
                        vertical_spacing=0.2 if rows > 1 else 0.1,
                        subplot_titles=[pretty_name(m) + (f" ({units[m]})" if units.get(m) else "")
                                        for m in measures])
    weeks = sorted(frame["week"].unique())
    for i, measure in enumerate(measures):
        r, c = divmod(i, cols)
        for group in ("stayed", "churned"):
            part = frame[frame["group"] == group]
            if part.empty:
                continue
            users = part["users"] if "users" in part else pd.Series([None] * len(part))
            fig.add_trace(go.Scatter(
                x=-part["week"], y=part[measure], mode="lines+markers", name=group,
                legendgroup=group, showlegend=(i == 0), line={"color": GROUP_COLORS[group]},
                customdata=list(users),
                hovertemplate="week %{x}: %{y:.2f}<br>%{customdata} users<extra>" + group + "</extra>",
            ), row=r + 1, col=c + 1)
        fig.update_xaxes(tickvals=[-w for w in weeks], ticktext=[f"-{w}" for w in weeks],
                         title_text="weeks before cancellation" if r == rows - 1 else None,
                         row=r + 1, col=c + 1)
    return _layout(fig, title, height=max(340, 290 * rows + 40))


# --------------------------------------------------------------------------- report: model evaluation

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
    return _layout(fig, title, height=380)


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
    return _layout(fig, title, height=380)


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
    return _layout(fig, title, height=380)


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
    return _layout(fig, title, height=height)
