"""The four model families as Spark ML Pipelines, with their parameter grids.

Every pipeline uses only the stage types the JVM-free scorer re-implements:
StringIndexer(handleInvalid="keep") -> OneHotEncoder for each categorical column,
VectorAssembler, StandardScaler (linear models only), then one of
LogisticRegression, LinearSVC, RandomForestClassifier, GBTClassifier.

Input columns: the raw feature columns (numeric as double, categorical as string),
``churn`` (label, double 0/1) and ``weight`` (class weight, double) for fitting;
:func:`prepare_table` makes them from a feature table, the same way at training and at
scoring time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LABEL_COL = "churn"
WEIGHT_COL = "weight"
FOLD_COL = "fold"
FEATURES_COL = "features"
AS_OF_COL = "as_of_ms"
RAW_FEATURES_COL = "features_raw"

FAMILIES = ("rf", "gbt", "lr", "svc")
FAMILY_NAMES = {
    "rf": "RandomForestClassifier",
    "gbt": "GBTClassifier",
    "lr": "LogisticRegression",
    "svc": "LinearSVC",
}
LINEAR = {"lr", "svc"}

Grid = dict[str, list[Any]]


@dataclass
class FamilySettings:
    """Fixed parameters and the two grids (small for comparison, larger for tuning)."""

    fixed: dict[str, Any] = field(default_factory=dict)
    compare_grid: Grid = field(default_factory=dict)
    tune_grid: Grid = field(default_factory=dict)


def default_settings() -> dict[str, FamilySettings]:
    """One comparison point per family (the quick default plan: k + 1 fits each) and the
    tuning grids of ``sparkify train --thorough``. The comparison points are the ones
    the former two-point comparison grids chose on the mini and the 1,500-user logs; GBT's
    has 10 rounds of step 0.2 (the out-of-fold PR-AUC of 20 rounds of 0.1 on those logs)."""
    return {
        "rf": FamilySettings(
            fixed={"numTrees": 60, "featureSubsetStrategy": "sqrt", "subsamplingRate": 0.8},
            compare_grid={"maxDepth": [5]},
            tune_grid={"maxDepth": [4, 8], "minInstancesPerNode": [1, 5]},
        ),
        "gbt": FamilySettings(
            fixed={"maxIter": 10, "stepSize": 0.2, "subsamplingRate": 0.8},
            compare_grid={"maxDepth": [3]},
            tune_grid={"maxDepth": [2, 4], "stepSize": [0.1, 0.2]},
        ),
        "lr": FamilySettings(
            fixed={"maxIter": 30, "family": "binomial", "elasticNetParam": 0.0},
            compare_grid={"regParam": [0.01]},
            tune_grid={"regParam": [0.003, 0.03, 0.3], "elasticNetParam": [0.0, 0.5]},
        ),
        "svc": FamilySettings(
            fixed={"maxIter": 25, "tol": 1e-4},
            compare_grid={"regParam": [0.1]},
            tune_grid={"regParam": [0.003, 0.01, 0.03, 0.1]},
        ),
    }


def fast_settings() -> dict[str, FamilySettings]:
    """Tiny models and one- or two-point grids: the test suite's setting."""
    return {
        "rf": FamilySettings(fixed={"numTrees": 15, "featureSubsetStrategy": "sqrt"},
                             compare_grid={"maxDepth": [4]}, tune_grid={"maxDepth": [3, 5]}),
        "gbt": FamilySettings(fixed={"maxIter": 4, "stepSize": 0.3},
                              compare_grid={"maxDepth": [2]}, tune_grid={"maxDepth": [2, 3]}),
        "lr": FamilySettings(fixed={"maxIter": 10, "family": "binomial"},
                             compare_grid={"regParam": [0.05]}, tune_grid={"regParam": [0.01, 0.1]}),
        "svc": FamilySettings(fixed={"maxIter": 6},
                              compare_grid={"regParam": [0.05]}, tune_grid={"regParam": [0.01, 0.1]}),
    }


def make_classifier(family: str, params: dict[str, Any] | None = None, seed: int = 42,
                    features_col: str = FEATURES_COL, weighted: bool = True):
    """One classifier of ``family`` ("rf", "gbt", "lr", "svc") with ``params`` set."""
    from pyspark.ml.classification import GBTClassifier, LinearSVC, LogisticRegression, RandomForestClassifier

    common: dict[str, Any] = {"featuresCol": features_col, "labelCol": LABEL_COL}
    if weighted:
        common["weightCol"] = WEIGHT_COL
    if family == "rf":
        est = RandomForestClassifier(seed=seed, **common)
    elif family == "gbt":
        est = GBTClassifier(seed=seed, **common)
    elif family == "lr":
        est = LogisticRegression(**common)
    elif family == "svc":
        est = LinearSVC(**common)
    else:
        raise ValueError(f"unknown model family {family!r}; choose from {', '.join(FAMILIES)}")
    if params:
        est.setParams(**params)
    return est


def build_pipeline(family: str, numeric: list[str], categorical: list[str],
                   params: dict[str, Any] | None = None, seed: int = 42, weighted: bool = True):
    """A Pipeline: StringIndexer+OneHotEncoder per categorical, VectorAssembler,
    StandardScaler (linear families), classifier. Returns (pipeline, classifier)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler

    stages = []
    encoded = []
    if categorical:
        idx_cols = [f"{c}_idx" for c in categorical]
        encoded = [f"{c}_ohe" for c in categorical]
        stages.append(StringIndexer(inputCols=categorical, outputCols=idx_cols, handleInvalid="keep",
                                    stringOrderType="frequencyDesc"))
        stages.append(OneHotEncoder(inputCols=idx_cols, outputCols=encoded, dropLast=True))
    linear = family in LINEAR
    assembled = RAW_FEATURES_COL if linear else FEATURES_COL
    stages.append(VectorAssembler(inputCols=list(numeric) + encoded, outputCol=assembled))
    if linear:
        stages.append(StandardScaler(inputCol=RAW_FEATURES_COL, outputCol=FEATURES_COL,
                                     withMean=True, withStd=True))
    clf = make_classifier(family, params, seed=seed, weighted=weighted)
    stages.append(clf)
    return Pipeline(stages=stages), clf


def param_maps(clf, grid: Grid) -> list[dict]:
    """ParamGridBuilder maps for ``clf`` from a {param name: values} dict (one empty map if none)."""
    from pyspark.ml.tuning import ParamGridBuilder

    builder = ParamGridBuilder()
    for name, values in grid.items():
        builder = builder.addGrid(clf.getParam(name), list(values))
    maps = builder.build()
    return maps or [{}]


def readable_params(param_map: dict) -> dict[str, Any]:
    """{Param: value} -> {name: value} for reports."""
    return {p.name: v for p, v in param_map.items()}


def slot_names(df, col: str = RAW_FEATURES_COL) -> list[str]:
    """Names of the slots of an assembled vector column, from its ML attribute metadata
    (numeric features keep their name; one-hot slots are ``<column>_ohe_<category>``)."""
    meta = df.schema[col].metadata.get("ml_attr", {})
    size = int(meta.get("num_attrs", 0))
    names = [f"slot_{i}" for i in range(size)]
    for group in meta.get("attrs", {}).values():
        for attr in group:
            if attr["idx"] < size:
                names[attr["idx"]] = attr.get("name", names[attr["idx"]])
    return names


def pretty_slot(name: str, categorical: list[str]) -> str:
    """``device_ohe_Mac`` -> ``device = Mac``; numeric names unchanged."""
    for c in categorical:
        prefix = f"{c}_ohe_"
        if name.startswith(prefix):
            return f"{c} = {name[len(prefix):]}"
    return name


# --------------------------------------------------------------------------- pipeline input
def feature_columns(mode: str = "window", artists: bool = False) -> tuple[list, list[str], list[str]]:
    """(FeatureSpecs, numeric names, categorical names) used for a label mode (with the
    opt-in artist features if ``artists``)."""
    from sparkify.features import model_features

    specs = model_features(mode, artists)
    return (specs, [f.name for f in specs if f.kind == "numeric"],
            [f.name for f in specs if f.kind == "categorical"])


def prepare_table(table, numeric: list[str], categorical: list[str]):
    """Cast numerics to double (nulls -> 0.0), categoricals to string (nulls stay null:
    StringIndexer 'keep' maps them to the unseen bucket), churn to double if present;
    keeps ``userId`` and, when present, the observation time ``as_of_ms``."""
    from pyspark.sql import functions as F

    missing = [c for c in [*numeric, *categorical] if c not in table.columns]
    if missing:
        raise ValueError(f"feature table lacks column(s): {', '.join(missing)}")
    cols = [F.col("userId")] + ([F.col(AS_OF_COL)] if AS_OF_COL in table.columns else [])
    cols += [F.coalesce(F.col(c).cast("double"), F.lit(0.0)).alias(c) for c in numeric]
    cols += [F.col(c).cast("string").alias(c) for c in categorical]
    if LABEL_COL in table.columns:
        cols.append(F.col(LABEL_COL).cast("double").alias(LABEL_COL))
    return table.select(*cols)
