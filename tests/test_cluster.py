"""The training job on a real Spark standalone cluster (one master, one worker, 127.0.0.1).

The cluster is started from the pip wheel's ``bin/spark-class`` (the wheel has no sbin
scripts), the job is submitted with ``spark-submit --master spark://127.0.0.1:PORT`` in a
subprocess, exactly as a user would (package shipped with ``--py-files``), and the model
directory it writes is checked, then loaded by this process's own local SparkSession. The cluster job starts in the
background when collection ends (tests/background.py), beside the other tests.
The packaging tests at the top need no JVM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparkify.jobs.package import ENTRY_NAME, build_zip

import background

MODEL_TYPES = {"LogisticRegression", "LinearSVC", "RandomForestClassifier", "GBTClassifier"}
#: The cluster starts at the lowest priority beside the other tests (tests/background.py).
START_TIMEOUT_S = 300
JOB_TIMEOUT_S = 1800
CLUSTER_USERS = 60


# --------------------------------------------------------------------------- packaging


def test_package_zip_holds_the_package_and_imports_without_site_packages(tmp_path):
    zip_path, entry = build_zip(tmp_path / "dist" / "sparkify.zip")
    assert entry == tmp_path / "dist" / ENTRY_NAME and entry.is_file()
    names = set(zipfile.ZipFile(zip_path).namelist())
    assert "sparkify/__init__.py" in names
    assert "sparkify/cli.py" in names and "sparkify/jobs/submit.py" in names
    assert "sparkify/simulator/data/accordion-config.json" in names  # package data shipped too
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # -S: no site-packages, so the editable install is invisible; only the zip can answer.
    out = subprocess.run(
        [sys.executable, "-S", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import sparkify.cli, sparkify.jobs.submit;"
         "print(sparkify.__file__)", str(zip_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(zip_path))


def test_package_rejects_a_non_zip_output(tmp_path):
    with pytest.raises(ValueError, match=r"\.zip"):
        build_zip(tmp_path / "sparkify.tar")
    from sparkify.jobs.package import main

    assert main(["--out", str(tmp_path / "sparkify.tar")]) == 2


def test_submit_entry_without_arguments_prints_usage(capsys):
    from sparkify.jobs.submit import run

    assert run([]) == 2
    assert "spark-submit" in capsys.readouterr().out


# --------------------------------------------------------------------------- cluster


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(text[-lines:])


@dataclass
class StandaloneCluster:
    """A Spark standalone master and one worker on 127.0.0.1, as child processes."""

    root: Path
    env: dict[str, str]
    port: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    @property
    def master_log(self) -> Path:
        return self.root / "master.log"

    @property
    def worker_log(self) -> Path:
        return self.root / "worker.log"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    def _spawn(self, args: list[str], log: Path) -> None:
        spark_class = str(_spark_home() / "bin" / "spark-class")
        with open(log, "wb") as out:
            self.procs.append(subprocess.Popen(
                [spark_class, *args], stdout=out, stderr=subprocess.STDOUT, env=self.env,
                cwd=self.root, process_group=0,
            ))

    def _wait_for(self, log: Path, needle: str, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if log.exists() and needle in log.read_text(errors="replace"):
                return
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                break
            time.sleep(0.5)
        raise RuntimeError(f"{what} did not come up within {START_TIMEOUT_S} s\n{self.logs()}")

    def start(self) -> "StandaloneCluster":
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self._spawn(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(self.port), "--webui-port", str(_free_port())], self.master_log)
        self._wait_for(self.master_log, "I have been elected leader", "the Spark master")
        self._spawn(["org.apache.spark.deploy.worker.Worker", self.url, "--cores", "1",
                     "--memory", "2g", "--host", "127.0.0.1", "--webui-port", str(_free_port()),
                     "--work-dir", str(self.work_dir)], self.worker_log)
        self._wait_for(self.master_log, "Registering worker", "the Spark worker")
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)

    def executor_logs(self) -> str:
        parts = []
        for path in sorted(self.work_dir.glob("app-*/*/stderr")):
            parts.append(f"--- executor {path.relative_to(self.work_dir)} (tail)\n{_tail(path, 25)}")
        return "\n".join(parts)

    def logs(self) -> str:
        return (f"--- master log (tail)\n{_tail(self.master_log, 25)}\n"
                f"--- worker log (tail)\n{_tail(self.worker_log, 25)}\n{self.executor_logs()}")


def _cluster_env(root: Path) -> dict[str, str]:
    from sparkify.spark import JavaNotFoundError, find_java

    try:
        java_home = os.environ.get("JAVA_HOME") or str(find_java())
    except JavaNotFoundError as exc:
        pytest.skip(f"no Java for Spark: {exc}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_GATEWAY", "SPARK_"))}
    env.update({
        "JAVA_HOME": java_home,
        "SPARK_HOME": str(_spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(root / "local"),
        "SPARK_LOG_DIR": str(root / "logs"),
        "SPARK_PID_DIR": str(root),
        # no REST submission server: it listens on a fixed port (6066)
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    })
    return background.short_lived_jvm_env(env)


def _train_cli_has_quick() -> bool:
    import argparse

    from sparkify.modeling.cli import configure_train

    parser = argparse.ArgumentParser()
    configure_train(parser)
    return "--quick" in parser._option_string_actions  # noqa: SLF001 (argparse has no public API)


@dataclass
class ClusterRun:
    model_dir: Path
    returncode: int
    stdout: str
    stderr: str
    master_log: str
    worker_log: str
    command: list[str]
    failure: str = ""     # the command, its output and the cluster's logs when it failed


def run_cluster_job(root: Path) -> ClusterRun:
    """Start the cluster, submit `train` on a small simulated log, stop the cluster.

    In: an empty directory. Out: the run's model directory, exit status, output and the
    cluster's logs. The cluster is always stopped (finally), whatever happened. Runs in
    the background from the start of the test run (tests/background.py).
    """
    spark_class = _spark_home() / "bin" / "spark-class"
    if not spark_class.exists():
        pytest.skip(f"pyspark has no {spark_class}")
    from sparkify.simulator import simulate

    log = root / "data" / "events.json"
    log.parent.mkdir()
    summary = simulate(out=log, users=CLUSTER_USERS, seed=11, progress=False)
    # Like a real log: no ground truth beside it (no ceiling stage: a shorter job).
    if summary.truth_path and Path(summary.truth_path).exists():
        Path(summary.truth_path).unlink()
    zip_path, entry = build_zip(root / "dist" / "sparkify.zip")
    model_dir = root / "model" / "classifier"

    env = _cluster_env(root)
    cluster = StandaloneCluster(root=root, env=env)
    try:
        cluster.start()
        command = [
            str(_spark_home() / "bin" / "spark-submit"),
            "--master", cluster.url,
            "--deploy-mode", "client",
            "--name", "sparkify-cluster-test",
            "--driver-memory", "1g",
            "--executor-memory", "1g",
            "--total-executor-cores", "1",
            "--conf", "spark.ui.enabled=false",
            "--conf", "spark.ui.showConsoleProgress=false",
            "--conf", "spark.sql.shuffle.partitions=2",
            "--py-files", str(zip_path),
            str(entry),
            "train", str(log), "--model", str(model_dir), "--models", "lr",
        ]
        command += ["--quick"] if _train_cli_has_quick() else ["--folds", "2"]
        out_path, err_path = root / "submit.out", root / "submit.err"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            # Own process group: on a timeout, spark-submit's JVM and its Python driver both go.
            # (Not a session of its own: the background jobs' low priority holds only
            # within the session, see tests/background.py.)
            proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=root,
                                    process_group=0)
            try:
                returncode = proc.wait(timeout=JOB_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:  # a timeout, or the test run interrupted: never leave the job behind
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=60)
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace")
        if returncode != 0:
            status = "timed out" if returncode is None else f"exited {returncode}"
            important = [line for line in stderr.splitlines()
                         if "ERROR" in line or "Error" in line or "Traceback" in line][-40:]
            failure = (f"spark-submit {status}: {' '.join(command)}\n"
                       f"--- driver stdout (tail)\n{stdout[-4000:]}\n"
                       f"--- driver stderr: error lines\n" + "\n".join(important) + "\n"
                       f"--- driver stderr (tail)\n{stderr[-4000:]}\n{cluster.logs()}")
        else:
            failure = ""
        run = ClusterRun(model_dir, -1 if returncode is None else returncode, stdout, stderr,
                         cluster.master_log.read_text(errors="replace"),
                         cluster.worker_log.read_text(errors="replace"), command, failure)
    finally:
        cluster.stop()
    assert all(p.poll() is not None for p in cluster.procs), "the cluster was not stopped"
    return run


CLUSTER_JOB = background.job("cluster_run", run_cluster_job)


@pytest.fixture(scope="module")
def cluster_run() -> ClusterRun:
    """The cluster job's outcome (it started in the background when collection ended)."""
    return CLUSTER_JOB.result()


@pytest.mark.cluster
@pytest.mark.slow
def test_training_job_runs_on_the_standalone_cluster(cluster_run):
    run = cluster_run
    assert run.returncode == 0, run.failure
    # The driver used the shipped zip, and the job really ran on the cluster's executor.
    # (spark-submit merges the Python driver's stderr into its own stdout)
    banner = [line for line in (run.stdout + run.stderr).splitlines()
              if line.startswith("sparkify-submit: sparkify ")]
    assert banner and "sparkify.zip" in banner[0], banner
    # The master registered the application (named by --name or by get_spark's appName).
    assert "Registering app sparkify" in run.master_log
    assert "Asked to launch executor" in run.worker_log
    assert "Launching executor" in run.master_log


@pytest.mark.cluster
@pytest.mark.slow
def test_cluster_job_writes_a_complete_model_directory(cluster_run):
    model_dir = cluster_run.model_dir
    assert cluster_run.returncode == 0, cluster_run.failure
    model = json.loads((model_dir / "model.json").read_text())
    assert model["model_type"] in MODEL_TYPES
    assert 0.0 <= float(model["threshold"]) <= 1.0 or model["score_kind"] == "margin"
    assert model["features"] and all("name" in f and "kind" in f for f in model["features"])
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert isinstance(metrics, dict) and metrics
    # The Spark PipelineModel: metadata plus one directory per stage.
    pipeline = model_dir / "pipeline"
    assert (pipeline / "metadata").is_dir()
    stages = [p for p in (pipeline / "stages").iterdir() if p.is_dir()]
    assert stages and any(model["model_type"] in s.name for s in stages)
    # No temporary sibling left behind by the atomic write.
    leftovers = [p.name for p in model_dir.parent.iterdir() if p.name != model_dir.name]
    assert not leftovers, leftovers


@pytest.mark.cluster
@pytest.mark.slow
def test_cluster_trained_pipeline_scores_locally(cluster_run, spark):
    """The pipeline written by the cluster job loads and scores in a plain local session."""
    from pyspark.ml import PipelineModel

    model_dir = cluster_run.model_dir
    assert cluster_run.returncode == 0, cluster_run.failure
    pipeline = PipelineModel.load(str(model_dir / "pipeline"))
    features = spark.read.parquet(str(model_dir / "features.parquet"))
    scored = pipeline.transform(features)
    assert "prediction" in scored.columns
    assert scored.count() == features.count() > 0
    predictions = {r.prediction for r in scored.select("prediction").distinct().collect()}
    assert predictions <= {0.0, 1.0}


def test_cluster_helpers_clean_up_even_when_the_master_cannot_start(tmp_path):
    """A cluster whose master dies (bad port) raises with its log, and stop() is safe."""
    env = _cluster_env(tmp_path)
    cluster = StandaloneCluster(root=tmp_path, env=env)
    cluster.work_dir.mkdir()
    cluster._spawn(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", "not-a-port"], cluster.master_log)
    with pytest.raises(RuntimeError, match="did not come up"):
        cluster._wait_for(cluster.master_log, "I have been elected leader", "the Spark master")
    cluster.stop()
    assert all(p.poll() is not None for p in cluster.procs)
    shutil.rmtree(cluster.work_dir)
