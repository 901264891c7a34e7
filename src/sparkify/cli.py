"""The ``sparkify`` command line.

Each subcommand lives with the step it runs: its module defines
``configure_<name>(parser)`` and ``run_<name>(args) -> int``. Modules are imported
only when their subcommand runs, so ``sparkify simulate`` and ``sparkify serve``
never import pyspark.

Exit codes: 0 success; 2 a user mistake or unusable input (a missing file, a bad option,
a damaged log file), printed as one paragraph; 1 a failure of Spark, printed as one
paragraph naming Spark's log file (the traceback with ``--verbose``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("sparkify.simulator.cli", "write an eventsim-faithful Sparkify event log"),
    "ingest": ("sparkify.modeling.cli", "clean a raw event log into Parquet (--out), or add its new files to a store (--store)"),
    "train": ("sparkify.modeling.cli", "build features, train and compare models, save the best"),
    "score": ("sparkify.modeling.cli", "score every active user with a saved model (ranked at-risk list)"),
    "backtest": ("sparkify.modeling.cli", "apply a saved model at a later date and compare with what happened"),
    "watch": ("sparkify.watch", "keep a store and the at-risk list up to date as files land (Structured Streaming)"),
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
    verbose = bool(getattr(args, "verbose", False))
    jvm_before = _spark_log()
    try:
        with _run_options(args):
            code = int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, PermissionError, ValueError) as exc:
        print(f"sparkify {args.command}: error: {exc}", file=sys.stderr)
        code = 2
    except Exception as exc:
        failure = None if verbose else _spark_failure(exc)
        if failure is None:
            raise
        message, code = failure
        print(f"sparkify {args.command}: error: {message}", file=sys.stderr)
    if code in (0, 2) and jvm_before is None and _spark_log() is not None:
        # success, or a mistake the message explains: nothing to look at in the JVM's log
        sys.modules["sparkify.spark"].discard_spark_log()
    return code


def _spark_log():
    """The JVM's log file when this process has started Spark (without importing it)."""
    module = sys.modules.get("sparkify.spark")
    return module.spark_log_path() if module is not None else None


def _run_options(args: argparse.Namespace):
    """``--verbose`` and ``--skip-corrupt-files`` of the command, for the code it runs
    (``sparkify.spark.RUN_OPTIONS``); nothing to do for a command without them."""
    if not hasattr(args, "verbose") and not hasattr(args, "skip_corrupt_files"):
        from contextlib import nullcontext

        return nullcontext()
    from sparkify.spark import run_options

    return run_options(verbose=getattr(args, "verbose", None),
                       skip_corrupt_files=getattr(args, "skip_corrupt_files", None))


def _spark_failure(exc: BaseException) -> tuple[str, int] | None:
    """One paragraph and the exit code for an error raised by Spark or Py4J (None for any
    other error): a file Spark could not read, named as the loaders name it (2), else
    Spark's own first line and where Spark's log is (1)."""
    module = type(exc).__module__ or ""
    if not module.startswith(("py4j", "pyspark")):
        return None
    from sparkify.inputs import CorruptInputError, damage_of, display_path, failed_read_file
    from sparkify.spark import spark_log_path, spark_log_tail

    failed = failed_read_file(exc)
    if failed is not None:
        path, cause = failed
        return str(CorruptInputError([(display_path(path), damage_of(path, cause))])), 2
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # Py4J: "An error occurred while calling o123.x." then ": java.lang.SomeException: ..."
    java = next((ln[1:].strip() for ln in lines if ln.startswith(": ")), None)
    first = (java or (lines[0] if lines else type(exc).__name__)).rstrip(". ")
    if len(first) > 400:
        first = first[:400] + " ..."
    text = f"Spark failed: {first}."
    log = spark_log_path()
    tail = spark_log_tail(3) if log and "JAVA_GATEWAY_EXITED" in str(exc) else []
    if tail:
        text += " The JVM's last lines: " + " | ".join(tail) + "."
    if log:
        text += f" Spark's log: {log}."
    return text + " Run again with --verbose to see Spark's warnings and the traceback.", 1


if __name__ == "__main__":
    sys.exit(main())
