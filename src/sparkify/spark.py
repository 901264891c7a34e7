"""The one SparkSession of a process, sized to the machine it runs on.

Local mode (``local[*]``) by default. Under ``spark-submit`` the master and
resources come from spark-submit and nothing here overrides them.

A quiet console (unless ``verbose``): Spark logs errors only (:data:`LOG4J2_FILE`), shows
no progress bars, and, where this process starts the JVM, the JVM's own standard error
(startup notices of the JVM and of native libraries that no setting silences) goes to a
log file, :func:`spark_log_path`, which error messages name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path

SUPPORTED_JAVA = (17, 21)

#: The log4j2 configuration passed to a driver JVM started here (errors only; the
#: JVM property ``sparkify.log.level`` raises it to WARN for ``verbose``).
LOG4J2_FILE = Path(__file__).with_name("log4j2.properties")
#: Environment variable naming the file that receives the JVM's standard error (appended);
#: default: sparkify-spark-<pid>.log in the system's temporary directory.
SPARK_LOG_ENV = "SPARKIFY_SPARK_LOG"


@dataclass
class RunOptions:
    """What one command asked for, for the code that runs it without being told:
    ``verbose`` (Spark's log and progress bars on the console, :func:`get_spark`) and
    ``skip_corrupt_files`` (the loaders of :mod:`sparkify.dataset`). Set by the command
    line around a command (:func:`run_options`)."""

    verbose: bool = False
    skip_corrupt_files: bool = False


RUN_OPTIONS = RunOptions()
_spark_log: Path | None = None


@contextmanager
def run_options(**options):
    """Set :data:`RUN_OPTIONS` fields (unknown names are ignored) for the block."""
    global RUN_OPTIONS
    before = RUN_OPTIONS
    known = {f.name for f in fields(RunOptions)}
    RUN_OPTIONS = replace(before, **{k: bool(v) for k, v in options.items() if k in known and v is not None})
    try:
        yield RUN_OPTIONS
    finally:
        RUN_OPTIONS = before


def spark_log_path() -> Path | None:
    """The file that receives the JVM's standard error (and so Spark's log) in this
    process, or None when the JVM writes to the console (``verbose``, spark-submit, or no
    JVM started here)."""
    return _spark_log


def _new_spark_log() -> Path:
    chosen = os.environ.get(SPARK_LOG_ENV)
    if chosen:
        return Path(chosen)
    return Path(tempfile.gettempdir()) / f"sparkify-spark-{os.getpid()}.log"


def discard_spark_log() -> None:
    """Remove this process's default log file (after a command that succeeded); a file
    named by :data:`SPARK_LOG_ENV` is kept."""
    path = _spark_log
    if path is not None and not os.environ.get(SPARK_LOG_ENV):
        try:
            path.unlink()
        except OSError:
            pass


def spark_log_tail(lines: int = 5) -> list[str]:
    """The last lines of the log file (for an error message), [] when there is none."""
    if _spark_log is None:
        return []
    try:
        with open(_spark_log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


@contextmanager
def _stderr_to(path: Path):
    """File descriptor 2 onto ``path`` (appended) for the block, then back: a child
    process started inside (the JVM) keeps writing there; Python's own stderr is restored.
    Yields False (and changes nothing) when ``path`` cannot be opened."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        yield False
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(log_fd, 2)
        yield True
    finally:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(log_fd)


class JavaNotFoundError(RuntimeError):
    pass


def java_major_version(java_bin: str) -> int | None:
    """Return the major version printed by ``java -version`` (e.g. 17), or None."""
    try:
        out = subprocess.run([java_bin, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stderr + out.stdout
    for token in text.split('"')[1:2]:
        head = token.split(".")[0]
        if head == "1":  # 1.8.0_x style
            return int(token.split(".")[1])
        if head.isdigit():
            return int(head)
    return None


def find_java() -> Path:
    """Locate a Java 17 or 21 home: $JAVA_HOME, ``java`` on PATH, then /usr/lib/jvm.

    Raises JavaNotFoundError with install instructions when none is found.
    """
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path).resolve().parents[1])
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        candidates.extend(sorted(jvm.iterdir(), reverse=True))
    for home in candidates:
        java_bin = home / "bin" / "java"
        if java_bin.exists() and java_major_version(str(java_bin)) in SUPPORTED_JAVA:
            return home
    raise JavaNotFoundError(
        "Spark 4 needs Java 17 or 21 and none was found (checked $JAVA_HOME, PATH, /usr/lib/jvm).\n"
        "Install one, then run again:\n"
        "  Debian/Ubuntu:  sudo apt-get install -y openjdk-17-jre-headless\n"
        "  macOS:          brew install openjdk@17\n"
        "  any OS:         https://adoptium.net (Temurin 17 or 21), then export JAVA_HOME=<its folder>"
    )


def under_spark_submit() -> bool:
    """True when spark-submit or a managed platform (Databricks) launched this process:
    the master is already chosen and must not be overridden."""
    return "SPARK_SUBMIT_OPTS" in os.environ or os.environ.get("SPARK_ENV_LOADED") == "1" or \
        "PYSPARK_GATEWAY_PORT" in os.environ or "DATABRICKS_RUNTIME_VERSION" in os.environ


def default_driver_memory() -> str:
    """Half of the machine's memory, at most 16g: enough to spill, never to OOM the box."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "4g"
    gib = max(1, min(16, int(total / 2**30 / 2)))
    return f"{gib}g"


def get_spark(
    app_name: str = "sparkify",
    master: str | None = None,
    shuffle_partitions: int | None = None,
    extra_conf: dict[str, str] | None = None,
    verbose: bool | None = None,
):
    """Return the process's SparkSession, creating it on first call.

    In: an app name, an optional master URL (default ``local[*]`` unless running
    under spark-submit), shuffle partitions (default: 2 x cores), extra conf, ``verbose``
    (default: ``RUN_OPTIONS.verbose``, i.e. the command's ``--verbose``).
    Out: a ``pyspark.sql.SparkSession``. Sets JAVA_HOME when it is missing.

    Unless ``verbose``: Spark logs errors only and shows no console progress bars; when
    this call starts the JVM (not under spark-submit), the JVM's standard error goes to
    :func:`spark_log_path` (the startup notices of the JVM and native libraries no
    setting silences), and in local mode ``SPARK_LOCAL_IP`` is 127.0.0.1 unless set.
    ``verbose`` keeps Spark's WARN log and progress bars on the console.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    verbose = RUN_OPTIONS.verbose if verbose is None else bool(verbose)
    submitted_run = under_spark_submit()
    _prepare_environment(master, submitted_run)
    builder = SparkSession.builder
    if master:
        builder = builder.master(master)
    elif not submitted_run:
        builder = builder.master("local[*]").config("spark.driver.memory", default_driver_memory())
    conf = _default_conf(shuffle_partitions, verbose, submitted_run)
    submitted = _submitted_conf(conf, shuffle_partitions) if under_spark_submit() else {}
    # spark-submit sets spark.app.name to --name, or to the script's file name by default.
    given = submitted.get("spark.app.name", "")
    if not given or given.endswith(".py"):
        builder = builder.appName(app_name)
    builder = _apply_conf(builder, conf, extra_conf or {}, submitted)
    spark = _start(builder, verbose, submitted_run)
    spark.sparkContext.setLogLevel("WARN" if verbose or submitted_run else "ERROR")
    return spark


def _prepare_environment(master: str | None, submitted_run: bool) -> None:
    """Outside spark-submit: set JAVA_HOME (:func:`find_java`) when it is missing and, for
    a local master, SPARK_LOCAL_IP=127.0.0.1 when it is unset."""
    if not os.environ.get("JAVA_HOME") and not submitted_run:
        os.environ["JAVA_HOME"] = str(find_java())
    if not submitted_run and (master or "local").startswith("local") and not os.environ.get("SPARK_LOCAL_IP"):
        # the driver binds to the loopback interface: no "hostname resolves to a loopback
        # address" warning, nothing reachable from the network
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"


def _default_conf(shuffle_partitions: int | None, verbose: bool, submitted_run: bool) -> dict[str, str]:
    """Our Spark settings: shuffle partitions (default 2 x cores), UTC everywhere, AQE,
    the aggregation fallback threshold, console progress bars only when ``verbose``, and,
    when the driver JVM starts here, its log4j2 configuration and level."""
    driver_java = "-Duser.timezone=UTC"
    if not submitted_run:
        # the driver JVM is started here: its log configuration can be chosen (under
        # spark-submit it is running already, configured by whoever submitted it)
        driver_java += f" -Dlog4j2.configurationFile={LOG4J2_FILE.as_uri()}"
        driver_java += f" -Dsparkify.log.level={'warn' if verbose else 'error'}"
    cores = os.cpu_count() or 2
    return {
        "spark.sql.shuffle.partitions": str(shuffle_partitions or max(2, 2 * cores)),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        # per-task groups before a hash aggregation with set-valued buffers (the loader's
        # session-day rows) falls back to sorting its input; Spark's 128 sorts almost every
        # partition of a log. Memory stays bounded by the rows of one task.
        "spark.sql.objectHashAggregate.sortBased.fallbackThreshold": "65536",
        "spark.ui.showConsoleProgress": "true" if verbose else "false",
        "spark.driver.extraJavaOptions": driver_java,
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    }


def _submitted_conf(conf: dict[str, str], shuffle_partitions: int | None) -> dict[str, str]:
    """Under spark-submit: the settings spark-submit passed (its ``--conf`` values reach
    the JVM as system properties). Drops our shuffle-partition default from ``conf``
    unless it was asked for: on a cluster the executors' cores set the width (Spark's
    default, coalesced by AQE)."""
    if shuffle_partitions is None:
        conf.pop("spark.sql.shuffle.partitions")
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def _apply_conf(builder, conf: dict[str, str], explicit: dict[str, str], submitted: dict[str, str]):
    """``builder`` with ``conf`` updated by ``explicit`` (the caller's extra conf). A key
    spark-submit set wins over our default, except JVM options, which are joined (the
    user's first); ``explicit`` always wins. Out: the builder."""
    conf.update(explicit)
    for key, value in conf.items():
        if key in submitted and key not in explicit:
            if not key.endswith("extraJavaOptions"):
                continue
            value = f"{submitted[key]} {value}"  # keep the user's JVM options, add ours
        builder = builder.config(key, value)
    return builder


def _start(builder, verbose: bool, submitted_run: bool):
    """``builder.getOrCreate()``; when this starts the JVM quietly (not ``verbose``, not
    under spark-submit, no gateway yet), with the JVM's standard error in a new log file
    (:func:`spark_log_path`; the console when no such file can be opened)."""
    global _spark_log
    from pyspark import SparkContext

    if verbose or submitted_run or SparkContext._gateway is not None:
        return builder.getOrCreate()
    # PySpark starts the JVM (the gateway) with this process's standard error
    log = _new_spark_log()
    with _stderr_to(log) as redirected:  # not redirected: no writable file, the console as before
        if redirected:
            _spark_log = log
        return builder.getOrCreate()
