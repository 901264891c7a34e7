"""Metrics, threshold choice and calibration on user-level scores (NumPy, no JVM).

Everything here takes plain arrays of one score and one 0/1 label per user (a few
thousand to a few tens of thousands of rows: the held-out or out-of-fold predictions,
never events) and returns plain numbers or dicts, so it is easy to test and reuse by
the web app and the report.

Conventions: label 1 = churn (the positive class); a user is predicted to churn when
``score > threshold``; scores may be probabilities or SVM margins (any monotone scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _arrays(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("labels must be 0 or 1")
    if np.any(~np.isfinite(s)):
        raise ValueError("scores must be finite")
    return y.astype(int), s


def confusion(y_true, y_pred) -> dict[str, int]:
    """Confusion counts for the churn class. In: 0/1 labels and 0/1 decisions.
    Out: {"tp", "fp", "fn", "tn"}."""
    y = np.asarray(y_true, dtype=int).ravel()
    p = np.asarray(y_pred, dtype=int).ravel()
    return {
        "tp": int(np.sum((y == 1) & (p == 1))),
        "fp": int(np.sum((y == 0) & (p == 1))),
        "fn": int(np.sum((y == 1) & (p == 0))),
        "tn": int(np.sum((y == 0) & (p == 0))),
    }


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """Churn-class F1 = 2TP / (2TP + FP + FN) (0 when undefined)."""
    return _safe_div(2 * tp, 2 * tp + fp + fn)


def classification_metrics(y_true, y_pred) -> dict[str, float]:
    """Threshold metrics from 0/1 labels and decisions.

    Out: f1 / precision / recall of the churn class, accuracy, weighted F1 (F1 of each
    class weighted by its support, the metric the seed quoted) and the confusion counts.
    """
    c = confusion(y_true, y_pred)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    n = tp + fp + fn + tn
    f1_pos = f1_from_counts(tp, fp, fn)
    f1_neg = f1_from_counts(tn, fn, fp)
    n_pos, n_neg = tp + fn, tn + fp
    return {
        "f1": f1_pos,
        "precision": _safe_div(tp, tp + fp),
        "recall": _safe_div(tp, tp + fn),
        "accuracy": _safe_div(tp + tn, n),
        "weighted_f1": _safe_div(f1_pos * n_pos + f1_neg * n_neg, n),
        "confusion": c,
    }


def average_precision(y_true, scores) -> float:
    """PR-AUC as average precision: sum over score levels of (R_k - R_{k-1}) * P_k,
    tied scores taken together (as scikit-learn does). 0 when there is no positive."""
    y, s = _arrays(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return 0.0
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # last index of each distinct score level
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[ends]
    fps = (ends + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / n_pos
    prev_recall = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev_recall) * precision))


def roc_auc(y_true, scores) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties counted half.
    0.5 when only one class is present."""
    y, s = _arrays(y_true, scores)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    # average rank of each distinct score level (1-based), ties share their mean rank
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    rank_sum = ranks[y == 1].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def threshold_curve(y_true, scores) -> list[dict[str, float]]:
    """Precision, recall and churn-class F1 for every distinct decision rule
    ``score > t`` on the given scores, highest threshold first.

    Each candidate threshold lies halfway between two neighbouring distinct scores
    (and just below the lowest one), so the decision is stable for scores that
    fall between the validation scores.
    """
    y, s = _arrays(y_true, scores)
    n_pos = int(y.sum())
    levels = np.unique(s)[::-1]  # distinct scores, descending
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    ends = np.r_[np.nonzero(np.diff(ss))[0], len(ss) - 1]
    tps = np.cumsum(ys)[ends]
    flagged = ends + 1
    out = []
    for k, level in enumerate(levels):
        lower = levels[k + 1] if k + 1 < len(levels) else level - max(1e-6, abs(level) * 1e-6)
        t = float((level + lower) / 2.0)
        tp = int(tps[k])
        fp = int(flagged[k] - tp)
        fn = n_pos - tp
        out.append({
            "threshold": t,
            "precision": _safe_div(tp, tp + fp),
            "recall": _safe_div(tp, n_pos),
            "f1": f1_from_counts(tp, fp, fn),
            "flagged": int(flagged[k]),
        })
    return out


def best_threshold(y_true, scores) -> tuple[float, float]:
    """The threshold t maximising churn-class F1 of ``score > t`` on validation data.

    In: validation labels and scores (e.g. out-of-fold). Out: (threshold, its F1).
    Ties go to the higher threshold (fewer users flagged).
    """
    curve = threshold_curve(y_true, scores)
    if not curve:
        raise ValueError("no validation scores to choose a threshold from")
    best = max(curve, key=lambda r: (r["f1"], r["threshold"]))
    return best["threshold"], best["f1"]


def top_fraction(y_true, scores, fraction: float = 0.10) -> dict[str, float]:
    """Precision and lift among the ``fraction`` highest-scored rows.

    Lift = precision in the top fraction / base churn rate. Out: {"fraction", "rows" (and
    "users", the same count under its older name), "churners" (churner rows among them),
    "precision", "lift", "base_rate"}."""
    y, s = _arrays(y_true, scores)
    n = len(y)
    k = max(1, int(math.ceil(fraction * n))) if n else 0
    order = np.argsort(-s, kind="mergesort")
    top = y[order[:k]]
    base = float(y.mean()) if n else 0.0
    prec = float(top.mean()) if k else 0.0
    return {"fraction": fraction, "rows": int(k), "users": int(k), "churners": int(top.sum()), "precision": prec,
            "lift": _safe_div(prec, base), "base_rate": base}


def score_metrics(y_true, scores, threshold: float) -> dict:
    """Every per-model figure at a given threshold: churn-class F1, precision, recall,
    PR-AUC, ROC-AUC, accuracy, weighted F1, confusion, top-10 % precision and lift."""
    y, s = _arrays(y_true, scores)
    out = classification_metrics(y, (s > threshold).astype(int))
    out["pr_auc"] = average_precision(y, s)
    out["roc_auc"] = roc_auc(y, s)
    out["top10"] = top_fraction(y, s, 0.10)
    out["users"] = int(len(y))
    out["churners"] = int(y.sum())
    out["threshold"] = float(threshold)
    return out


def constant_predictor(y_true) -> dict[str, float]:
    """What a model that knows nothing scores: PR-AUC = base rate; F1 of flagging
    everyone = 2p/(1+p)."""
    y = np.asarray(y_true, dtype=int)
    p = float(y.mean()) if len(y) else 0.0
    return {"pr_auc": p, "roc_auc": 0.5, "f1_flag_all": _safe_div(2 * p, 1 + p)}


@dataclass
class PlattCalibration:
    """p(churn | margin m) = 1 / (1 + exp(a*m + b)) (Platt 1999, with his target smoothing)."""

    a: float
    b: float

    def __call__(self, margin):
        z = self.a * np.asarray(margin, dtype=float) + self.b
        return 1.0 / (1.0 + np.exp(np.clip(z, -700, 700)))

    def to_dict(self) -> dict[str, float]:
        return {"a": float(self.a), "b": float(self.b)}


def fit_platt(y_true, margins, max_iter: int = 100) -> PlattCalibration:
    """Fit Platt scaling on validation margins by Newton's method (Lin, Lin & Weng 2007).

    In: 0/1 labels and the classifier's margins on data it was not trained on.
    Out: PlattCalibration(a, b); a < 0 when larger margins mean more churn.
    """
    y, m = _arrays(y_true, margins)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    hi = (n_pos + 1.0) / (n_pos + 2.0)
    lo = 1.0 / (n_neg + 2.0)
    t = np.where(y == 1, hi, lo)
    a, b = 0.0, math.log((n_neg + 1.0) / (n_pos + 1.0))
    sigma, eps = 1e-12, 1e-5

    def objective(a_, b_):
        z = a_ * m + b_
        # sum of t*z + log(1+exp(-z)) computed stably
        return float(np.sum(np.where(z >= 0, t * z + np.log1p(np.exp(-z)), (t - 1) * z + np.log1p(np.exp(z)))))

    f = objective(a, b)
    for _ in range(max_iter):
        z = a * m + b
        p = np.where(z >= 0, np.exp(-z) / (1 + np.exp(-z)), 1 / (1 + np.exp(z)))
        q = 1 - p
        d2 = p * q
        h11 = sigma + np.sum(m * m * d2)
        h22 = sigma + np.sum(d2)
        h21 = np.sum(m * d2)
        d1 = t - p
        g1 = np.sum(m * d1)
        g2 = np.sum(d1)
        if abs(g1) < eps and abs(g2) < eps:
            break
        det = h11 * h22 - h21 * h21
        da = -(h22 * g1 - h21 * g2) / det
        db = -(-h21 * g1 + h11 * g2) / det
        gd = g1 * da + g2 * db
        step = 1.0
        while step >= 1e-10:
            na, nb = a + step * da, b + step * db
            nf = objective(na, nb)
            if nf < f + 1e-4 * step * gd:
                a, b, f = na, nb, nf
                break
            step /= 2.0
        else:
            break
    return PlattCalibration(float(a), float(b))


def counts_text(block: dict | None) -> str:
    """'589 rows of 40 users, 86 churner rows' for a metrics block (empty when it has no
    counts)."""
    b = block or {}
    if b.get("rows") is None:
        return ""
    text = f"{int(b['rows']):,} rows"
    if b.get("users") is not None:
        text += f" of {int(b['users']):,} users"
    if b.get("churners") is not None:
        text += f", {int(b['churners']):,} churner rows"
    return text


def top_churners_text(top: dict, noun: str = "churner rows") -> str:
    """', C <noun>' for the churners among the top-scored rows of :func:`top_fraction`
    (empty for figures saved before they were kept)."""
    return f", {top['churners']:,} {noun}" if top.get("churners") is not None else ""


def spread_sizes(spread: dict) -> str:
    """'test sets of R1-R2 rows of U1-U2 users, C1-C2 churner rows' of a seed spread ('test sizes not
    recorded' for one saved before it kept them)."""
    sizes = spread.get("tests") or []
    if not sizes:
        return "test sizes not recorded"

    def span(key: str) -> str | None:
        values = [t[key] for t in sizes if t.get(key) is not None]
        return f"{min(values):,}-{max(values):,}" if values else None

    users = span("users")
    return (f"test sets of {span('rows')} rows" + (f" of {users} users" if users else "")
            + f", {span('churners')} churner rows")


def interval_text(band: list[float] | None, lead: str = " (") -> str:
    """'<lead>95 % interval 0.61-0.84, users resampled' for a [low, high] interval, closed
    with ")" when ``lead`` opens one; empty when there is none (None or NaN)."""
    if not band or any(not isinstance(b, (int, float)) or b != b for b in band):
        return ""
    return f"{lead}95 % interval {band[0]:.2f}-{band[1]:.2f}, users resampled{')' if lead.endswith('(') else ''}"


def spread(values) -> dict[str, float]:
    """Mean, sample sd, min and max of a list of figures (e.g. F1 over split seeds)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return {"n": 0, "mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"n": int(v.size), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}
