"""What the report reads from a model directory, and the saved model's scores on its test rows.

In:  a model directory written by ``sparkify train`` (``model.json``, ``metrics.json``,
     ``data_quality.json``, ``features.parquet``, ``backtest.json``; docs/model-directory.md)
     and the event log's path (to find the simulator's ground truth beside it).
Out: the artifacts as dicts and a pandas table, :class:`ModelEvaluation` objects (labels,
     scores and probabilities of the held-out rows, scored with the JVM-free scorer) and
     notes for the reader. No Spark.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparkify.modeling.artifacts import BACKTEST_JSON

PERIOD_NAMES = {"in_time": "in time", "out_of_time": "out of time"}


@dataclass
class ModelEvaluation:
    """Scores of the saved model on rows of users it was not trained on (one row per
    user and observation date)."""

    name: str                       # e.g. "test, all rows" or "out-of-fold (train)"
    labels: np.ndarray
    scores: np.ndarray              # the model's score (probability or margin)
    probabilities: np.ndarray | None   # churn probability (None when not calibrated)
    source: str                     # how the scores were obtained
    users: np.ndarray | None = None  # the userId of each row

    @property
    def counts(self) -> dict[str, int]:
        """rows, users (distinct) and churners (churner rows)."""
        n_users = len(np.unique(self.users)) if self.users is not None else len(self.labels)
        return {"rows": int(len(self.labels)), "users": int(n_users), "churners": int(self.labels.sum())}

    @property
    def label(self) -> str:
        """The name with its counts, for legends: 'test, in time (555 rows, 40 users, 81 churner rows)'."""
        c = self.counts
        return f"{self.name} ({c['rows']:,} rows, {c['users']:,} users, {c['churners']:,} churner rows)"


def model_section(model_dir: str | Path, events_path: str | Path) -> dict[str, Any]:
    """What the report reads from a model directory (no Spark): the
    :class:`~sparkify.report.collect.ReportData` fields ``model_dir``, ``model_json``,
    ``metrics``, ``model_quality``, ``features``, ``evaluations`` (the test rows scored by
    the NumPy scorer), ``truth`` (the simulator's ground truth beside ``events_path``, if
    any), ``backtest`` (``backtest.json``, if any) and ``notes``."""
    model_dir = Path(model_dir)
    notes: list[str] = []
    model_json, metrics, model_quality, features = read_model_artifacts(model_dir)
    return {
        "model_dir": str(model_dir), "model_json": model_json, "metrics": metrics,
        "model_quality": model_quality, "features": features,
        "evaluations": evaluate_saved_model(model_dir, model_json, features, notes),
        "truth": truth_summary(truth_path_for(str(events_path))),
        "backtest": read_backtest(model_dir), "notes": notes,
    }


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file as a dict, or None when absent."""
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_backtest(model_dir: Path) -> dict[str, Any] | None:
    """The model directory's ``backtest.json`` (the latest ``sparkify backtest``), or None
    when there is none or it lacks its figures."""
    bt = read_json(Path(model_dir) / BACKTEST_JSON)
    return bt if isinstance(bt, dict) and isinstance(bt.get("figures"), dict) else None


def read_model_artifacts(model_dir: Path) -> tuple[dict, dict, dict | None, pd.DataFrame | None]:
    """(model.json, metrics.json, data_quality.json or None, features.parquet or None)."""
    model_json = read_json(model_dir / "model.json") or {}
    metrics = read_json(model_dir / "metrics.json") or {}
    quality = read_json(model_dir / "data_quality.json")
    features = None
    fp = model_dir / "features.parquet"
    if fp.exists():
        features = pd.read_parquet(fp)
        if "churn" in features:
            features["churn"] = features["churn"].astype(int)
    return model_json, metrics, quality, features


#: (rows of features.parquet, their scores) -> churn probabilities, or None when there are none.
ProbabilityReader = Callable[[pd.DataFrame, np.ndarray], np.ndarray | None]


def evaluate_saved_model(model_dir: Path, model_json: dict, features: pd.DataFrame | None,
                         notes: list[str]) -> list[ModelEvaluation]:
    """Scores of the saved model on the held-out test users' rows: all of them
    (``test, all rows``), then apart by period (``test, in time`` and ``test, out of
    time``: the latest observation date, which no training row is from), and the
    out-of-fold scores of the training rows (``out-of-fold (train)``) when kept.

    Test rows are scored afresh with :func:`sparkify.scorer.load_model` (NumPy, the same
    code the web app runs, calibrated probabilities included); when the scorer cannot
    read the model, the scores stored in ``features.parquet`` are used instead (and a
    note says so).
    """
    if features is None or "split" not in features or "churn" not in features:
        notes.append("The model directory has no features.parquet with churn and split columns: "
                     "no test-set curves.")
        return []
    to_prob = probability_reader(model_json)
    test = features[features["split"] == "test"].reset_index(drop=True)
    out = evaluate_test_rows(model_dir, test, to_prob, notes) if len(test) else []
    train = features[features["split"] == "train"]
    if "score" in train and len(train) and train["score"].notna().all():
        scores = train["score"].to_numpy(dtype=float)
        out.append(ModelEvaluation("out-of-fold (train)", train["churn"].to_numpy(dtype=int), scores,
                                   to_prob(train, scores), "out-of-fold scores stored by sparkify train",
                                   _users(train)))
    return out


def probability_reader(model_json: dict) -> ProbabilityReader:
    """How stored scores become churn probabilities for this model: the rows' own
    ``probability`` column when complete, else the model's calibration (``model.json``),
    else the scores clipped to [0, 1] when they are probabilities (None for margins)."""
    from sparkify.modeling.calibration import Calibration

    score_kind = model_json.get("score_kind", "probability")
    try:
        calibration = Calibration.from_dict(model_json.get("calibration"))
    except (ValueError, KeyError, TypeError):
        calibration = None

    def to_prob(frame: pd.DataFrame, scores: np.ndarray) -> np.ndarray | None:
        if "probability" in frame and frame["probability"].notna().all():
            return frame["probability"].to_numpy(dtype=float)
        if calibration is not None:
            return calibration(scores)
        return np.clip(scores, 0.0, 1.0) if score_kind == "probability" else None

    return to_prob


def evaluate_test_rows(model_dir: Path, test: pd.DataFrame, to_prob: ProbabilityReader,
                     notes: list[str]) -> list[ModelEvaluation]:
    """The test rows' evaluations: all of them, then each period apart when the rows span
    two (none when they cannot be scored; ``notes`` says why)."""
    scored = score_test_rows(model_dir, test, to_prob, notes)
    if scored is None:
        return []
    scores, probs, source = scored
    labels = test["churn"].to_numpy(dtype=int)
    ids = _users(test)
    out = [ModelEvaluation("test, all rows", labels, scores, probs, source, ids)]
    if "period" in test and test["period"].nunique() > 1:
        for period in ("in_time", "out_of_time"):
            mask = (test["period"] == period).to_numpy()
            if mask.any():
                out.append(ModelEvaluation(
                    f"test, {PERIOD_NAMES[period]}", labels[mask], scores[mask],
                    None if probs is None else probs[mask], source,
                    None if ids is None else ids[mask]))
    return out


def score_test_rows(model_dir: Path, test: pd.DataFrame, to_prob: ProbabilityReader,
                    notes: list[str]) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """(scores, probabilities or None, where they come from) of the test rows: scored now
    with the NumPy scorer, else the scores ``sparkify train`` stored (with a note), else
    None (with a note)."""
    try:
        from sparkify.scorer import load_model

        model = load_model(model_dir)
        pred = model.predict(test[model.feature_names])
        scores = pred["score"].to_numpy(dtype=float)
        probs = pred["probability"].to_numpy(dtype=float)
        probs = None if np.isnan(probs).all() else probs
        return scores, probs, "scored now with the NumPy scorer (sparkify.scorer)"
    except Exception as exc:  # noqa: BLE001 - fall back to the stored scores, say why
        if "score" not in test:
            notes.append(f"Could not score the test users ({exc}); no test-set curves.")
            return None
        notes.append(f"The NumPy scorer could not load the model ({exc}); the test scores "
                     "stored by `sparkify train` are shown.")
        scores = test["score"].to_numpy(dtype=float)
        return scores, to_prob(test, scores), "stored in features.parquet by sparkify train"


def _users(frame: pd.DataFrame) -> np.ndarray | None:
    return frame["userId"].to_numpy() if "userId" in frame else None


def truth_path_for(events_path: str) -> Path | None:
    """The simulator's ground truth beside a log (``<stem>_truth.parquet`` for a file,
    ``<dir>/_truth.parquet`` for a directory), or None."""
    if "://" in events_path and not events_path.startswith("file://"):
        return None
    p = Path(events_path.removeprefix("file://"))
    if p.is_dir():
        cand = [p / "_truth.parquet"]
    else:
        name = p.name
        stem = name
        for ext in (".json.gz", ".jsonl.gz", ".json", ".jsonl", ".gz"):
            if name.endswith(ext):
                stem = name[: -len(ext)]
                break
        cand = [p.with_name(f"{stem}_truth.parquet"), p.parent / "_truth.parquet"]
    return next((c for c in cand if c.exists()), None)


def truth_summary(path: Path | None) -> dict[str, Any] | None:
    """Users and churners of the simulator's ground-truth table (and its cohorts)."""
    if path is None:
        return None
    try:
        t = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - an unreadable truth table is only a missing extra
        return None
    out: dict[str, Any] = {"path": str(path), "users": int(len(t))}
    if "churned" in t:
        out["churners"] = int(t["churned"].astype(bool).sum())
    if "cohort" in t and "churned" in t:
        by = t.groupby("cohort")["churned"].agg(["size", "mean"]).reset_index()
        out["cohorts"] = [{"cohort": str(r["cohort"]), "users": int(r["size"]), "churn_rate": float(r["mean"])}
                          for _, r in by.iterrows()]
    return out

