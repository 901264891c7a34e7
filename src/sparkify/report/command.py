"""The ``sparkify report`` command: check the inputs, build the report, write it whole.

    sparkify report EVENTS --model DIR --out reports/ [--master URL]

In:  the command's arguments (an event log, a model directory written by ``sparkify
     train``, an output path, the weeks of the before-churn view, a title).
Out: ``<out>/sparkify_report.html`` (or ``--out`` itself when it ends in ``.html``), written
     through a temporary file and a rename; one line on the console saying where it went,
     its size and the time taken. :func:`write_report` does the same from Python.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sparkify.config import DEFAULT_MODEL_DIR, REPORTS_DIR
from sparkify.progress import Progress
from sparkify.report.collect import collect_report_data
from sparkify.report.render import render_report

REPORT_NAME = "sparkify_report.html"


def configure_report(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sparkify report``."""
    from sparkify.modeling.cli import add_events_argument

    add_events_argument(parser, "event log: .json/.json.gz file, directory of part files, glob, a Parquet "
                                "directory written by `sparkify ingest --out`, or a store kept with --keep-events")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help=f"model directory written by `sparkify train` (default: {DEFAULT_MODEL_DIR})")
    parser.add_argument("--out", default=str(REPORTS_DIR),
                        help=f"output directory (the file is {REPORT_NAME}) or a path ending in .html "
                             f"(default: {REPORTS_DIR})")
    parser.add_argument("--master", default=None, help="Spark master URL (default: local[*], "
                                                       "or spark-submit's)")
    parser.add_argument("--weeks", type=int, default=6,
                        help="weeks before cancellation to show in the behaviour chart (default: 6)")
    parser.add_argument("--title", default=None, help="report title (default: 'Sparkify churn report')")
    from sparkify.modeling.cli import add_spark_options

    add_spark_options(parser)


def run_report(args: argparse.Namespace) -> int:
    """Run ``sparkify report``: check the inputs, build the report, print where it went.

    Returns 0 on success. Bad input raises FileNotFoundError / PermissionError /
    ValueError with a message (the CLI prints it and exits with 2)."""
    model_dir = check_model_dir(args.model)
    out_path = resolve_out_path(args.out)
    if args.weeks < 1 or args.weeks > 52:
        raise ValueError(f"--weeks must be between 1 and 52, not {args.weeks}")
    from sparkify.modeling.cli import events_of

    events = events_of(args)
    if "://" not in events and not any(ch in events for ch in "*?[") and not Path(events).exists():
        raise FileNotFoundError(f"no event log at {events}")
    progress = Progress()
    with progress.stage("spark"):
        from sparkify.spark import get_spark

        spark = get_spark(app_name="sparkify-report", master=args.master, verbose=getattr(args, "verbose", None))
    progress.attach(spark)
    data = collect_report_data(spark, events, model_dir, weeks=args.weeks, progress=progress)
    with progress.stage("render"):
        page = render_report(data, title=args.title)
        write_atomic(out_path, page)
    size = out_path.stat().st_size / 1e6
    print(f"report written to {out_path} ({size:.1f} MB, {progress.total():.0f} s)", flush=True)
    return 0


def check_model_dir(path: str | Path) -> Path:
    """The model directory as a Path; FileNotFoundError with a hint when it is not one."""
    p = Path(path)
    if not (p / "model.json").is_file() or not (p / "metrics.json").is_file():
        raise FileNotFoundError(
            f"no trained model at {p} (model.json and metrics.json expected); "
            f"train one with `sparkify train EVENTS --model {p}`")
    return p


def resolve_out_path(out: str | Path) -> Path:
    """``--out`` -> the report file: a path ending in .html is used as is, anything else
    is a directory receiving :data:`REPORT_NAME`. The directory is created; raises
    PermissionError when it cannot be written."""
    p = Path(out)
    target = p if p.suffix.lower() in (".html", ".htm") else p / REPORT_NAME
    if target.exists() and target.is_dir():
        raise ValueError(f"--out {target} is a directory; give a directory or a .html file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot create the output directory {target.parent}: a file is in the way") from None
    if not os.access(target.parent, os.W_OK):
        raise PermissionError(f"cannot write to {target.parent}")
    return target


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename, so a reader
    never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_report(spark, events_path: str | Path, model_dir: str | Path, out: str | Path,
                 weeks: int = 6, title: str | None = None, progress: Progress | None = None) -> Path:
    """Build the report and write it. In: as ``sparkify report``. Out: the report's path."""
    model_dir = check_model_dir(model_dir)
    target = resolve_out_path(out)
    data = collect_report_data(spark, events_path, model_dir, weeks=weeks, progress=progress)
    write_atomic(target, render_report(data, title=title))
    return target
