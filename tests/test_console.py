"""The console of a Spark command: our lines only, Spark's and the JVM's with --verbose.

The commands (``sparkify ingest`` on a tiny simulated log) run in subprocesses (the JVM
writes to the process's file descriptors, which only a subprocess shows), one after another
in the background from the start of the test run; the tests check what they printed.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import background

#: Lines of Spark, log4j, the JVM or native libraries (none of them ours).
SPARK_LINE = re.compile(
    r"\b(WARN|WARNING|ERROR|INFO)\b|log4j|\[Stage \d|netlib|incubator|setLogLevel|SparkUI|"
    r"NativeCodeLoader|^\s+at [\w.$]+\(|Py4J|py4j|Traceback|SQLSTATE")


def sparkify(*argv: str, log: Path) -> subprocess.CompletedProcess:
    env = {**background.short_lived_jvm_env(dict(os.environ)), "SPARKIFY_SPARK_LOG": str(log),
           "PYTHONUNBUFFERED": "1"}
    env.pop("SPARK_LOCAL_IP", None)
    return subprocess.run([sys.executable, "-m", "sparkify.cli", *argv, "--master", "local[1]"],
                          capture_output=True, text=True, env=env, timeout=300)


@dataclass
class Command:
    proc: subprocess.CompletedProcess
    spark_log: Path      # where SPARKIFY_SPARK_LOG pointed
    input: Path


def run_commands(root: Path) -> dict[str, Command]:
    """``sparkify ingest`` on a tiny simulated log, quietly and with ``--verbose``, and on a
    truncated .json.gz copy of it. In: an empty directory. Out: each run by name. Runs in
    the background from the start of the test run (tests/background.py)."""
    from sparkify.simulator import simulate

    tiny = root / "tiny.json"
    simulate(out=tiny, users=12, days=10, seed=3, progress=False)
    damaged = root / "cut.json.gz"
    damaged.write_bytes(gzip.compress(tiny.read_bytes())[:60_000])
    runs = {}
    for name, source, extra in (("quiet", tiny, ()), ("verbose", tiny, ("--verbose",)), ("damaged", damaged, ())):
        spark_log = root / name / "spark.log"
        spark_log.parent.mkdir()
        proc = sparkify("ingest", str(source), "--out", str(root / name / "clean"), *extra, log=spark_log)
        runs[name] = Command(proc, spark_log, source)
    return runs


COMMANDS_JOB = background.job("console_runs", run_commands)


@pytest.fixture(scope="module")
def console_runs() -> dict[str, Command]:
    return COMMANDS_JOB.result()


def spark_lines(proc: subprocess.CompletedProcess) -> list[str]:
    text = (proc.stdout + "\n" + proc.stderr).replace("\r", "\n")
    return [line for line in text.splitlines() if SPARK_LINE.search(line)]


def test_ingest_console_has_no_line_from_spark_or_the_jvm(console_runs):
    run = console_runs["quiet"]
    proc = run.proc
    assert proc.returncode == 0, proc.stderr
    assert "users" in proc.stdout and "cleaned log written to" in proc.stdout
    assert spark_lines(proc) == []
    assert proc.stderr == ""
    # what the JVM said went to the log file instead (kept: SPARKIFY_SPARK_LOG names it)
    assert "incubator" in run.spark_log.read_text()


def test_verbose_shows_sparks_own_lines(console_runs):
    run = console_runs["verbose"]
    proc = run.proc
    assert proc.returncode == 0, proc.stderr
    assert spark_lines(proc), proc.stderr          # the JVM's notices and Spark's warnings, as before
    assert "incubator" in proc.stderr
    assert not run.spark_log.exists()


def test_a_failure_says_it_in_our_words_first_and_nothing_from_spark(console_runs):
    run = console_runs["damaged"]
    proc = run.proc
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sparkify ingest: error: ")
    assert str(run.input) in lines[0] and "truncated" in lines[0]
    assert spark_lines(proc) == []


def test_a_spark_error_is_one_paragraph_naming_sparks_log(monkeypatch, tmp_path):
    """No JVM needed: the message main() prints for an error raised through Py4J."""
    from sparkify import cli, spark

    class Py4JJavaError(Exception):
        pass

    Py4JJavaError.__module__ = "py4j.protocol"
    monkeypatch.setattr(spark, "_spark_log", tmp_path / "spark.log")
    message, code = cli._spark_failure(Py4JJavaError(
        "An error occurred while calling o77.collectToPython.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: boom.\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2)\n"))
    assert code == 1 and "\n" not in message
    assert message.startswith("Spark failed: org.apache.spark.SparkException: Job aborted due to stage failure: boom.")
    assert f"Spark's log: {tmp_path / 'spark.log'}." in message and "DAGScheduler" not in message
    message, code = cli._spark_failure(Py4JJavaError(
        "An error occurred while calling o9.parquet.\n: org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] "
        "Encountered error while reading file file:///data/log/part-7.json.gz.  SQLSTATE: KD001\n"
        "Caused by: java.io.EOFException: Unexpected end of input stream\n"))
    assert code == 2
    assert message.startswith("cannot read the event log: /data/log/part-7.json.gz is truncated")
    assert cli._spark_failure(RuntimeError("not Spark's")) is None
