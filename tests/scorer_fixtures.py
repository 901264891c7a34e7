"""Small Spark pipelines on synthetic churn-like data, for the NumPy scorer's tests.

Everything Spark-related is imported lazily, so the module itself loads without a JVM.
Models are fitted once per test process (``fitted``) and shared by the scorer test modules.

Run as a script to write demo model directories (for ``python -m sparkify.scorer.bench``):

    .venv/bin/python tests/scorer_fixtures.py --out /tmp/scorer_demo
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NUMERIC = ["songs_per_day", "thumbs_down_rate", "tenure_days", "errors_per_week", "constant"]
CATEGORICAL = ["level", "device"]
DEVICES = ["windows", "mac", "iphone", "linux", "ipad", "tv"]
DEVICE_RISK = {"windows": 0.0, "mac": -0.8, "iphone": 0.9, "linux": -0.3, "ipad": 1.4, "tv": 0.6}
UNITS = {"songs_per_day": "songs/day", "thumbs_down_rate": "per 100 songs",
         "tenure_days": "days", "errors_per_week": "errors/week", "constant": ""}


def _frame(n: int, seed: int, scoring: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    device = rng.choice(DEVICES, size=n, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05]).astype(object)
    level = rng.choice(["paid", "free"], size=n, p=[0.6, 0.4]).astype(object)
    df = pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "songs_per_day": np.round(rng.gamma(2.0, 20.0, n), 3),
        "thumbs_down_rate": np.round(rng.exponential(1.5, n), 4),
        "tenure_days": rng.integers(1, 400, n).astype(np.float64),
        "errors_per_week": rng.poisson(0.7, n).astype(np.float64),
        "constant": np.ones(n),
        "level": level,
        "device": device,
    })
    if scoring:
        # unseen categories, missing categories and a moved "constant" column
        df.loc[rng.random(n) < 0.05, "device"] = "smart fridge"
        df.loc[rng.random(n) < 0.02, "device"] = None
        df.loc[rng.random(n) < 0.03, "level"] = "trial"
        df.loc[rng.random(n) < 0.10, "constant"] = 3.0
    logit = (-1.0 - 0.03 * df["songs_per_day"] + 0.7 * df["thumbs_down_rate"]
             - 0.004 * df["tenure_days"] + 0.4 * df["errors_per_week"]
             + 0.8 * (df["level"] == "free")
             + df["device"].map(DEVICE_RISK).fillna(0.0).astype(float))
    p = 1.0 / (1.0 + np.exp(-logit))
    df["label"] = (rng.random(n) < p).astype(np.float64)
    return df


def training_frame(n: int = 2000, seed: int = 11) -> pd.DataFrame:
    """Synthetic training users: numeric features, a constant column, two categoricals, label."""
    return _frame(n, seed, scoring=False)


def scoring_frame(n: int = 1200, seed: int = 12) -> pd.DataFrame:
    """Rows to score: like the training rows plus unseen / missing categories and a
    'constant' column that is not constant any more."""
    return _frame(n, seed, scoring=True)


def spark_schema():
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    return StructType(
        [StructField("id", LongType(), False)]
        + [StructField(c, DoubleType(), False) for c in NUMERIC]
        + [StructField(c, StringType(), True) for c in CATEGORICAL]
        + [StructField("label", DoubleType(), False)])


def to_spark(spark, pdf: pd.DataFrame):
    cols = ["id", *NUMERIC, *CATEGORICAL, "label"]
    lists = [pdf[c].tolist() for c in cols]  # Python natives, as the explicit schema wants
    rows = [tuple(None if (isinstance(v, float) and np.isnan(v)) else v for v in r)
            for r in zip(*lists)]
    return spark.createDataFrame(rows, schema=spark_schema())


# --------------------------------------------------------------------------- pipelines
def build_pipeline(name: str):
    """An unfitted pipeline for one test variant (see VARIANTS)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import GBTClassifier, LinearSVC, LogisticRegression, RandomForestClassifier
    from pyspark.ml.feature import MinMaxScaler, OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler

    idx = [f"{c}_idx" for c in CATEGORICAL]
    ohe = [f"{c}_vec" for c in CATEGORICAL]
    si = StringIndexer(inputCols=CATEGORICAL, outputCols=idx, handleInvalid="keep")

    def onehot(drop_last=True):
        return [si, OneHotEncoder(inputCols=idx, outputCols=ohe, dropLast=drop_last),
                VectorAssembler(inputCols=NUMERIC + ohe, outputCol="raw")]

    if name == "lr":
        stages = onehot() + [StandardScaler(inputCol="raw", outputCol="features", withMean=True),
                             LogisticRegression(regParam=0.01, threshold=0.35, maxIter=50)]
    elif name == "svc":
        stages = onehot() + [StandardScaler(inputCol="raw", outputCol="features", withMean=False),
                             LinearSVC(regParam=0.01, threshold=0.2, maxIter=50)]
    elif name == "rf":
        stages = onehot(drop_last=False) + [
            StandardScaler(inputCol="raw", outputCol="features", withMean=False),
            RandomForestClassifier(numTrees=25, maxDepth=6, seed=3).setThresholds([0.55, 0.45])]
    elif name == "gbt":
        stages = onehot() + [MinMaxScaler(inputCol="raw", outputCol="features", min=-1.0, max=2.0),
                             GBTClassifier(maxIter=15, maxDepth=4, seed=5).setThresholds([0.45, 0.55])]
    elif name == "rf_cat":
        stages = [si, VectorAssembler(inputCols=NUMERIC + idx, outputCol="features"),
                  RandomForestClassifier(numTrees=20, maxDepth=6, seed=7).setThresholds([0.6, 0.4])]
    elif name == "gbt_cat":
        stages = [si, VectorAssembler(inputCols=NUMERIC + idx, outputCol="features"),
                  GBTClassifier(maxIter=15, maxDepth=4, seed=9)]
    elif name == "rf100":
        stages = onehot() + [StandardScaler(inputCol="raw", outputCol="features", withMean=False),
                             RandomForestClassifier(numTrees=100, maxDepth=8, seed=3)]
    else:
        raise KeyError(name)
    return Pipeline(stages=stages)


MODEL_TYPES = {"lr": "LogisticRegression", "svc": "LinearSVC", "rf": "RandomForestClassifier",
               "gbt": "GBTClassifier", "rf_cat": "RandomForestClassifier",
               "gbt_cat": "GBTClassifier", "rf100": "RandomForestClassifier"}
VARIANTS = ["lr", "svc", "rf", "gbt", "rf_cat", "gbt_cat"]


@dataclass
class Fitted:
    name: str
    pipeline_dir: Path
    model_dir: Path
    spark: dict  # Spark's transform of scoring_frame(): rawPrediction, probability, prediction


def spark_outputs(spark, pipeline_dir: Path, pdf: pd.DataFrame) -> dict[str, np.ndarray]:
    """Spark's own transform of ``pdf`` with the saved pipeline, as arrays ordered by id."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array

    model = PipelineModel.load(str(pipeline_dir))
    out = model.transform(to_spark(spark, pdf))
    cols = [vector_to_array("rawPrediction").alias("raw"), "prediction", "id"]
    if "probability" in out.columns:
        cols.append(vector_to_array("probability").alias("prob"))
    res = out.select(*cols).orderBy("id").toPandas()
    result = {"id": res["id"].to_numpy(), "rawPrediction": np.vstack(res["raw"].to_numpy()),
              "prediction": res["prediction"].to_numpy()}
    if "prob" in res.columns:
        result["probability"] = np.vstack(res["prob"].to_numpy())
    return result


def feature_metadata(train: pd.DataFrame) -> list[dict]:
    """model.json "features" for the synthetic columns (as `sparkify train` describes them)."""
    feats = []
    for c in NUMERIC:
        s = train[c]
        feats.append({"name": c, "kind": "numeric", "unit": UNITS[c], "description": c.replace("_", " "),
                      "min": float(s.min()), "max": float(s.max()), "median": float(s.median()),
                      "p01": float(s.quantile(0.01)), "p99": float(s.quantile(0.99))})
    for c in CATEGORICAL:
        counts = train[c].value_counts()
        feats.append({"name": c, "kind": "categorical", "description": c,
                      "categories": counts.index.tolist(), "default": counts.index[0]})
    return feats


def write_model_dir(pipeline_dir: Path, out: Path, model_type: str, threshold: float,
                    train: pd.DataFrame, calibration: dict | None = None) -> Path:
    """A model directory as docs/model-directory.md describes (model.json, pipeline/,
    features.parquet), around an already saved pipeline."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(pipeline_dir, out / "pipeline", dirs_exist_ok=True)
    meta = {"format": 1, "model_type": model_type,
            "score_kind": "margin" if model_type == "LinearSVC" else "probability",
            "threshold": threshold, "calibration": calibration,
            "label": {"mode": "window", "cutoff": "2018-11-01T00:00:00Z", "horizon_days": 30,
                      "observation_days": None},
            "features": feature_metadata(train), "spark_version": "4.3.0",
            "created": "2026-11-28T12:00:00Z"}
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    feats = train[[*NUMERIC, *CATEGORICAL]].copy()
    feats["churn"] = train["label"].astype(int)
    feats["split"] = np.where(np.arange(len(train)) % 5 == 0, "test", "train")
    feats.to_parquet(out / "features.parquet", index=False)
    return out


_CACHE: dict[str, Fitted] = {}
_THRESHOLDS = {"lr": 0.3, "svc": -0.2, "rf": 0.4, "gbt": 0.45, "rf_cat": 0.35, "gbt_cat": 0.5,
               "rf100": 0.4}
_CALIBRATION = {"svc": {"a": -1.7, "b": 0.3}}


def fitted(spark, base: Path, name: str) -> Fitted:
    """Fit variant ``name`` on ``training_frame()`` once per process, save it under ``base``,
    wrap it in a model directory and record Spark's transform of ``scoring_frame()``."""
    if name in _CACHE:
        return _CACHE[name]
    train = training_frame()
    model = build_pipeline(name).fit(to_spark(spark, train))
    pipeline_dir = Path(base) / name / "pipeline_saved"
    model.write().overwrite().save(str(pipeline_dir))
    model_dir = write_model_dir(pipeline_dir, Path(base) / name / "model", MODEL_TYPES[name],
                                _THRESHOLDS[name], train, _CALIBRATION.get(name))
    result = Fitted(name, pipeline_dir, model_dir, spark_outputs(spark, pipeline_dir, scoring_frame()))
    np.savez(Path(base) / name / "spark_outputs.npz", **result.spark)  # for inspection
    _CACHE[name] = result
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="write demo model directories (needs Spark)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default="lr,rf100,gbt,svc")
    args = parser.parse_args(argv)
    from sparkify.spark import get_spark

    spark = get_spark(app_name="scorer-demo", master="local[2]", shuffle_partitions=2,
                      extra_conf={"spark.ui.enabled": "false"})
    for name in args.variants.split(","):
        f = fitted(spark, args.out / "work", name)
        shutil.copytree(f.model_dir, args.out / name, dirs_exist_ok=True)
        print(f"wrote {args.out / name}")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
