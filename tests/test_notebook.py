"""The analysis notebook runs end to end on a small simulated log (so it never rots),
and is stored without outputs."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import background

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sparkify.ipynb"

nbformat = pytest.importorskip("nbformat")


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)


def test_notebook_uses_the_feature_catalogue_and_tells_the_new_story():
    """Every feature the notebook names is in the catalogue (no name from before the
    fixed windows), and its text covers snapshots, windows, the grouped split,
    calibration and the out-of-time check."""
    import re

    from sparkify.features import FEATURE_NAMES

    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    for old in ("n_songs", "n_sessions", "days_since_last_activity", "activity_trend", "songs_last_14d",
                "n_add_friend", "observation_days"):
        assert not re.search(rf"\b{old}\b", source), old
    main = re.search(r"MAIN = \[(.*?)\]", source, re.S)
    assert main, "the notebook's list of main features"
    named = re.findall(r'"([a-z_]+)"', main.group(1))
    assert named and set(named) <= set(FEATURE_NAMES), set(named) - set(FEATURE_NAMES)
    for idea in ("snapshot", "fixed window", "split by user", "calibrat", "out of time", "reliability"):
        assert idea in text, idea


#: Runs the notebook in a fresh kernel of this interpreter and writes the executed copy.
#: Jupyter starts the kernel in a session of its own, where Linux's scheduler no longer
#: applies the background job's low priority (it weighs sessions against each other):
#: a first cell, removed again before the copy is written, gives the kernel's session
#: the same low priority.
RUNNER = """
import sys, nbclient, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
LOWER = ("try:\\n"
         "    with open('/proc/self/autogroup', 'w') as f:\\n"
         "        f.write(%r)\\n"
         "except OSError:\\n"
         "    pass\\n") % sys.argv[4]
nb.cells.insert(0, nbformat.v4.new_code_cell(LOWER))
nbclient.NotebookClient(nb, kernel_name="python3", timeout=1200, allow_errors=False,
                        resources={"metadata": {"path": sys.argv[2]}}).execute()
nb.cells.pop(0)
nbformat.write(nb, sys.argv[3])
"""


@dataclass
class NotebookRun:
    workdir: Path
    executed: Path
    returncode: int
    stderr: str


def run_notebook(root: Path) -> NotebookRun:
    """Every cell on a tiny simulated log with fast settings, in a subprocess (its own
    kernel and SparkSession). In: an empty directory. Out: where the executed notebook and
    the work directory are. Runs in the background from the start of the test run."""
    pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import NoSuchKernel, get_kernel_spec

    from sparkify.simulator import simulate

    try:
        get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no python3 Jupyter kernel (pip install ipykernel)")
    log = root / "tiny.json"
    simulate(out=log, users=120, seed=11, progress=False)
    env = {**background.short_lived_jvm_env(dict(os.environ)), "SPARKIFY_EVENTS": str(log), "SPARKIFY_WORKDIR": str(root / "work"),
           "SPARKIFY_FAST": "1", "SPARKIFY_MODELS": "lr", "SPARKIFY_MASTER": "local[2]"}
    executed = root / "executed.ipynb"
    # "python" in the venv's kernelspec is resolved to this interpreter by jupyter_client
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(NOTEBOOK), str(NOTEBOOK.parent), str(executed),
                           str(background.BACKGROUND_NICENESS)],
                          env=env, capture_output=True, text=True, timeout=1500)
    return NotebookRun(root / "work", executed, proc.returncode, proc.stderr[-6000:])


NOTEBOOK_JOB = background.job("notebook_run", run_notebook)


@pytest.fixture(scope="module")
def notebook_run() -> NotebookRun:
    return NOTEBOOK_JOB.result()


@pytest.mark.slow
def test_notebook_executes_on_a_small_log(notebook_run):
    """Runs every cell in a fresh kernel of this interpreter (its own SparkSession) on a
    tiny simulated log with fast settings, then checks what the cells produced."""
    assert notebook_run.returncode == 0, notebook_run.stderr
    nb = nbformat.read(notebook_run.executed, as_version=4)

    # a stream may arrive in pieces (the kernel flushes on a timer): join them as written
    text = "".join(
        o.get("text", "") if o.get("output_type") == "stream" else str(o.get("data", {}).get("text/plain", "")) + "\n"
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    import json
    import re

    model_dir = notebook_run.workdir / "classifier"
    assert (model_dir / "model.json").exists()
    metrics = json.loads((model_dir / "metrics.json").read_text())
    d, test = metrics["data"], metrics["best"]["test"]
    # the snapshots, and the table train() built, with their counts
    assert re.search(r"\d+ observation dates, every 7 days", text)
    assert f"training table: {d['rows']:,} rows of {d['users']:,} users, {d['churner_rows']:,} churner rows" in text
    assert f"{d['test_out_of_time_rows']:,} of them out of time" in text
    assert "churn-class F1" in text
    assert f"test: {test['rows']:,} rows of {test['users']:,} users, {test['churners']:,} churner rows" in text
    # calibration and the out-of-time check
    cal = metrics["best"]["calibration"]
    assert f"calibration: {cal['method']}" in text
    oot = metrics["best"]["periods"]["out_of_time"]
    assert f"Out of time ({oot['rows']:,} rows of {oot['users']:,} users, {oot['churners']:,} churner rows)" in text
    assert f"out of fold ({cal['out_of_fold']['rows']:,} rows of {cal['out_of_fold']['users']:,} users" in text
    # the NumPy scorer reproduces the saved decisions and probabilities
    assert "decisions agree with the saved confusion matrix: True" in text
    assert f"expected churners from the scorer's probabilities: {test['expected_churners']:.1f}" in text
    report = notebook_run.workdir / "sparkify_report.html"
    assert report.exists() and report.stat().st_size > 1_000_000
    assert 'id="period-table"' in report.read_text(encoding="utf-8")
    # the charts rendered as Plotly outputs (the reliability curve among them)
    plotly = [o["data"]["application/vnd.plotly.v1+json"] for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plotly) >= 9
    assert any("Reliability" in str(fig.get("layout", {}).get("title", "")) for fig in plotly)
