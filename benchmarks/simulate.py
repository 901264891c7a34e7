"""The simulator: speed, fidelity to the real log, and the true churn hazard.

    .venv/bin/python benchmarks/simulate.py speed --preset full      # events/s and MB/s
    .venv/bin/python benchmarks/simulate.py fidelity --preset mini   # the fidelity table against the real facts
    .venv/bin/python benchmarks/simulate.py hazard                   # true-hazard speed and calibration

Subcommands (``--help`` on each for its options; the code is in ``bench/simulation.py``):

* ``speed``: simulate a preset (or ``--users N``) into a temporary directory, once per
  ``--workers`` value: events, MB, seconds, events/s, MB/s and CPU seconds per run;
* ``fidelity``: simulate the mini or medium preset (or check ``--log``) and print the
  fidelity table (page ratios, method/status, auth, churn, and per user: churners' events
  and sessions over the staying users', events per user-session, against the real mini log);
  exits 1 when a check is out of bounds;
* ``hazard``: P(churn in the next ``--horizon`` days) from the simulator's truth at several
  dates, against the churners that followed: predicted, realized, z-score, AUC, rows/s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import simulation
from bench.common import run_subcommand


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("speed", help="events/s and MB/s of the simulator")
    s.add_argument("--preset", default="mini", choices=["mini", "medium", "full"])
    s.add_argument("--users", type=int, default=None)
    s.add_argument("--days", type=float, default=None)
    s.add_argument("--workers", type=int, nargs="*", default=[None], help="one run per value (default: all cores)")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--gzip", action="store_true")
    s.add_argument("--out", type=Path, default=None,
                   help="output (file X.json or a directory); default: a temp dir, part files for full")
    s.add_argument("--keep", action="store_true", help="keep the output")
    s.set_defaults(run=simulation.run_speed)

    f = sub.add_parser("fidelity", help="a simulated log against the real Sparkify facts")
    f.add_argument("--preset", default="mini", choices=["mini", "medium"])
    f.add_argument("--seed", type=int, default=42)
    f.add_argument("--log", type=Path, default=None, help="an existing log to check instead of simulating")
    f.set_defaults(run=simulation.run_fidelity)

    h = sub.add_parser("hazard", help="the true churn hazard: speed and calibration")
    h.add_argument("--users", type=int, default=3000)
    h.add_argument("--days", type=float, default=61)
    h.add_argument("--seed", type=int, default=42)
    h.add_argument("--as-of", default="14,28,42", help="observation midnights, days after the window start")
    h.add_argument("--horizon", type=float, default=14.0, help="days")
    h.add_argument("--paths", type=int, default=400, help="Monte Carlo paths per row")
    h.add_argument("--log", type=Path, default=None, help="use this simulated log (X.json) instead of simulating")
    h.add_argument("--keep", action="store_true", help="keep the simulated log")
    h.set_defaults(run=simulation.run_hazard)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
