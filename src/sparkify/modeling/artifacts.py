"""The model directory: build it in a temporary sibling, swap it in atomically, read it back.

Layout (``docs/model-directory.md``): ``pipeline/`` (Spark PipelineModel, written by
Spark), ``model.json``, ``metrics.json``, ``data_quality.json``, ``features.parquet``,
``activity.parquet``, ``MODEL_CARD.md`` (and ``quarantine/`` when the log had malformed
lines). The model directory must be a local or mounted path visible to the driver:
the small files are written by the driver; on a cluster it must also be reachable by
the executors (shared mount) because Spark writes ``pipeline/``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

MODEL_JSON = "model.json"
METRICS_JSON = "metrics.json"
QUALITY_JSON = "data_quality.json"
FEATURES_PARQUET = "features.parquet"
ACTIVITY_PARQUET = "activity.parquet"
MODEL_CARD = "MODEL_CARD.md"
#: The latest backtest (``sparkify backtest``), written beside the model and shown in its card.
BACKTEST_JSON = "backtest.json"
PIPELINE_DIR = "pipeline"
#: the malformed lines of the training log (only when it had any)
QUARANTINE_DIR = "quarantine"
REQUIRED = (PIPELINE_DIR, MODEL_JSON, METRICS_JSON, QUALITY_JSON, FEATURES_PARQUET, ACTIVITY_PARQUET,
            MODEL_CARD)


# --------------------------------------------------------------------------- atomic write
def swap_in(new_dir: Path, target: Path) -> None:
    """Replace ``target`` by ``new_dir`` (same parent): rename the old one aside, rename
    the new one in, then delete the old one. If the second rename fails the old one is
    put back, so ``target`` always holds a complete model or nothing new."""
    old = None
    if target.exists():
        old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    try:
        os.replace(new_dir, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target``; on normal exit swap it in, on any
    exception delete it and leave ``target`` untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- JSON
def _clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None, Paths to str."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(_clean(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- contents
def activity_table(days, labels):
    """Daily active users, events and songs per group (churner / stayer) as pandas.

    In: the session-day rows of the log (``SessionDays.df``: userId, day, p_events,
    p_songs), a small DataFrame [userId, churn] (the labelled users). Out: pandas [date,
    group, active_users, events, songs] (a few hundred rows: days x 2). Users outside
    ``labels`` are left out."""
    from pyspark.sql import functions as F

    groups = labels.select("userId", F.when(F.col("churn") == 1, F.lit("churner"))
                           .otherwise(F.lit("stayer")).alias("group"))
    daily = (days.join(F.broadcast(groups), "userId", "inner")
             .withColumn("date", F.to_date(F.timestamp_millis(F.col("day") * 86_400_000)))
             .groupBy("date", "group")
             .agg(F.count_distinct("userId").alias("active_users"),
                  F.sum("p_events").alias("events"),
                  F.sum("p_songs").alias("songs"))
             .orderBy("date", "group"))
    pdf = daily.toPandas()
    for c in ("active_users", "events", "songs"):
        pdf[c] = pdf[c].astype("int64")
    return pdf


def feature_entries(specs, train_pdf, pipeline_model, long_days: int) -> list[dict]:
    """model.json ``features``: each model input with kind, unit, description (its windows
    ``long_days`` and ``sparkify.features.RECENT_DAYS`` days long) and its
    training range (numeric: min/max/median/p01/p99 over the training users) or its
    categories in the StringIndexer's order (categorical; default = most frequent)."""
    from pyspark.ml.feature import StringIndexerModel

    labels: dict[str, list[str]] = {}
    for stage in pipeline_model.stages:
        if isinstance(stage, StringIndexerModel):
            for col, arr in zip(stage.getInputCols(), stage.labelsArray):
                labels[col] = list(arr)
    out = []
    for f in specs:
        entry: dict[str, Any] = {"name": f.name, "kind": f.kind, "description": f.describe(long_days)}
        if f.kind == "numeric":
            v = train_pdf[f.name].astype(float).to_numpy()
            q = np.quantile(v, [0.01, 0.5, 0.99]) if len(v) else [0.0, 0.0, 0.0]
            entry.update(unit=f.unit, min=float(np.min(v)) if len(v) else 0.0,
                         max=float(np.max(v)) if len(v) else 0.0,
                         median=float(q[1]), p01=float(q[0]), p99=float(q[2]))
        else:
            cats = labels.get(f.name, list(f.categories or ()))
            entry.update(categories=cats, default=cats[0] if cats else None)
        out.append(entry)
    return out


def top_inputs(importances: list[dict], specs) -> list[str]:
    """Input columns ordered by their largest |importance or coefficient| (one-hot slots
    ``<col>_ohe_<category>`` count for their column)."""
    names = [f.name for f in specs]
    best: dict[str, float] = {}
    for row in importances:
        slot = row["slot"]
        col = next((n for n in names if slot == n or slot.startswith(f"{n}_ohe_")), slot)
        best[col] = max(best.get(col, 0.0), abs(float(row["value"])))
    return sorted(best, key=lambda c: -best[c])


def model_json(*, family: str, threshold: float, calibration, spec, specs, train_pdf, pipeline_model,
               spark_version: str, importances: list[dict] | None = None) -> dict:
    """The model.json contract (see docs/model-directory.md), plus ``family``,
    ``top_inputs`` (input columns by importance) and ``missing_numeric`` (the value a
    missing numeric input takes)."""
    from sparkify.modeling.pipelines import FAMILY_NAMES

    return {
        "format": 1,
        "model_type": FAMILY_NAMES[family],
        "family": family,
        "score_kind": "margin" if family == "svc" else "probability",
        "threshold": float(threshold),
        "calibration": calibration.to_dict() if calibration is not None else None,
        "label": spec.to_dict(),
        "features": feature_entries(specs, train_pdf, pipeline_model, spec.long_days),
        "top_inputs": top_inputs(importances or [], specs),
        "missing_numeric": 0.0,
        "spark_version": spark_version,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_all(directory: Path, *, pipeline_model, model_json: dict, metrics: dict, quality: dict,
              features_pdf, activity_pdf) -> None:
    """Write every artifact into ``directory`` (the staging directory)."""
    directory = Path(directory)
    pipeline_model.write().overwrite().save(str(directory / PIPELINE_DIR))
    write_json(directory / MODEL_JSON, model_json)
    write_json(directory / QUALITY_JSON, quality)
    features_pdf.to_parquet(directory / FEATURES_PARQUET, index=False)
    activity_pdf.to_parquet(directory / ACTIVITY_PARQUET, index=False)
    write_json(directory / METRICS_JSON, metrics)
    write_model_card(directory, model_json, metrics, quality)


def write_model_card(directory: Path, model_json: dict, metrics: dict, quality: dict) -> None:
    """(Re)write MODEL_CARD.md in ``directory`` from model.json, metrics, the quality summary
    and the directory's latest backtest (``backtest.json``, when there is one)."""
    from sparkify.modeling.model_card import render_model_card

    backtest = Path(directory) / BACKTEST_JSON
    (Path(directory) / MODEL_CARD).write_text(
        render_model_card(model_json, metrics, quality, read_json(backtest) if backtest.exists() else None),
        encoding="utf-8")


def load_model_json(model_dir: Path) -> dict:
    """model.json of a model directory; FileNotFoundError with a hint if it is not one."""
    path = Path(model_dir) / MODEL_JSON
    if not path.exists():
        raise FileNotFoundError(f"no model at {model_dir} (missing {MODEL_JSON}); train one with "
                                f"`sparkify train EVENTS --model {model_dir}`")
    return read_json(path)
