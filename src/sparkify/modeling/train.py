"""Train, compare, tune and evaluate the churn models; write the model directory.

In:  an event log (anything :func:`sparkify.dataset.load_events` reads) and a
     :class:`TrainConfig`.
Out: a model directory (see ``docs/model-directory.md``) written atomically, and a
     :class:`TrainResult` with the figures and the time of every stage.

The steps (each a function below, printed with its elapsed time by one :class:`Progress`):

1. load: the log in one pass into session-day rows (``load_log``);
2. features: one row per (user, observation date) (``build_user_table``: fixed windows,
   prediction-time labels, dates every ``step_days``), repartitioned to about the core
   count and cached; the split (:func:`assign_split`): users, not rows, are held out
   (stratified by whether the user churns), and the latest date is out of time: no
   training row is observed on it; fold numbers by user for the rest;
3. :func:`step_compare`: each family's k-fold ``CrossValidator`` over a small grid,
   parameters by PR-AUC, the family by out-of-fold churn-class F1 at its best threshold;
4. :func:`step_tune`: the best family over a bigger grid, with and without class weights;
   the decision threshold from its out-of-fold scores (max churn-class F1);
5. :func:`step_calibrate`: Platt or isotonic on the out-of-fold scores, chosen by
   cross-fitted log loss (:mod:`sparkify.modeling.calibration`);
6. :func:`step_evaluate`: every family and the tuned model on the held-out users, all
   test rows and the in-time and out-of-time parts apart, each figure with its rows,
   users and churners; calibration figures (Brier, reliability, expected vs realized);
7. :func:`step_extras`: the seed-compatible ``ever`` label, the true ceiling (simulated
   logs) and the split-seed spread (small test sets);
8. artifacts: the directory (pipeline, model.json, metrics.json, data_quality.json,
   features.parquet, activity.parquet, MODEL_CARD.md) written into a temporary sibling
   and swapped in.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sparkify.modeling import artifacts
from sparkify.modeling import calibration as cal
from sparkify.modeling import evaluate as ev
from sparkify.modeling.pipelines import (
    AS_OF_COL,
    FAMILIES,
    FAMILY_NAMES,
    FOLD_COL,
    LABEL_COL,
    WEIGHT_COL,
    FamilySettings,
    build_pipeline,
    default_settings,
    fast_settings,
    feature_columns,
    param_maps,
    prepare_table,
    pretty_slot,
    readable_params,
    slot_names,
)
from sparkify.progress import Progress

SCORE_COL = "score"
SPLIT_COL = "split"
PERIOD_COL = "period"
UNIT_WEIGHT_COL = "unit_weight"


# --------------------------------------------------------------------------- config
@dataclass
class TrainConfig:
    """Everything ``train`` needs besides the data.

    models: families to compare ("rf", "gbt", "lr", "svc"); folds: k of the k-fold CV;
    label: the label design (``sparkify.features.LabelSpec``); test_fraction: share of
    users held out (stratified); parallelism: models fitted at once (families in the
    comparison, grid points in a CrossValidator); settings: fixed parameters and grids per
    family; tune: search the chosen family's tuning grid (else it keeps its comparison
    point); class_weights: weightCol on; label_comparison / ceiling: extra evaluations;
    seed_spread: extra split seeds when the test set has fewer than
    ``spread_max_test_users`` users (0 = off); artist_features: add the opt-in
    ``sparkify.features.ARTIST_FEATURES`` (an exact set of artists per user: about doubles
    the cost of loading a raw log); partitions: of the training table (None: one per
    :data:`ROWS_PER_TRAINING_PARTITION` rows, at most the core count).

    The default is the quick plan (each family at one point, unweighted; calibration;
    ceiling); :meth:`thorough` adds the tuning grid, class weights where they rank better,
    the label comparison and the seed spread.
    """

    models: tuple[str, ...] = FAMILIES
    folds: int = 3
    seed: int = 42
    label: Any = None  # sparkify.features.LabelSpec; None -> LabelSpec() (prediction-time)
    test_fraction: float = 0.2
    parallelism: int = 2
    settings: dict[str, FamilySettings] = field(default_factory=default_settings)
    tune: bool = False
    class_weights: bool = False
    cv_metric: str = "areaUnderPR"
    label_comparison: bool = False
    ceiling: bool = True
    seed_spread: int = 0
    spread_max_test_users: int = 1000
    artist_features: bool = False
    partitions: int | None = None
    verbose: bool = True

    @classmethod
    def thorough(cls, **overrides) -> "TrainConfig":
        """The quick plan plus the tuning grid, the class-weight choice, the
        seed-compatible label comparison and four extra split seeds (``sparkify train
        --thorough``)."""
        base = dict(tune=True, class_weights=True, label_comparison=True, seed_spread=4)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def fast(cls, **overrides) -> "TrainConfig":
        """The quick plan with tiny models and 2 folds (``sparkify train --quick``, the test
        suite's setting: well under a minute on small_log); ``tune=True,
        class_weights=True`` adds the two-point tuning grids and the class-weight choice."""
        base = dict(folds=2, settings=fast_settings(), label_comparison=False, seed_spread=0, ceiling=True)
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


# --------------------------------------------------------------------------- data prep
def assign_split(table, seed: int, test_fraction: float, folds: int, oot_dates: tuple[int, ...] = ()):
    """Add ``split`` and ``fold`` by user, and ``period``, to a table of (user, date) rows.

    Users are grouped: every row of a user lands on the same side of every split. A user's
    class is whether any of its rows is a churn; within each class users are ordered by a
    hash of (userId, seed) (deterministic whatever the partitioning), the first
    round(test_fraction * class size) are test users and the others get fold numbers
    0..folds-1 in turn. ``period`` is 'out_of_time' for rows observed at ``oot_dates``
    (the latest dates), else 'in_time'; ``split``: 'test' for a test user's rows,
    'train' for the other users' in-time rows, 'unused' for their out-of-time rows (so
    the models never see the out-of-time dates)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    users = table.groupBy("userId").agg(F.max(LABEL_COL).alias("_user_class"))
    key = F.xxhash64(F.col("userId"), F.lit(int(seed)))
    w = Window.partitionBy("_user_class").orderBy(key, F.col("userId"))
    ranked = (users.withColumn("_r", F.row_number().over(w) - 1)
              .withColumn("_n", F.count(F.lit(1)).over(Window.partitionBy("_user_class"))))
    n_test = F.round(F.col("_n") * F.lit(float(test_fraction)))
    is_test = F.col("_r") < n_test
    users = ranked.select("userId", is_test.alias("_test"),
                          F.when(is_test, F.lit(-1)).otherwise(((F.col("_r") - n_test) % F.lit(int(folds))).cast("int"))
                          .alias(FOLD_COL))
    oot = F.col(AS_OF_COL).isin([int(t) for t in oot_dates]) if oot_dates else F.lit(False)
    return (table.join(F.broadcast(users), "userId")
            .withColumn(PERIOD_COL, F.when(oot, F.lit("out_of_time")).otherwise(F.lit("in_time")))
            .withColumn(SPLIT_COL, F.when(F.col("_test"), F.lit("test"))
                        .when(oot, F.lit("unused")).otherwise(F.lit("train")))
            .drop("_test"))


def add_class_weights(df, enabled: bool = True) -> tuple[Any, dict[str, float]]:
    """Add ``weight``: n / (2 n_class) from the train rows' class counts (1.0 if disabled),
    and ``unit_weight`` (1.0: the tuning grid's 'no class weights' point)."""
    from pyspark.sql import functions as F

    df = df.withColumn(UNIT_WEIGHT_COL, F.lit(1.0))
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


@dataclass
class Scored:
    """Rows scored by a model, as NumPy arrays in one order: ``users``, ``as_of`` (epoch
    ms), ``labels`` (0/1), ``scores`` and, for out-of-fold scores, ``folds``; ``period``
    ('in_time' / 'out_of_time') for test rows."""

    users: np.ndarray
    as_of: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    folds: np.ndarray | None = None
    period: np.ndarray | None = None

    def keys(self) -> list[tuple[str, int]]:
        return list(zip(self.users.tolist(), self.as_of.tolist()))

    def subset(self, mask: np.ndarray) -> "Scored":
        def pick(a):
            return None if a is None else a[mask]

        return Scored(self.users[mask], self.as_of[mask], self.labels[mask], self.scores[mask],
                      pick(self.folds), pick(self.period))

    def counts(self) -> dict[str, int]:
        """Rows, distinct users and churner rows."""
        return {"rows": int(len(self.labels)), "users": int(len(np.unique(self.users))),
                "churners": int(self.labels.sum())}


def _collect_scores(df) -> Scored:
    """The :class:`Scored` arrays of a scored table (one row per user and date)."""
    cols = ["userId", AS_OF_COL, LABEL_COL, SCORE_COL] + [c for c in (FOLD_COL, PERIOD_COL) if c in df.columns]
    pdf = df.select(*cols).toPandas()
    return Scored(pdf["userId"].to_numpy(), pdf[AS_OF_COL].to_numpy(dtype=np.int64),
                  pdf[LABEL_COL].to_numpy().astype(int), pdf[SCORE_COL].to_numpy(dtype=float),
                  pdf[FOLD_COL].to_numpy() if FOLD_COL in pdf else None,
                  pdf[PERIOD_COL].to_numpy() if PERIOD_COL in pdf else None)


# --------------------------------------------------------------------------- cross-validation
@dataclass
class CVOutcome:
    """One CrossValidator run: the refit best model, its parameters, the CV metric of
    each grid point, out-of-fold scores of the train rows and the time it took."""

    family: str
    model: Any  # PipelineModel refit on all train rows
    params: dict[str, Any]
    grid_size: int
    cv_metrics: list[float]
    oof: Scored
    seconds: float

    def threshold(self) -> tuple[float, float]:
        return ev.best_threshold(self.oof.labels, self.oof.scores)

    def rank_key(self) -> tuple[float, float]:
        """(out-of-fold F1 at its best threshold, out-of-fold PR-AUC): higher is better."""
        return (self.threshold()[1], ev.average_precision(self.oof.labels, self.oof.scores))


def cross_validate(train_df, family: str, numeric: list[str], categorical: list[str],
                   fixed: dict, grid: dict, config: TrainConfig, parallelism: int | None = None) -> CVOutcome:
    """k-fold CV of one family over ``grid`` on the train rows (``fold`` column gives the
    folds, by user), ``parallelism`` fits at once (default ``config.parallelism``);
    returns the refit best model and the out-of-fold scores of its parameters.

    A grid of several points goes through Spark's ``CrossValidator``; a single point
    (nothing to choose) is k fold fits and the refit, scored out of fold directly."""
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator

    pipeline, clf = build_pipeline(family, numeric, categorical, fixed, seed=config.seed,
                                   weighted=config.class_weights)
    maps = param_maps(clf, grid)
    if len(maps) == 1:
        return _cross_fit_point(train_df, pipeline, family, fixed, maps[0], config, parallelism or config.parallelism)
    evaluator = BinaryClassificationEvaluator(labelCol=LABEL_COL, rawPredictionCol="rawPrediction",
                                              metricName=config.cv_metric)
    cv = CrossValidator(estimator=pipeline, estimatorParamMaps=maps, evaluator=evaluator,
                        numFolds=config.folds, foldCol=FOLD_COL, parallelism=parallelism or config.parallelism,
                        collectSubModels=True, seed=config.seed)
    t0 = time.perf_counter()
    cv_model = cv.fit(train_df)
    metrics = [float(m) for m in cv_model.avgMetrics]
    best = int(np.argmax(metrics)) if evaluator.isLargerBetter() else int(np.argmin(metrics))
    scored = _out_of_fold(train_df, [cv_model.subModels[k][best] for k in range(config.folds)], family)
    seconds = time.perf_counter() - t0
    params = dict(fixed)
    params.update(readable_params(maps[best]))
    return CVOutcome(family, cv_model.bestModel, params, len(maps), metrics, scored, seconds)


def _out_of_fold(train_df, fold_models: list, family: str) -> Scored:
    """The train rows of each fold k scored by ``fold_models[k]`` (fitted without them),
    collected in one job."""
    from functools import reduce

    from pyspark.sql import functions as F

    parts = [with_score(m.transform(train_df.filter(F.col(FOLD_COL) == k)), family)
             .select("userId", AS_OF_COL, LABEL_COL, SCORE_COL, FOLD_COL) for k, m in enumerate(fold_models)]
    return _collect_scores(reduce(lambda a, b: a.unionByName(b), parts))


def _cross_fit_point(train_df, pipeline, family: str, fixed: dict, param_map: dict, config: TrainConfig,
                     parallelism: int) -> CVOutcome:
    """One parameter point: a model per fold (fitted on the other folds) and one on all
    rows, ``parallelism`` at once; the out-of-fold scores, and the mean over folds of
    ``config.cv_metric`` on them as the CV metric."""
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.sql import functions as F

    t0 = time.perf_counter()

    def fit(k: int):
        return pipeline.copy(param_map).fit(train_df if k < 0 else train_df.filter(F.col(FOLD_COL) != k))

    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
        refit, *fold_models = pool.map(fit, [-1, *range(config.folds)])
    scored = _out_of_fold(train_df, fold_models, family)
    metric = ev.average_precision if config.cv_metric == "areaUnderPR" else ev.roc_auc
    per_fold = [metric(scored.labels[scored.folds == k], scored.scores[scored.folds == k])
                for k in range(config.folds)]
    params = dict(fixed)
    params.update(readable_params(param_map))
    return CVOutcome(family, refit, params, 1, [float(np.mean(per_fold))], scored, time.perf_counter() - t0)


def fit_fixed(train_df, family, numeric, categorical, params, config) -> CVOutcome:
    """CV with a single parameter point: k fits for out-of-fold scores (threshold) plus
    the refit on all train rows."""
    return cross_validate(train_df, family, numeric, categorical, params, {}, config)


# --------------------------------------------------------------------------- evaluation
def test_scores(model, test_df, family: str) -> Scored:
    return _collect_scores(with_score(model.transform(test_df), family))


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
    """Rows, distinct users, churner rows and churning users (users with a churner row) of
    the table (no prefix) and of each part: ``train_*``, ``test_*`` (all test rows),
    ``test_in_time_*``, ``test_out_of_time_*``. ``*_churners`` counts churner rows, like
    every figure's ``churners``; ``*_churning_users`` counts users."""
    from pyspark.sql import functions as F

    parts = (df.groupBy(SPLIT_COL, PERIOD_COL)
             .agg(F.count(F.lit(1)).alias("rows"), F.sum(LABEL_COL).alias("churners"),
                  F.collect_set("userId").alias("users"),
                  F.collect_set(F.when(F.col(LABEL_COL) == 1.0, F.col("userId"))).alias("churned"))
             .collect())
    out: dict[str, Any] = {}
    groups: dict[str, list] = {}
    for r in parts:
        for name in (r[SPLIT_COL], f"{r[SPLIT_COL]}_{r[PERIOD_COL]}", "all"):
            groups.setdefault(name, []).append(r)
    for name in ("train", "test", "test_in_time", "test_out_of_time", "all"):
        rs = groups.get(name, [])
        prefix = "" if name == "all" else f"{name}_"
        out[f"{prefix}rows"] = int(sum(r["rows"] for r in rs))
        out[f"{prefix}churners"] = out[f"{prefix}churner_rows"] = int(sum(r["churners"] or 0 for r in rs))
        out[f"{prefix}users"] = len({u for r in rs for u in r["users"]})
        out[f"{prefix}churning_users"] = len({u for r in rs for u in r["churned"]})
    out["churn_rate"] = out["churner_rows"] / out["rows"] if out["rows"] else 0.0
    return out


def _user_base(loaded, spec, numeric, categorical, partitions: int):
    """The prepared table (features + churn per user and date) of a
    :class:`sparkify.dataset.LoadedLog`, repartitioned to ``partitions`` and cached
    (computed once from the session-day rows). Returns (table, resolved spec, its rows)."""
    from sparkify.features import build_user_table

    table, resolved = build_user_table(loaded.days_for(spec), spec)
    base = prepare_table(table, numeric, categorical).repartition(partitions).cache()
    rows = base.count()
    return base, resolved, rows


def oot_dates(spec) -> tuple[int, ...]:
    """The out-of-time observation dates of a resolved spec: its latest date when it has
    two or more, else none."""
    return (max(spec.dates),) if len(spec.dates) >= 2 else ()


def _split_weighted(base, config: TrainConfig, seed: int, partitions: int, oot: tuple[int, ...] = ()):
    """Split + folds + class weights on a cached table; cached. Returns (table, counts, weights)."""
    split = assign_split(base, seed, config.test_fraction, config.folds, oot)
    table, weights = add_class_weights(split, config.class_weights)
    table = table.repartition(partitions).cache()
    counts = _split_counts(table)
    return table, counts, weights


def _require_learnable(counts: dict, folds: int, what: str = "") -> None:
    if counts["train_churners"] < folds or counts["train_rows"] - counts["train_churners"] < folds:
        raise ValueError(
            f"too few churners to train{what}: {counts['churner_rows']} churner rows of {counts['rows']} "
            f"({counts['train_churners']} in the training part, {folds} folds). Use a longer log, "
            "a smaller --step-days, a longer --horizon-days or --label ever.")


def _split_frames(table):
    from pyspark.sql import functions as F

    return table.filter(F.col(SPLIT_COL) == "train"), table.filter(F.col(SPLIT_COL) == "test")


ROWS_PER_TRAINING_PARTITION = 100_000


def training_partitions(rows: int, cores: int) -> int:
    """Partitions of a training table of ``rows`` rows: one per
    :data:`ROWS_PER_TRAINING_PARTITION` rows, at least 1 and at most ``cores`` (the cores
    left free fit other models at the same time: ``TrainConfig.parallelism``)."""
    return max(1, min(int(cores), int(rows) // ROWS_PER_TRAINING_PARTITION))


def auto_step_days(users: int) -> int:
    """The default days between observation dates: 7, or 1 on a log of fewer than
    :data:`DAILY_STEP_MAX_USERS` users, where weekly dates leave too few churner rows to
    measure anything (a user's rows never straddle a split, so more dates add rows, not
    leakage)."""
    from sparkify.config import DEFAULT_STEP_DAYS

    return 1 if users < DAILY_STEP_MAX_USERS else DEFAULT_STEP_DAYS


DAILY_STEP_MAX_USERS = 2000


def _counts_note(c: dict) -> str:
    return (f"{c['rows']:,} rows of {c['users']:,} users, {c['churner_rows']:,} churner rows of "
            f"{c['churning_users']:,} churning users")


# --------------------------------------------------------------------------- steps
def step_compare(train_df, numeric, categorical, config: TrainConfig, progress: Progress) -> dict[str, CVOutcome]:
    """Each family's k-fold CV over its comparison grid (parameters by the CV metric),
    ``config.parallelism`` families at once; each family's line is printed as it ends."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def run(family: str) -> CVOutcome:
        s = config.settings[family]
        return cross_validate(train_df, family, numeric, categorical, s.fixed, s.compare_grid, config,
                              parallelism=1)

    outcomes: dict[str, CVOutcome] = {}
    with progress.stage(f"compare {', '.join(config.models)}", total=len(config.models), unit="families") as st:
        with ThreadPoolExecutor(max_workers=max(1, config.parallelism)) as pool:
            futures = {pool.submit(run, family): family for family in config.models}
            for future in as_completed(futures):
                o = outcomes[futures[future]] = future.result()
                st.advance()
                thr, f1 = o.threshold()
                progress.say(f"  {FAMILY_NAMES[o.family]}: out-of-fold F1 {f1:.3f}, "
                             f"CV {config.cv_metric} {max(o.cv_metrics):.3f} ({o.seconds:.1f}s)")
        st.note = f"{len(outcomes)} families"
    return {family: outcomes[family] for family in config.models}


def step_tune(train_df, family: str, comparison: CVOutcome, numeric, categorical, config: TrainConfig
              ) -> tuple[CVOutcome, str, dict | None]:
    """The family over its tuning grid when ``config.tune`` (the comparison point is kept
    when the grid does not beat it out of fold), then, with ``config.class_weights``, the
    chosen point without class weights: the weights are kept only when they give the
    better out-of-fold PR-AUC (ranking; calibration fixes the
    probabilities either way). Returns (outcome, 'tuning' | 'comparison', the weights'
    out-of-fold PR-AUC with and without, or None when class weights are off)."""
    s = config.settings[family]
    tuned, source = comparison, "comparison"
    if config.tune and s.tune_grid:
        searched = cross_validate(train_df, family, numeric, categorical, s.fixed, s.tune_grid, config)
        if searched.rank_key() >= comparison.rank_key():
            tuned, source = searched, "tuning"
    if not config.class_weights:
        return tuned, source, None
    plain = fit_fixed(train_df, family, numeric, categorical, {**tuned.params, "weightCol": UNIT_WEIGHT_COL}, config)
    pr = {name: ev.average_precision(o.oof.labels, o.oof.scores) for name, o in (("weighted", tuned), ("unweighted", plain))}
    kept = pr["weighted"] >= pr["unweighted"]
    return (tuned if kept else plain), source, {"out_of_fold_pr_auc": pr, "kept": kept}


def step_calibrate(outcome: CVOutcome) -> tuple[cal.Calibration, dict]:
    """The calibration map of the chosen model, fitted on its out-of-fold scores (method
    by cross-fitted log loss), and the out-of-fold figures of its probabilities."""
    kind = "margin" if outcome.family == "svc" else "logit"
    o = outcome.oof
    calibration, losses = cal.choose_calibration(o.labels, o.scores, o.folds, kind)
    figures = cal.probability_figures(o.labels, calibration(o.scores), groups=o.users)
    return calibration, {"method": calibration.method, "input": kind, "cross_fitted_log_loss": losses,
                         "out_of_fold": figures}


def probability_block(scored: Scored, calibration: cal.Calibration, threshold: float) -> dict:
    """Every figure of a set of scored rows: ranking and threshold metrics on the score,
    probability figures on the calibrated probability, with rows, users and churners."""
    p = calibration(scored.scores)
    return {**ev.score_metrics(scored.labels, scored.scores, threshold), **cal.probability_figures(scored.labels, p, groups=scored.users),
            **scored.counts()}


def step_evaluate(tuned: CVOutcome, outcomes: dict[str, CVOutcome], test_df, calibration, categorical) -> tuple[dict, dict, Scored]:
    """Figures of every family and of the chosen model on the held-out users: all test
    rows, and the in-time and out-of-time parts apart. Returns (families, best, test scores)."""
    threshold, _ = tuned.threshold()
    families = {fam: model_figures(o, test_df) for fam, o in outcomes.items()}
    best = model_figures(tuned, test_df)
    test = test_scores(tuned.model, test_df, tuned.family)
    best["test"] = probability_block(test, calibration, threshold)
    best["periods"] = {}
    for period in ("in_time", "out_of_time"):
        mask = test.period == period
        if mask.any():
            best["periods"][period] = probability_block(test.subset(mask), calibration, threshold)
    best["importances"] = importances(tuned.model, test_df, tuned.family, categorical)
    best["validation_curve"] = _thin_curve(ev.threshold_curve(tuned.oof.labels, tuned.oof.scores))
    return families, best, test


def _print_block(name: str, b: dict) -> str:
    return (f"{name}: {b['rows']:,} rows of {b['users']:,} users, {b['churners']:,} churner rows: "
            f"F1 {b['f1']:.3f}, PR-AUC {b['pr_auc']:.3f}, expected/realized churners "
            f"{b['expected_churners']:.1f}/{b['realized_churners']}")


# --------------------------------------------------------------------------- train
def train(spark, events_path, model_dir, config: TrainConfig | None = None,
          scores_out: str | Path | None = None) -> TrainResult:
    """Train, evaluate and save a churn model.

    In:  a SparkSession, an event log path (file, directory, glob, or an ingest Parquet
         directory; any Hadoop URI), the model directory (a local or mounted path: the
         small JSON/Parquet/Markdown artifacts are written by the driver, the pipeline
         by Spark), a :class:`TrainConfig`.
    Out: :class:`TrainResult`. The directory is replaced atomically only when everything
         succeeded. With ``scores_out`` (a .csv or .parquet path) the new model also
         scores every active user at the log's end, as ``sparkify score`` does, from the
         log already loaded (a path inside the model directory is swapped in with it).
         Raises FileNotFoundError / PermissionError / ValueError for bad input.
    Steps: load, features (+ split), compare, tune, calibrate, evaluate, extras (label
    comparison, ceiling, seed spread), artifacts; each printed with its time.
    """
    from pyspark.sql import functions as F

    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, spec_boundaries

    config = config or TrainConfig()
    config.validate()
    events_path = str(events_path)
    model_dir = Path(model_dir)
    _check_paths(events_path, model_dir)
    spec = config.label or LabelSpec()
    spec.validate()
    progress = Progress(config.verbose, spark=spark)
    specs, numeric, categorical = feature_columns(spec.mode, config.artist_features)
    frames: list = []

    with artifacts.staging_dir(model_dir) as staging:
        with progress.stage("load") as st:
            # one pass over the log into session-day rows; a given cutoff is a split point
            loaded = load_log(spark, events_path, quarantine_path=str(staging / "quarantine"),
                              splits=spec_boundaries(spec), artists=config.artist_features)
            q = loaded.quality
            st.note = (f"{q.user_rows:,} user events, {q.users:,} users, {q.churners:,} churners, "
                          f"{q.quarantined:,} quarantined")
        try:
            if config.verbose:
                print(q.summary(), flush=True)
            if spec.step_days is None:
                spec = replace(spec, step_days=auto_step_days(q.users))
            with progress.stage("features") as st:
                base, spec, rows = _user_base(loaded, spec, numeric, categorical, _cores(spark))
                frames.append(base)
                partitions = config.partitions or training_partitions(rows, _cores(spark))
                table, counts, weights = _split_weighted(base, config, config.seed, partitions, oot_dates(spec))
                frames.append(table)
                st.note = (f"{len(spec.dates) or 'per-user'} observation date(s), {_counts_note(counts)}; "
                              f"train {counts['train_rows']:,} rows ({counts['train_churners']:,} churner rows), "
                              f"test {counts['test_rows']:,} rows of {counts['test_users']:,} users "
                              f"({counts['test_churners']:,} churner rows)")
            _require_learnable(counts, config.folds)
            if counts["test_churners"] == 0:
                raise ValueError(f"no churner in the test set ({counts['churner_rows']} churner rows in all): "
                                 "use a longer log, a smaller --step-days or a larger horizon")
            train_df, test_df = _split_frames(table)

            outcomes = step_compare(train_df, numeric, categorical, config, progress)
            best_family = max(config.models, key=lambda fam: outcomes[fam].rank_key())
            with progress.stage("tuning") as st:
                tuned, tuned_from, weighting = step_tune(train_df, best_family, outcomes[best_family], numeric,
                                                         categorical, config)
                threshold, val_f1 = tuned.threshold()
                st.note = (f"{FAMILY_NAMES[best_family]} {tuned.params}"
                              + ("" if config.tune else " (its comparison point: --thorough searches a grid)")
                              + f", threshold {threshold:.4f}, out-of-fold F1 {val_f1:.3f}" + (
                                  "" if weighting is None else
                                  f"; class weights {'kept' if weighting['kept'] else 'dropped'} (out-of-fold PR-AUC "
                                  f"{weighting['out_of_fold_pr_auc']['weighted']:.3f} with, "
                                  f"{weighting['out_of_fold_pr_auc']['unweighted']:.3f} without)"))
            with progress.stage("calibration") as st:
                calibration, cal_fig = step_calibrate(tuned)
                oof = cal_fig["out_of_fold"]
                st.note = (f"{calibration.method} (cross-fitted log loss "
                              + ", ".join(f"{k} {v:.4f}" for k, v in cal_fig["cross_fitted_log_loss"].items())
                              + f"); out of fold: expected {oof['expected_churners']:.1f} vs realized "
                              f"{oof['realized_churners']} churner rows of {oof['rows']:,}")
            with progress.stage("evaluation") as st:
                models_fig, best_fig, test = step_evaluate(tuned, outcomes, test_df, calibration, categorical)
                best_fig.update(family=best_family, selected_from=tuned_from, calibration=cal_fig,
                                class_weights=weighting,
                                threshold_source="out-of-fold (k-fold CV by user on the training part), "
                                                 "max churn-class F1 of the raw score")
                st.note = "; ".join(_print_block(k, b) for k, b in
                                       [("test", best_fig["test"]), *best_fig["periods"].items()])

            metrics: dict[str, Any] = {
                "format": 2,
                "label": spec.to_dict(),
                "data": counts,
                "class_weights": weights,
                "cv": {"folds": config.folds, "metric": config.cv_metric, "parallelism": config.parallelism,
                       "grouped_by": "userId", "tuning_grid": bool(config.tune),
                       "selection": "family by out-of-fold churn-class F1 at its best threshold"},
                "models": models_fig,
                "best": best_fig,
                "baseline": ev.constant_predictor(test.labels),
            }
            metrics.update(step_extras(spark, loaded, base, table, test, tuned, best_fig, spec, events_path,
                                       numeric, categorical, config, partitions, progress))

            with progress.stage("artifacts"):
                metrics["timings"] = {k: round(v, 2) for k, v in progress.timings.items()}
                pdf = table.select("userId", AS_OF_COL, *numeric, *categorical, LABEL_COL, SPLIT_COL,
                                   PERIOD_COL).toPandas()
                scores = dict(zip(tuned.oof.keys(), tuned.oof.scores))
                scores.update(zip(test.keys(), test.scores))
                pdf[LABEL_COL] = pdf[LABEL_COL].astype(int)
                pdf[SCORE_COL] = [scores.get(k, np.nan) for k in zip(pdf["userId"], pdf[AS_OF_COL])]
                latest = table.groupBy("userId").agg(F.max(AS_OF_COL).alias(AS_OF_COL))
                labels = table.join(latest, ["userId", AS_OF_COL]).select("userId", LABEL_COL)
                activity = artifacts.activity_table(loaded.days.df, labels)
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
            if scores_out is not None:
                with progress.stage("scoring") as st:
                    st.note = step_score(spark, loaded, staging, _staged(Path(scores_out), model_dir, staging))
                    st.note += f" -> {scores_out}"
        finally:
            for frame in frames:
                frame.unpersist()
            loaded.unpersist()
    progress.say(f"model written to {model_dir}")
    return TrainResult(model_dir=model_dir, best_family=best_family, threshold=threshold,
                       metrics=metrics, timings=dict(progress.timings))


def step_score(spark, loaded, model_dir: Path, out: Path) -> str:
    """Score every active user at the log's end with the model in ``model_dir`` and write
    the ranked list to ``out`` (:func:`sparkify.modeling.predict.write_scores`); returns a
    one-line summary."""
    from sparkify.modeling.predict import score_users, write_scores

    written = write_scores(score_users(spark, loaded.days, model_dir), out)
    return f"{len(written):,} active users at the log's end, {int(written['decision'].sum()):,} flagged"


def _staged(path: Path, model_dir: Path, staging: Path) -> Path:
    """``path``, moved into the staging directory when it lies inside ``model_dir``."""
    try:
        return staging / path.resolve().relative_to(model_dir.resolve())
    except ValueError:
        return path


def step_extras(spark, loaded, base, table, test: Scored, tuned: CVOutcome, best_fig: dict, spec, events_path: str,
                numeric, categorical, config: TrainConfig, partitions: int, progress: Progress) -> dict:
    """The extra evaluations: the seed-compatible 'ever' label, the true ceiling
    (simulated logs) and the split-seed spread (small test sets)."""
    from pyspark.sql import functions as F

    out: dict[str, Any] = {"label_comparison": None, "ceiling": None, "seed_spread": None}
    if config.label_comparison and spec.mode == "window":
        with progress.stage("label comparison") as st:
            out["label_comparison"] = _label_comparison(loaded, tuned.family, tuned.params, config, partitions,
                                                        best_fig)
            st.note = _label_note(out["label_comparison"])
    truth = truth_path_for(events_path) if config.ceiling and spec.mode == "window" else None
    if truth is not None:
        with progress.stage("ceiling") as st:
            try:
                levels = table.filter(F.col(SPLIT_COL) != "unused").select("userId", AS_OF_COL, "level", LABEL_COL)
                out["ceiling"] = _ceiling(truth, levels, test, tuned, spec)
            except Exception as exc:  # the ceiling is a yardstick: never fail training for it
                st.note = f"skipped: ground truth at {truth} could not be used ({exc})"
            else:
                c = out["ceiling"]
                st.note = (f"true probability on the same {c['test']['rows']:,} test rows: PR-AUC "
                              f"{c['test']['pr_auc']:.3f}, F1 {c['test']['f1']:.3f}; the model reaches "
                              f"{c['model_pr_auc_fraction']:.2f} of its PR-AUC")
    if config.seed_spread > 0 and best_fig["test"]["users"] < config.spread_max_test_users:
        with progress.stage("seed spread") as st:
            out["seed_spread"] = _seed_spread(base, numeric, categorical, tuned.family, tuned.params, config,
                                              partitions, best_fig["test"], oot_dates(spec))
            sp = out["seed_spread"]["f1"]
            st.note = f"F1 over {sp['n']} splits: {sp['mean']:.3f} +/- {sp['sd']:.3f}"
    return out


CEILING_THRESHOLD_ROWS = 5000


def _ceiling(truth: Path, levels, test: Scored, tuned: CVOutcome, spec) -> dict:
    """:func:`ceiling_on_rows` on the test rows (threshold from the train rows' true
    probabilities), beside the model's own figures on them."""
    pdf = levels.toPandas()
    pdf[AS_OF_COL] = pdf[AS_OF_COL].astype("int64")
    keyed = pdf.set_index(["userId", AS_OF_COL])
    test_rows = keyed.loc[test.keys()].reset_index()
    train_rows = keyed.loc[tuned.oof.keys()].reset_index()
    if len(train_rows) > CEILING_THRESHOLD_ROWS:   # the threshold needs a sample, not every row
        train_rows = train_rows.sample(CEILING_THRESHOLD_ROWS, random_state=0)
    out = ceiling_on_rows(truth, test_rows, spec.horizon_days, threshold_rows=train_rows)
    model_pr = ev.average_precision(test.labels, test.scores)
    out["model_test_pr_auc"] = model_pr
    out["model_pr_auc_fraction"] = model_pr / out["test"]["pr_auc"] if out["test"]["pr_auc"] else float("nan")
    return out


def ceiling_on_rows(truth: Path, rows, horizon_days: int, threshold_rows=None) -> dict:
    """The true ceiling on ``rows`` (pandas [userId, as_of_ms, level, churn]): the
    simulator's probability that each user cancels within the horizon given its state at
    the row's date (``sparkify.simulator.hazard``), scored like a model; its decision
    threshold is the F1-maximising one on ``threshold_rows``' true probabilities (None:
    on ``rows`` themselves, an optimistic choice)."""
    import pyarrow.parquet as pq

    from sparkify.simulator.hazard import true_churn_probability

    table = pq.read_table(str(truth)).to_pandas()
    table["userId"] = table["userId"].astype(str)
    cols = ["userId", AS_OF_COL, "level"]
    p = true_churn_probability(table, rows[cols], horizon_days)
    y = rows[LABEL_COL].to_numpy().astype(int)
    if threshold_rows is not None:
        p_thr = true_churn_probability(table, threshold_rows[cols], horizon_days)
        threshold, _ = ev.best_threshold(threshold_rows[LABEL_COL].to_numpy().astype(int), p_thr)
    else:
        threshold, _ = ev.best_threshold(y, p)
    test = {**ev.score_metrics(y, p, threshold), **cal.probability_figures(y, p, groups=rows["userId"].to_numpy()),
            "rows": int(len(y)), "users": int(rows["userId"].nunique()), "churners": int(y.sum())}
    return {"test": test, "threshold": threshold, "source": str(truth),
            "what": ("the simulator's true probability of cancelling within the horizon given each user's "
                     "latent rates, cohort and level at the observation date, on the same rows")}


def _thin_curve(curve: list[dict], max_points: int = 200) -> list[dict]:
    if len(curve) <= max_points:
        return curve
    idx = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
    return [curve[i] for i in idx]


def _label_note(lc: dict) -> str:
    return (f"'ever' F1 {lc['ever']['f1']:.3f} vs prediction-time F1 {lc['window']['f1']:.3f}")


def _label_comparison(loaded, family, params, config, partitions, best_fig) -> dict:
    """The best family with its tuned parameters under the seed-compatible 'ever' label
    (same seed, fresh out-of-fold threshold), beside the prediction-time figures."""
    from sparkify.features import LabelSpec

    _, numeric, categorical = feature_columns("ever", config.artist_features)
    base, ever_spec, _rows = _user_base(loaded, LabelSpec(mode="ever"), numeric, categorical, partitions)
    table, counts, _w = _split_weighted(base, config, config.seed, partitions)
    keys = ("f1", "precision", "recall", "pr_auc", "roc_auc", "accuracy", "weighted_f1", "rows", "users", "churners")
    try:
        _require_learnable(counts, config.folds, " in 'ever' mode")
        train_df, test_df = _split_frames(table)
        fig = model_figures(fit_fixed(train_df, family, numeric, categorical, params, config), test_df)
        ever = {k: fig["test"][k] for k in keys}
    finally:
        table.unpersist()
        base.unpersist()
    window = {k: best_fig["test"][k] for k in keys}
    return {
        "family": family,
        "window": window,
        "ever": ever,
        "ever_spec": ever_spec.to_dict(),
        "note": ("'ever' labels every user who ever cancelled in the log, with features from the window before "
                 "the user's last day (cancellation events and time-to-last-event features removed). It answers "
                 "'who churned?', not 'who will churn?': features and label overlap in time, so its figures "
                 "overstate what a model can do before the fact. The prediction-time ('window') figures are the "
                 "honest ones."),
    }


def _seed_spread(base, numeric, categorical, family, params, config, partitions, main_test: dict,
                 oot: tuple[int, ...]) -> dict:
    """Churn-class F1 and PR-AUC of the tuned family over ``config.seed_spread`` extra
    split seeds (fresh out-of-fold threshold each), plus the main split."""
    f1s, praucs, seeds = [main_test["f1"]], [main_test["pr_auc"]], [config.seed]
    for i in range(1, config.seed_spread + 1):
        seed = config.seed + 1000 * i
        table, counts, _w = _split_weighted(base, config, seed, partitions, oot)
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
            "note": "same family and parameters, a different user split per seed"}
