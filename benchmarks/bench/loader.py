"""The loader measured two ways (``python benchmarks/features.py steps|variants``).

* :func:`run_steps`: load and features timed apart with the event path
  (``sparkify.dataset.load_events``), against bare scans of the same log (best of
  ``--repeat``): ``scan`` (the 18 raw columns, explicit schema, no corrupt-record column,
  ``noop`` sink), ``scan_features`` (only the columns the features read), ``load`` (parse,
  classify, quarantine count, dedup, cache, quality summary), ``features``
  (``build_user_table``, prediction-time labels, materialised), ``load+features`` and its
  ratio to ``scan`` (issue 6 target: <= 1.5x); with ``--parquet``: ``ingest`` to Parquet,
  then load + features from it. Wall and JVM CPU seconds (in local mode the JVM is all of
  Spark; on a shared machine CPU time is the fairer comparison), the data-quality summary;
  ``--json FILE`` also writes the figures.
* :func:`run_variants`: what the exact set-valued aggregates cost in the one pass: variants
  of its single aggregation over the raw JSON, wall and JVM CPU seconds each (every result
  ends in ``write.format("noop")``), run once each in the order given (put ``scan`` first
  and again last to see how much the machine's speed drifted):

  - ``scan``: the bare parse (18 columns, explicit schema); ``text12``: the lines read as
    text, then ``from_json`` on 12 of them;
  - ``numeric``: the pass's keys and numeric aggregates only (no artist set, no duplicate
    check): Spark's code-generated hash aggregation; ``numeric_bitmap``: plus the item
    bitmap of the duplicate check;
  - ``artists``: numeric plus the artist set (Spark's object hash aggregation);
    ``bitmap``: artists plus the item bitmap;
  - ``pass``: the pass as ``load_log`` runs it, without the quality job and the
    features; ``exact``: the same with the opt-in artist sets;
  - ``pipeline``: the ``features_raw`` stage of :mod:`bench.scale` (``load_log`` +
    ``build_user_table``); ``pipeline_artists``: the same with the opt-in artist features
    (``features_raw_artists``): what the exact distinct-artist count costs;
  - ``scan12`` / ``scan13``: the bare parse of the columns the pass reads without / with
    the artist features (the denominators in :mod:`bench.scale`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .common import (
    cpu_seconds,
    get_bench_spark,
    markdown_table,
    noop,
    resolve_log,
    scratch_dir,
)
from .scale import stage_features


# ------------------------------------------------------------------ steps: load and features apart
def timed(fn, repeat: int, cpu) -> tuple[float, float | None, object]:
    """(best wall seconds, JVM CPU seconds of that run, result) over ``repeat`` runs."""
    best, best_cpu, result = float("inf"), None, None
    for _ in range(repeat):
        c0 = cpu()
        t0 = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - t0
        c1 = cpu()
        if wall < best:
            best, best_cpu = wall, (c1 - c0 if c0 is not None and c1 is not None else None)
    return best, best_cpu, result


def run_steps(args) -> int:
    """``features.py steps``: scans, load, features, load+features (and from Parquet)."""
    from pyspark.sql.types import StructType

    from sparkify.dataset import load_events
    from sparkify.features import LabelSpec, build_user_table
    from sparkify.rawlog import RAW_FIELDS

    log, _, _ = resolve_log(args)
    path = str(log)
    spark = get_bench_spark("sparkify-bench-features", master=args.master)
    local = spark.sparkContext.master.startswith("local")

    def cpu() -> float | None:
        """CPU seconds of the driver JVM (= all of Spark in local mode); None otherwise."""
        return cpu_seconds(own=False) if local else None

    size = sum(f.stat().st_size for f in Path(path).parent.glob(Path(path).name)) if "://" not in path else 0
    if Path(path).is_dir():
        size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    needed = ("ts", "userId", "sessionId", "page", "auth", "level", "itemInSession", "location",
              "userAgent", "registration", "gender", "artist")
    full_schema = StructType(RAW_FIELDS)
    feat_schema = StructType([f for f in RAW_FIELDS if f.name in needed])

    def scan(schema):
        return lambda: noop(spark.read.schema(schema).json(path))

    rows: list[tuple[str, float, float | None, str]] = []
    spark.read.text(path).count()  # warm the OS file cache (and the JIT) so every stage starts equal
    t_scan, c_scan, _ = timed(scan(full_schema), args.repeat, cpu)
    rows.append(("scan (18 raw columns)", t_scan, c_scan, "bare Spark JSON scan, explicit schema, noop sink"))
    t_scan_f, c_scan_f, _ = timed(scan(feat_schema), args.repeat, cpu)
    rows.append(("scan (feature columns)", t_scan_f, c_scan_f, f"{len(needed)} columns the features read"))

    quality = spec = None
    best = None
    users = 0
    for _ in range(args.repeat):
        c0 = cpu()
        t0 = time.perf_counter()
        loaded = load_events(spark, path)
        c1, t1 = cpu(), time.perf_counter()
        table, spec = build_user_table(loaded.events, LabelSpec())
        users = table.cache().count()
        c2, t2 = cpu(), time.perf_counter()
        table.unpersist()
        quality = loaded.quality
        loaded.unpersist()
        run_cpu = (c1 - c0, c2 - c1) if c0 is not None else (None, None)
        if best is None or (t2 - t0) < best[0] + best[1]:
            best = (t1 - t0, t2 - t1, *run_cpu)
    t_load, t_feat, c_load, c_feat = best
    c_total = c_load + c_feat if c_load is not None else None
    rows.append(("load", t_load, c_load, "parse + classify + dedup + cache + quality"))
    cutoff = f", cutoff {spec.cutoff:%Y-%m-%d}" if spec.cutoff else ""
    rows.append(("features", t_feat, c_feat, f"build_user_table, {users:,} users{cutoff}"))
    ratio_cpu = f", CPU {c_total / c_scan:.2f} x" if c_total and c_scan else ""
    rows.append(("load+features", t_load + t_feat, c_total,
                 f"wall {(t_load + t_feat) / t_scan:.2f} x scan{ratio_cpu} (target <= 1.5x)"))

    if args.parquet:
        from sparkify.dataset import ingest

        with scratch_dir("sparkify_bench_ingest_") as tmp:
            out = str(tmp / "events.parquet")
            t_ing, c_ing, _ = timed(lambda: ingest(spark, path, out), 1, cpu)
            rows.append(("ingest -> Parquet", t_ing, c_ing, "a temporary directory, deleted afterwards"))

            def from_parquet():
                with load_events(spark, out) as loaded:
                    table, _ = build_user_table(loaded.events, LabelSpec())
                    return table.count()

            t_pq, c_pq, _ = timed(from_parquet, args.repeat, cpu)
            rows.append(("load+features (Parquet)", t_pq, c_pq, f"wall {t_pq / t_scan:.2f} x raw scan"))

    cores = os.cpu_count()
    print()
    print(f"log: {path}  ({size / 1e6:,.1f} MB, {quality.rows_read:,} rows, {quality.users:,} users)"
          f"  master: {spark.sparkContext.master}  cores: {cores}")
    print("\n".join(markdown_table(["stage", "wall s", "JVM cpu s", "note"], [
        [name, f"{secs:.2f}", "-" if cpu_s is None else f"{cpu_s:.2f}", note] for name, secs, cpu_s, note in rows
    ], "lrrl")))
    print()
    print(quality.summary())
    if args.json:
        Path(args.json).write_text(json.dumps({
            "log": path, "bytes": size, "master": spark.sparkContext.master, "cores": cores,
            "stages": {name: {"wall_s": round(secs, 3), "cpu_s": None if c is None else round(c, 3)}
                       for name, secs, c, _ in rows},
            "ratio_load_features_to_scan": round((t_load + t_feat) / t_scan, 3),
            "ratio_cpu": round(c_total / c_scan, 3) if c_total and c_scan else None,
            "quality": quality.to_dict(),
        }, indent=2) + "\n")
    spark.stop()
    return 0


# ------------------------------------------------------------------ variants of the pass's aggregation
VARIANTS = ("scan", "scan12", "scan13", "text12", "numeric", "numeric_bitmap", "artists", "bitmap", "pass",
            "exact", "pipeline", "pipeline_artists")


def variant_frame(spark, path: str, name: str):
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    from sparkify.rawlog import RAW_FIELDS, pass_schema, read_raw
    from sparkify.session_days import one_pass_partials, partial_aggregates, partial_key_columns

    if name == "scan":
        return spark.read.schema(StructType(RAW_FIELDS)).json(path)
    if name in ("scan12", "scan13"):
        return spark.read.schema(pass_schema(artists=name == "scan13", corrupt=False)).json(path)
    if name == "text12":
        used = {"ts", "userId", "sessionId", "page", "auth", "level", "itemInSession", "location",
                "userAgent", "registration", "gender", "artist"}
        schema = StructType([f for f in RAW_FIELDS if f.name in used])
        return spark.read.text(path).select("value", F.from_json("value", schema).alias("e")).select("value", "e.*")
    raw = read_raw(spark, path)
    if name in ("pass", "exact"):
        artists = name == "exact"
        return one_pass_partials(read_raw(spark, path, pass_schema(artists)), (), artists)
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
    raise SystemExit(f"unknown variant {name!r}: use {', '.join(VARIANTS)}")


def run_variants(args) -> int:
    """``features.py variants``: each variant once, in the order given: wall and JVM CPU seconds."""
    log, _, _ = resolve_log(args)
    extra = {"spark.driver.extraJavaOptions": f"-Duser.timezone=UTC {args.java_options}"} if args.java_options else None
    spark = get_bench_spark("sparkify-loader-variants", extra=extra)
    try:
        for name in (n.strip() for n in args.variants.split(",")):
            df = None if name in ("pipeline", "pipeline_artists") else variant_frame(spark, str(log), name)
            t0, c0 = time.perf_counter(), cpu_seconds(own=False)
            if df is None:
                stage_features(spark, str(log), artists=name == "pipeline_artists")
            else:
                noop(df)
            print(f"{name:10s} {time.perf_counter() - t0:8.1f} s  {cpu_seconds(own=False) - c0:8.1f} CPU s",
                  flush=True)
    finally:
        spark.stop()
    return 0
