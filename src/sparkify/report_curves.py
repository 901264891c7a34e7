"""Evaluation curves of one model's held-out scores (NumPy, no JVM).

In:  one 0/1 churn label and one score per test row, a (user, observation date) (a few
     dozen to a few thousand values: the ``split == "test"`` rows of a model directory's
     ``features.parquet``).
Out: plain arrays or small pandas tables for :mod:`sparkify.plots`: ROC and
     precision-recall points, reliability (calibration) bins, cumulative gains and lift.

Conventions as in :mod:`sparkify.modeling.evaluate`: label 1 = churn; higher score =
more likely to churn; tied scores are taken together.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _check(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.size == 0:
        raise ValueError("no scores to evaluate")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return y.astype(int), s


def _cumulative(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when flagging every score level from the top down
    (one entry per distinct score)."""
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    ends = np.r_[np.nonzero(np.diff(ss))[0], len(ss) - 1]
    tps = np.cumsum(ys)[ends].astype(float)
    fps = (ends + 1) - tps
    return tps, fps


def roc_points(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates), from (0, 0) to (1, 1).

    With only one class present the missing rate is taken as 0 (a flat curve)."""
    y, s = _check(y_true, scores)
    tps, fps = _cumulative(y, s)
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    tpr = tps / n_pos if n_pos else np.zeros_like(tps)
    fpr = fps / n_neg if n_neg else np.zeros_like(fps)
    return np.r_[0.0, fpr], np.r_[0.0, tpr]


def pr_points(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at every score level, starting at recall 0 with the
    precision of the top score level (a step curve whose area is average precision)."""
    y, s = _check(y_true, scores)
    tps, fps = _cumulative(y, s)
    n_pos = y.sum()
    precision = tps / (tps + fps)
    recall = tps / n_pos if n_pos else np.zeros_like(tps)
    return np.r_[0.0, recall], np.r_[precision[0], precision]


def calibration_bins(y_true, probabilities, bins: int | None = None) -> pd.DataFrame:
    """Reliability table: users grouped by predicted probability into bins of (nearly)
    equal size.

    In: labels, predicted churn probabilities in [0, 1]; ``bins`` (default: about one
    bin per 15 users, between 2 and 10). Out: pandas ``bin``, ``users``,
    ``mean_predicted``, ``observed_rate`` (share of churners), ``low``/``high`` (the
    bin's probability range), sorted by mean_predicted.
    """
    y, p = _check(y_true, probabilities)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    if bins is None:
        bins = int(min(10, max(2, len(y) // 15)))
    bins = max(1, min(int(bins), len(y)))
    order = np.argsort(p, kind="mergesort")
    rows = []
    for i, idx in enumerate(np.array_split(order, bins)):
        if idx.size == 0:
            continue
        rows.append({"bin": i + 1, "users": int(idx.size), "mean_predicted": float(p[idx].mean()),
                     "observed_rate": float(y[idx].mean()), "low": float(p[idx].min()),
                     "high": float(p[idx].max())})
    return pd.DataFrame(rows)


def gains_table(y_true, scores) -> pd.DataFrame:
    """Cumulative gains and lift when contacting users from the highest score down.

    Out: pandas ``contacted`` (fraction of users flagged), ``captured`` (fraction of all
    churners among them), ``precision`` and ``lift`` (precision / base rate), one row per
    score level, starting at (0, 0)."""
    y, s = _check(y_true, scores)
    tps, fps = _cumulative(y, s)
    n, n_pos = len(y), y.sum()
    flagged = tps + fps
    base = n_pos / n
    precision = tps / flagged
    table = pd.DataFrame({
        "contacted": np.r_[0.0, flagged / n],
        "captured": np.r_[0.0, tps / n_pos if n_pos else np.zeros_like(tps)],
        "precision": np.r_[np.nan, precision],
        "lift": np.r_[np.nan, precision / base if base else np.zeros_like(precision)],
    })
    return table


def confusion_matrix_rows(confusion: dict) -> list[list[int]]:
    """``{"tp", "fp", "fn", "tn"}`` -> [[tn, fp], [fn, tp]] (rows actual stayed/churned,
    columns predicted stayed/churned), the layout of :func:`sparkify.plots.confusion_matrix`."""
    try:
        return [[int(confusion["tn"]), int(confusion["fp"])], [int(confusion["fn"]), int(confusion["tp"])]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a confusion needs tp, fp, fn and tn counts, got {confusion!r}") from exc
