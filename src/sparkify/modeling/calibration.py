"""Probabilities that mean what they say: calibration maps and the figures that check them.

In:  0/1 labels and a model's raw scores on rows it was not trained on (out-of-fold).
Out: a :class:`Calibration` (Platt or isotonic, chosen by cross-fitted log loss) that turns
     a raw score into P(churn), applied the same way by ``sparkify score`` (Spark SQL
     text, :meth:`Calibration.sql`), the web app and the API (NumPy, :meth:`Calibration.__call__`);
     and the figures of calibrated probabilities: Brier score, log loss, a reliability
     curve, expected vs realized churners.

A raw score is the classifier's P(churn) (RandomForest, GBT, LogisticRegression: trained
with class weights it is pushed towards 0.5) or LinearSVC's margin. Platt scaling fits
p = 1 / (1 + exp(a z + b)) with z = the margin, or the log-odds of a probability;
isotonic regression fits a non-decreasing step function (pool-adjacent-violators) whose
steps are joined linearly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sparkify.modeling.evaluate import _arrays, fit_platt

EPS = 1e-6
METHODS = ("platt", "isotonic")


def _lit(value: float) -> str:
    """A double as Spark SQL literal text."""
    return f"CAST({float(value)!r} AS DOUBLE)"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass
class Calibration:
    """A monotone map from a raw score to P(churn).

    ``method``: 'platt' (``a``, ``b``: p = 1 / (1 + exp(a z + b))) or 'isotonic' (``x``,
    ``y``: knots, linear between them, flat beyond the ends); ``input``: 'margin' (z = the
    score) or 'logit' (z = log(s / (1 - s)), for probability scores)."""

    method: str
    input: str = "margin"
    a: float = 0.0
    b: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def __call__(self, scores) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            return np.interp(s, self.x, self.y)
        z = _logit(s) if self.input == "logit" else s
        return 1.0 / (1.0 + np.exp(np.clip(self.a * z + self.b, -700, 700)))

    def sql(self, score: str) -> str:
        """Spark SQL text of the calibrated probability of score column (SQL text) ``score``."""
        if self.method == "isotonic":
            x, y = self.x, self.y
            parts = [f"WHEN {score} <= {_lit(x[0])} THEN {_lit(y[0])}"]
            for i in range(1, len(x)):
                if x[i] == x[i - 1]:
                    continue
                slope = (y[i] - y[i - 1]) / (x[i] - x[i - 1])
                parts.append(f"WHEN {score} <= {_lit(x[i])} THEN {_lit(y[i - 1])} + ({score} - {_lit(x[i - 1])}) * {_lit(slope)}")
            return f"CASE {' '.join(parts)} ELSE {_lit(y[-1])} END"
        if self.input == "margin":
            z = score
        else:
            clipped = f"greatest(least({score}, {_lit(1 - EPS)}), {_lit(EPS)})"
            z = f"ln({clipped} / (1.0D - {clipped}))"
        return f"1.0D / (1.0D + exp({_lit(self.a)} * ({z}) + {_lit(self.b)}))"

    def to_dict(self) -> dict:
        if self.method == "isotonic":
            return {"method": "isotonic", "input": self.input, "x": list(map(float, self.x)),
                    "y": list(map(float, self.y))}
        return {"method": "platt", "input": self.input, "a": float(self.a), "b": float(self.b)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Calibration | None":
        """The calibration of a model.json entry; a bare {a, b} (older models) is Platt on
        the margin; None stays None."""
        if not data:
            return None
        method = data.get("method", "platt")
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
        if method == "isotonic":
            x, y = [float(v) for v in data["x"]], [float(v) for v in data["y"]]
            if not x or len(x) != len(y) or any(b < a for a, b in zip(x, x[1:])):
                raise ValueError("isotonic calibration needs equal-length, ascending knots 'x' and values 'y'")
            return cls("isotonic", data.get("input", "margin"), x=x, y=y)
        return cls("platt", data.get("input", "margin"), a=float(data["a"]), b=float(data["b"]))


def fit_isotonic(y_true, scores, input_kind: str = "margin") -> Calibration:
    """Isotonic regression of labels on scores (pool-adjacent-violators): one knot per
    pooled block, at its mean score, with the block's churn rate."""
    y, s = _arrays(y_true, scores)
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order].astype(float)
    # blocks of equal scores first, then pool adjacent violators
    uniq, start = np.unique(s, return_index=True)
    sums = np.add.reduceat(y, start)
    counts = np.diff(np.append(start, len(s))).astype(float)
    xs = uniq * counts
    blocks: list[list[float]] = []          # [label sum, count, score sum]
    for total, n, xsum in zip(sums, counts, xs):
        blocks.append([total, n, xsum])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            t, n_, x_ = blocks.pop()
            blocks[-1][0] += t
            blocks[-1][1] += n_
            blocks[-1][2] += x_
    knots_x = [float(b[2] / b[1]) for b in blocks]
    knots_y = [float(b[0] / b[1]) for b in blocks]
    return Calibration("isotonic", input_kind, x=knots_x, y=knots_y)


def fit_platt_scores(y_true, scores, input_kind: str) -> Calibration:
    """Platt scaling on margins, or on the log-odds of probability scores."""
    _, s = _arrays(y_true, scores)
    z = _logit(s) if input_kind == "logit" else s
    fitted = fit_platt(y_true, z)
    return Calibration("platt", input_kind, a=fitted.a, b=fitted.b)


FITTERS = {"platt": fit_platt_scores, "isotonic": fit_isotonic}


def log_loss(y_true, probabilities) -> float:
    """Mean negative log-likelihood of 0/1 labels under probabilities (clipped to [1e-6, 1-1e-6])."""
    y, p = _arrays(y_true, probabilities)
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")


def brier(y_true, probabilities) -> float:
    """Mean squared difference between probability and outcome."""
    y, p = _arrays(y_true, probabilities)
    return float(np.mean((p - y) ** 2)) if len(y) else float("nan")


def choose_calibration(y_true, scores, folds, input_kind: str) -> tuple[Calibration, dict[str, float]]:
    """Fit both methods on out-of-fold scores and keep the one with the lower cross-fitted
    log loss (each fold's scores calibrated by a map fitted on the other folds).

    In:  labels, out-of-fold scores and their fold numbers (0..k-1); ``input_kind``:
         'margin' or 'logit'. Out: (the chosen method fitted on all rows, {method:
         cross-fitted log loss, 'uncalibrated': the raw scores' log loss for
         probability scores})."""
    y, s = _arrays(y_true, scores)
    f = np.asarray(folds)
    losses: dict[str, float] = {}
    for method, fit in FITTERS.items():
        p = np.empty(len(y))
        for k in np.unique(f):
            held = f == k
            if y[~held].sum() == 0 or y[~held].sum() == (~held).sum():
                p[held] = y[~held].mean()
                continue
            p[held] = fit(y[~held], s[~held], input_kind)(s[held])
        losses[method] = log_loss(y, p)
    if input_kind == "logit":
        losses["uncalibrated"] = log_loss(y, s)
    best = min(METHODS, key=lambda m: losses[m])
    return FITTERS[best](y, s, input_kind), losses


def reliability(y_true, probabilities, bins: int = 10, groups=None) -> list[dict]:
    """Reliability curve on equal-count bins of the probability: per bin its range, rows,
    mean predicted probability, observed churn rate and the 95 % Wilson interval of that
    rate (``within``: the mean prediction lies inside it).

    ``groups`` (one id per row, e.g. the userId) marks rows that are not independent: the
    interval then uses the bin's effective number of rows, n / :func:`design_effect` (the
    rows of one group in the bin count as one). Without ``groups`` every row counts as
    independent."""
    y, p = _arrays(y_true, probabilities)
    if not len(y):
        return []
    g = None if groups is None else np.asarray(groups)
    order = np.argsort(p, kind="mergesort")
    out = []
    for idx in np.array_split(order, min(bins, len(y))):
        n = len(idx)
        obs = float(y[idx].mean())
        mean_p = float(p[idx].mean())
        n_eff = n if g is None else n / design_effect(g[idx])
        lo, hi = wilson(obs, n_eff)
        out.append({"lo": float(p[idx].min()), "hi": float(p[idx].max()), "rows": n, "effective_rows": n_eff,
                    "predicted": mean_p, "observed": obs, "observed_lo": lo, "observed_hi": hi,
                    "within": lo <= mean_p <= hi})
    return out


def design_effect(groups: np.ndarray) -> float:
    """How many rows count as one, for rows whose outcomes within a group are the same
    (a user's labels at nearby dates share one future): the sum of the squared group
    sizes over the number of rows (Kish's design effect for fully correlated clusters:
    1 when every group has one row, m for groups of m rows). It depends on the groups
    only, so a bin whose rows all share one outcome is not taken for many independent
    rows."""
    groups = np.asarray(groups)
    if not len(groups):
        return 1.0
    _, counts = np.unique(groups, return_counts=True)
    return float(np.sum(counts.astype(float) ** 2) / len(groups))


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square distributed with ``df`` (a positive integer) degrees of
    freedom, in closed form (even df: a Poisson tail; odd df: erfc plus a finite sum)."""
    if math.isnan(x):
        return float("nan")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    h = x / 2.0
    if df % 2 == 0:
        term = total = 1.0
        for i in range(1, df // 2):
            term *= h / i
            total += term
        return min(1.0, math.exp(-h) * total)
    total, term = 0.0, math.sqrt(h) / math.gamma(1.5)
    for i in range(1, (df - 1) // 2 + 1):
        total += term
        term *= h / (i + 0.5)
    return min(1.0, math.erfc(math.sqrt(h)) + math.exp(-h) * total)


#: A bin of the calibration test expects at least this many churners and as many stayers
#: (in effective rows); smaller neighbouring bins are pooled, as the chi-square needs.
MIN_EXPECTED = 5.0


def calibration_test(curve: list[dict]) -> tuple[float, int, float]:
    """A reliability curve (:func:`reliability`, on rows the model and its calibration
    never saw) tested against the diagonal: neighbouring bins pooled until each expects
    :data:`MIN_EXPECTED` churners and stayers among its effective rows, then chi2 = the
    sum over the pooled bins of (observed rate - mean prediction)^2 / (prediction (1 -
    prediction) / effective rows), one degree of freedom per pooled bin (a Hosmer-Lemeshow
    test on held-out rows). Out: (chi2, df, p); p >= 0.05: the curve lies within the noise
    of the diagonal (p is NaN for an empty curve)."""
    pooled: list[list[float]] = []          # [rows, effective rows, predicted sum, observed sum]
    for b in curve:
        pooled.append([b["rows"], b["effective_rows"], b["predicted"] * b["rows"], b["observed"] * b["rows"]])
        rows, eff, pred, _ = pooled[-1]
        if len(pooled) > 1 and min(pred / rows * eff, (1 - pred / rows) * eff) < MIN_EXPECTED:
            last = pooled.pop()
            pooled[-1] = [u + v for u, v in zip(pooled[-1], last)]
    while len(pooled) > 1:                   # the first bin may still be small: pool it forward
        rows, eff, pred, _ = pooled[0]
        if min(pred / rows * eff, (1 - pred / rows) * eff) >= MIN_EXPECTED:
            break
        first = pooled.pop(0)
        pooled[0] = [u + v for u, v in zip(pooled[0], first)]
    chi2 = 0.0
    for rows, eff, pred, obs in pooled:
        p = min(max(pred / rows, EPS), 1 - EPS)
        chi2 += (obs / rows - p) ** 2 / (p * (1 - p) / max(eff, 1e-9))
    df = len(pooled)
    return chi2, df, chi2_sf(chi2, df) if df else float("nan")


def reliability_text(fig: dict) -> str:
    """'9/10 reliability bins within the noise, calibration test p 0.43' for figures of
    :func:`probability_figures` (without the p for figures written before the test)."""
    text = f"{fig['bins_within']}/{fig['bins']} reliability bins within the noise"
    p = fig.get("calibration_p")
    return text if p is None or math.isnan(p) else f"{text}, calibration test p {p:.2f}"


def wilson(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``rate`` observed on ``n`` trials."""
    if n == 0:
        return 0.0, 1.0
    den = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / den
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def probability_figures(y_true, probabilities, bins: int = 10, groups=None) -> dict:
    """Brier score, log loss, expected vs realized churners, the reliability curve and its
    test against the diagonal (:func:`calibration_test`: ``calibration_chi2``,
    ``calibration_df``, ``calibration_p``).

    The sd of the expected count is sqrt(sum p(1-p)) for independent rows; with ``groups``
    (one id per row, e.g. the userId: a user's rows at nearby dates share one future) it
    is the cluster-robust sqrt(sum over groups of (sum of y - p)^2), never below the
    independent one, and the reliability intervals use effective row counts
    (:func:`reliability`). ``z`` = (realized - expected) / that sd; ``noise`` names it."""
    y, p = _arrays(y_true, probabilities)
    expected = float(p.sum())
    realized = int(y.sum())
    sd = float(math.sqrt(np.sum(p * (1 - p))))
    if groups is not None and len(y):
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        sd = max(sd, float(math.sqrt(np.sum(np.bincount(inverse, weights=y - p) ** 2))))
    curve = reliability(y, p, bins, groups)
    chi2, df, p_value = calibration_test(curve)
    return {"rows": int(len(y)), "churners": realized, "brier": brier(y, p), "log_loss": log_loss(y, p),
            "expected_churners": expected, "realized_churners": realized,
            "expected_over_realized": expected / realized if realized else float("nan"),
            "expected_sd": sd, "z": (realized - expected) / sd if sd > 0 else 0.0,
            "noise": "independent rows" if groups is None else "rows grouped by user",
            "reliability": curve, "bins_within": int(sum(b["within"] for b in curve)), "bins": len(curve),
            "calibration_chi2": chi2, "calibration_df": df, "calibration_p": p_value}
