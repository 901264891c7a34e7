"""Out-of-time backtest: a saved model applied at a later date, compared with what happened.

In:  the session-day rows of a log (``sparkify.dataset.load_log(...).days``) that runs at
     least ``horizon_days`` past ``as_of``, a model directory written by ``train``.
Out: a dict of figures (written as ``backtest.json`` beside the model, and under
     ``backtests/`` by date): on every user still subscribed at ``as_of`` and active in
     the feature window before it, with labels = Cancellation Confirmation in
     (as_of, as_of + horizon]: PR-AUC, ROC-AUC, lift in the top 10 %, precision and recall
     at the saved threshold, Brier score, expected vs realized churners and the
     reliability curve, each with its row and churner counts, beside the model's own
     test figures.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sparkify.modeling import artifacts
from sparkify.modeling import evaluate as ev
from sparkify.modeling.calibration import Calibration, probability_figures, reliability_text

BACKTEST_DIR = "backtests"


def check_after_training(meta: dict, as_of: datetime) -> None:
    """Raise ValueError unless ``as_of`` is after the last observation date of a model
    (its model.json as ``meta``): a backtest applies a model later than it was trained."""
    from sparkify.features import parse_time

    dates = (meta.get("label") or {}).get("dates") or []
    if dates and as_of <= max(parse_time(d) for d in dates):
        raise ValueError(f"--as-of {as_of:%Y-%m-%d} is not after the model's last observation date "
                         f"{max(dates)[:10]}: a backtest applies the model later than it was trained")


def backtest(spark, days, model_dir: str | Path, as_of: datetime, truth: Path | None = None) -> dict:
    """Score every user at ``as_of`` with the saved model (the same rows as training
    builds for that date) and compare with the labels of (as_of, as_of + horizon].
    ``truth``: the simulator's ground truth beside a simulated log: the true ceiling on
    the same rows is added (``ceiling``). Raises ValueError when the log ends before the
    horizon does, or no user is active."""

    from sparkify.features import LabelSpec, build_user_table, iso_ms, model_window_days, parse_time
    from sparkify.modeling.predict import score_table

    model_dir = Path(model_dir)
    meta = artifacts.load_model_json(model_dir)
    label = meta.get("label") or {}
    horizon = int(label.get("horizon_days", 30))
    as_of = parse_time(as_of)
    as_of_ms = int(as_of.timestamp() * 1000)
    check_after_training(meta, as_of)
    dates = [int(parse_time(d).timestamp() * 1000) for d in label.get("dates") or []]
    end_ms = days.log_end_ms()
    if end_ms < as_of_ms + horizon * 86_400_000:
        raise ValueError(f"the log ends at {iso_ms(end_ms)}, before {as_of:%Y-%m-%d} + {horizon} days: a backtest "
                         "needs the whole horizon after --as-of (use an earlier --as-of or a longer log)")
    table, _ = build_user_table(days, LabelSpec(cutoff=as_of, horizon_days=horizon, long_days=model_window_days(meta)))
    table = table.cache()
    try:
        scored = score_table(spark, table, model_dir).select("userId", "score", "probability", "decision")
        pdf = scored.join(table.select("userId", "as_of_ms", "level", "churn"), "userId").toPandas()
    finally:
        table.unpersist()
    if pdf.empty:
        raise ValueError(f"no user is subscribed and active in the window before {as_of:%Y-%m-%d}")
    y = pdf["churn"].to_numpy().astype(int)
    s = pdf["score"].to_numpy(dtype=float)
    p = pdf["probability"].to_numpy(dtype=float)
    threshold = float(meta["threshold"])
    figures = {**ev.score_metrics(y, s, threshold), **probability_figures(y, p),
               "rows": int(len(y)), "users": int(pdf["userId"].nunique()), "churners": int(y.sum())}
    own = _model_test(model_dir)
    ceiling = None
    if truth is not None:
        from sparkify.modeling.selection import fraction_of_ceiling
        from sparkify.modeling.train import ceiling_on_rows

        ceiling, truth_p = ceiling_on_rows(truth, pdf, horizon)
        ceiling.update(fraction_of_ceiling(pdf["userId"].to_numpy(), y, s, truth_p))
    return {
        "as_of": iso_ms(as_of_ms), "horizon_days": horizon, "model": str(model_dir),
        "model_dates": label.get("dates") or [], "calibration": (Calibration.from_dict(meta.get("calibration"))
                                                                  or Calibration("none")).method,
        "threshold": threshold, "figures": figures, "model_test": own,
        "pr_auc_vs_test": figures["pr_auc"] / own["pr_auc"] if own.get("pr_auc") else float("nan"),
        "pr_auc_vs_test_interval": _ratio_interval(model_dir, pdf["userId"].to_numpy(), y, s),
        "ceiling": ceiling,
        "label_overlap_days": max(0, (max(dates) + horizon * 86_400_000 - as_of_ms) // 86_400_000) if dates else None,
    }


def _model_test(model_dir: Path) -> dict:
    """The model's own test figures from metrics.json (empty when absent)."""
    path = model_dir / "metrics.json"
    if not path.exists():
        return {}
    t = artifacts.read_json(path)["best"]["test"]
    return {k: t.get(k) for k in ("pr_auc", "roc_auc", "f1", "rows", "users", "churners", "expected_churners",
                                   "realized_churners")}


def _ratio_interval(model_dir: Path, users, labels, scores) -> list[float] | None:
    """95 % interval of the backtest's PR-AUC over the model's own test PR-AUC, the users of
    each resampled (:func:`~sparkify.modeling.selection.pr_auc_ratio_interval`), from the
    test rows' scores in features.parquet; None when the model directory lacks them."""
    import pandas as pd

    from sparkify.modeling.selection import pr_auc_ratio_interval

    path = model_dir / artifacts.FEATURES_PARQUET
    if not path.exists():
        return None
    try:
        own = pd.read_parquet(path, columns=["userId", "split", "churn", "score"])
    except (KeyError, ValueError):  # a model directory without the test rows' scores
        return None
    own = own[own["split"] == "test"]
    if own.empty:
        return None
    return pr_auc_ratio_interval((users, labels, scores), (own["userId"].to_numpy(), own["churn"].to_numpy().astype(int),
                                                           own["score"].to_numpy(dtype=float)))


def write_backtest(model_dir: str | Path, result: dict) -> Path:
    """Write ``result`` to ``backtests/backtest_<date>.json`` and ``backtest.json`` (the
    latest, which the report and the model card show; the card is rewritten). Returns the
    dated path."""
    model_dir = Path(model_dir)
    dated = model_dir / BACKTEST_DIR / f"backtest_{result['as_of'][:10]}.json"
    dated.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(dated, result)
    artifacts.write_json(model_dir / artifacts.BACKTEST_JSON, result)
    files = [model_dir / name for name in (artifacts.MODEL_JSON, artifacts.METRICS_JSON, artifacts.QUALITY_JSON)]
    if all(f.exists() for f in files):
        artifacts.write_model_card(model_dir, *(artifacts.read_json(f) for f in files))
    return dated


def own_test_text(result: dict) -> str:
    """" (the model's own test: 0.284 on 4,339 rows, 687 churner rows; ratio 0.66, 95 %
    interval ...)" for a backtest result (empty without the model's test figures)."""
    t = result.get("model_test") or {}
    if t.get("pr_auc") is None:
        return ""
    ratio = result.get("pr_auc_vs_test")
    return (f" (the model's own test: {t['pr_auc']:.3f} on {ev.counts_text(t) or 'its test rows'}; ratio "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'}{ev.interval_text(result.get('pr_auc_vs_test_interval'), ', ')})")


def overlap_text(result: dict) -> str:
    """Why a backtest inside the model's label period is optimistic (empty when it is not)."""
    days = result.get("label_overlap_days")
    if not days:
        return ""
    return (f"the model's training labels reach {days} days into this label period, so these figures are "
            "optimistic; a clean out-of-time test starts a horizon after the model's last date")


def summary(result: dict) -> str:
    """A few lines for the console: every figure with its row and churner counts."""
    f = result["figures"]
    lines = [
        f"backtest at {result['as_of'][:10]} (labels in the next {result['horizon_days']} days): "
        f"{f['rows']:,} users, {f['churners']:,} churners (base rate {f['churners'] / max(f['rows'], 1):.3f})",
        f"  PR-AUC {f['pr_auc']:.3f}{own_test_text(result)}, ROC-AUC {f['roc_auc']:.3f}",
        f"  top 10 %: {f['top10']['users']:,} users{ev.top_churners_text(f['top10'], 'churners')}, precision {f['top10']['precision']:.3f}, "
        f"lift {f['top10']['lift']:.2f}",
        f"  at the saved threshold: {int(f['confusion']['tp'] + f['confusion']['fp']):,} flagged, precision "
        f"{f['precision']:.3f}, recall {f['recall']:.3f}, F1 {f['f1']:.3f}",
        f"  probabilities ({result['calibration']}): expected {f['expected_churners']:.1f} vs realized "
        f"{f['realized_churners']} churners (ratio {f['expected_over_realized']:.2f}, z {f['z']:+.2f}), "
        f"Brier {f['brier']:.4f}, {reliability_text(f)}",
    ]
    if result.get("label_overlap_days"):
        lines.append(f"  note: {overlap_text(result)}")
    c = result.get("ceiling")
    if c:
        from sparkify.modeling.selection import fraction_text

        lines.append(f"  true ceiling on the same users: PR-AUC {c['test']['pr_auc']:.3f}, expected "
                     f"{c['test']['expected_churners']:.1f} churners; the model reaches {fraction_text(c)} "
                     "of its PR-AUC")
    return "\n".join(lines)
