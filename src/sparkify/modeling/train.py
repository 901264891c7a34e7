"""Train, compare, tune and evaluate the churn models; write the model directory.

In:  an event log (anything :func:`sparkify.dataset.load_events` reads) and a
     :class:`TrainConfig`.
Out: a model directory (see ``docs/model-directory.md``) written atomically, and a
     :class:`TrainResult` with the figures and the time of every stage.

The steps (each printed with its elapsed time):

1. load + clean the log in one pass into session-day rows (``load_log``), build the per-user table
   (``build_user_table``: prediction-time labels by default), repartition it to about
   the core count and cache it (a user table is small; at Spark's default 200
   partitions every optimiser iteration pays 200 tasks);
2. a stratified held-out test set by user (a hash of userId and the seed, so the split
   does not depend on partitioning), untouched until step 5; stratified fold numbers
   for the rest;
3. compare the families: k-fold ``CrossValidator`` (our fold column, ``parallelism``
   > 1) over a small grid each, parameters chosen by PR-AUC (threshold-free), the
   family chosen by out-of-fold churn-class F1 at its best threshold;
4. tune the best family over a bigger grid; choose the decision threshold on its
   out-of-fold scores (max churn-class F1); for LinearSVC fit a Platt calibration on
   the out-of-fold margins;
5. evaluate every family and the tuned model on the test set; confusion matrix, top
   10 %, named importances/coefficients; the seed-compatible ``ever`` label, the
   ground-truth ceiling (simulated logs) and the split-seed spread (small test sets);
6. write the directory (pipeline, model.json, metrics.json, data_quality.json,
   features.parquet, activity.parquet, MODEL_CARD.md) into a temporary sibling and swap
   it in.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from sparkify.modeling import evaluate as ev
from sparkify.modeling.pipelines import (
    FAMILIES, FAMILY_NAMES, FOLD_COL, LABEL_COL, WEIGHT_COL, FamilySettings, build_pipeline,
    default_settings, fast_settings, param_maps, pretty_slot, readable_params, slot_names,
)

SCORE_COL = "score"
SPLIT_COL = "split"


# --------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Everything ``train`` needs besides the data.

    models: families to compare ("rf", "gbt", "lr", "svc"); folds: k of the k-fold CV;
    label: the label design (``sparkify.features.LabelSpec``); test_fraction: share of
    users held out (stratified); parallelism: models fitted at once by CrossValidator;
    settings: fixed parameters and grids per family; class_weights: weightCol on;
    label_comparison / ceiling: extra evaluations; seed_spread: extra split seeds when
    the test set has fewer than ``spread_max_test_users`` users (0 = off);
    artist_features: add the opt-in ``sparkify.features.ARTIST_FEATURES`` (an exact set of
    artists per user: about doubles the cost of loading a raw log).
    """

    models: tuple[str, ...] = FAMILIES
    folds: int = 3
    seed: int = 42
    label: Any = None  # sparkify.features.LabelSpec; None -> LabelSpec() (prediction-time)
    test_fraction: float = 0.2
    parallelism: int = 2
    settings: dict[str, FamilySettings] = field(default_factory=default_settings)
    class_weights: bool = True
    cv_metric: str = "areaUnderPR"
    label_comparison: bool = True
    ceiling: bool = True
    seed_spread: int = 4
    spread_max_test_users: int = 1000
    artist_features: bool = False
    partitions: int | None = None  # None -> Spark's default parallelism (the core count)
    verbose: bool = True

    @classmethod
    def fast(cls, **overrides) -> "TrainConfig":
        """Tiny models, one- or two-point grids, 2 folds, no label comparison or seed
        spread: the test suite's setting (well under a minute on small_log)."""
        base = dict(folds=2, settings=fast_settings(), label_comparison=False, seed_spread=0,
                    ceiling=True)
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        unknown = [m for m in self.models if m not in FAMILIES]
        if unknown or not self.models:
            raise ValueError(f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FAMILIES)}")
        if self.folds < 2:
            raise ValueError(f"--folds must be at least 2, not {self.folds}")
        if not 0.05 <= self.test_fraction <= 0.5:
            raise ValueError(f"test fraction must be in [0.05, 0.5], not {self.test_fraction}")
        missing = [m for m in self.models if m not in self.settings]
        if missing:
            raise ValueError(f"no settings for model(s) {', '.join(missing)}")


@dataclass
class TrainResult:
    """What ``train`` did: where the model is, the best family, every figure and the
    seconds spent in each stage (in order)."""

    model_dir: Path
    best_family: str
    threshold: float
    metrics: dict
    timings: dict[str, float]


# --------------------------------------------------------------------------- progress
class Progress:
    """Prints each stage with its elapsed time and keeps the timings."""

    def __init__(self, verbose: bool = True):
        self.verbose = verbose
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[{time.perf_counter() - self.start:7.1f}s] {text}", file=sys.stdout, flush=True)

    @contextmanager
    def stage(self, name: str) -> Iterator[dict]:
        info: dict[str, Any] = {}
        self.say(f"{name} ...")
        t0 = time.perf_counter()
        yield info
        dt = time.perf_counter() - t0
        self.timings[name] = self.timings.get(name, 0.0) + dt
        extra = f": {info['note']}" if info.get("note") else ""
        self.say(f"{name} done in {dt:.1f}s{extra}")


# --------------------------------------------------------------------------- data prep
def feature_columns(mode: str = "window", artists: bool = False) -> tuple[list, list[str], list[str]]:
    """(FeatureSpecs, numeric names, categorical names) used for a label mode (with the
    opt-in artist features if ``artists``)."""
    from sparkify.features import model_features

    specs = model_features(mode, artists)
    return (specs, [f.name for f in specs if f.kind == "numeric"],
            [f.name for f in specs if f.kind == "categorical"])


def prepare_table(table, numeric: list[str], categorical: list[str]):
    """Cast numerics to double (nulls -> 0.0), categoricals to string (nulls stay null:
    StringIndexer 'keep' maps them to the unseen bucket), churn to double if present."""
    from pyspark.sql import functions as F

    missing = [c for c in [*numeric, *categorical] if c not in table.columns]
    if missing:
        raise ValueError(f"feature table lacks column(s): {', '.join(missing)}")
    cols = [F.col("userId")]
    cols += [F.coalesce(F.col(c).cast("double"), F.lit(0.0)).alias(c) for c in numeric]
    cols += [F.col(c).cast("string").alias(c) for c in categorical]
    if LABEL_COL in table.columns:
        cols.append(F.col(LABEL_COL).cast("double").alias(LABEL_COL))
    return table.select(*cols)


def assign_split(table, seed: int, test_fraction: float, folds: int):
    """Add ``split`` ('train'/'test', stratified by churn) and ``fold`` (0..folds-1 for
    train rows, stratified; -1 for test rows).

    Users are ordered within each class by a hash of (userId, seed): deterministic for a
    seed whatever the partitioning. The number of test users per class is
    round(test_fraction * class size)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = F.xxhash64(F.col("userId"), F.lit(int(seed)))
    w = Window.partitionBy(LABEL_COL).orderBy(key, F.col("userId"))
    wn = Window.partitionBy(LABEL_COL)
    ranked = (table.withColumn("_r", F.row_number().over(w) - 1)
              .withColumn("_n", F.count(F.lit(1)).over(wn)))
    n_test = F.round(F.col("_n") * F.lit(float(test_fraction)))
    is_test = F.col("_r") < n_test
    return (ranked
            .withColumn(SPLIT_COL, F.when(is_test, F.lit("test")).otherwise(F.lit("train")))
            .withColumn(FOLD_COL, F.when(is_test, F.lit(-1))
                        .otherwise(((F.col("_r") - n_test) % F.lit(int(folds))).cast("int")))
            .drop("_r", "_n"))


def add_class_weights(df, enabled: bool = True) -> tuple[Any, dict[str, float]]:
    """Add ``weight``: n / (2 n_class) from the train rows' class counts (1.0 if disabled)."""
    from pyspark.sql import functions as F

    if not enabled:
        return df.withColumn(WEIGHT_COL, F.lit(1.0)), {"0": 1.0, "1": 1.0}
    counts = {int(r[0]): int(r[1]) for r in
              df.filter(F.col(SPLIT_COL) == "train").groupBy(LABEL_COL).count().collect()}
    n = sum(counts.values())
    w = {k: n / (2.0 * v) for k, v in counts.items() if v}
    expr = F.when(F.col(LABEL_COL) == 1.0, F.lit(w.get(1, 1.0))).otherwise(F.lit(w.get(0, 1.0)))
    return df.withColumn(WEIGHT_COL, expr), {str(k): v for k, v in w.items()}


def with_score(df, family: str):
    """Add ``score``: P(churn) for probabilistic models, the margin for LinearSVC."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    source = "rawPrediction" if family == "svc" else "probability"
    return df.withColumn(SCORE_COL, vector_to_array(F.col(source)).getItem(1))


def _collect_scores(df) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(userId, label, score) arrays of a scored user table (one row per user)."""
    pdf = df.select("userId", LABEL_COL, SCORE_COL).toPandas()
    return pdf["userId"].to_numpy(), pdf[LABEL_COL].to_numpy().astype(int), pdf[SCORE_COL].to_numpy(dtype=float)


# --------------------------------------------------------------------------- cross-validation
@dataclass
class CVOutcome:
    """One CrossValidator run: the refit best model, its parameters, the CV metric of
    each grid point, out-of-fold scores of the train users and the time it took."""

    family: str
    model: Any  # PipelineModel refit on all train rows
    params: dict[str, Any]
    grid_size: int
    cv_metrics: list[float]
    oof_users: np.ndarray
    oof_labels: np.ndarray
    oof_scores: np.ndarray
    seconds: float

    def threshold(self) -> tuple[float, float]:
        return ev.best_threshold(self.oof_labels, self.oof_scores)


def cross_validate(train_df, family: str, numeric: list[str], categorical: list[str],
                   fixed: dict, grid: dict, config: TrainConfig) -> CVOutcome:
    """k-fold CV of one family over ``grid`` on the train rows (``fold`` column gives the
    folds); returns the refit best model and the out-of-fold scores of its parameters."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator
    from pyspark.sql import functions as F

    pipeline, clf = build_pipeline(family, numeric, categorical, fixed, seed=config.seed,
                                   weighted=config.class_weights)
    maps = param_maps(clf, grid)
    evaluator = BinaryClassificationEvaluator(labelCol=LABEL_COL, rawPredictionCol="rawPrediction",
                                              metricName=config.cv_metric)
    cv = CrossValidator(estimator=pipeline, estimatorParamMaps=maps, evaluator=evaluator,
                        numFolds=config.folds, foldCol=FOLD_COL, parallelism=config.parallelism,
                        collectSubModels=True, seed=config.seed)
    t0 = time.perf_counter()
    cv_model = cv.fit(train_df)
    metrics = [float(m) for m in cv_model.avgMetrics]
    best = int(np.argmax(metrics)) if evaluator.isLargerBetter() else int(np.argmin(metrics))
    parts = []
    for k in range(config.folds):
        sub = cv_model.subModels[k][best]
        parts.append(with_score(sub.transform(train_df.filter(F.col(FOLD_COL) == k)), family)
                     .select("userId", LABEL_COL, SCORE_COL))
    oof = parts[0]
    for p in parts[1:]:
        oof = oof.unionByName(p)
    users, labels, scores = _collect_scores(oof)
    seconds = time.perf_counter() - t0
    params = dict(fixed)
    params.update(readable_params(maps[best]))
    return CVOutcome(family, cv_model.bestModel, params, len(maps), metrics, users, labels, scores, seconds)


def fit_fixed(train_df, family, numeric, categorical, params, config) -> CVOutcome:
    """CV with a single parameter point: k fits for out-of-fold scores (threshold) plus
    the refit on all train rows."""
    return cross_validate(train_df, family, numeric, categorical, params, {}, config)


# --------------------------------------------------------------------------- evaluation
def test_scores(model, test_df, family: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _collect_scores(with_score(model.transform(test_df), family))


def model_figures(outcome: CVOutcome, test_df, calibration: ev.PlattCalibration | None = None) -> dict:
    """Validation (out-of-fold) and test figures of one CV outcome at its OOF threshold."""
    threshold, oof_f1 = outcome.threshold()
    _, y, s = test_scores(outcome.model, test_df, outcome.family)
    return {
        "name": FAMILY_NAMES[outcome.family],
        "params": outcome.params,
        "grid_size": outcome.grid_size,
        "cv_metric": max(outcome.cv_metrics),
        "train_seconds": round(outcome.seconds, 2),
        "threshold": threshold,
        "validation": {"f1": oof_f1,
                       "pr_auc": ev.average_precision(outcome.oof_labels, outcome.oof_scores),
                       "roc_auc": ev.roc_auc(outcome.oof_labels, outcome.oof_scores),
                       "users": int(len(outcome.oof_labels)), "churners": int(outcome.oof_labels.sum())},
        "test": ev.score_metrics(y, s, threshold),
    }


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


# --------------------------------------------------------------------------- ceiling
TRUTH_NUMERIC = ("alpha", "beta")
TRUTH_CATEGORICAL = ("cohort", "initial_level")


def truth_path_for(events_path: str) -> Path | None:
    """The simulator's ground truth beside a log: ``<stem>_truth.parquet`` for a file,
    ``<dir>/_truth.parquet`` for a directory. None when absent or not a local path."""
    if "://" in events_path and not events_path.startswith("file://"):
        return None
    p = Path(events_path.removeprefix("file://"))
    candidates = []
    if p.is_dir():
        candidates.append(p / "_truth.parquet")
    else:
        name = p.name
        for ext in (".json.gz", ".jsonl.gz", ".json", ".jsonl"):
            if name.endswith(ext):
                name = name[: -len(ext)]
                break
        candidates.append(p.with_name(f"{name}_truth.parquet"))
    return next((c for c in candidates if c.exists()), None)


def ceiling_figures(spark, truth: Path, table_split, family: str, params: dict, config: TrainConfig) -> dict:
    """Train ``family`` on the simulator's latent per-user parameters (cohort, alpha,
    beta, initial level: all fixed before T) for the same users, labels, split and
    folds; its test churn-class F1 and PR-AUC are the ceiling."""
    from pyspark.sql import functions as F

    # Read on the driver: the table is small (one row per user), and Spark's file listing
    # skips names starting with "_" such as a log directory's _truth.parquet.
    import pyarrow.parquet as pq

    truth_df = spark.createDataFrame(pq.read_table(str(truth)).to_pandas())
    numeric = [c for c in TRUTH_NUMERIC if c in truth_df.columns]
    categorical = [c for c in TRUTH_CATEGORICAL if c in truth_df.columns]
    if not numeric and not categorical:
        raise ValueError("ground truth has none of the latent columns")
    latent = truth_df.select(F.col("userId").cast("string").alias("userId"),
                             *[F.col(c).cast("double").alias(c) for c in numeric],
                             *[F.col(c).cast("string").alias(c) for c in categorical])
    df = (table_split.select("userId", LABEL_COL, SPLIT_COL, FOLD_COL, WEIGHT_COL)
          .join(latent, "userId", "inner").cache())
    train_df = df.filter(F.col(SPLIT_COL) == "train")
    test_df = df.filter(F.col(SPLIT_COL) == "test")
    if family in ("rf", "gbt"):  # latent space is tiny: sqrt of 4-6 slots would be 2
        params = {k: v for k, v in params.items() if k != "featureSubsetStrategy"}
    outcome = fit_fixed(train_df, family, numeric, categorical, params, config)
    figures = model_figures(outcome, test_df)
    df.unpersist()
    return {"features": numeric + categorical, "family": family, "name": FAMILY_NAMES[family],
            "test": {k: figures["test"][k] for k in ("f1", "precision", "recall", "pr_auc", "roc_auc")},
            "validation_f1": figures["validation"]["f1"], "source": str(truth)}


# --------------------------------------------------------------------------- helpers
def _cores(spark) -> int:
    try:
        return max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - e.g. a Connect session
        return os.cpu_count() or 2


def _check_paths(events_path: str, model_dir: Path) -> None:
    """Fail fast (before any Spark work) on a missing local log or an unwritable model dir."""
    from glob import has_magic

    if "://" not in events_path and not has_magic(events_path) and not Path(events_path).exists():
        raise FileNotFoundError(f"event log not found: {events_path}")
    if model_dir.exists() and not model_dir.is_dir():
        raise ValueError(f"model directory {model_dir} exists and is not a directory")
    parent = model_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{model_dir.name}.write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"cannot write the model directory {model_dir}: {exc.strerror or exc}") from None


def _split_counts(df) -> dict[str, int]:
    rows = df.groupBy(SPLIT_COL, LABEL_COL).count().collect()
    out = {"train_users": 0, "train_churners": 0, "test_users": 0, "test_churners": 0}
    for split, label, n in rows:
        out[f"{split}_users"] += int(n)
        if label == 1.0:
            out[f"{split}_churners"] += int(n)
    out["users"] = out["train_users"] + out["test_users"]
    out["churners"] = out["train_churners"] + out["test_churners"]
    out["churn_rate"] = out["churners"] / out["users"] if out["users"] else 0.0
    return out


def _user_base(loaded, spec, numeric, categorical, partitions: int):
    """The prepared user table (features + churn) of a :class:`sparkify.dataset.LoadedLog`,
    repartitioned to ``partitions`` and cached (computed once from the session-day rows).
    Returns (table, spec)."""
    from sparkify.features import build_user_table

    table, resolved = build_user_table(loaded.days_for(spec), spec)
    base = prepare_table(table, numeric, categorical).repartition(partitions).cache()
    base.count()
    return base, resolved


def _split_weighted(base, config: TrainConfig, seed: int, partitions: int):
    """Split + folds + class weights on a cached user table; cached. Returns (table, counts, weights)."""
    split = assign_split(base, seed, config.test_fraction, config.folds)
    table, weights = add_class_weights(split, config.class_weights)
    table = table.repartition(partitions).cache()
    counts = _split_counts(table)
    return table, counts, weights


def _require_learnable(counts: dict, folds: int, what: str = "") -> None:
    if counts["train_churners"] < folds or counts["train_users"] - counts["train_churners"] < folds:
        raise ValueError(
            f"too few churners to train{what}: {counts['churners']} of {counts['users']} users "
            f"({counts['train_churners']} in the training part, {folds} folds). Use a longer log, "
            "an earlier --cutoff, a longer --horizon-days or --label ever.")


def _split_frames(table):
    from pyspark.sql import functions as F

    return table.filter(F.col(SPLIT_COL) == "train"), table.filter(F.col(SPLIT_COL) == "test")


# --------------------------------------------------------------------------- train
def train(spark, events_path, model_dir, config: TrainConfig | None = None) -> TrainResult:
    """Train, evaluate and save a churn model.

    In:  a SparkSession, an event log path (file, directory, glob, or an ingest Parquet
         directory; any Hadoop URI), the model directory (a local or mounted path: the
         small JSON/Parquet/Markdown artifacts are written by the driver, the pipeline
         by Spark), a :class:`TrainConfig`.
    Out: :class:`TrainResult`. The directory is replaced atomically only when everything
         succeeded. Raises FileNotFoundError / PermissionError / ValueError for bad input.
    """
    from pyspark.sql import functions as F

    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, spec_boundaries
    from sparkify.modeling import artifacts

    config = config or TrainConfig()
    config.validate()
    events_path = str(events_path)
    model_dir = Path(model_dir)
    _check_paths(events_path, model_dir)
    spec = config.label or LabelSpec()
    spec.validate()
    progress = Progress(config.verbose)
    specs, numeric, categorical = feature_columns(spec.mode, config.artist_features)

    with artifacts.staging_dir(model_dir) as staging:
        with progress.stage("load") as st:
            # one pass over the log into session-day rows; a given cutoff is a split point
            splits = spec_boundaries(spec) if spec.cutoff is not None else ()
            loaded = load_log(spark, events_path, quarantine_path=str(staging / "quarantine"), splits=splits,
                              artists=config.artist_features)
            q = loaded.quality
            st["note"] = (f"{q.user_rows:,} user events, {q.users:,} users, {q.churners:,} churners, "
                          f"{q.quarantined:,} quarantined")
        try:
            if config.verbose:
                print(q.summary(), flush=True)
            partitions = config.partitions or _cores(spark)
            with progress.stage("features") as st:
                base, spec = _user_base(loaded, spec, numeric, categorical, partitions)
                table, counts, weights = _split_weighted(base, config, config.seed, partitions)
                st["note"] = (f"{counts['users']:,} users ({counts['churners']:,} churners, "
                              f"cutoff {spec.to_dict()['cutoff']}); train {counts['train_users']}, "
                              f"test {counts['test_users']}")
            _require_learnable(counts, config.folds)
            if counts["test_churners"] == 0:
                raise ValueError(f"no churner in the test set ({counts['churners']} churners in all): "
                                 "use a longer log or a larger horizon")
            train_df, test_df = _split_frames(table)

            # 3. compare the families
            outcomes: dict[str, CVOutcome] = {}
            for family in config.models:
                s = config.settings[family]
                with progress.stage(f"model {family}") as st:
                    outcomes[family] = cross_validate(train_df, family, numeric, categorical,
                                                      s.fixed, s.compare_grid, config)
                    thr, f1 = outcomes[family].threshold()
                    st["note"] = (f"{FAMILY_NAMES[family]}: out-of-fold F1 {f1:.3f}, "
                                  f"CV {config.cv_metric} {max(outcomes[family].cv_metrics):.3f}")

            def rank_key(fam):
                o = outcomes[fam]
                return (o.threshold()[1], ev.average_precision(o.oof_labels, o.oof_scores))

            best_family = max(config.models, key=rank_key)

            # 4. tune the best family
            s = config.settings[best_family]
            with progress.stage("tuning") as st:
                tuned = cross_validate(train_df, best_family, numeric, categorical, s.fixed,
                                       s.tune_grid, config)
                if rank_key_outcome(tuned) < rank_key(best_family):
                    # the bigger grid did not beat the comparison point out of fold: keep it
                    tuned_from = "comparison"
                    tuned = outcomes[best_family]
                else:
                    tuned_from = "tuning"
                threshold, val_f1 = tuned.threshold()
                calibration = ev.fit_platt(tuned.oof_labels, tuned.oof_scores) if best_family == "svc" else None
                st["note"] = (f"{FAMILY_NAMES[best_family]} {tuned.params}, threshold {threshold:.4f}, "
                              f"out-of-fold F1 {val_f1:.3f}")

            # 5. evaluate on the held-out test set
            with progress.stage("evaluation") as st:
                models_fig = {fam: model_figures(o, test_df) for fam, o in outcomes.items()}
                best_fig = model_figures(tuned, test_df)
                best_fig.update(family=best_family, selected_from=tuned_from,
                                threshold_source="out-of-fold (k-fold CV on the training part), max churn-class F1",
                                importances=importances(tuned.model, test_df, best_family, categorical),
                                validation_curve=_thin_curve(ev.threshold_curve(tuned.oof_labels, tuned.oof_scores)))
                test_users, test_y, test_s = test_scores(tuned.model, test_df, best_family)
                if calibration is not None:
                    best_fig["calibration"] = calibration.to_dict()
                st["note"] = (f"test churn-class F1 {best_fig['test']['f1']:.3f}, "
                              f"PR-AUC {best_fig['test']['pr_auc']:.3f} (base rate {test_y.mean():.3f})")

            metrics: dict[str, Any] = {
                "format": 1,
                "label": spec.to_dict(),
                "data": counts,
                "class_weights": weights,
                "cv": {"folds": config.folds, "metric": config.cv_metric, "parallelism": config.parallelism,
                       "selection": "family by out-of-fold churn-class F1 at its best threshold"},
                "models": models_fig,
                "best": best_fig,
                "baseline": ev.constant_predictor(test_y),
            }

            # seed-compatible label, ceiling, split-seed spread
            metrics["label_comparison"] = None
            if config.label_comparison and spec.mode == "window":
                with progress.stage("label comparison") as st:
                    metrics["label_comparison"] = _label_comparison(
                        spark, loaded, best_family, tuned.params, config, partitions, best_fig, spec)
                    st["note"] = _label_note(metrics["label_comparison"])
            metrics["ceiling"] = None
            truth = truth_path_for(events_path) if config.ceiling else None
            if truth is not None:
                with progress.stage("ceiling") as st:
                    try:
                        metrics["ceiling"] = ceiling_figures(
                            spark, truth, table, best_family, tuned.params, config)
                    except Exception as exc:  # the ceiling is a yardstick: never fail training for it
                        st["note"] = f"skipped: ground truth at {truth} could not be used ({exc})"
                    else:
                        metrics["ceiling"]["model_test_f1"] = best_fig["test"]["f1"]
                        metrics["ceiling"]["model_test_pr_auc"] = best_fig["test"]["pr_auc"]
                        st["note"] = (f"latent-parameter F1 {metrics['ceiling']['test']['f1']:.3f}, "
                                      f"PR-AUC {metrics['ceiling']['test']['pr_auc']:.3f}")
            metrics["seed_spread"] = None
            if config.seed_spread > 0 and counts["test_users"] < config.spread_max_test_users:
                with progress.stage("seed spread") as st:
                    metrics["seed_spread"] = _seed_spread(base, numeric, categorical, best_family, tuned.params, config, partitions,
                                                          best_fig["test"])
                    sp = metrics["seed_spread"]["f1"]
                    st["note"] = f"F1 over {sp['n']} splits: {sp['mean']:.3f} +/- {sp['sd']:.3f}"

            # 6. artifacts
            with progress.stage("artifacts"):
                metrics["timings"] = {k: round(v, 2) for k, v in progress.timings.items()}
                pdf = (table.select("userId", *numeric, *categorical, LABEL_COL, SPLIT_COL).toPandas())
                oof = dict(zip(tuned.oof_users, tuned.oof_scores))
                oof.update(zip(test_users, test_s))
                pdf[LABEL_COL] = pdf[LABEL_COL].astype(int)
                pdf[SCORE_COL] = pdf["userId"].map(oof).astype(float)
                activity = artifacts.activity_table(loaded.days.df, table.select("userId", LABEL_COL))
                model_json = artifacts.model_json(
                    family=best_family, threshold=threshold, calibration=calibration, spec=spec,
                    specs=specs, train_pdf=pdf[pdf[SPLIT_COL] == "train"], pipeline_model=tuned.model,
                    spark_version=spark.version, importances=best_fig["importances"])
                artifacts.write_all(staging, pipeline_model=tuned.model, model_json=model_json,
                                    metrics=metrics, quality=q.to_dict(), features_pdf=pdf,
                                    activity_pdf=activity)
            progress.timings["total"] = time.perf_counter() - progress.start
            metrics["timings"] = {k: round(v, 2) for k, v in progress.timings.items()}
            artifacts.write_json(staging / "metrics.json", metrics)
            table.unpersist()
            base.unpersist()
        finally:
            loaded.unpersist()
    progress.say(f"model written to {model_dir}")
    return TrainResult(model_dir=model_dir, best_family=best_family, threshold=threshold,
                       metrics=metrics, timings=dict(progress.timings))


def rank_key_outcome(o: CVOutcome) -> tuple[float, float]:
    return (o.threshold()[1], ev.average_precision(o.oof_labels, o.oof_scores))


def _thin_curve(curve: list[dict], max_points: int = 200) -> list[dict]:
    if len(curve) <= max_points:
        return curve
    idx = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
    return [curve[i] for i in idx]


def _label_note(lc: dict) -> str:
    return (f"'ever' F1 {lc['ever']['f1']:.3f} vs prediction-time F1 {lc['window']['f1']:.3f}")


def _label_comparison(spark, loaded, family, params, config, partitions, best_fig, spec) -> dict:
    """The best family with its tuned parameters under the seed-compatible 'ever' label
    (same seed, fresh out-of-fold threshold), beside the prediction-time figures."""
    from sparkify.features import LabelSpec

    _, numeric, categorical = feature_columns("ever", config.artist_features)
    base, ever_spec = _user_base(loaded, LabelSpec(mode="ever"), numeric, categorical, partitions)
    table, counts, _w = _split_weighted(base, config, config.seed, partitions)
    keys = ("f1", "precision", "recall", "pr_auc", "roc_auc", "accuracy", "weighted_f1")
    try:
        _require_learnable(counts, config.folds, " in 'ever' mode")
        train_df, test_df = _split_frames(table)
        fig = model_figures(fit_fixed(train_df, family, numeric, categorical, params, config), test_df)
        ever = {k: fig["test"][k] for k in keys}
        ever.update(users=counts["users"], churners=counts["churners"], test_users=counts["test_users"])
    finally:
        table.unpersist()
        base.unpersist()
    window = {k: best_fig["test"][k] for k in keys}
    return {
        "family": family,
        "window": window,
        "ever": ever,
        "ever_spec": ever_spec.to_dict(),
        "note": ("'ever' labels every user who ever cancelled in the log, with features from the whole "
                 "log (cancellation events and time-to-last-event features removed). It answers 'who "
                 "churned?', not 'who will churn?': features and label overlap in time, so its figures "
                 "overstate what a model can do before the fact. The prediction-time ('window') "
                 "figures are the honest ones."),
    }


def _seed_spread(base, numeric, categorical, family, params, config, partitions,
                 main_test: dict) -> dict:
    """Churn-class F1 and PR-AUC of the tuned family over ``config.seed_spread`` extra
    split seeds (fresh out-of-fold threshold each), plus the main split."""
    f1s, praucs, seeds = [main_test["f1"]], [main_test["pr_auc"]], [config.seed]
    for i in range(1, config.seed_spread + 1):
        seed = config.seed + 1000 * i
        table, counts, _w = _split_weighted(base, config, seed, partitions)
        try:
            if counts["test_churners"] == 0:
                continue
            train_df, test_df = _split_frames(table)
            fig = model_figures(fit_fixed(train_df, family, numeric, categorical, params,
                                          replace(config, seed=seed)), test_df)
            f1s.append(fig["test"]["f1"])
            praucs.append(fig["test"]["pr_auc"])
            seeds.append(seed)
        finally:
            table.unpersist()
    return {"seeds": seeds, "f1": ev.spread(f1s), "pr_auc": ev.spread(praucs),
            "f1_values": f1s, "pr_auc_values": praucs,
            "note": "same family and parameters, a different stratified split per seed"}
