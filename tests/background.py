"""Jobs of tests that run in processes of their own (a Spark standalone cluster, a notebook
kernel), started in a thread as soon as collection ends, so that they overlap the tests
that run in this process; the tests that need a job's result wait for it.

A test module declares ``JOB = background.job("cluster_run", run)`` (``run(root)`` gets a
fresh directory and returns the result) and its fixture ``cluster_run`` returns
``JOB.result()``. The job starts only when a collected test uses that fixture; an exception
of the job (a ``pytest.skip`` too) is raised again in the fixture.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

_JOBS: dict[str, "Job"] = {}

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
    thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is not None:
            return
        self.root = Path(tempfile.mkdtemp(prefix=f"sparkify-{self.fixture}-"))
        self.thread = threading.Thread(target=self._work, name=f"background-{self.fixture}", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            self.future.set_result(self.run(self.root))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the waiting test)
            self.future.set_exception(exc)

    def result(self) -> Any:
        """The job's result (started now if collection did not start it)."""
        self.start()
        return self.future.result()

    def finish(self) -> None:
        if self.thread is not None:
            self.thread.join()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def job(fixture: str, run: Callable[[Path], Any]) -> Job:
    """Declare the background job behind ``fixture`` (once per name)."""
    return _JOBS.setdefault(fixture, Job(fixture, run))


def start_for(items) -> None:
    """Start every declared job a collected test uses (pytest_collection_finish)."""
    used = {name for item in items for name in getattr(item, "fixturenames", ())}
    wanted = [declared for name, declared in _JOBS.items() if name in used]
    if wanted:
        for module in PRELOAD:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
    for declared in wanted:
        declared.start()


def finish_all() -> None:
    """Wait for the started jobs and remove their directories (pytest_sessionfinish)."""
    for declared in _JOBS.values():
        declared.finish()
