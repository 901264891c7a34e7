"""``PipelineScorer``: a saved Spark ``PipelineModel`` scored in NumPy.

    ps = PipelineScorer.load("model/classifier/pipeline")
    out = ps.transform(pandas_df)   # {"rawPrediction": (n,2), "probability": (n,2), "prediction": (n,)}

Stages are limited to StringIndexer, OneHotEncoder, VectorAssembler, StandardScaler,
MinMaxScaler and one final LogisticRegression, LinearSVC, RandomForestClassifier or
GBTClassifier; anything else is a ``ModelLoadError`` naming the stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sparkify.scorer.common import Classifier
from sparkify.scorer.errors import ModelLoadError, ScoringInputError
from sparkify.scorer.linear import LinearSVC, LogisticRegression
from sparkify.scorer.pipeline_reader import read_pipeline
from sparkify.scorer.stages import FEATURE_STAGES, ColumnInfo, Slot, Stage, coerce_numeric
from sparkify.scorer.trees import GBT, RandomForest

CLASSIFIERS: dict[str, type[Classifier]] = {
    "org.apache.spark.ml.classification.LogisticRegressionModel": LogisticRegression,
    "org.apache.spark.ml.classification.LinearSVCModel": LinearSVC,
    "org.apache.spark.ml.classification.RandomForestClassificationModel": RandomForest,
    "org.apache.spark.ml.classification.GBTClassificationModel": GBT,
}

#: model.json ``model_type`` of each classifier class
MODEL_TYPES = {
    LogisticRegression: "LogisticRegression",
    LinearSVC: "LinearSVC",
    RandomForest: "RandomForestClassifier",
    GBT: "GBTClassifier",
}


class PipelineScorer:
    """A loaded pipeline: feature ``stages``, the final ``classifier``, the raw input
    columns it needs (``raw_inputs``: name -> "string" | "numeric") and the provenance of
    every slot of the classifier's feature vector (``feature_slots``)."""

    def __init__(self, stages: list[Stage], classifier: Classifier, path: Path | None = None,
                 spark_version: str | None = None):
        self.stages = stages
        self.classifier = classifier
        self.path = path
        self.spark_version = spark_version
        info: dict[str, ColumnInfo] = {}
        raw: dict[str, str] = {}
        produced: set[str] = set()
        for st in stages:
            for name in st.inputs:
                if name not in produced and name not in raw:
                    raw[name] = st.input_kind
            st.describe(info)
            produced.update(st.outputs)
        fcol = classifier.features_col
        if fcol not in produced:
            raise ModelLoadError(
                f"the classifier reads column {fcol!r}, which no stage of the pipeline produces")
        self.raw_inputs = raw
        self.feature_slots: list[Slot] = list(info[fcol].slots) if info[fcol].kind == "vector" else \
            [Slot(source=info[fcol].source or fcol, label=fcol)]
        n = classifier.num_features
        if n is not None and n != len(self.feature_slots):
            raise ModelLoadError(
                f"the classifier expects {n} features but the stages assemble {len(self.feature_slots)}")
        self.columns = info

    @property
    def model_type(self) -> str:
        return MODEL_TYPES[type(self.classifier)]

    @classmethod
    def load(cls, pipeline_dir: str | Path) -> "PipelineScorer":
        """In: a folder written by ``PipelineModel.write().save``. Out: a ``PipelineScorer``.
        Raises ``ModelLoadError`` for a missing/corrupt folder or an unsupported stage."""
        path = Path(pipeline_dir)
        meta, files = read_pipeline(path)
        stages: list[Stage] = []
        classifier: Classifier | None = None
        for i, f in enumerate(files):
            if classifier is not None:
                raise ModelLoadError(
                    f"stage {i} ({f.short_class}) comes after the classifier: not supported")
            if f.class_name in FEATURE_STAGES:
                stages.append(FEATURE_STAGES[f.class_name](f))
            elif f.class_name in CLASSIFIERS:
                classifier = CLASSIFIERS[f.class_name](f)
            else:
                supported = sorted(c.rsplit(".", 1)[-1] for c in [*FEATURE_STAGES, *CLASSIFIERS])
                raise ModelLoadError(
                    f"stage {i} is a {f.short_class}, which the NumPy scorer does not support "
                    f"(supported: {', '.join(supported)})")
        if classifier is None:
            raise ModelLoadError(f"{path}: the pipeline has no classifier stage")
        return cls(stages, classifier, path=path, spark_version=meta.get("sparkVersion"))

    # ------------------------------------------------------------------ input handling
    def columns_from_frame(self, df) -> dict[str, np.ndarray]:
        """In: a pandas DataFrame holding (at least) the raw input columns. Out: the column
        dict the stages read. Raises ``ScoringInputError`` listing missing columns."""
        missing = [c for c in self.raw_inputs if c not in df.columns]
        if missing:
            raise ScoringInputError(f"missing column(s): {', '.join(missing)}", missing)
        return self.coerce({c: df[c].to_numpy() for c in self.raw_inputs})

    def coerce(self, cols: dict[str, Any]) -> dict[str, np.ndarray]:
        """Raw columns (sequences) -> arrays of the kind each stage expects."""
        out = {}
        for name, kind in self.raw_inputs.items():
            values = cols[name]
            if kind == "numeric":
                out[name] = coerce_numeric(name, values)
            else:
                arr = np.empty(len(values), dtype=object)
                for i, v in enumerate(values):  # element-wise: a list value stays one object
                    arr[i] = v
                out[name] = arr
        return out

    # ------------------------------------------------------------------ scoring
    def features(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        """In: raw columns (after ``coerce``). Out: the classifier's feature matrix (n, d)."""
        work = dict(cols)
        for st in self.stages:
            st.transform(work)
        X = work[self.classifier.features_col]
        if X.ndim == 1:
            X = X[:, None]
        return X

    def transform_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Like ``transform`` but from coerced raw columns; also returns ``features``."""
        X = self.features(cols)
        out = self.classifier.predict(X)
        out["features"] = X
        return out

    def transform(self, df) -> dict[str, np.ndarray]:
        """In: a pandas DataFrame of raw input rows. Out: Spark's output columns as arrays:
        ``rawPrediction`` (n, 2), ``probability`` (n, 2) (not for LinearSVC), ``prediction``
        (n,), plus ``features`` (the classifier's input matrix)."""
        return self.transform_columns(self.columns_from_frame(df))
