"""The daily refresh through the store: first ingest, append a day, score, the same list.

    .venv/bin/python benchmarks/store.py refresh --preset full
    .venv/bin/python benchmarks/store.py refresh --users 2000 --rounds 1 --repeat 1

Subcommand (the code is in ``bench/storage.py``):

* ``refresh``: the log (a cached simulated preset, or ``--log``, time-ordered) cut at its
  last midnight; ``sparkify ingest --store`` of the history in turns with today's training
  load of the whole log (``--rounds``); ``sparkify ingest --store`` of the last day and
  ``sparkify score --store`` (``--repeat`` runs each); the raw log scored once and the two
  at-risk lists compared (skip with ``--no-raw``). Writes benchmarks/out/store.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import storage
from bench.common import add_log_args, run_subcommand


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("refresh", help="first ingest, append a day, score from the store, compare with the raw log")
    add_log_args(r, default_preset="full", log_help="an existing time-ordered log instead")
    r.add_argument("--rounds", type=int, default=2, help="first ingests in turns with the training load (default 2)")
    r.add_argument("--repeat", type=int, default=3, help="runs of the append and of the score (default 3)")
    r.add_argument("--model", type=Path, default=None,
                   help="a model directory to score with (default: train one on the store, cached)")
    r.add_argument("--no-raw", action="store_true", help="skip scoring the raw log (and the comparison)")
    r.set_defaults(run=storage.run_refresh)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
