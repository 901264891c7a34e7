"""The training table and its split by user: train's second step.

In:  a loaded log (:class:`sparkify.dataset.LoadedLog`), a label spec and a
     :class:`~sparkify.modeling.train_config.TrainConfig`.
Out: :class:`SplitTable`: one cached row per (user, observation date) with its features
     and label, each row marked ``split`` ('train', 'test', 'unused'), ``fold`` (by user)
     and ``period`` ('in_time', 'out_of_time'), with class weights, and the row, user and
     churner counts of every part.

Users, not rows, are held out (stratified by whether the user churns), and the latest
observation date is out of time: no training row is observed on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from sparkify.modeling.pipelines import AS_OF_COL, FOLD_COL, LABEL_COL, WEIGHT_COL, prepare_table
from sparkify.modeling.train_config import TrainConfig
from sparkify.progress import Progress

SPLIT_COL = "split"
PERIOD_COL = "period"
ROWS_PER_TRAINING_PARTITION = 100_000
DAILY_STEP_MAX_USERS = 2000


@dataclass
class SplitTable:
    """The split training table: ``base`` (features and label per user and date, cached),
    ``table`` (``base`` with split, fold, period and weight columns, cached), ``spec`` (the
    resolved label spec), ``counts`` (:func:`split_counts`), ``weights`` (class weight by
    label, as strings) and ``partitions`` (of ``table``)."""

    base: Any
    table: Any
    spec: Any
    counts: dict[str, Any]
    weights: dict[str, float]
    partitions: int

    def frames(self) -> tuple[Any, Any]:
        """(train rows, test rows) of ``table``."""
        return split_frames(self.table)


def step_split(spark, loaded, spec, numeric: list[str], categorical: list[str], config: TrainConfig,
               progress: Progress, cached: list) -> SplitTable:
    """The 'features' stage: the user table of ``loaded`` under ``spec`` (``step_days``
    from the user count when unset), prepared, cached and split. Every frame it caches is
    appended to ``cached`` as soon as it exists (the caller unpersists them). Raises
    ValueError when the training part has fewer churner or non-churner rows than folds, or
    the test part has no churner."""
    if spec.step_days is None:
        spec = replace(spec, step_days=auto_step_days(loaded.quality.users))
    with progress.stage("features") as st:
        base, spec, rows = user_base(loaded, spec, numeric, categorical, _cores(spark))
        cached.append(base)
        partitions = config.partitions or training_partitions(rows, _cores(spark))
        table, counts, weights = split_weighted(base, config, config.seed, partitions, oot_dates(spec))
        cached.append(table)
        st.note = (f"{len(spec.dates) or 'per-user'} observation date(s), {counts_note(counts)}; "
                   f"train {counts['train_rows']:,} rows ({counts['train_churners']:,} churner rows), "
                   f"test {counts['test_rows']:,} rows of {counts['test_users']:,} users "
                   f"({counts['test_churners']:,} churner rows)"
                   + (f"; {counts['unused_rows']:,} rows ({counts['unused_churners']:,} churner rows) unused: the "
                      "training users at the out-of-time date" if counts["unused_rows"] else ""))
    require_learnable(counts, config.folds)
    if counts["test_churners"] == 0:
        raise ValueError(f"no churner in the test set ({counts['churner_rows']} churner rows in all): "
                         "use a longer log, a smaller --step-days or a larger horizon")
    return SplitTable(base, table, spec, counts, weights, partitions)


def in_fixed_order(table, partitions: int):
    """``table`` (rows keyed by userId and ``as_of_ms``) in ``partitions`` partitions whose
    content and row order depend on the rows only, not on how they arrived (a raw log or a
    store, however many partitions Spark gave the steps before): hashed by userId, sorted
    within each partition. The models' sampling (a forest's and GBT's subsamples, drawn per
    partition) then draws the same rows whatever the source."""
    return table.repartition(partitions, "userId").sortWithinPartitions("userId", AS_OF_COL)


def user_base(loaded, spec, numeric: list[str], categorical: list[str], partitions: int):
    """The prepared table (features + churn per user and date) of a
    :class:`sparkify.dataset.LoadedLog`, repartitioned to ``partitions`` and cached.
    Returns (table, resolved spec, its rows)."""
    from sparkify.features import build_user_table, check_dates_fit

    days = loaded.days_for(spec)
    table, resolved = build_user_table(days, spec)
    check_dates_fit(resolved, *days.log_span_ms())
    base = in_fixed_order(prepare_table(table, numeric, categorical), partitions).cache()
    rows = base.count()
    return base, resolved, rows


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


def split_weighted(base, config: TrainConfig, seed: int, partitions: int, oot: tuple[int, ...] = ()):
    """Split, folds and class weights on a cached table, repartitioned and cached.
    Returns (table, :func:`split_counts`, class weights)."""
    split = assign_split(base, seed, config.test_fraction, config.folds, oot)
    table, weights = add_class_weights(split, config.class_weights)
    table = in_fixed_order(table, partitions).cache()
    counts = split_counts(table)
    return table, counts, weights


def split_counts(df) -> dict[str, int]:
    """Rows, distinct users, churner rows and churning users (users with a churner row) of
    the table (no prefix) and of each part: ``train_*``, ``test_*`` (all test rows),
    ``test_in_time_*``, ``test_out_of_time_*``, ``unused_*`` (the training users' rows at
    the out-of-time dates, in neither part). ``*_churners`` counts churner rows, like
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
    for name in ("train", "test", "test_in_time", "test_out_of_time", "unused", "all"):
        rs = groups.get(name, [])
        prefix = "" if name == "all" else f"{name}_"
        out[f"{prefix}rows"] = int(sum(r["rows"] for r in rs))
        out[f"{prefix}churners"] = out[f"{prefix}churner_rows"] = int(sum(r["churners"] or 0 for r in rs))
        out[f"{prefix}users"] = len({u for r in rs for u in r["users"]})
        out[f"{prefix}churning_users"] = len({u for r in rs for u in r["churned"]})
    out["churn_rate"] = out["churner_rows"] / out["rows"] if out["rows"] else 0.0
    return out


def split_frames(table):
    """(train rows, test rows) of a split table."""
    from pyspark.sql import functions as F

    return table.filter(F.col(SPLIT_COL) == "train"), table.filter(F.col(SPLIT_COL) == "test")


def require_learnable(counts: dict, folds: int, what: str = "") -> None:
    """Raise ValueError when the training part has fewer churner or non-churner rows than folds."""
    if counts["train_churners"] < folds or counts["train_rows"] - counts["train_churners"] < folds:
        raise ValueError(
            f"too few churners to train{what}: {counts['churner_rows']} churner rows of {counts['rows']} "
            f"({counts['train_churners']} in the training part, {folds} folds). Use a longer log, "
            "a smaller --step-days, a longer --horizon-days or --label ever.")


def oot_dates(spec) -> tuple[int, ...]:
    """The out-of-time observation dates of a resolved spec: its latest date when it has
    two or more, else none."""
    return (max(spec.dates),) if len(spec.dates) >= 2 else ()


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


def counts_note(c: dict) -> str:
    """'R rows of U users, C churner rows of K churning users'."""
    return (f"{c['rows']:,} rows of {c['users']:,} users, {c['churner_rows']:,} churner rows of "
            f"{c['churning_users']:,} churning users")


def _cores(spark) -> int:
    try:
        return max(1, int(spark.sparkContext.defaultParallelism))
    except Exception:  # noqa: BLE001 - e.g. a Connect session
        return os.cpu_count() or 2
