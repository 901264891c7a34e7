"""The seed-style baseline: per-user features the way typical Sparkify notebooks build them.

Kept in ``benchmarks/`` only, as the yardstick for issue 6 ("seed-style baseline vs ours").
It reproduces the notebooks' *approach*, not their leakage:

- ``spark.read.json(path)`` with schema inference (a full extra pass over the file);
- user rows by ``userId != ""``;
- one ``filter -> groupBy("userId") -> agg`` and one ``join`` per feature, each a separate
  scan of the raw JSON (no cache, as in the notebooks);
- label: the user ever reached "Cancellation Confirmation" (the seed's label).

To be a *conservative* baseline it uses built-in functions only (the notebooks' Python
UDFs for flags and timestamp conversions would make it slower still) and left joins
onto the user list instead of the notebooks' outer joins plus ``fillna``.

Run alone: ``python benchmarks/baseline_seed.py EVENTS`` (prints rows, columns, seconds).
"""

from __future__ import annotations

import argparse
import sys
import time

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="raw JSON event log (file, directory or glob)")
    args = parser.parse_args(argv)
    from sparkify.spark import get_spark

    spark = get_spark(app_name="sparkify-baseline-seed")
    start = time.perf_counter()
    table = seed_style_user_table(spark, args.events)
    table.write.format("noop").mode("overwrite").save()
    seconds = time.perf_counter() - start
    print(f"seed-style baseline: {len(table.columns)} columns, {seconds:.1f} s")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
