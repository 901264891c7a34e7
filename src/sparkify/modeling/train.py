"""Train, compare, tune and evaluate the churn models; write the model directory.

In:  an event log (anything :func:`sparkify.dataset.load_log` reads) and a :class:`TrainConfig`.
Out: a model directory (see ``docs/model-directory.md``) written atomically, and a
     :class:`TrainResult` with the figures and the time of every stage.

:func:`train` runs these steps in order, each printed with its time by one :class:`Progress`:

1. load (:func:`step_load`): the log in one pass into session-day rows, its quality summary.
2. split (:func:`.split.step_split`): one cached row per (user, observation date); users held out.
3. compare (:func:`.selection.step_compare`): each family's k-fold CV; the best by out-of-fold F1
   (:func:`.selection.selection_table`: ties within the noise go to out-of-fold PR-AUC).
4. tune (:func:`.selection.step_tune`): the best family's bigger grid, class weights or not.
5. calibrate (:func:`.assessment.step_calibrate`): Platt or isotonic on the out-of-fold scores.
6. evaluate (:func:`.assessment.step_evaluate`): every family and the tuned model on the held-out users.
7. extras (:func:`.extras.step_extras`): the 'ever' label, the true ceiling, the split-seed spread.
8. write (:func:`step_write`): the model directory, built in a temporary sibling and swapped in.
9. score (:func:`step_score`, only with ``scores_out``): every active user at the log's end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparkify.modeling import artifacts
from sparkify.modeling import evaluate as ev
from sparkify.modeling.assessment import step_calibrate, step_evaluate
from sparkify.modeling.drivers import driver_check, drivers_note
from sparkify.modeling.extras import ceiling_on_rows, step_extras, truth_path_for
from sparkify.modeling.pipelines import AS_OF_COL, LABEL_COL, feature_columns
from sparkify.modeling.selection import (
    SCORE_COL,
    SELECTION_RULE,
    CVOutcome,
    Scored,
    choice_note,
    selection_table,
    step_compare,
    step_tune,
)
from sparkify.modeling.split import (
    PERIOD_COL,
    ROWS_PER_TRAINING_PARTITION,
    SPLIT_COL,
    SplitTable,
    add_class_weights,
    assign_split,
    step_split,
    training_partitions,
)
from sparkify.modeling.train_config import TrainConfig
from sparkify.progress import Progress

__all__ = ["ROWS_PER_TRAINING_PARTITION", "TrainConfig", "TrainResult", "add_class_weights", "assign_split",
           "ceiling_on_rows", "step_load", "step_score", "step_write", "train", "training_partitions",
           "truth_path_for"]


@dataclass
class TrainResult:
    """What ``train`` did: where the model is, the best family, every figure and the
    seconds spent in each stage (in order)."""

    model_dir: Path
    best_family: str
    threshold: float
    metrics: dict
    timings: dict[str, float]


def train(spark, events_path, model_dir, config: TrainConfig | None = None,
          scores_out: str | Path | None = None) -> TrainResult:
    """Train, evaluate and save a churn model: the steps of the module docstring.

    In:  a SparkSession, an event log path (file, directory, glob, or an ingest Parquet
         directory; any Hadoop URI), the model directory (a local or mounted path: the
         small JSON/Parquet/Markdown artifacts are written by the driver, the pipeline
         by Spark), a :class:`TrainConfig`.
    Out: :class:`TrainResult`. The directory is replaced atomically only when everything
         succeeded. With ``scores_out`` (a .csv or .parquet path) the new model also
         scores every active user at the log's end, as ``sparkify score`` does, from the
         log already loaded (a path inside the model directory is swapped in with it).
         Raises FileNotFoundError / PermissionError / ValueError for bad input.
    """
    from sparkify.features import LabelSpec

    config = config or TrainConfig()
    config.validate()
    events_path, model_dir = str(events_path), Path(model_dir)
    check_paths(events_path, model_dir)
    spec = config.label or LabelSpec()
    spec.validate()
    specs, numeric, categorical = feature_columns(spec.mode, config.artist_features)
    progress = Progress(config.verbose, spark=spark)
    cached: list = []
    try:
        with artifacts.staging_dir(model_dir) as staging:
            loaded = step_load(spark, events_path, staging, model_dir, spec, config, progress, cached)
            data = step_split(spark, loaded, spec, numeric, categorical, config, progress, cached)
            train_df, test_df = data.frames()
            outcomes = step_compare(train_df, numeric, categorical, config, progress)
            choice = selection_table(outcomes, config.seed)
            family = choice["chosen"]
            progress.say(choice_note(choice))
            tuned = step_tune(train_df, family, outcomes[family], numeric, categorical, config, progress)
            calibration, cal_fig = step_calibrate(tuned.outcome, progress)
            models_fig, best_fig, test = step_evaluate(tuned, outcomes, test_df, calibration, cal_fig,
                                                       categorical, progress)
            metrics = training_metrics(data, config, models_fig, best_fig, test, choice)
            metrics.update(step_extras(loaded, data, test, tuned.outcome, best_fig, events_path, numeric,
                                       categorical, config, progress))
            step_write(spark, staging, loaded, data, tuned.outcome, test, calibration, metrics, specs,
                       numeric, categorical, progress)
            if scores_out is not None:
                step_score(spark, loaded, model_dir, staging, scores_out, progress)
    finally:
        for frame in cached:
            frame.unpersist()
        progress.close()
    progress.say(f"model written to {model_dir}")
    return TrainResult(model_dir=model_dir, best_family=family, threshold=tuned.outcome.threshold()[0],
                       metrics=metrics, timings=dict(progress.timings))


# --------------------------------------------------------------------------- steps
def step_load(spark, events_path: str, staging: Path, model_dir: Path, spec, config: TrainConfig,
              progress: Progress, cached: list):
    """The 'load' stage: the log in one pass into session-day rows
    (:func:`sparkify.dataset.load_log`; malformed lines quarantined under ``staging``, and
    the quality summary names where they will be once ``staging`` becomes ``model_dir``;
    the spec's cutoffs as split points), appended to ``cached``; then its quality summary
    printed when ``config.verbose``. Returns the :class:`sparkify.dataset.LoadedLog`."""
    from sparkify.dataset import load_log
    from sparkify.features import spec_boundaries

    with progress.stage("load") as st:
        loaded = load_log(spark, events_path, quarantine_path=str(staging / artifacts.QUARANTINE_DIR),
                          splits=spec_boundaries(spec), artists=config.artist_features)
        cached.append(loaded)
        q = loaded.quality
        if q.quarantine_path:
            q.quarantine_path = str(model_dir / artifacts.QUARANTINE_DIR)
        st.note = (f"{q.user_rows:,} user events, {q.users:,} users, {q.churners:,} churners, "
                   f"{q.quarantined:,} quarantined" + (f" (-> {q.quarantine_path})" if q.quarantined and q.quarantine_path else ""))
    if config.verbose:
        print(q.summary(), flush=True)
    return loaded


def training_metrics(data: SplitTable, config: TrainConfig, models_fig: dict, best_fig: dict,
                     test: Scored, choice: dict) -> dict:
    """The main entries of ``metrics.json``: label spec, counts, class weights, CV plan
    and the family choice (``choice``: :func:`.selection.selection_table`), every
    family's figures, the chosen model's and a constant predictor's."""
    return {
        "format": 2,
        "label": data.spec.to_dict(),
        "data": data.counts,
        "class_weights": data.weights,
        "cv": {"folds": config.folds, "metric": config.cv_metric, "parallelism": config.parallelism,
               "grouped_by": "userId", "tuning_grid": bool(config.tune),
               "selection": SELECTION_RULE, "family_choice": choice},
        "models": models_fig,
        "best": best_fig,
        "baseline": ev.constant_predictor(test.labels),
    }


def step_write(spark, staging: Path, loaded, data: SplitTable, tuned: CVOutcome, test: Scored, calibration,
               metrics: dict, specs, numeric: list[str], categorical: list[str], progress: Progress) -> None:
    """The 'artifacts' stage: the model directory's files written into ``staging``
    (:func:`sparkify.modeling.artifacts.write_all`): the tuned pipeline, model.json,
    ``metrics`` (with the timings so far), the quality summary, every feature row with its
    out-of-fold or test score, and the activity table. Then the total time is added to
    ``metrics`` and metrics.json rewritten."""
    with progress.stage("artifacts"):
        metrics["timings"] = {k: round(v, 2) for k, v in progress.timings.items()}
        pdf = _feature_rows(data.table, numeric, categorical, [tuned.oof, test])
        activity = artifacts.activity_table(loaded.days.df, _latest_labels(data.table))
        model_json = artifacts.model_json(
            family=tuned.family, threshold=tuned.threshold()[0], calibration=calibration, spec=data.spec,
            specs=specs, train_pdf=pdf[pdf[SPLIT_COL] == "train"], pipeline_model=tuned.model,
            spark_version=spark.version, importances=metrics["best"]["importances"])
        artifacts.write_all(staging, pipeline_model=tuned.model, model_json=model_json, metrics=metrics,
                            quality=loaded.quality.to_dict(), features_pdf=pdf, activity_pdf=activity)
    ceiling = metrics.get("ceiling") or {}
    if ceiling.get("planted"):
        with progress.stage("planted drivers") as st:
            ceiling["drivers"] = driver_check(staging, pdf, metrics["best"]["importances"], ceiling["planted"])
            st.note = drivers_note(ceiling["drivers"])
    progress.timings["total"] = progress.total()
    metrics["timings"] = {k: round(v, 2) for k, v in progress.timings.items()}
    artifacts.write_json(staging / artifacts.METRICS_JSON, metrics)
    artifacts.write_model_card(staging, model_json, metrics, loaded.quality.to_dict())


def step_score(spark, loaded, model_dir: Path, staging: Path, scores_out: str | Path, progress: Progress) -> None:
    """The 'scoring' stage: every active user at the log's end scored by the model in
    ``staging`` and the ranked list written to ``scores_out``
    (:func:`sparkify.modeling.predict.write_scores`; a path inside ``model_dir`` goes into
    ``staging``)."""
    from sparkify.modeling.predict import score_users, write_scores

    with progress.stage("scoring") as st:
        out = _staged(Path(scores_out), model_dir, staging)
        written = write_scores(score_users(spark, loaded.days, staging), out)
        st.note = (f"{len(written):,} active users at the log's end, {int(written['decision'].sum()):,} flagged"
                   f" -> {scores_out}")


# --------------------------------------------------------------------------- helpers
def check_paths(events_path: str, model_dir: Path) -> None:
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


def _feature_rows(table, numeric: list[str], categorical: list[str], scored: list[Scored]):
    """Every row of ``table`` as pandas (features, label, split, period) with its score
    from ``scored`` (NaN for rows no model scored)."""
    pdf = table.select("userId", AS_OF_COL, *numeric, *categorical, LABEL_COL, SPLIT_COL, PERIOD_COL).toPandas()
    scores: dict = {}
    for s in scored:
        scores.update(zip(s.keys(), s.scores))
    pdf[LABEL_COL] = pdf[LABEL_COL].astype(int)
    pdf[SCORE_COL] = [scores.get(k, np.nan) for k in zip(pdf["userId"], pdf[AS_OF_COL])]
    return pdf


def _latest_labels(table):
    """(userId, churn) of each user's latest observation date."""
    from pyspark.sql import functions as F

    latest = table.groupBy("userId").agg(F.max(AS_OF_COL).alias(AS_OF_COL))
    return table.join(latest, ["userId", AS_OF_COL]).select("userId", LABEL_COL)


def _staged(path: Path, model_dir: Path, staging: Path) -> Path:
    """``path``, moved into the staging directory when it lies inside ``model_dir``."""
    try:
        return staging / path.resolve().relative_to(model_dir.resolve())
    except ValueError:
        return path
