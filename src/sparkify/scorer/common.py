"""Shared pieces of the classifier stages: the base class and Spark's prediction rules."""

from __future__ import annotations

import numpy as np

from sparkify.scorer.errors import ModelLoadError
from sparkify.scorer.pipeline_reader import StageFiles


def probability_to_prediction(prob: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """Spark's ``probability2prediction`` with ``thresholds`` set: argmax of p_i / t_i,
    where a zero threshold wins outright (the last such class, as Spark's loop does)."""
    n, k = prob.shape
    if len(thresholds) != k:
        raise ModelLoadError(f"thresholds has {len(thresholds)} values for {k} classes")
    arg = np.zeros(n, dtype=np.float64)
    best = np.full(n, -np.inf)
    for i, t in enumerate(thresholds):
        if t == 0.0:
            best[:] = np.inf
            arg[:] = i
        else:
            scaled = prob[:, i] / t
            better = scaled > best
            best = np.where(better, scaled, best)
            arg = np.where(better, float(i), arg)
    return arg


def first_argmax(a: np.ndarray) -> np.ndarray:
    """Spark's ``Vector.argmax`` row-wise (first maximum), as float predictions."""
    return np.argmax(a, axis=1).astype(np.float64)


class Classifier:
    """Base of the classifier stages. ``predict(X)`` returns Spark's output columns:
    ``rawPrediction`` (n, k), ``probability`` (n, k) when the model has one, ``prediction`` (n,).

    ``score_kind`` is "probability" (``churn_score`` = P(class 1)) or "margin" (LinearSVC).
    """

    score_kind = "probability"

    def __init__(self, files: StageFiles):
        self.files = files
        self.uid = files.uid
        self.features_col = files.param("featuresCol", "features")
        self.raw_col = files.param("rawPredictionCol", "rawPrediction")
        self.prob_col = files.param("probabilityCol", "probability")
        self.thresholds = files.param("thresholds") if files.is_set("thresholds") else None
        self.num_features: int | None = None
        self.num_classes = 2

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def churn_score(self, out: dict[str, np.ndarray]) -> np.ndarray:
        """The positive-class score from ``predict``'s output."""
        if self.score_kind == "margin":
            return out["rawPrediction"][:, 1]
        return out["probability"][:, 1]
