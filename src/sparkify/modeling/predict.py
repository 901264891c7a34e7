"""Batch scoring: every active user's churn probability, decision and rank.

In:  an event log (path or cleaned events DataFrame) and a model directory.
Out: a Spark DataFrame [userId, probability, score, decision, rank, top_features] followed
     by the model's feature columns (the rows scored), highest risk first (rank 1), one row
     per user still active at ``as_of``. ``write_scores`` writes the ranked columns to the
     scores file and the feature rows to a Parquet file beside it (:func:`rows_path`), from
     which the web app computes each listed user's exact reasons.

The web app imports this module's constants (``ROWS_SUFFIX``, ``rows_path``): keep its top
level free of pyspark.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from sparkify.modeling.artifacts import PIPELINE_DIR, load_model_json
from sparkify.modeling.calibration import Calibration

OUTPUT_COLUMNS = ["userId", "probability", "score", "decision", "rank", "top_features"]
#: the scored feature rows are written beside the scores file: scores.csv -> scores.rows.parquet
ROWS_SUFFIX = ".rows.parquet"
#: Spark column metadata key marking a model input column in ``score_table``'s output
#: (value: the feature's kind, "numeric" or "categorical"); ``write_scores`` splits these out
FEATURE_COLUMN_KEY = "sparkify_feature"


def rows_path(scores_path: str | Path) -> Path:
    """Where the feature rows of a scores file live: the same name with its extension
    replaced by ``ROWS_SUFFIX`` (``scores.csv`` and ``scores.parquet`` ->
    ``scores.rows.parquet``), in the same directory."""
    path = Path(scores_path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(stem + ROWS_SUFFIX)


def _feature_lists(meta: dict) -> tuple[list[str], list[str]]:
    numeric = [f["name"] for f in meta["features"] if f["kind"] == "numeric"]
    categorical = [f["name"] for f in meta["features"] if f["kind"] == "categorical"]
    return numeric, categorical


def _top_features_expr(meta: dict, k: int = 3):
    """A Column naming, per user, the ``k`` numeric inputs furthest from their training
    median (above or below) in units of the training p01-p99 range, among the model's 10 most important
    (falls back to all numeric inputs). A plain, model-agnostic hint for the retention
    team ("why is this user on the list?"), not an attribution."""
    from pyspark.sql import functions as F

    numeric = {f["name"]: f for f in meta["features"] if f["kind"] == "numeric"}
    ranked = [n for n in meta.get("top_inputs", []) if n in numeric][:10] or list(numeric)
    terms = []
    for name in ranked:
        f = numeric[name]
        span = max(float(f["p99"]) - float(f["p01"]), 1e-9)
        dev = (F.col(name) - F.lit(float(f["median"]))) / F.lit(span)
        terms.append(F.struct(F.abs(dev).alias("d"), F.lit(name).alias("n")))
    if not terms:
        return F.lit("")
    arr = F.sort_array(F.array(*terms), asc=False)
    return F.concat_ws(", ", F.slice(F.transform(arr, lambda x: x["n"]), 1, k))


def score_table(spark, table, model_dir: str | Path):
    """Score a feature table (userId + the model's feature columns) with a saved model.

    Out: DataFrame [userId, probability, score, decision, rank, top_features, <features>]:
    ``OUTPUT_COLUMNS`` then every feature of model.json, with the values the model scored
    (numeric as double, nulls as 0.0 like in training; categorical as string), each
    marked with ``FEATURE_COLUMN_KEY`` in its column metadata so ``write_scores`` can
    split them out (``select(*OUTPUT_COLUMNS)`` gives the ranked list alone)."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from sparkify.modeling.pipelines import prepare_table

    model_dir = Path(model_dir)
    meta = load_model_json(model_dir)
    numeric, categorical = _feature_lists(meta)
    prepared = prepare_table(table, numeric, categorical)
    model = PipelineModel.load(str(model_dir / PIPELINE_DIR))
    scored = model.transform(prepared)
    source = "rawPrediction" if meta["score_kind"] == "margin" else "probability"
    scored = scored.withColumn("_score", vector_to_array(F.col(source)).getItem(1))
    score = F.col("_score")
    calibration = Calibration.from_dict(meta.get("calibration"))
    if calibration is not None:
        probability = F.expr(calibration.sql("_score"))
    elif source == "probability":
        probability = score
    else:
        probability = F.lit(None).cast("double")
    clash = sorted(set(numeric + categorical) & set(OUTPUT_COLUMNS))
    if clash:
        raise ValueError(f"feature name(s) {', '.join(clash)} clash with the scores file's columns")
    out = (scored.select("userId", *numeric, *categorical, score.alias("score"),
                         probability.alias("probability"))
           .withColumn("decision", (F.col("score") > F.lit(float(meta["threshold"]))).cast("int"))
           .withColumn("top_features", _top_features_expr(meta)))
    # the ranking window sees one row per user (small), never events
    w = Window.orderBy(F.col("score").desc(), F.col("userId"))
    features = [F.col(c).alias(c, metadata={FEATURE_COLUMN_KEY: "numeric"}) for c in numeric]
    features += [F.col(c).alias(c, metadata={FEATURE_COLUMN_KEY: "categorical"}) for c in categorical]
    return out.withColumn("rank", F.row_number().over(w)).select(*OUTPUT_COLUMNS, *features)


def score_users(spark, events_path_or_df, model_dir: str | Path, as_of: datetime | str | None = None):
    """Every user still subscribed at ``as_of`` and active in the feature window before
    it, scored and ranked, from rows built by the same code as the training rows
    (``sparkify.features.build_scoring_table``).

    In:  a SparkSession; an event log path (read like ``train`` reads it:
         ``sparkify.dataset.load_log``), or a DataFrame of cleaned events, or their
         ``SessionDays``; a model directory written by ``train``; ``as_of`` (datetime or
         ISO text, UTC; default: the midnight after the log's last event).
    Out: Spark DataFrame as :func:`score_table` gives it: [userId, probability (calibrated
         P(churn)), score (what the threshold applies to), decision (1 = flagged), rank
         (1 = highest risk), top_features, then the feature values scored]. A path is
         loaded here and its session-day rows stay cached while the result is used.
    """
    from sparkify.dataset import load_log
    from sparkify.features import (
        LabelSpec,
        build_scoring_table,
        model_window_days,
        parse_time,
        spec_boundaries,
        uses_artists,
    )

    meta = load_model_json(Path(model_dir))
    when = parse_time(as_of) if as_of is not None else None
    artists = uses_artists([f["name"] for f in meta["features"]])
    long_days = model_window_days(meta)
    source = events_path_or_df
    if isinstance(source, (str, Path)):
        splits = spec_boundaries(LabelSpec(cutoff=when, long_days=long_days)) if when is not None else ()
        source = load_log(spark, str(source), splits=splits, artists=artists).days
    table = build_scoring_table(source, when, artists=artists, long_days=long_days)
    return score_table(spark, table, model_dir)


def _feature_columns(scores) -> list[tuple[str, str]]:
    """(name, kind) of the columns ``score_table`` marked as model inputs, in order."""
    out = []
    for f in scores.schema.fields:
        kind = (f.metadata or {}).get(FEATURE_COLUMN_KEY)
        if kind and f.name != "userId":
            out.append((f.name, str(kind)))
    return out


def _rows_table(pdf, features: list[tuple[str, str]]):
    """The feature rows as a pyarrow Table with explicit types: userId string, numeric
    features double, categorical features string (nulls kept)."""
    import pyarrow as pa

    fields = [pa.field("userId", pa.string())]
    fields += [pa.field(name, pa.float64() if kind == "numeric" else pa.string()) for name, kind in features]
    columns = [pdf["userId"].astype(str)]
    for name, kind in features:
        col = pdf[name]
        columns.append(col.astype("float64") if kind == "numeric"
                       else col.map(lambda v: None if v is None or v != v else str(v)))
    arrays = [pa.array(c.tolist(), type=f.type) for c, f in zip(columns, fields)]
    meta = {b"sparkify.features": json.dumps([{"name": n, "kind": k} for n, k in features]).encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


class NoActiveUsers(ValueError):
    """No user to score at the time asked for (:func:`write_scores` with ``refuse_empty``)."""


def write_scores(scores, out: str | Path, refuse_empty: bool = False):
    """Write a scored DataFrame to one CSV or Parquet file (by extension), ranked, and the
    scored feature rows beside it.

    ``out`` gets every column but the model's feature columns (``OUTPUT_COLUMNS`` for
    ``score_table``'s output). When ``scores`` carries feature columns (marked by
    ``score_table`` with ``FEATURE_COLUMN_KEY``), ``rows_path(out)`` (``scores.csv`` ->
    ``scores.rows.parquet``) gets [userId, <features>] in the same rank order: numeric
    features as doubles, categorical ones as strings, the values the model scored. Both
    files are written to temporary siblings and renamed into place, the rows file first,
    so a reader that sees the new scores file also finds its rows. Without feature columns,
    a rows file left by an earlier run is removed (it would not match the new scores).

    The CSV is a data file read back by the web app and other programs: its cells are
    written as they are, never prefixed against spreadsheet formula injection (the web
    app's ``/at-risk.csv`` download for people is neutralised instead).

    The result has one row per user (tens of thousands at most), so the driver writes
    single files the web app can read. Returns the ranked rows (without the feature
    columns) as a pandas DataFrame. ``refuse_empty``: raise :class:`NoActiveUsers`, and
    write nothing, when there is no row (an empty list would replace the one in use)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, not {out.name!r}")
    features = _feature_columns(scores)
    pdf = scores.orderBy("rank").toPandas()
    if refuse_empty and pdf.empty:
        raise NoActiveUsers("no user is subscribed and active in the feature window before the scoring time")
    names = [name for name, _ in features]
    ranked = pdf.drop(columns=names)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows_out = rows_path(out)
    rows_tmp = rows_out.with_name(f".{rows_out.name}.tmp")
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if features:
            import pyarrow.parquet as pq

            pq.write_table(_rows_table(pdf, features), rows_tmp)
        if suffix == ".csv":
            ranked.to_csv(tmp, index=False)
        else:
            ranked.to_parquet(tmp, index=False)
        if features:
            rows_tmp.replace(rows_out)
        else:
            rows_out.unlink(missing_ok=True)
        tmp.replace(out)
    finally:
        rows_tmp.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return ranked
