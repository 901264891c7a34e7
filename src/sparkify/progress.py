"""One progress display for every command's long steps.

``Progress.stage(name, total=None, unit=...)`` prints a line when a step starts and one
when it ends, each with the command's elapsed time::

    [    3.1s] load ...
    [   41.8s] load done in 38.7 s: 543,705 user events, 448 users

While a step runs on a terminal, one live line below them is redrawn twice a second: the
step, a bar and an estimate of the time left, over the step's own units when it knows
how many there are (``stage.advance()``), and over the tasks of the Spark stages running
now when a SparkSession is attached::

    [   20.4s] compare  2/4 families ▕█████     ▏ ~31 s left · Spark: 3/4 tasks

Off a terminal (a log file, CI) or with ``--verbose`` (Spark's own bars are on) there is
no live line: only the start and end lines.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, TextIO

REFRESH_S = 0.5
BAR_WIDTH = 20


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A text bar for a fraction in [0, 1]: '▕█████     ▏'."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "▕" + "█" * filled + " " * (width - filled) + "▏"


def eta_seconds(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left at the rate so far, or None before the first unit is done."""
    if done <= 0 or total <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed * (total - done) / done)


def format_seconds(seconds: float) -> str:
    """'42 s', '3 min 05 s'."""
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


@dataclass
class SparkTasks:
    """Tasks done and in all of the Spark stages that are running now."""

    stages: int = 0
    done: int = 0
    total: int = 0

    @classmethod
    def read(cls, spark) -> "SparkTasks":
        """The running stages of ``spark``'s status tracker (nothing when Spark is gone)."""
        try:
            tracker = spark.sparkContext.statusTracker()
            infos = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        except Exception:  # noqa: BLE001 (the session stopped or the JVM is busy shutting down)
            return cls()
        infos = [i for i in infos if i is not None]
        return cls(len(infos), sum(i.numCompletedTasks for i in infos), sum(i.numTasks for i in infos))


@dataclass
class Stage:
    """A step in progress: its name, its units done of ``total`` (when known) and a note
    for its end line (``stage.note = "..."``)."""

    name: str
    total: int | None = None
    unit: str = ""
    done: int = 0
    note: str = ""
    started: float = field(default_factory=time.perf_counter)

    def advance(self, n: int = 1) -> None:
        self.done += n

    def status(self, now: float, spark: SparkTasks | None, spark_elapsed: float) -> str:
        """The live line's text after the elapsed-time prefix."""
        parts = [self.name]
        if self.total:
            parts.append(f" {self.done}/{self.total} {self.unit}".rstrip())
            parts.append(" " + bar(self.done / self.total))
            left = eta_seconds(self.done, self.total, now - self.started)
            if left is not None:
                parts.append(f" ~{format_seconds(left)} left")
        if spark is not None and spark.total:
            parts.append(" · Spark: " if self.total else " ")
            if not self.total:
                parts.append(bar(spark.done / spark.total) + " ")
            parts.append(f"{spark.done}/{spark.total} tasks")
            left = eta_seconds(spark.done, spark.total, spark_elapsed)
            if left is not None and not self.total:
                parts.append(f" ~{format_seconds(left)} left")
        return "".join(parts)


class Progress:
    """The start and end line of each step, the timings, and a live line on a terminal.

    In: ``verbose`` (False prints nothing), ``out`` (where lines go; default stdout),
    ``live`` (default: ``out`` is a terminal, ``TERM`` is not dumb and Spark's own bars
    are off), ``spark`` (a SparkSession whose running tasks the live line shows; also
    :meth:`attach`).
    Out: ``timings`` (seconds per step name, summed over repeats) and :meth:`total`.
    """

    def __init__(self, verbose: bool = True, out: TextIO | None = None, live: bool | None = None,
                 spark=None):
        self.verbose = verbose
        self.out = out
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.spark = spark
        if live is None:
            from sparkify.spark import RUN_OPTIONS

            live = (verbose and not RUN_OPTIONS.verbose and os.environ.get("TERM") != "dumb"
                    and getattr(self._stream(), "isatty", lambda: False)())
        self.live = bool(live) and verbose
        self._stages: list[Stage] = []
        self._lock = threading.Lock()
        self._drawn = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stream(self) -> TextIO:
        return self.out or sys.stdout

    def attach(self, spark) -> None:
        """Show ``spark``'s running tasks in the live line from now on."""
        self.spark = spark

    def total(self) -> float:
        return time.perf_counter() - self.start

    def _prefix(self) -> str:
        return f"[{self.total():7.1f}s]"

    def say(self, text: str) -> None:
        """One line with the elapsed time (the live line is redrawn below it)."""
        if not self.verbose:
            return
        with self._lock:
            self._clear()
            print(f"{self._prefix()} {text}", file=self._stream(), flush=True)

    @contextmanager
    def stage(self, name: str, total: int | None = None, unit: str = "") -> Iterator[Stage]:
        """A step: its start line, a live line while it runs, its end line with its time
        and ``stage.note``. With ``total``, ``stage.advance()`` moves its bar."""
        st = Stage(name, total, unit)
        self.say(f"{name} ...")
        self._stages.append(st)
        self._ensure_thread()
        try:
            yield st
        except BaseException:
            self._end(st)
            with self._lock:
                self._clear()
            raise
        dt = self._end(st)
        self.say(f"{name} done in {dt:.1f} s" + (f": {st.note}" if st.note else ""))

    def _end(self, st: Stage) -> float:
        self._stages.remove(st)
        dt = time.perf_counter() - st.started
        self.timings[st.name] = self.timings.get(st.name, 0.0) + dt
        return dt

    # ------------------------------------------------------------------ live line
    def status_line(self, spark_tasks: SparkTasks | None = None, spark_elapsed: float = 0.0) -> str:
        """The live line now (the innermost running step), or '' when no step runs."""
        if not self._stages:
            return ""
        return f"{self._prefix()} {self._stages[-1].status(time.perf_counter(), spark_tasks, spark_elapsed)}"

    def _clear(self) -> None:
        if self._drawn:
            self._stream().write("\r\x1b[K")
            self._stream().flush()
            self._drawn = False

    def _ensure_thread(self) -> None:
        if not self.live or (self._thread and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._run, name="sparkify-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seen: tuple[int, int] = (0, 0)
        since = time.perf_counter()
        while not self._stop.wait(REFRESH_S):
            if not self._stages:
                continue
            tasks = SparkTasks.read(self.spark) if self.spark is not None else None
            if tasks is not None and (tasks.stages, tasks.total) != seen:
                seen, since = (tasks.stages, tasks.total), time.perf_counter()
            line = self.status_line(tasks, time.perf_counter() - since)
            width = _terminal_width()
            with self._lock:
                if not self._stages:
                    continue
                self._stream().write("\r" + line[:width - 1] + "\x1b[K")
                self._stream().flush()
                self._drawn = True

    def close(self) -> None:
        """Stop the live line (also done at exit: the thread is a daemon)."""
        self._stop.set()
        with self._lock:
            self._clear()


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


def quiet() -> Progress:
    """A Progress that prints nothing (library calls that report no steps)."""
    return Progress(verbose=False, live=False)

