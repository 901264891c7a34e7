"""Every chart of the report, as Plotly figures keyed by name.

In:  a :class:`~sparkify.report.collect.ReportData` (the log's aggregates, the model's
     training table, metrics and test-row evaluations, the backtest).
Out: ``{name: plotly Figure}``: exploration (``daily``, ``daily_groups``, ``distributions``,
     ``categories``, ``churn_rate``, ``pages``, ``weeks``), the model comparison
     (``comparison``), ranking curves (``roc``, ``pr``, ``gains``), reliability
     (``reliability``, ``ceiling_reliability``, ``backtest_reliability``) and the saved
     model's outcomes (``confusion``, ``scores``, ``importances``). Missing data gives an
     explanatory empty figure, never an error. The charts are :mod:`sparkify.plots`'.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sparkify import plots
from sparkify import report_curves as rc
from sparkify.modeling.evaluate import counts_text
from sparkify.report.collect import ReportData
from sparkify.report.model_dir import ModelEvaluation
from sparkify.report.tables import PART_NAMES, comparison_rows, finite_number, importance_series

#: Numeric features shown as churner-vs-stayer distributions (when the model has them): the
#: volume over the window and its recent part, the trend, engagement, taste, recency and tenure.
MAIN_FEATURES = (
    "songs_per_day", "songs_per_day_recent", "songs_trend",
    "active_day_share", "sessions_per_day", "mean_session_minutes",
    "thumbs_down_share", "adverts_per_song", "days_since_last_event",
)
CATEGORY_FEATURES = ("level", "gender", "os", "region")
#: Ratio features drawn on a log axis (1 = steady; heavy tails both ways).
LOG_FEATURES = ("songs_trend",)
WEEKLY_MEASURES = ("songs_per_active_day", "active_days_per_user", "thumbs_down_per_100_songs",
                   "adverts_per_100_songs")
WEEKLY_UNITS = {"active_days_per_user": "of 7"}
CATEGORY_NAMES = {"level": "Level (free / paid)", "gender": "Gender", "os": "Device / OS",
                  "region": "Region (US census)", "browser": "Browser"}
#: Fewest rows a reliability bin should hold on a chart, on average: with fewer its interval spans most of [0, 1].
MIN_BIN_ROWS = 15


def build_figures(data: ReportData) -> dict[str, Any]:
    """Every chart of the report as a Plotly figure, keyed by name (missing data gives
    an explanatory empty figure, never an error)."""
    figs: dict[str, Any] = {}
    figs.update(activity_figures(data.daily))
    if data.features is not None:
        figs.update(table_figures(data.features))
    figs["pages"] = plots.page_mix(data.pages)
    figs["weeks"] = plots.weeks_before_churn(data.weekly, WEEKLY_MEASURES, units=WEEKLY_UNITS)
    figs["comparison"] = comparison_figure(data.metrics)
    figs.update(ranking_figures(data.evaluations))
    figs.update(reliability_figures(data))
    figs.update(outcome_figures(data))
    return figs


# --------------------------------------------------------------------------- exploration
def activity_figures(daily: pd.DataFrame) -> dict[str, Any]:
    """``daily`` (events and active users, all users) and ``daily_groups`` (churners vs
    stayers), from the per-day, per-group table of :func:`sparkify.report_data.daily_activity`."""
    daily_total = (daily.groupby("date", as_index=False)[["events", "songs", "active_users"]].sum()
                   if len(daily) else daily)
    return {
        "daily": plots.activity_over_time(daily_total, date="date", values=["events", "active_users"],
                                          title="User events and active users per day (UTC)"),
        "daily_groups": plots.activity_over_time(
            daily, date="date", group="churn", values=["active_users", "songs"],
            title="Active users and songs per day: churners vs stayers"),
    }


def table_figures(feats: pd.DataFrame) -> dict[str, Any]:
    """``distributions``, ``categories`` and ``churn_rate`` of the model's training table
    (features.parquet: one row per user and observation date)."""
    cols = [c for c in MAIN_FEATURES if c in feats]
    figs = {
        "distributions": plots.group_comparison(
            feats, cols, kind="box", units=feature_units(), log_columns=[c for c in cols if c in LOG_FEATURES],
            title="Main features at each observation date: churner rows vs the others"),
        "categories": plots.churn_rate_by_category(feats, [c for c in CATEGORY_FEATURES if c in feats],
                                                   names=CATEGORY_NAMES),
    }
    if "split" in feats:
        figs["churn_rate"] = plots.churn_rate(_with_parts(feats), by="part", title="Label")
        figs["churn_rate"].update_layout(margin={"t": 110}, height=440, xaxis_title=None)
    else:
        figs["churn_rate"] = plots.churn_rate(feats, title="Label")
    return figs


def feature_units() -> dict[str, str]:
    """Feature name -> unit for panel titles, unless the name says it already
    ("songs_per_day")."""
    try:
        from sparkify.features import FEATURES_BY_NAME
    except ImportError:  # pragma: no cover - features always ships with the package
        return {}
    return {k: v.unit for k, v in FEATURES_BY_NAME.items() if v.unit and v.unit.replace(" ", "_") not in k}


def _with_parts(features: pd.DataFrame) -> pd.DataFrame:
    """features.parquet with a ``part`` column (the :data:`PART_NAMES` of split and period)."""
    if "period" not in features:
        return features.assign(part=features["split"].astype(str))
    names = [PART_NAMES.get((a, b), f"{a}, {b}") for a, b in zip(features["split"], features["period"])]
    order = [n for n in PART_NAMES.values() if n in set(names)] + sorted(set(names) - set(PART_NAMES.values()))
    return features.assign(part=pd.Categorical(names, categories=order, ordered=True))


# --------------------------------------------------------------------------- models
def comparison_figure(metrics: dict[str, Any]):
    """Test scores of each family, the saved model and the true ceiling, as grouped bars
    (rows of :func:`~sparkify.report.tables.comparison_rows`)."""
    rows = comparison_rows(metrics)
    shown = [r for r in rows if r["kind"] in ("family", "best", "ceiling")]
    frame = pd.DataFrame([{k: r.get(k) for k in ("f1", "pr_auc", "roc_auc", "recall")} for r in shown],
                         index=[r["name"] for r in shown])
    frame.columns = ["churn-class F1", "PR-AUC", "ROC-AUC", "recall"]
    test_counts = counts_text((metrics.get("best") or {}).get("test"))
    fig = plots.model_comparison(
        frame.astype(float), columns=list(frame.columns),
        title="Test scores of the models" + (f" ({test_counts})" if test_counts else ""))
    fig.update_layout(height=460)
    return fig


def ranking_figures(evaluations: list[ModelEvaluation]) -> dict[str, Any]:
    """``roc``, ``pr`` and ``gains``: one curve per evaluation (the test rows, by period,
    the out-of-fold training rows)."""
    roc, pr, gains = {}, {}, {}
    for ev in evaluations:
        roc[ev.label] = rc.roc_points(ev.labels, ev.scores)
        pr[ev.label] = rc.pr_points(ev.labels, ev.scores)
        gains[ev.label] = rc.gains_table(ev.labels, ev.scores)
    base_rate = float(evaluations[0].labels.mean()) if evaluations else None
    figs = {
        "roc": plots.roc_curve(roc) if roc else plots.empty_figure("no test scores", "ROC curve"),
        "pr": plots.precision_recall_curve(pr, base_rate=base_rate) if pr else
        plots.empty_figure("no test scores", "Precision-recall curve"),
    }
    for fig in (figs["roc"], figs["pr"]):
        fig.update_layout(height=460, legend={"orientation": "h", "y": -0.22, "yanchor": "top", "x": 0,
                                              "xanchor": "left"}, margin={"b": 130})
    figs["gains"] = plots.gains_chart(gains)
    figs["gains"].update_layout(height=460, legend={"orientation": "h", "y": -0.25, "yanchor": "top", "x": 0,
                                                    "xanchor": "left"}, margin={"b": 140})
    return figs


def reliability_figures(data: ReportData) -> dict[str, Any]:
    """``reliability`` (the saved model's test rows, all and out of time), and when there
    is what to show, ``ceiling_reliability`` (the model against the simulator's true
    probability) and ``backtest_reliability``."""
    best = data.metrics.get("best") or {}
    test_block = best.get("test") or {}
    periods = best.get("periods") or {}
    evals = {e.name: e for e in data.evaluations}
    curves = {}
    for name, block in (("test, all rows", test_block), ("test, out of time", periods.get("out_of_time") or {})):
        bins = chart_bins(block, evals.get(name))
        if bins:
            curves[f"{name} ({counts_text(block)}; {len(bins)} bin{'s' if len(bins) != 1 else ''})"] = bins
    figs = {"reliability": plots.reliability_curve(
        curves, title="Reliability of the calibrated probabilities (test rows)")}
    ceiling = data.metrics.get("ceiling") if isinstance(data.metrics.get("ceiling"), dict) else None
    if ceiling and (ceiling.get("test") or {}).get("reliability") and test_block.get("reliability"):
        figs["ceiling_reliability"] = plots.reliability_curve(
            {f"saved model ({counts_text(test_block)})": test_block["reliability"],
             f"true probability ({counts_text(ceiling['test'])})": ceiling["test"]["reliability"]},
            title="Reliability: the model vs the true probability, same test rows")
    if data.backtest:
        f = data.backtest.get("figures") or {}
        figs["backtest_reliability"] = plots.reliability_curve(
            {f"backtest at {str(data.backtest.get('as_of'))[:10]} ({counts_text(f)})": f.get("reliability") or []},
            title="Reliability of the backtest's probabilities")
    for fig in figs.values():
        _legend_below(fig)
    return figs


def chart_bins(block: dict[str, Any], evaluation: ModelEvaluation | None = None) -> list[dict[str, Any]]:
    """The reliability bins to draw for a metrics block: its stored bins (metrics.json)
    when each holds at least :data:`MIN_BIN_ROWS` rows on average; else, when the rows'
    probabilities are at hand (``evaluation``, scored by the NumPy scorer), the same curve
    (:func:`sparkify.modeling.calibration.reliability`) on fewer, larger bins; else the
    stored bins."""
    stored = list(block.get("reliability") or [])
    rows = int(block.get("rows") or sum(b.get("rows", 0) for b in stored))
    if not stored or rows >= MIN_BIN_ROWS * len(stored):
        return stored
    if evaluation is None or evaluation.probabilities is None or len(evaluation.labels) != rows:
        return stored
    from sparkify.modeling.calibration import reliability

    bins = max(1, min(len(stored), rows // MIN_BIN_ROWS))
    return reliability(evaluation.labels, evaluation.probabilities, bins, groups=evaluation.users)


def _legend_below(fig) -> None:
    fig.update_layout(height=520, legend={"orientation": "h", "y": -0.18, "yanchor": "top", "x": 0,
                                          "xanchor": "left"}, margin={"b": 120})


def outcome_figures(data: ReportData) -> dict[str, Any]:
    """The saved model's decisions and inputs: ``confusion`` (test rows at the saved
    threshold), ``scores`` (the test rows' score histogram by outcome, when scored) and
    ``importances`` (importances or coefficients)."""
    figs: dict[str, Any] = {}
    confusion = ((data.metrics.get("best") or {}).get("test") or {}).get("confusion")
    if confusion:
        figs["confusion"] = plots.confusion_matrix(
            rc.confusion_matrix_rows(confusion), title="Confusion matrix (test rows, saved threshold)")
    else:
        figs["confusion"] = plots.empty_figure("no confusion matrix in metrics.json", "Confusion matrix")
    threshold = finite_number(data.model_json.get("threshold"))
    test = next((e for e in data.evaluations if e.name == "test, all rows"), None)
    if test is not None:
        c = test.counts
        figs["scores"] = plots.score_distribution(
            test.scores, test.labels, threshold=threshold, unit="rows",
            xaxis_title=("score (SVM margin)" if data.model_json.get("score_kind") == "margin"
                         else "score (uncalibrated model output)"),
            title=f"Test rows' scores by actual outcome ({c['rows']:,} rows, {c['churners']:,} churner rows)")
    imp, kind = importance_series(data.metrics)
    figs["importances"] = plots.feature_importances(
        imp, top=15, signed=(kind == "coefficient"),
        title="Feature importances" if kind != "coefficient" else "Coefficients (standardised inputs)",
        xaxis_title=kind)
    return figs
