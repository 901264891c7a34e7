"""Charts of trained models: their scores side by side, importances, one customer's reasons.

In:  a ``metrics.json`` dict (or the table :func:`metrics_frame` makes of it), feature
     importances or coefficients, one customer's per-feature contributions.
Out: a pandas table of the models' numeric figures, and Plotly figures: grouped score
     bars, a score table, importance bars, contribution bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from sparkify.plots.base import CHURN_COLOR, STAY_COLOR, empty_figure, layout, pretty_name

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
    return layout(fig, title, height=360)


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
    return layout(fig, title, height=80 + 30 * len(frame))


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
    return layout(fig, title, height=max(260, 26 * len(series) + 90))


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
    return layout(fig, title, height=max(220, 30 * len(rows) + 90))
