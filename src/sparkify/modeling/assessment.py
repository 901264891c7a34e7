"""Calibration of the chosen model and its figures on the held-out users.

In:  the tuned :class:`~sparkify.modeling.selection.Tuned` model, every family's
     :class:`~sparkify.modeling.selection.CVOutcome` and the test rows.
Out: the calibration map with its out-of-fold figures (:func:`step_calibrate`) and the
     figures of every family and of the chosen model (:func:`step_evaluate`), as the
     ``models`` and ``best`` entries of ``metrics.json``.
"""

from __future__ import annotations

import numpy as np

from sparkify.modeling import calibration as cal
from sparkify.modeling import evaluate as ev
from sparkify.modeling.pipelines import FAMILY_NAMES, pretty_slot, slot_names
from sparkify.modeling.selection import CVOutcome, Scored, Tuned, test_scores
from sparkify.progress import Progress

THRESHOLD_SOURCE = "out-of-fold (k-fold CV by user on the training part), max churn-class F1 of the raw score"


def step_calibrate(outcome: CVOutcome, progress: Progress) -> tuple[cal.Calibration, dict]:
    """The 'calibration' stage: the calibration map of the chosen model, fitted on its
    out-of-fold scores (method by cross-fitted log loss), and the out-of-fold figures of
    its probabilities."""
    with progress.stage("calibration") as st:
        kind = "margin" if outcome.family == "svc" else "logit"
        o = outcome.oof
        calibration, losses = cal.choose_calibration(o.labels, o.scores, o.folds, kind)
        figures = {**cal.probability_figures(o.labels, calibration(o.scores), groups=o.users), **o.counts()}
        for key in ("calibration_chi2", "calibration_df", "calibration_p"):  # the map was fitted on these rows
            figures.pop(key)
        st.note = (f"{calibration.method} (cross-fitted log loss "
                   + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
                   + f"); out of fold: expected {figures['expected_churners']:.1f} vs realized "
                   f"{figures['realized_churners']} churner rows ({ev.counts_text(figures)})")
    return calibration, {"method": calibration.method, "input": kind, "cross_fitted_log_loss": losses,
                         "out_of_fold": figures}


def step_evaluate(tuned: Tuned, outcomes: dict[str, CVOutcome], test_df, calibration: cal.Calibration,
                  cal_fig: dict, categorical: list[str], progress: Progress) -> tuple[dict, dict, Scored]:
    """The 'evaluation' stage: figures of every family and of the chosen model on the
    held-out users: all test rows, and the in-time and out-of-time parts apart. Returns
    (figures by family, the chosen model's figures, its test scores)."""
    model = tuned.outcome
    with progress.stage("evaluation") as st:
        threshold, _ = model.threshold()
        families = {fam: model_figures(o, test_df) for fam, o in outcomes.items()}
        best = model_figures(model, test_df)
        test = test_scores(model.model, test_df, model.family)
        best["test"] = probability_block(test, calibration, threshold)
        best["periods"] = {}
        for period in ("in_time", "out_of_time"):
            mask = test.period == period
            if mask.any():
                best["periods"][period] = probability_block(test.subset(mask), calibration, threshold)
        best["importances"] = importances(model.model, test_df, model.family, categorical)
        best["validation_curve"] = _thin_curve(ev.threshold_curve(model.oof.labels, model.oof.scores))
        best.update(family=model.family, selected_from=tuned.source, calibration=cal_fig,
                    class_weights=tuned.weighting, threshold_source=THRESHOLD_SOURCE)
        st.note = "; ".join(_block_note(k, b) for k, b in [("test", best["test"]), *best["periods"].items()])
    return families, best, test


def model_figures(outcome: CVOutcome, test_df) -> dict:
    """Validation (out-of-fold) and test figures of one CV outcome at its OOF threshold,
    each with its row, user and churner counts."""
    threshold, oof_f1 = outcome.threshold()
    test = test_scores(outcome.model, test_df, outcome.family)
    o = outcome.oof
    return {
        "name": FAMILY_NAMES[outcome.family],
        "params": outcome.params,
        "grid_size": outcome.grid_size,
        "cv_metric": max(outcome.cv_metrics),
        "train_seconds": round(outcome.seconds, 2),
        "threshold": threshold,
        "validation": {"f1": oof_f1, "pr_auc": ev.average_precision(o.labels, o.scores),
                       "roc_auc": ev.roc_auc(o.labels, o.scores), **o.counts()},
        "test": {**ev.score_metrics(test.labels, test.scores, threshold), **test.counts()},
    }


def probability_block(scored: Scored, calibration: cal.Calibration, threshold: float) -> dict:
    """Every figure of a set of scored rows: ranking and threshold metrics on the score,
    probability figures on the calibrated probability, with rows, users and churners."""
    p = calibration(scored.scores)
    return {**ev.score_metrics(scored.labels, scored.scores, threshold),
            **cal.probability_figures(scored.labels, p, groups=scored.users), **scored.counts()}


def importances(model, sample_df, family: str, categorical: list[str]) -> list[dict]:
    """Feature importances (trees) or coefficients on standardised inputs (linear), each
    slot named via the assembler's metadata, sorted by absolute value."""
    from pyspark.ml.feature import VectorAssembler

    assembler = next(s for s in model.stages if isinstance(s, VectorAssembler))
    transformed = model.transform(sample_df.limit(1))
    names = slot_names(transformed, assembler.getOutputCol())
    clf = model.stages[-1]
    if family in ("rf", "gbt"):
        values, kind = clf.featureImportances.toArray(), "importance"
    else:
        values, kind = clf.coefficients.toArray(), "coefficient"
    rows = [{"feature": pretty_slot(n, categorical), "slot": n, "value": float(v), "kind": kind}
            for n, v in zip(names, values)]
    return sorted(rows, key=lambda r: -abs(r["value"]))


def _thin_curve(curve: list[dict], max_points: int = 200) -> list[dict]:
    """At most ``max_points`` points of ``curve``, evenly spaced, first and last kept."""
    if len(curve) <= max_points:
        return curve
    idx = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
    return [curve[i] for i in idx]


def _block_note(name: str, b: dict) -> str:
    return (f"{name}: {b['rows']:,} rows of {b['users']:,} users, {b['churners']:,} churner rows: "
            f"F1 {b['f1']:.3f}, PR-AUC {b['pr_auc']:.3f}, expected/realized churners "
            f"{b['expected_churners']:.1f}/{b['realized_churners']}")
