"""The single-node yardstick: the same per-user aggregation in DuckDB, in one pass.

It computes the seed-style feature set of ``benchmarks/baseline_seed.py`` (same columns,
same values) with one ``GROUP BY userId`` over ``read_json`` of the raw log with explicit
columns (no inference), using every core. Kept in ``benchmarks/`` only: it shows what one
machine does without Spark, and so where Spark's scale-out starts to pay.

Run alone: ``python benchmarks/duckdb_features.py EVENTS`` (prints users, seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

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

# The same page -> column mapping as the seed-style baseline, so both build one table.
from baseline_seed import PAGE_COUNTS  # noqa: E402


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
    per user, the seed-style features (same columns as ``baseline_seed.seed_style_user_table``)."""
    con = con or connect()
    return con.execute(user_table_sql(path)).fetch_df()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="raw JSON event log (file or glob)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if not any(ch in args.events for ch in "*?[") and not os.path.exists(args.events):
        print(f"duckdb_features: error: no such file: {args.events}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    table = duckdb_user_table(args.events, connect(args.threads))
    print(f"duckdb: {len(table)} users, {len(table.columns)} columns, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
