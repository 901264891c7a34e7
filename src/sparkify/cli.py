"""The ``sparkify`` command line.

Each subcommand lives with the step it runs: its module defines
``configure_<name>(parser)`` and ``run_<name>(args) -> int``. Modules are imported
only when their subcommand runs, so ``sparkify simulate`` and ``sparkify serve``
never import pyspark.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("sparkify.simulator.cli", "write an eventsim-faithful Sparkify event log"),
    "ingest": ("sparkify.modeling.cli", "clean a raw event log and write it as Parquet"),
    "train": ("sparkify.modeling.cli", "build features, train and compare models, save the best"),
    "score": ("sparkify.modeling.cli", "score every active user with a saved model (ranked at-risk list)"),
    "backtest": ("sparkify.modeling.cli", "apply a saved model at a later date and compare with what happened"),
    "serve": ("sparkify.webapp.cli", "serve the web app for a saved model"),
    "report": ("sparkify.report", "write a self-contained HTML report of the data and the models"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparkify",
        description="Churn prediction for subscription music services, on Spark.",
    )
    from sparkify import __version__

    parser.add_argument("--version", action="version", version=f"sparkify {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen command's module is imported (keeps startup light).
        if name == chosen:
            module = importlib.import_module(module_name)
            getattr(module, f"configure_{name}")(p)
            p.set_defaults(_run=getattr(module, f"run_{name}"))
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args()
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, PermissionError, ValueError) as exc:
        print(f"sparkify {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
