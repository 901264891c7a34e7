"""What each speed option of the one-pass loader saves, measured in turns (issue 20).

    .venv/bin/python benchmarks/tricks.py --preset full          # the 12 GB log (cached)
    .venv/bin/python benchmarks/tricks.py --users 2000 --rounds 2  # a quick try

Each run is ``sparkify.dataset.load_log`` + ``sparkify.features.build_user_table`` on the
raw JSON, ending in a ``noop`` write (the ``features_raw`` stage of ``benchmarks/scale.py``),
with ``sparkify.dataset.PassOptions`` at its defaults (``all``) or with one option off
(``-packed_counters``, ``-row_pointers``, ``-sql_text``, ``-uncompressed_cache``).
One JVM; a warm-up run of ``all`` first (not counted); then ``--rounds`` rounds, each
running every variant once, the order rotated from round to round. A variant's ratio in
a round is its time over the ``all`` run of the same round; the verdict uses the median
ratio: an option is worth keeping when turning it off costs >= 10 % of the step.

Out: the table on stdout and in ``--results`` (default
/tmp/sparkify-bench/tricks-results.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import statistics
import sys
from dataclasses import fields
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scale import DEFAULT_BENCH_DIR, Bench, MemorySampler, _noop, ensure_log, log_path  # noqa: E402

KEEP_THRESHOLD = 0.10


def run_variant(spark, raw: str, options) -> dict:
    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, build_user_table

    with load_log(spark, raw, options=options) as loaded:
        table, _ = build_user_table(loaded.days, LabelSpec())
        _noop(table)
        return {"users": loaded.quality.users, "rows_read": loaded.quality.rows_read}


def variants() -> dict[str, object]:
    """{name: PassOptions}: the defaults, then each option off alone."""
    from sparkify.dataset import PassOptions

    out = {"all": PassOptions()}
    for f in fields(PassOptions):
        out[f"-{f.name}"] = PassOptions(**{f.name: False})
    return out


def render(runs: dict[str, list[float]], command: str, data: dict, started: str) -> str:
    names = [n for n in runs if n != "all"]
    base = runs["all"]
    lines = [f"# One-pass loader options, in turns ({started} UTC)", "",
             f"Log: {data.get('path')} ({data.get('bytes', 0) / 1e9:.2f} GB, {data.get('users', '?'):,} users). "
             f"Command: `{command}`", "",
             "| variant | runs (s) | median (s) | ratio to `all` per round | median ratio | verdict |",
             "|---|---|---:|---|---:|---|",
             f"| all (defaults) | {' / '.join(f'{s:.1f}' for s in base)} | {statistics.median(base):.1f} | | | |"]
    for name in names:
        ratios = [a / b for a, b in zip(runs[name], base)]
        med = statistics.median(ratios) if ratios else float("nan")
        verdict = (f"keep: off costs {med - 1:+.0%}" if med - 1 >= KEEP_THRESHOLD
                   else f"remove: off costs {med - 1:+.0%} (< {KEEP_THRESHOLD:.0%})")
        lines.append(f"| {name} | {' / '.join(f'{s:.1f}' for s in runs[name])} | "
                     f"{statistics.median(runs[name]):.1f} | {', '.join(f'{r:.2f}' for r in ratios)} | "
                     f"{med:.2f} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--preset", default="full")
    size.add_argument("--users", type=int)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-warmup", action="store_true", help="count the first run too")
    p.add_argument("--driver-memory", default=None)
    p.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR)
    p.add_argument("--results", type=Path, default=DEFAULT_BENCH_DIR / "tricks-results.md")
    args = p.parse_args(argv)
    command = "python benchmarks/tricks.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")

    raw_path = log_path(args.bench_dir, None if args.users else args.preset, args.users, args.seed)
    data = ensure_log(raw_path, None if args.users else args.preset, args.users, args.seed, None)
    from sparkify.spark import get_spark

    conf = {"spark.ui.showConsoleProgress": "false", "spark.local.dir": str(raw_path.parent / "spark-local")}
    if args.driver_memory:
        conf["spark.driver.memory"] = args.driver_memory
    spark = get_spark(app_name="sparkify-tricks", extra_conf=conf)
    bench = Bench(MemorySampler().start())
    options = variants()
    raw = str(raw_path)
    if not args.no_warmup:
        bench.run("warm-up (all)", run_variant, spark, raw, options["all"])
    runs: dict[str, list[float]] = {name: [] for name in options}
    order = list(options)
    for r in range(args.rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            result = bench.run(f"round {r + 1}: {name}", run_variant, spark, raw, options[name])
            if result.status != "ok":
                print(f"tricks: {name} failed: {result.note}", file=sys.stderr)
                return 1
            runs[name].append(result.seconds)
        text = render(runs, command, data, started)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
