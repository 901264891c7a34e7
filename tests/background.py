"""Jobs of tests that run in processes of their own (a Spark standalone cluster, a notebook
kernel, the console commands), run one after another in a thread from the moment collection
ends, at the lowest scheduling priority (:data:`BACKGROUND_NICENESS`), so that they use the
CPU time the tests of this process leave idle and never slow those down; the tests that
need a job's result run last (:func:`move_waiting_tests_last`) and wait for it.

A test module declares ``JOB = background.job("cluster_run", run)`` (``run(root)`` gets a
fresh directory and returns the result) and its fixture ``cluster_run`` returns
``JOB.result()``. A job runs only when a collected test uses that fixture; an exception
of the job (a ``pytest.skip`` too) is raised again in the fixture.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: JVM options for the jobs' JVMs, which each live for one small job: without the JIT's
#: optimising tier and with the serial collector they spend about a third less CPU, which
#: the tests running beside them get. (The test process's own JVM runs the whole suite and
#: keeps the defaults: there the optimised code pays.)
SHORT_LIVED_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def short_lived_jvm_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with :data:`SHORT_LIVED_JVM_OPTIONS` added to ``JAVA_TOOL_OPTIONS`` (read by
    every JVM the job's processes start)."""
    given = env.get("JAVA_TOOL_OPTIONS", "")
    return {**env, "JAVA_TOOL_OPTIONS": f"{given} {SHORT_LIVED_JVM_OPTIONS}".strip()}

#: Niceness of the background thread and of every process it starts (Linux keeps it per
#: thread, and a child inherits its parent thread's): the jobs get the cores only when the
#: tests of this process leave them idle (the tests alone keep about one and a half of two
#: cores busy). Linux's scheduler weighs sessions against each other before niceness counts,
#: so a job's processes stay in this session (a process group of their own at most), or
#: lower their own session's priority (``/proc/self/autogroup``: the notebook's kernel).
BACKGROUND_NICENESS = 19


def lower_this_threads_priority() -> None:
    """Set the calling thread's niceness to :data:`BACKGROUND_NICENESS` (Linux only: elsewhere
    the niceness is per process and this does nothing)."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
        except OSError:
            pass


#: Imported on the main thread before a job starts: a module imported by two threads at
#: once can be seen half-initialised by one of them.
PRELOAD = ("pyspark", "pyspark.sql", "pyspark.ml", "sparkify.spark", "sparkify.simulator", "sparkify.features",
           "jupyter_client.kernelspec")


@dataclass
class Job:
    fixture: str
    run: Callable[[Path], Any]
    future: Future = field(default_factory=Future)
    root: Path | None = None
    claimed: bool = False

    def claim(self) -> bool:
        """True for the one caller that gets to run the job."""
        with _LOCK:
            if self.claimed:
                return False
            self.claimed = True
            return True

    def work(self) -> None:
        """Run the job here (unless it ran or is running) and keep its result or exception."""
        if not self.claim():
            return
        self.root = Path(tempfile.mkdtemp(prefix=f"sparkify-{self.fixture}-"))
        try:
            self.future.set_result(self.run(self.root))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the waiting test)
            self.future.set_exception(exc)

    def result(self) -> Any:
        """The job's result (run now, in the waiting test, if no thread started it)."""
        self.work()
        return self.future.result()

    def finish(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


_JOBS: dict[str, Job] = {}
_LOCK = threading.Lock()
_THREADS: list[threading.Thread] = []


def job(fixture: str, run: Callable[[Path], Any]) -> Job:
    """Declare the background job behind ``fixture`` (once per name)."""
    return _JOBS.setdefault(fixture, Job(fixture, run))


def _uses_a_job(item) -> bool:
    return any(name in _JOBS for name in getattr(item, "fixturenames", ()))


def move_waiting_tests_last(items: list) -> None:
    """Reorder ``items`` in place (pytest_collection_modifyitems): the tests that wait for
    a job's result after all the others, each group in its collected order."""
    items[:] = [i for i in items if not _uses_a_job(i)] + [i for i in items if _uses_a_job(i)]


def start_for(items) -> None:
    """Start one thread that runs, one after another and at the lowest priority, every
    declared job a collected test uses (pytest_collection_finish)."""
    used = {name for item in items for name in getattr(item, "fixturenames", ())}
    wanted = [declared for name, declared in _JOBS.items() if name in used]
    if not wanted:
        return
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:
            pass

    def run_all() -> None:
        lower_this_threads_priority()
        for declared in wanted:
            declared.work()

    thread = threading.Thread(target=run_all, name="background-jobs", daemon=True)
    _THREADS.append(thread)
    thread.start()


def finish_all() -> None:
    """Wait for the started jobs and remove their directories (pytest_sessionfinish)."""
    for thread in _THREADS:
        thread.join()
    for declared in _JOBS.values():
        declared.finish()
