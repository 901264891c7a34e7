"""The one SparkSession of a process, sized to the machine it runs on.

Local mode (``local[*]``) by default. Under ``spark-submit`` the master and
resources come from spark-submit and nothing here overrides them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SUPPORTED_JAVA = (17, 21)


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
):
    """Return the process's SparkSession, creating it on first call.

    In: an app name, an optional master URL (default ``local[*]`` unless running
    under spark-submit), shuffle partitions (default: 2 x cores), extra conf.
    Out: a ``pyspark.sql.SparkSession``. Sets JAVA_HOME when it is missing.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if not os.environ.get("JAVA_HOME") and not under_spark_submit():
        os.environ["JAVA_HOME"] = str(find_java())
    builder = SparkSession.builder
    if master:
        builder = builder.master(master)
    elif not under_spark_submit():
        builder = builder.master("local[*]").config("spark.driver.memory", default_driver_memory())
    cores = os.cpu_count() or 2
    conf = {
        "spark.sql.shuffle.partitions": str(shuffle_partitions or max(2, 2 * cores)),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        # per-task groups before a hash aggregation with set-valued buffers (the loader's
        # session-day rows) falls back to sorting its input; Spark's 128 sorts almost every
        # partition of a log. Memory stays bounded by the rows of one task.
        "spark.sql.objectHashAggregate.sortBased.fallbackThreshold": "65536",
        "spark.ui.showConsoleProgress": "true",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    }
    submitted: dict[str, str] = {}
    if under_spark_submit():
        if shuffle_partitions is None:
            # On a cluster the executors' cores set the width: Spark's default, coalesced by AQE.
            conf.pop("spark.sql.shuffle.partitions")
        # spark-submit's --conf values reach the JVM as system properties; they win over our defaults.
        from pyspark import SparkConf, SparkContext

        SparkContext._ensure_initialized()
        submitted = dict(SparkConf().getAll())
    # spark-submit sets spark.app.name to --name, or to the script's file name by default.
    given = submitted.get("spark.app.name", "")
    if not given or given.endswith(".py"):
        builder = builder.appName(app_name)
    explicit = extra_conf or {}
    conf.update(explicit)
    for key, value in conf.items():
        if key in submitted and key not in explicit:
            if not key.endswith("extraJavaOptions"):
                continue
            value = f"{submitted[key]} {value}"  # keep the user's JVM options, add ours
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
