"""Batch scoring: every active user's churn probability, decision and rank.

In:  an event log (path or cleaned events DataFrame) and a model directory.
Out: a Spark DataFrame [userId, probability, score, decision, rank, top_features],
     highest risk first (rank 1), one row per user still active at ``as_of``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sparkify.modeling.artifacts import PIPELINE_DIR, load_model_json

OUTPUT_COLUMNS = ["userId", "probability", "score", "decision", "rank", "top_features"]


def _feature_lists(meta: dict) -> tuple[list[str], list[str]]:
    numeric = [f["name"] for f in meta["features"] if f["kind"] == "numeric"]
    categorical = [f["name"] for f in meta["features"] if f["kind"] == "categorical"]
    return numeric, categorical


def _top_features_expr(meta: dict, k: int = 3):
    """A Column naming, per user, the ``k`` numeric inputs furthest above their training
    median in units of the training p01-p99 range, among the model's 10 most important
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

    Out: DataFrame [userId, probability, score, decision, rank, top_features]."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from sparkify.modeling.train import prepare_table

    model_dir = Path(model_dir)
    meta = load_model_json(model_dir)
    numeric, categorical = _feature_lists(meta)
    prepared = prepare_table(table, numeric, categorical)
    model = PipelineModel.load(str(model_dir / PIPELINE_DIR))
    scored = model.transform(prepared)
    if meta["score_kind"] == "margin":
        score = vector_to_array(F.col("rawPrediction")).getItem(1)
        cal = meta.get("calibration") or {"a": -1.0, "b": 0.0}
        probability = 1.0 / (1.0 + F.exp(F.lit(float(cal["a"])) * score + F.lit(float(cal["b"]))))
    else:
        score = vector_to_array(F.col("probability")).getItem(1)
        probability = score
    out = (scored.select("userId", *numeric, score.alias("score"), probability.alias("probability"))
           .withColumn("decision", (F.col("score") > F.lit(float(meta["threshold"]))).cast("int"))
           .withColumn("top_features", _top_features_expr(meta)))
    # the ranking window sees one row per user (small), never events
    w = Window.orderBy(F.col("score").desc(), F.col("userId"))
    return out.withColumn("rank", F.row_number().over(w)).select(*OUTPUT_COLUMNS)


def score_users(spark, events_path_or_df, model_dir: str | Path, as_of: datetime | str | None = None):
    """Every user still active at ``as_of`` (default: the log's end), scored and ranked.

    In:  a SparkSession; an event log path (anything ``load_events`` reads) or a DataFrame
         of cleaned events; a model directory written by ``train``; ``as_of`` (datetime
         or ISO text, UTC) - features use only events before it, and users who cancelled
         before it are left out.
    Out: Spark DataFrame [userId, probability (P(churn), calibrated for margin models),
         score (what the threshold applies to), decision (1 = flagged), rank (1 = highest
         risk), top_features]. The caller owns the cleaned events' cache when it passes a
         DataFrame; a path is loaded here (its cache is kept until the DataFrame is used).
    """
    from sparkify.dataset import load_events
    from sparkify.features import build_scoring_table, parse_time, uses_artists

    meta = load_model_json(Path(model_dir))
    if isinstance(events_path_or_df, (str, Path)):
        events = load_events(spark, str(events_path_or_df)).events
    else:
        events = events_path_or_df
    when = parse_time(as_of) if as_of is not None else None
    observation = (meta.get("label") or {}).get("observation_days")
    artists = uses_artists([f["name"] for f in meta["features"]])
    table = build_scoring_table(events, when, observation_days=observation, artists=artists)
    return score_table(spark, table, model_dir)


def write_scores(scores, out: str | Path):
    """Write a scored DataFrame to one CSV or Parquet file (by extension), ranked.

    The result has one row per user (tens of thousands at most), so the driver writes
    a single file the web app can read. Returns the written rows as a pandas DataFrame."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"--out must end in .csv or .parquet, not {out.name!r}")
    pdf = scores.orderBy("rank").toPandas()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if suffix == ".csv":
        pdf.to_csv(tmp, index=False)
    else:
        pdf.to_parquet(tmp, index=False)
    tmp.replace(out)
    return pdf
