"""Load + features: our one-pass loader against a bare scan and the yardsticks.

    .venv/bin/python benchmarks/features.py scale --preset full --stages scan,features_raw
    .venv/bin/python benchmarks/features.py variants --log LOG --variants scan,numeric,exact,scan
    .venv/bin/python benchmarks/features.py steps --preset mini --parquet
    .venv/bin/python benchmarks/features.py baseline --preset mini
    .venv/bin/python benchmarks/features.py duckdb --preset mini

A log is ``--preset mini|medium|full`` or ``--users N`` (simulated once into the cache,
$SPARKIFY_BENCH_DIR, default /tmp/sparkify-bench, and reused) or ``--log PATH`` (a file,
directory or glob). Subcommands (``--help`` on each; the code is in ``bench/``):

* ``scale`` (``bench/scale.py``): issue 6's stages on one log, in one JVM: the bare scan
  and our load + clean + features in turns (``--repeats``, median of each and every pair's
  ratio), the same with the artist features, ingest to Parquet and features from it,
  DuckDB, the whole training pipeline, the seed-style baseline; writes
  /tmp/sparkify-bench/scale-results.md after every stage;
* ``variants`` (``bench/loader.py``): variants of the pass's aggregation (numeric only,
  artist sets, item bitmaps, the pass, the pipeline, bare scans), once each;
* ``steps`` (``bench/loader.py``): load and features timed apart on the event path, against
  scans of the 18 raw columns and of the feature columns (best of ``--repeat``);
* ``baseline`` / ``duckdb`` (``bench/yardsticks.py``): one yardstick alone on a log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import loader, scale, yardsticks
from bench.common import add_log_args, run_subcommand


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scale", help="every stage on a large log, in one JVM; writes a results file")
    add_log_args(s, default_preset="full")
    s.add_argument("--stages", default=",".join(scale.STAGES), help="comma list of: " + ", ".join(scale.STAGES))
    s.add_argument("--repeats", type=int, default=3,
                   help="run each bare scan and our raw-JSON features in turn this many times and "
                        "report the median of each (default 3)")
    s.add_argument("--baseline-timeout", type=float, default=None,
                   help="stop the seed-style baseline after this many seconds "
                        "(default: 7 x our slower features_raw time, at least 120 s)")
    s.add_argument("--driver-memory", default=None,
                   help="spark.driver.memory (default: Sparkify's own choice, half the machine, <= 16g)")
    s.add_argument("--quick-train", action="store_true", help="train with TrainConfig.fast() (smoke runs)")
    s.add_argument("--train-from", choices=("raw", "parquet"), default="raw",
                   help="train on the raw JSON (default: the whole pipeline, one pass into "
                        "session-day rows) or on the ingested Parquet")
    s.add_argument("--results", type=Path, default=None,
                   help="where the run's figures are written after every stage (default: BENCH_DIR/"
                        "scale-results.md; benchmarks/RESULTS.md holds the curated current figures)")
    s.add_argument("--no-results", action="store_true", help="print only; do not write the results file")
    s.add_argument("--note", action="append", default=[], help="a line for the Notes section")
    s.set_defaults(run=scale.run_scale)

    v = sub.add_parser("variants", help="variants of the pass's aggregation, once each")
    add_log_args(v)
    v.add_argument("--variants", default="scan,numeric,exact,scan",
                   help="comma list, in order, of: " + ", ".join(loader.VARIANTS))
    v.add_argument("--java-options", default="", help="extra driver JVM options (e.g. -XX:+UseParallelGC)")
    v.set_defaults(run=loader.run_variants)

    st = sub.add_parser("steps", help="load and features timed apart (event path) against bare scans")
    add_log_args(st)
    st.add_argument("--master", default=None, help="Spark master (default local[*])")
    st.add_argument("--repeat", type=int, default=1, help="runs per stage, best kept (default 1)")
    st.add_argument("--parquet", action="store_true", help="also time ingest and load+features from Parquet")
    st.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    st.set_defaults(run=loader.run_steps)

    b = sub.add_parser("baseline", help="the seed-style baseline alone (prints columns, seconds)")
    add_log_args(b)
    b.set_defaults(run=yardsticks.run_baseline)

    d = sub.add_parser("duckdb", help="the DuckDB yardstick alone (prints users, columns, seconds)")
    add_log_args(d)
    d.add_argument("--threads", type=int, default=None)
    d.set_defaults(run=yardsticks.run_duckdb)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
