"""Linear classifiers of a saved pipeline: ``LogisticRegressionModel`` and ``LinearSVCModel``.

Semantics (Spark 3.x/4.x):
- LR binary: m = w.x + b; rawPrediction = [-m, m]; probability = [sigma(-m), sigma(m)];
  prediction = m > logit(threshold) (``thresholds`` set: threshold = 1/(1 + t0/t1)).
- LR multinomial: margins = W x + b; probability = softmax; prediction = argmax (or thresholds).
- LinearSVC: m = w.x + b; rawPrediction = [-m, m]; prediction = m > threshold (default 0).
"""

from __future__ import annotations

import math

import numpy as np

from sparkify.scorer.common import Classifier, first_argmax, probability_to_prediction
from sparkify.scorer.errors import ModelLoadError
from sparkify.scorer.pipeline_reader import StageFiles, decode_matrix, decode_vector, first_row


class LogisticRegression(Classifier):
    def __init__(self, files: StageFiles):
        super().__init__(files)
        row = first_row(files.data(), files.path)
        self.num_classes = int(row.get("numClasses", 2))
        self.num_features = int(row.get("numFeatures", 0)) or None
        self.multinomial = bool(row.get("isMultinomial", False))
        if row.get("coefficientMatrix") is not None:
            self.coef = decode_matrix(row["coefficientMatrix"])
            self.intercept = decode_vector(row["interceptVector"])
        elif row.get("coefficients") is not None:  # Spark < 2.1
            self.coef = decode_vector(row["coefficients"])[None, :]
            self.intercept = np.asarray([float(row["intercept"])])
        else:
            raise ModelLoadError(f"{files.path}: LogisticRegression data has no coefficients")
        if self.num_features is None:
            self.num_features = self.coef.shape[1]
        if not self.multinomial and self.coef.shape[0] != 1:
            raise ModelLoadError(f"{files.path}: binary LogisticRegression with {self.coef.shape[0]} coefficient rows")
        if self.thresholds is not None and not self.multinomial:
            t0, t1 = self.thresholds
            self.threshold = 1.0 / (1.0 + t0 / t1)
        else:
            self.threshold = float(files.param("threshold", 0.5))
        if self.threshold == 0.0:
            self.raw_threshold = -math.inf
        elif self.threshold == 1.0:
            self.raw_threshold = math.inf
        else:
            self.raw_threshold = math.log(self.threshold / (1.0 - self.threshold))
        if self.multinomial:
            self.w = self.coef
        else:
            self.w = np.ascontiguousarray(self.coef[0])
            self.b = float(self.intercept[0])

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Binary: the log-odds of class 1 (n,). Multinomial: class-1 minus class-0 margins."""
        if self.multinomial:
            m = X @ self.w.T + self.intercept
            return m[:, 1] - m[:, 0]
        return X @ self.w + self.b

    def linear_terms(self) -> tuple[np.ndarray, float]:
        """(w, b) of the class-1 log-odds: margin = X @ w + b."""
        if self.multinomial:
            return self.w[1] - self.w[0], float(self.intercept[1] - self.intercept[0])
        return self.w, self.b

    def predict(self, X):
        if self.multinomial:
            raw = X @ self.w.T + self.intercept
            shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
            prob = shifted / shifted.sum(axis=1, keepdims=True)
            if self.thresholds is not None:
                pred = probability_to_prediction(prob, self.thresholds)
            else:
                pred = first_argmax(raw)
            return {"rawPrediction": raw, "probability": prob, "prediction": pred}
        m = X @ self.w + self.b
        raw = np.column_stack([-m, m])
        prob = 1.0 / (1.0 + np.exp(-raw))
        if self.raw_col:
            pred = (m > self.raw_threshold).astype(np.float64)
        else:
            pred = (prob[:, 1] > self.threshold).astype(np.float64)
        return {"rawPrediction": raw, "probability": prob, "prediction": pred}


class LinearSVC(Classifier):
    score_kind = "margin"

    def __init__(self, files: StageFiles):
        super().__init__(files)
        self.thresholds = None
        row = first_row(files.data(), files.path)
        self.w = decode_vector(row.get("coefficients"))
        self.b = float(row.get("intercept", 0.0))
        self.num_features = self.w.shape[0]
        self.threshold = float(files.param("threshold", 0.0))

    def margin(self, X: np.ndarray) -> np.ndarray:
        return X @ self.w + self.b

    def linear_terms(self) -> tuple[np.ndarray, float]:
        return self.w, self.b

    def predict(self, X):
        m = X @ self.w + self.b
        raw = np.column_stack([-m, m])
        return {"rawPrediction": raw, "prediction": (m > self.threshold).astype(np.float64)}
