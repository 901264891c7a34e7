"""What the exact set-valued aggregates cost in the one-pass loader.

    .venv/bin/python benchmarks/loader_variants.py LOG [--variants scan,numeric,exact]

Runs variants of the loader's single aggregation over the raw JSON ``LOG`` and prints wall
and JVM CPU seconds for each (every result ends in ``write.format("noop")``):

* ``scan``: the bare parse (18 columns, explicit schema); ``text12``: the lines read as
  text, then ``from_json`` on 12 of them;
* ``numeric``: the pass's keys and numeric aggregates only (no artist set, no duplicate
  check): Spark's code-generated hash aggregation; ``numeric_bitmap``: plus the item
  bitmap of the duplicate check;
* ``artists``: numeric plus the artist set (Spark's object hash aggregation);
  ``bitmap``: artists plus the item bitmap;
* ``pass``: the pass as ``sparkify.dataset.load_log`` runs it, without the quality job,
  the late read of the text attributes and the features; ``exact``: the same with the opt-in artist sets;
* ``pipeline``: what ``benchmarks/scale.py``'s ``features_raw`` stage times (``load_log``
  + ``build_user_table``); ``pipeline_artists``: the same with the opt-in artist features
  (``features_raw_artists``): what the exact distinct-artist count costs;
* ``scan12`` / ``scan13``: the bare parse of the columns the pass reads without / with
  the artist features (the denominators in ``benchmarks/scale.py``).

``--java-options`` adds driver JVM options (e.g. ``-XX:+UseParallelGC``).
Each variant runs once, in the order given; put ``scan`` first and again last to see how
much the machine's speed drifted.
"""

from __future__ import annotations

import argparse
import time

import psutil


def jvm_cpu_seconds() -> float:
    """User + system CPU seconds of this process's children (the local JVM)."""
    return sum(sum(c.cpu_times()[:2]) for c in psutil.Process().children(recursive=True))


def variant_frame(spark, path: str, name: str):
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    from sparkify.rawlog import RAW_FIELDS, read_raw
    from sparkify.session_days import one_pass_partials, partial_aggregates, partial_key_columns

    if name == "scan":
        return spark.read.schema(StructType(RAW_FIELDS)).json(path)
    if name in ("scan12", "scan13"):
        from sparkify.rawlog import pass_schema

        return spark.read.schema(pass_schema(artists=name == "scan13", corrupt=False)).json(path)
    if name == "text12":
        used = {"ts", "userId", "sessionId", "page", "auth", "level", "itemInSession", "location",
                "userAgent", "registration", "gender", "artist"}
        schema = StructType([f for f in RAW_FIELDS if f.name in used])
        return spark.read.text(path).select("value", F.from_json("value", schema).alias("e")).select("value", "e.*")
    raw = read_raw(spark, path)
    if name in ("pass", "exact"):
        from sparkify.session_days import number_rows, pointer_schema

        artists = name == "exact"
        return one_pass_partials(number_rows(read_raw(spark, path, pointer_schema(artists))), (), artists)
    if name == "numeric":
        return raw.groupBy(F.col("_corrupt_record"), *partial_key_columns(())).agg(
            *partial_aggregates(artists=False))
    if name == "artists":
        return raw.groupBy(F.col("_corrupt_record"), *partial_key_columns(())).agg(
            *partial_aggregates(artists=True))
    if name in ("bitmap", "numeric_bitmap"):
        from sparkify.session_days import _item_repeat_aggregates

        return raw.groupBy(F.col("_corrupt_record"), *partial_key_columns(())).agg(
            *partial_aggregates(artists=name == "bitmap"), *_item_repeat_aggregates("true"))
    raise SystemExit(f"unknown variant {name!r}: use scan, scan12, scan13, text12, numeric, numeric_bitmap, "
                     "artists, bitmap, pass, exact, pipeline or pipeline_artists")


def run_pipeline(spark, path: str, artists: bool = False) -> None:
    """load_log + build_user_table (with the opt-in artist features if ``artists``), the
    table written to the noop sink."""
    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, build_user_table

    with load_log(spark, path, artists=artists) as loaded:
        table, _ = build_user_table(loaded.days, LabelSpec())
        table.write.format("noop").mode("overwrite").save()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="a raw JSON event log")
    parser.add_argument("--variants", default="scan,numeric,exact,scan")
    parser.add_argument("--java-options", default="", help="extra driver JVM options (e.g. a GC)")
    args = parser.parse_args(argv)

    from sparkify.spark import get_spark

    extra = {"spark.driver.extraJavaOptions": f"-Duser.timezone=UTC {args.java_options}"} if args.java_options else None
    spark = get_spark(app_name="sparkify-loader-variants", extra_conf=extra)
    try:
        for name in (n.strip() for n in args.variants.split(",")):
            df = None if name in ("pipeline", "pipeline_artists") else variant_frame(spark, args.log, name)
            t0, c0 = time.perf_counter(), jvm_cpu_seconds()
            if df is None:
                run_pipeline(spark, args.log, artists=name == "pipeline_artists")
            else:
                df.write.format("noop").mode("overwrite").save()
            print(f"{name:10s} {time.perf_counter() - t0:8.1f} s  {jvm_cpu_seconds() - c0:8.1f} CPU s",
                  flush=True)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
