"""Compare a simulated log with the real Sparkify facts and print the fidelity table.

Usage::

    .venv/bin/python benchmarks/fidelity.py                    # simulate mini (seed 42) into a temp dir
    .venv/bin/python benchmarks/fidelity.py --preset medium --seed 3
    .venv/bin/python benchmarks/fidelity.py --log data/mini_sparkify_event_data.json --preset mini

Table columns: check (page count per NextSong for every page at >= 0.001 per NextSong
in the real mini log, on rows with a userId and on all rows; method/status per page;
auth shares; churn; users/events against the preset; key order and types), real value,
simulated value, difference, ok. Exits 1 when any check is out of bounds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from sparkify.simulator import simulate
    from sparkify.simulator.fidelity import compare, format_table, read_stats

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mini", choices=["mini", "medium"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--log", type=Path, default=None, help="an existing log to check instead of simulating")
    args = ap.parse_args(argv)

    tmp = None
    path = args.log
    if path is None:
        tmp = Path(tempfile.mkdtemp(prefix="sparkify-fidelity-"))
        s = simulate(out=tmp / f"{args.preset}.json", preset=args.preset, seed=args.seed,
                     progress=sys.stderr.isatty())
        path = s.path
        print(f"simulated {args.preset} (seed {args.seed}): {s.events:,} events, {s.users} users, "
              f"{s.churned} churned, {s.bytes / 1e6:,.0f} MB in {s.seconds:.1f} s")
    elif not path.exists():
        print(f"fidelity: error: no such log: {path}", file=sys.stderr)
        return 2
    try:
        checks = compare(read_stats(path), preset=args.preset)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(format_table(checks))
    failed = [c.name for c in checks if not c.ok]
    print(f"\n{len(checks) - len(failed)}/{len(checks)} checks within bounds" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
