"""``sparkify simulate``: write an eventsim-faithful Sparkify event log.

Examples::

    sparkify simulate --preset mini --out data/mini_sparkify_event_data.json
    sparkify simulate --users 1000 --days 30 --seed 7 --out /tmp/log.json.gz
    sparkify simulate --preset full --out /tmp/full_log/      # part files, hidden id "1261737"

Exit codes: 0 written; 2 bad input (config, options, unwritable output), with a
one-line message and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparkify.config import DEFAULT_EVENTS


def configure_simulate(parser: argparse.ArgumentParser) -> None:
    """Add the simulate options to ``parser``."""
    from sparkify.simulator.presets import PRESETS

    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="size like a real file: mini (225 users, ~286k events), medium (448 users, ~544k), "
                             "full (~22.3k users, ~26M events, ~12 GB); without it and --users: mini")
    parser.add_argument("--out", type=Path, default=DEFAULT_EVENTS,
                        help="X.json or X.json.gz for one file; a directory for part files")
    parser.add_argument("--users", type=int, default=None, help="about this many distinct users in the log at the end of the window (the simulation "
                             "draws arrivals and churn, so a run lands within a few per cent)")
    parser.add_argument("--days", type=float, default=None, help="window length in days (from 2018-10-01 UTC)")
    parser.add_argument("--start", default=None, help="window start, ISO date/time (UTC), default 2018-10-01")
    parser.add_argument("--seed", type=int, default=42, help="same seed -> same bytes")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: cores; 1 for small runs)")
    parser.add_argument("--gzip", action="store_true", help="gzip the output (also implied by .json.gz)")
    parser.add_argument("--hidden-user-id", default=None,
                        help='userId of Logged Out/Guest rows (default "" ; the full preset uses "1261737")')
    parser.add_argument("--config", type=Path, default=None,
                        help="eventsim config file (JSON); default: the Accordion template")
    parser.add_argument("--cohorts", type=Path, default=None,
                        help='JSON list of cohorts [{"name", "share", "user_id_base", "page_scale": {page: factor}, '
                             '"alpha_scale", "beta_scale"}] instead of the default mix')
    parser.add_argument("--no-cohorts", action="store_true",
                        help="one plain run of the config instead of the default cohort mix")
    parser.add_argument("--churn-model", choices=("eventsim", "satisfaction"), default="eventsim",
                        help="eventsim: every page view may lead to Cancel (memoryless, as in the real log's "
                             "generator); satisfaction: a daily cancel hazard driven by each user's experiences "
                             "(thumbs down, adverts while free, errors, help, downgrades), with the hazards in the "
                             "ground truth: a bench with known drivers")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_simulate(args: argparse.Namespace) -> int:
    """Run the simulator with parsed options; print a summary. Returns the exit code."""
    from sparkify.simulator import simulate
    from sparkify.simulator.eventsim_config import ConfigError

    if args.users is not None and args.users < 1:
        print("sparkify simulate: error: --users must be >= 1", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("sparkify simulate: error: --workers must be >= 1", file=sys.stderr)
        return 2
    cohorts = () if args.no_cohorts else None
    if args.cohorts is not None:
        import json

        from sparkify.simulator.presets import cohorts_from_json

        try:
            cohorts = cohorts_from_json(json.loads(args.cohorts.read_text(encoding="utf-8")), str(args.cohorts))
        except (OSError, ValueError) as exc:
            print(f"sparkify simulate: error: cohorts file {args.cohorts}: {exc}", file=sys.stderr)
            return 2
    try:
        summary = simulate(
            out=args.out, users=args.users, preset=args.preset, days=args.days, seed=args.seed,
            workers=args.workers, gzip=args.gzip, hidden_user_id=args.hidden_user_id, config=args.config,
            progress=not args.quiet and sys.stderr.isatty(), start=args.start,
            cohorts=cohorts, churn_model=args.churn_model,
        )
    except (ConfigError, ValueError) as exc:
        print(f"sparkify simulate: error: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"sparkify simulate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sparkify simulate: error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    mb = summary.bytes / 1e6
    print(f"wrote {summary.events:,} events of {summary.users:,} users ({summary.churned:,} churned, "
          f"{summary.churn_rate:.1%}) to {summary.path} [{mb:,.1f} MB] in {summary.seconds:.1f} s "
          f"({summary.events / max(summary.seconds, 1e-9):,.0f} events/s, {mb / max(summary.seconds, 1e-9):,.1f} MB/s)")
    if Path(summary.path).is_dir():
        print("(a directory of part files: --out names one file only when it ends in .json or .json.gz)")
    print(f"ground truth: {summary.truth_path}")
    return 0
