"""The yardsticks our loader is compared with: the seed-style notebook approach in Spark,
and the same per-user aggregation in DuckDB. Kept in ``benchmarks/`` only.

**Seed-style baseline** (:func:`seed_style_user_table`; issue 6's "seed-style baseline vs
ours"). It reproduces the typical Sparkify notebooks' *approach*, not their leakage:

- ``spark.read.json(path)`` with schema inference (a full extra pass over the file);
- user rows by ``userId != ""``;
- one ``filter -> groupBy("userId") -> agg`` and one ``join`` per feature, each a separate
  scan of the raw JSON (no cache, as in the notebooks);
- label: the user ever reached "Cancellation Confirmation" (the seed's label).

To be a *conservative* baseline it uses built-in functions only (the notebooks' Python
UDFs for flags and timestamp conversions would make it slower still) and left joins
onto the user list instead of the notebooks' outer joins plus ``fillna``.

**DuckDB** (:func:`duckdb_user_table`): the single-node yardstick. The same feature set
(same columns, same values) with one ``GROUP BY userId`` over ``read_json`` of the raw log
with explicit columns (no inference), using every core: what one machine does without
Spark, and so where Spark's scale-out starts to pay.

``python benchmarks/features.py baseline|duckdb --log EVENTS`` runs either alone.
"""

from __future__ import annotations

import os
import time

from .common import get_bench_spark, noop, resolve_log

# page -> feature column: each is counted with its own filter + groupBy + join
PAGE_COUNTS = {
    "NextSong": "n_songs",
    "Thumbs Up": "n_thumbs_up",
    "Thumbs Down": "n_thumbs_down",
    "Add to Playlist": "n_add_playlist",
    "Add Friend": "n_add_friend",
    "Roll Advert": "n_roll_advert",
    "Error": "n_errors",
    "Help": "n_help",
    "Settings": "n_settings",
    "Upgrade": "n_upgrade_page",
    "Downgrade": "n_downgrade_page",
}


def seed_style_user_table(spark, path: str):
    """In: a SparkSession and the raw JSON log's path. Out: a lazy DataFrame, one row per
    user (userId, churn, gender, paid, 11 page counts, sessions, songs per session,
    distinct artists, listening hours, lifetime days), built the notebooks' way."""
    from pyspark.sql import functions as F

    df = spark.read.json(path)  # schema inference: one full pass over the file
    df = df.filter(F.col("userId") != "")

    users = df.select("userId").dropDuplicates()

    churn = (df.filter(F.col("page") == "Cancellation Confirmation")
             .groupBy("userId").agg(F.lit(1).alias("churn")))
    table = users.join(churn, "userId", "left")

    gender = (df.select("userId", "gender").dropDuplicates()
              .withColumn("gender", F.when(F.col("gender") == "M", 1).otherwise(0)))
    table = table.join(gender, "userId", "left")

    paid = (df.select("userId", "level").dropDuplicates()
            .withColumn("paid", F.when(F.col("level") == "paid", 1).otherwise(0))
            .groupBy("userId").agg(F.max("paid").alias("paid")))
    table = table.join(paid, "userId", "left")

    for page, name in PAGE_COUNTS.items():
        counts = df.filter(F.col("page") == page).groupBy("userId").agg(F.count("*").alias(name))
        table = table.join(counts, "userId", "left")

    sessions = df.select("userId", "sessionId").dropDuplicates().groupBy("userId") \
        .agg(F.count("*").alias("n_sessions"))
    table = table.join(sessions, "userId", "left")

    per_session = (df.filter(F.col("page") == "NextSong").groupBy("userId", "sessionId").count()
                   .groupBy("userId").agg(F.avg("count").alias("songs_per_session")))
    table = table.join(per_session, "userId", "left")

    artists = (df.filter(F.col("page") == "NextSong").select("userId", "artist").dropDuplicates()
               .groupBy("userId").agg(F.count("*").alias("n_artists")))
    table = table.join(artists, "userId", "left")

    hours = (df.filter(F.col("page") == "NextSong").groupBy("userId")
             .agg((F.sum("length") / 3600).alias("listening_hours")))
    table = table.join(hours, "userId", "left")

    lifetime = (df.groupBy("userId")
                .agg(((F.max("ts") - F.min("registration")) / 86_400_000).alias("lifetime_days")))
    table = table.join(lifetime, "userId", "left")

    return table.fillna(0)



# ------------------------------------------------------------------ DuckDB
# Only the fields the aggregation needs; missing keys read as NULL.
COLUMNS = {
    "ts": "BIGINT",
    "userId": "VARCHAR",
    "sessionId": "BIGINT",
    "page": "VARCHAR",
    "level": "VARCHAR",
    "gender": "VARCHAR",
    "registration": "BIGINT",
    "artist": "VARCHAR",
    "length": "DOUBLE",
}

def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def user_table_sql(path: str) -> str:
    """In: the raw log's path or glob. Out: the one-pass SQL of the per-user table."""
    columns = "{" + ", ".join(f"{_sql_str(k)}: {_sql_str(v)}" for k, v in COLUMNS.items()) + "}"
    counts = ",\n  ".join(
        f"count(*) FILTER (WHERE page = {_sql_str(page)}) AS {name}" for page, name in PAGE_COUNTS.items()
    )
    return f"""
SELECT
  userId,
  max(CASE WHEN page = 'Cancellation Confirmation' THEN 1 ELSE 0 END) AS churn,
  max(CASE WHEN gender = 'M' THEN 1 ELSE 0 END) AS gender,
  max(CASE WHEN level = 'paid' THEN 1 ELSE 0 END) AS paid,
  {counts},
  count(DISTINCT sessionId) AS n_sessions,
  coalesce(count(*) FILTER (WHERE page = 'NextSong')
           / nullif(count(DISTINCT sessionId) FILTER (WHERE page = 'NextSong'), 0), 0) AS songs_per_session,
  count(DISTINCT artist) FILTER (WHERE page = 'NextSong') AS n_artists,
  coalesce(sum(length) FILTER (WHERE page = 'NextSong') / 3600, 0) AS listening_hours,
  coalesce((max(ts) - min(registration)) / 86400000, 0) AS lifetime_days
FROM read_json({_sql_str(str(path))}, format = 'newline_delimited', columns = {columns},
               ignore_errors = true, maximum_object_size = 1048576)
WHERE userId IS NOT NULL AND userId <> ''
GROUP BY userId
"""


def connect(threads: int | None = None, memory_limit: str | None = None, temp_dir: str | None = None):
    """In: threads (default: all cores), a memory limit (default: half the machine, <= 16 GB),
    a spill directory. Out: an in-memory DuckDB connection configured for one big aggregation."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads or os.cpu_count() or 2)}")
    if memory_limit is None:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory_limit = f"{max(1, min(16, int(total / 2**30 / 2)))}GB"
    con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
    con.execute("SET preserve_insertion_order = false")
    if temp_dir:
        con.execute(f"SET temp_directory = {_sql_str(str(temp_dir))}")
    return con


def duckdb_user_table(path: str, con=None):
    """In: the raw log's path (and optionally a connection). Out: a pandas DataFrame, one row
    per user, the seed-style features (same columns as :func:`seed_style_user_table`)."""
    con = con or connect()
    return con.execute(user_table_sql(path)).fetch_df()


def run_baseline(args) -> int:
    """``features.py baseline``: the seed-style table of one log, timed (prints columns, seconds)."""
    path, _, _ = resolve_log(args)
    spark = get_bench_spark("sparkify-baseline-seed")
    start = time.perf_counter()
    table = seed_style_user_table(spark, str(path))
    noop(table)
    seconds = time.perf_counter() - start
    print(f"seed-style baseline: {len(table.columns)} columns, {seconds:.1f} s")
    spark.stop()
    return 0


def run_duckdb(args) -> int:
    """``features.py duckdb``: the DuckDB table of one log, timed (prints users, columns, seconds)."""
    path, _, _ = resolve_log(args)
    start = time.perf_counter()
    table = duckdb_user_table(str(path), connect(args.threads))
    print(f"duckdb: {len(table)} users, {len(table.columns)} columns, {time.perf_counter() - start:.1f} s")
    return 0
