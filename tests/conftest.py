"""Shared fixtures: one SparkSession for the whole run, small simulated logs.

Fixtures that need Spark import it lazily so tests of the simulator, the NumPy
scorer and the web app run without a JVM.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import background

TESTS_DIR = Path(__file__).resolve().parent
REAL_SAMPLE = TESTS_DIR / "data" / "mini_sparkify_first100.jsonl"


def pytest_collection_modifyitems(session, config, items):
    """The tests that wait for a job of their own process run last."""
    background.move_waiting_tests_last(items)


def pytest_collection_finish(session):
    """Jobs in processes of their own (cluster, console, notebook) start now, beside the other tests."""
    background.start_for(session.items)


def pytest_sessionfinish(session, exitstatus):
    background.finish_all()


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local SparkSession tuned for small data (no code generation), shared by every
    test. The JVM's own output goes to spark.log in the run's pytest temporary directory."""
    from sparkify.spark import SPARK_LOG_ENV, get_spark

    os.environ.setdefault(SPARK_LOG_ENV, str(tmp_path_factory.getbasetemp() / "spark.log"))

    session = get_spark(
        app_name="sparkify-tests",
        master="local[2]",
        shuffle_partitions=1,
        extra_conf={
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.catalogImplementation": "in-memory",
            "spark.sql.adaptive.enabled": "false",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            # small inputs: evaluating expressions costs less than generating and compiling
            # Java code for every query (no code generation: about a fifth less CPU)
            "spark.sql.codegen.wholeStage": "false",
            "spark.sql.codegen.factoryMode": "NO_CODEGEN",
        },
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def real_sample() -> Path:
    """The first 100 lines of the real mini log (real key order, literal quotes)."""
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def small_log(tmp_path_factory) -> Path:
    """A small simulated log: 200 users over the default 61-day window, fixed seed.

    Beside it lies the simulator's ground-truth table (``<stem>_truth.parquet``).
    """
    from sparkify.simulator import simulate

    out = tmp_path_factory.mktemp("sim") / "small_sparkify.json"
    simulate(out=out, users=200, seed=7, progress=False)
    return out


@pytest.fixture(scope="session")
def compact_log(tmp_path_factory) -> Path:
    """A 30-user simulated log (seed 7), for the tests that compare two ways of computing
    the same rows and need every kind of row, not many of them."""
    from sparkify.simulator import simulate

    out = tmp_path_factory.mktemp("sim") / "compact_sparkify.json"
    simulate(out=out, users=30, seed=7, progress=False)
    return out


@pytest.fixture(scope="session")
def trained_model(request, tmp_path_factory) -> Path:
    """A model directory trained on ``small_log`` (fast settings), shared by the
    scorer, app and report tests.

    ``SPARKIFY_TEST_MODEL=DIR`` uses an existing model directory instead (no Spark
    session, no training: quick runs of the web-app tests while iterating)."""
    existing = os.environ.get("SPARKIFY_TEST_MODEL")
    if existing:
        return Path(existing)
    from sparkify.modeling.train import TrainConfig, train

    spark = request.getfixturevalue("spark")
    small_log = request.getfixturevalue("small_log")
    model_dir = tmp_path_factory.mktemp("model") / "classifier"
    # the default plan; the tuning grid and the class-weight choice are checked on a smaller
    # model (tests/test_predict.py)
    train(spark, small_log, model_dir, TrainConfig.fast())
    return model_dir


# Web app tests: each module defines its own ``app`` fixture; these build on it.
@pytest.fixture()
def client(app):
    """A Flask test client for the module's ``app``."""
    return app.test_client()


@pytest.fixture(scope="module")
def bundle(app):
    """The loaded model bundle the module's ``app`` serves."""
    return app.extensions["sparkify"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return os.environ.get("CHROMIUM_PATH")
