"""The scorer loads a model directory and predicts with no Java anywhere and without
importing pyspark (proved in a clean subprocess that also forbids the import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scorer_fixtures as fx

CHILD = r"""
import json, sys

class NoSpark:
    # any attempt to import pyspark or py4j fails loudly
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyspark", "py4j"):
            raise ImportError("pyspark/py4j imported by the scorer: " + name)
        return None

sys.meta_path.insert(0, NoSpark())
import shutil, os
assert shutil.which("java") is None and "JAVA_HOME" not in os.environ
from sparkify.scorer import load_model
model = load_model(sys.argv[1])
rec = json.loads(sys.argv[2])
out = model.predict_records([rec])
reasons = [r.to_dict() for r in model.explain(rec, top=3)]
assert "pyspark" not in sys.modules and "py4j" not in sys.modules
print(json.dumps({"out": out, "reasons": reasons}))
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("scorer_models_nojvm")


@pytest.mark.parametrize("name", ["lr", "gbt_cat"])
def test_predict_without_java_or_pyspark(spark, base, name, tmp_path):
    model_dir = fx.fitted(spark, base, name).model_dir
    rec = {"songs_per_day": 3.0, "thumbs_down_rate": 4.0, "tenure_days": 12.0,
           "errors_per_week": 2.0, "constant": 1.0, "level": "free", "device": "ipad"}
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SPARK_HOME", "PYSPARK_PYTHON")}
    env["PATH"] = str(Path(sys.executable).parent)  # the venv's bin: no java there
    res = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), json.dumps(rec)],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    # same answer as in this (Spark-capable) process
    from sparkify.scorer import load_model

    here = load_model(model_dir).predict_records([rec])
    assert got["out"] == here
    assert got["out"][0]["band"] in ("low", "medium", "high")
    assert 1 <= len(got["reasons"]) <= 3
