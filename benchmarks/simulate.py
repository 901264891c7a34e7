"""Benchmark the simulator: events/s and MB/s written.

Usage::

    .venv/bin/python benchmarks/simulate.py                      # mini preset into a temp dir
    .venv/bin/python benchmarks/simulate.py --preset full --out /tmp/full_bench --keep
    .venv/bin/python benchmarks/simulate.py --users 2000 --workers 1

Prints one line per run: preset/users, workers, events, MB, seconds, events/s, MB/s,
plus the CPU time of this process and its children (the machine may be shared).
The output is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    from sparkify.simulator import simulate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="mini", choices=["mini", "medium", "full"])
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--days", type=float, default=None)
    ap.add_argument("--workers", type=int, nargs="*", default=[None], help="one run per value (default: all cores)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--out", type=Path, default=None,
                    help="output (file X.json or a directory); default: a temp dir, part files for full")
    ap.add_argument("--keep", action="store_true", help="keep the output")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="sparkify-sim-bench-")) if args.out is None else None
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    print(f"{'run':<18}{'workers':>8}{'events':>13}{'MB':>9}{'seconds':>9}{'events/s':>11}{'MB/s':>8}{'cpu s':>8}")
    try:
        for w in args.workers:
            if args.out is not None:
                out = args.out
            elif args.preset == "full" and args.users is None:
                out = tmp / f"run-{w}"
            else:
                out = tmp / f"run-{w}.json"
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            s = simulate(out=out, preset=args.preset, users=args.users, days=args.days, seed=args.seed,
                         workers=w, gzip=args.gzip, progress=sys.stderr.isatty())
            secs = time.perf_counter() - t0
            mb = s.bytes / 1e6
            name = f"{args.preset}" + (f"/{args.users}u" if args.users else "")
            print(f"{name:<18}{str(w or 'auto'):>8}{s.events:>13,}{mb:>9,.0f}{secs:>9.1f}{s.events / secs:>11,.0f}"
                  f"{mb / secs:>8.1f}{cpu_seconds() - cpu0:>8.1f}", flush=True)
            if not args.keep:
                if s.path.is_dir():
                    shutil.rmtree(s.path)
                else:
                    s.path.unlink()
                    s.truth_path.unlink()
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
