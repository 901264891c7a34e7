"""The analysis notebook runs end to end on a small simulated log (so it never rots),
and is stored without outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sparkify.ipynb"

nbformat = pytest.importorskip("nbformat")


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)


@pytest.mark.slow
def test_notebook_executes_on_a_small_log(tmp_path):
    """Runs every cell in a fresh kernel of this interpreter (its own SparkSession) on a
    tiny simulated log with fast settings, then checks what the cells produced."""
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import NoSuchKernel, get_kernel_spec

    from sparkify.simulator import simulate

    log = tmp_path / "tiny.json"
    simulate(out=log, users=120, seed=11, progress=False)
    try:
        get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no python3 Jupyter kernel (pip install ipykernel)")

    env = {"SPARKIFY_EVENTS": str(log), "SPARKIFY_WORKDIR": str(tmp_path / "work"),
           "SPARKIFY_FAST": "1", "SPARKIFY_MODELS": "lr,rf", "SPARKIFY_MASTER": "local[2]"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)   # the kernel inherits the test process's environment
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(
            nb, kernel_name="python3", timeout=1200, allow_errors=False,
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )
        # "python" in the venv's kernelspec is resolved to this interpreter by jupyter_client
        assert Path(sys.executable).exists()
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # a stream may arrive in pieces (the kernel flushes on a timer): join them as written
    text = "".join(
        o.get("text", "") if o.get("output_type") == "stream" else str(o.get("data", {}).get("text/plain", "")) + "\n"
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "churn-class F1" in text
    assert "decisions agree with the saved confusion matrix: True" in text
    report = tmp_path / "work" / "sparkify_report.html"
    assert report.exists() and report.stat().st_size > 1_000_000
    assert (tmp_path / "work" / "classifier" / "model.json").exists()
    # the charts rendered as Plotly outputs
    plotly_outputs = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                         if "application/vnd.plotly.v1+json" in o.get("data", {}))
    assert plotly_outputs >= 8
