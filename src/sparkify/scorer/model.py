"""``ChurnModel``: a model directory (``model.json`` + ``pipeline/``) ready to score and
explain customers, with no JVM. See docs/model-directory.md for the directory contract.
A missing (None/NaN) numeric value takes model.json's ``missing_numeric`` when it is set
(as in training), else it is a ``ScoringInputError``; a missing key is always an error.

    model = load_model("model/classifier")
    model.predict([{"songs_per_day": 12.0, "level": "paid", ...}])
        -> DataFrame[score, probability, decision, band]
    model.explain(record, top=5) -> [Reason(feature, value, contribution, direction), ...]

Scores: ``score`` = the classifier's P(churn) for LogisticRegression / RandomForest / GBT,
the margin for LinearSVC; ``probability`` = model.json's ``calibration`` applied to the score
(Platt or isotonic, :class:`sparkify.modeling.calibration.Calibration`); without one it is
the score itself (probability models) or NaN (LinearSVC).
``decision`` = score > model.json ``threshold``. ``band``: "high" when the decision is churn,
"medium" when score > the medium edge, else "low"; edges from model.json ``bands``
{"medium", "high"} when present, else high = threshold and medium = threshold / 2
(probability) or threshold - 1 (margin, i.e. inside the SVM margin).

Explanations: contributions of the RAW features (one-hot slots summed back): exact TreeSHAP
for RF (on the probability) and GBT (on the margin); ``w_j * (x_j - mean_j)`` on the margin
(log-odds for LR) for the linear models, with the mean of the scaled training rows of
``features.parquet`` (split == "train"), or of a typical customer (medians / defaults of
model.json) when that file is absent.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from sparkify.modeling.calibration import Calibration
from sparkify.scorer.errors import ModelLoadError, ScoringInputError
from sparkify.scorer.linear import LinearSVC, LogisticRegression
from sparkify.scorer.pipeline import PipelineScorer
from sparkify.scorer.shap import LeafPaths, build_leaf_paths, linear_contributions, tree_shap
from sparkify.scorer.trees import GBT, RandomForest

SUPPORTED_FORMAT = 1


@dataclass(frozen=True)
class Reason:
    """One raw feature's contribution to a customer's score."""

    feature: str
    value: Any
    contribution: float
    direction: str  # "raises" or "lowers" the churn risk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Explanation:
    """All contributions for one customer: ``base_value + sum(contributions) == output``
    on ``scale`` ("probability" for RF, "margin" for GBT/LinearSVC, "log-odds" for LR)."""

    base_value: float
    output: float
    contributions: dict[str, float]
    scale: str


def _finite_number(v: Any) -> float | None:
    """A raw numeric input (number or numeric text) as a finite float, else None."""
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    try:
        f = float(v)
    except (OverflowError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _read_model_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: not a model directory written by `sparkify train`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    fmt = meta.get("format", SUPPORTED_FORMAT)
    if fmt != SUPPORTED_FORMAT:
        raise ModelLoadError(f"{path}: format {fmt!r} is not supported (expected {SUPPORTED_FORMAT})")
    for key in ("model_type", "threshold", "features"):
        if key not in meta:
            raise ModelLoadError(f"{path} has no {key!r}")
    feats = meta["features"]
    if not isinstance(feats, list) or not all(isinstance(f, dict) and f.get("name") for f in feats):
        raise ModelLoadError(f"{path}: 'features' must be a list of objects with a 'name'")
    thr = meta["threshold"]
    if not isinstance(thr, (int, float)) or isinstance(thr, bool) or not math.isfinite(thr):
        raise ModelLoadError(f"{path}: 'threshold' must be a finite number, not {thr!r}")
    try:
        Calibration.from_dict(meta.get("calibration"))
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{path}: 'calibration' must be null, {{\"method\": \"platt\", \"a\": number, "
                             f"\"b\": number}} or {{\"method\": \"isotonic\", \"x\": [...], \"y\": [...]}}: {exc}") from exc
    return meta


class ChurnModel:
    """A loaded model directory. Attributes: ``features`` (model.json list), ``model_type``,
    ``threshold``, ``score_kind``, ``calibration``, ``metadata`` (all of model.json),
    ``scorer`` (the ``PipelineScorer``), ``directory``."""

    def __init__(self, directory: Path, metadata: dict[str, Any], scorer: PipelineScorer):
        self.directory = Path(directory)
        self.metadata = metadata
        self.scorer = scorer
        self.features: list[dict[str, Any]] = list(metadata["features"])
        self.feature_names = [f["name"] for f in self.features]
        self.model_type: str = metadata["model_type"]
        self.threshold = float(metadata["threshold"])
        clf = scorer.classifier
        self.score_kind: str = metadata.get("score_kind") or clf.score_kind
        if self.score_kind != clf.score_kind:
            raise ModelLoadError(
                f"model.json says score_kind {self.score_kind!r} but a {scorer.model_type} "
                f"gives a {clf.score_kind}")
        self.calibration = Calibration.from_dict(metadata.get("calibration"))
        bands = metadata.get("bands") or {}
        default_medium = self.threshold / 2 if self.score_kind == "probability" else self.threshold - 1.0
        try:
            self.high_edge = float(bands.get("high", self.threshold))
            self.medium_edge = float(bands.get("medium", default_medium))
        except (AttributeError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"model.json 'bands' must be {{\"medium\": number, \"high\": number}}: {exc}") from exc
        self._kinds = dict(scorer.raw_inputs)
        self._numeric_names = [n for n, k in self._kinds.items() if k == "numeric"]
        self._categorical_names = [n for n, k in self._kinds.items() if k != "numeric"]
        fill = metadata.get("missing_numeric")
        #: value a missing (None/NaN) numeric input takes before the pipeline, as in training;
        #: None: a missing numeric value is a ``ScoringInputError``
        self.missing_numeric = float(fill) if isinstance(fill, (int, float)) and not isinstance(fill, bool) \
            and math.isfinite(fill) else None
        self._paths: LeafPaths | None = None
        self._background: np.ndarray | None = None
        self.background_source: str | None = None
        if isinstance(clf, (RandomForest, GBT)):
            self._paths = self._leaf_paths()
        #: raw feature of each vector slot (one-hot slots share their source), for summing
        #: a slot's contribution into its feature with one bincount
        self._sources = list(dict.fromkeys(s.source for s in scorer.feature_slots))
        index = {name: i for i, name in enumerate(self._sources)}
        self._slot_source = np.array([index[s.source] for s in scorer.feature_slots], dtype=np.intp)

    # ------------------------------------------------------------------ inputs
    def _columns(self, records) -> tuple[dict[str, np.ndarray], list[dict[str, Any]] | None]:
        """records (dict, list of dicts or DataFrame) -> coerced raw columns."""
        if hasattr(records, "columns") and hasattr(records, "to_numpy"):
            cols = self.scorer.columns_from_frame(records)
            if self.missing_numeric is not None:
                for name, kind in self._kinds.items():
                    if kind == "numeric" and np.isnan(cols[name]).any():
                        cols[name] = np.where(np.isnan(cols[name]), self.missing_numeric, cols[name])
            return cols, None
        if isinstance(records, dict):
            records = [records]
        if not isinstance(records, (list, tuple)) or not records:
            raise ScoringInputError("expected a record (object) or a non-empty list of records")
        fast = self._columns_of_clean_records(records)
        if fast is not None:
            return fast, list(records)
        missing: list[str] = []
        bad: list[str] = []
        cols: dict[str, list] = {name: [] for name in self._kinds}
        for rec in records:
            if not isinstance(rec, dict):
                raise ScoringInputError("each record must be an object of feature values")
            for name, kind in self._kinds.items():
                if name not in rec:
                    if name not in missing:
                        missing.append(name)
                    continue
                v = rec[name]
                if kind == "numeric":
                    if self.missing_numeric is not None and (
                            v is None or (isinstance(v, float) and math.isnan(v))):
                        v = self.missing_numeric
                    v = _finite_number(v)
                    if v is None:
                        if name not in bad:
                            bad.append(name)
                        v = math.nan
                cols[name].append(v)
        if missing:
            raise ScoringInputError(f"missing field(s): {', '.join(missing)}", missing)
        if bad:
            raise ScoringInputError(f"not a finite number: {', '.join(bad)}", bad)
        return self.scorer.coerce(cols), list(records)

    def _columns_of_clean_records(self, records) -> dict[str, np.ndarray] | None:
        """The columns in one step when every record is a dict holding every input, each
        numeric one a finite float or int (what the web app's validation produces); None
        otherwise (the general path then checks and names every problem)."""
        numeric, categorical = self._numeric_names, self._categorical_names
        try:
            rows = [[rec[name] for name in numeric] for rec in records]
            cats = [[rec[name] for name in categorical] for rec in records]
        except (KeyError, TypeError):
            return None
        for row in rows:
            for v in row:
                if type(v) is not float and type(v) is not int:
                    return None
        try:
            matrix = np.array(rows, dtype=np.float64).reshape(len(records), len(numeric))
        except OverflowError:  # an int beyond float range
            return None
        if not np.isfinite(matrix).all():
            return None
        cols: dict[str, np.ndarray] = {name: matrix[:, j] for j, name in enumerate(numeric)}
        for j, name in enumerate(categorical):
            arr = np.empty(len(records), dtype=object)
            for i, row in enumerate(cats):  # element-wise: a list value stays one object
                arr[i] = row[j]
            cols[name] = arr
        return cols

    # ------------------------------------------------------------------ scoring
    def _scores(self, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        score, prob, _ = self._scored(cols)
        return score, prob

    def _scored(self, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(score, probability, the pipeline's output columns incl. ``features``)."""
        out = self.scorer.transform_columns(cols)
        score = self.scorer.classifier.churn_score(out)
        if self.calibration is not None:
            prob = self.calibration(score)
        elif self.score_kind == "probability":
            prob = score
        else:
            prob = np.full(score.shape, np.nan)
        return score, prob, out

    def _bands(self, score: np.ndarray) -> np.ndarray:
        return np.where(score > self.high_edge, "high",
                        np.where(score > self.medium_edge, "medium", "low"))

    def predict(self, records):
        """In: one record (dict), a list of records or a pandas DataFrame of raw feature
        values. Out: a DataFrame with ``score``, ``probability`` (NaN for an uncalibrated
        LinearSVC), ``decision`` (bool, score > threshold) and ``band`` (low/medium/high),
        one row per record (a DataFrame input keeps its index).
        Raises ``ScoringInputError`` (with ``fields``) for missing or non-numeric values."""
        import pandas as pd

        cols, _ = self._columns(records)
        score, prob = self._scores(cols)
        index = records.index if hasattr(records, "index") and hasattr(records, "columns") else None
        return pd.DataFrame({"score": score, "probability": prob,
                             "decision": score > self.threshold, "band": self._bands(score)},
                            index=index)

    def predict_records(self, records, reasons: bool = False, top: int = 5) -> list[dict[str, Any]]:
        """``predict`` as JSON-ready dicts (probability None when absent).

        With ``reasons``, each dict also holds ``reasons``: the :meth:`explain` list of the
        record, computed from the same pass (the pipeline runs once for score and reasons)."""
        cols, recs = self._columns(records)
        score, prob, out = self._scored(cols)
        bands = self._bands(score)
        rows = [{"score": float(s), "probability": None if math.isnan(p) else float(p),
                 "decision": bool(s > self.threshold), "band": str(b)}
                for s, p, b in zip(score.tolist(), prob.tolist(), bands.tolist())]
        if reasons:
            for i, row in enumerate(rows):
                record = recs[i] if recs is not None else records.iloc[i].to_dict()
                row["reasons"] = self._reasons(record, self._explanation(out, i), top)
        return rows

    # ------------------------------------------------------------------ explanations
    @property
    def explanation_scale(self) -> str:
        clf = self.scorer.classifier
        if isinstance(clf, RandomForest):
            return "probability"
        if isinstance(clf, LogisticRegression):
            return "log-odds"
        return "margin"

    def _leaf_paths(self) -> LeafPaths:
        clf = self.scorer.classifier
        forest = clf.forest
        if isinstance(clf, RandomForest):
            value = clf.node_votes[:, 1] / forest.num_trees
        else:
            sizes = np.diff(np.append(forest.roots, len(forest.feature)))
            value = forest.prediction * np.repeat(forest.weights, sizes)
        return build_leaf_paths(forest, value)

    def _typical_record(self) -> dict[str, Any]:
        rec = {}
        for f in self.features:
            if f.get("kind") == "categorical":
                cats = f.get("categories") or []
                rec[f["name"]] = f.get("default", cats[0] if cats else None)
            else:
                rec[f["name"]] = f.get("median", 0.0)
        return rec

    def background_mean(self) -> np.ndarray:
        """Mean scaled feature vector of the training rows (``features.parquet``, split
        train), else of a typical customer; cached."""
        if self._background is not None:
            return self._background
        path = self.directory / "features.parquet"
        if path.exists():
            try:
                import pyarrow.parquet as pq

                df = pq.read_table(path).to_pandas()
                if "split" in df.columns and (df["split"] == "train").any():
                    df = df[df["split"] == "train"]
                X = self.scorer.features(self._columns(df)[0])
                self._background = X.mean(axis=0)
                self.background_source = f"mean of {len(df)} training rows"
                return self._background
            except (OSError, ValueError, KeyError, ImportError) as exc:
                self.background_source = f"typical customer ({path.name} unusable: {exc})"
        try:
            cols, _ = self._columns(self._typical_record())
            self._background = self.scorer.features(cols)[0]
            self.background_source = self.background_source or "typical customer (model.json medians)"
        except ScoringInputError as exc:
            self._background = np.zeros(len(self.scorer.feature_slots))
            self.background_source = f"zero vector (no usable training rows or medians: {exc})"
        return self._background

    def contributions(self, record: dict[str, Any]) -> Explanation:
        """In: one record. Out: its ``Explanation`` (every raw feature's contribution)."""
        cols, recs = self._columns(record)
        if recs is not None and len(recs) != 1:
            raise ScoringInputError("explain takes one record")
        return self._explanation(self.scorer.transform_columns(cols), 0)

    def _explanation(self, out: dict[str, np.ndarray], i: int) -> Explanation:
        """Row ``i``'s Explanation from the pipeline's output columns (``transform_columns``)."""
        x = out["features"][i]
        clf = self.scorer.classifier
        if isinstance(clf, (LogisticRegression, LinearSVC)):
            w, b = clf.linear_terms()
            mean = self.background_mean()
            slot_phi = linear_contributions(w, x, mean)
            base = float(w @ mean + b)
            output = float(x @ w + b)
        else:
            assert self._paths is not None
            slot_phi = tree_shap(clf.forest, self._paths, x)
            base = self._paths.expected_value
            output = float(out["probability"][i, 1]) if isinstance(clf, RandomForest) else \
                float(out["rawPrediction"][i, 1])
        sums = np.bincount(self._slot_source, weights=slot_phi, minlength=len(self._sources))
        per_feature = dict(zip(self._sources, sums.tolist()))
        return Explanation(base_value=base, output=output, contributions=per_feature,
                           scale=self.explanation_scale)

    def explain(self, record: dict[str, Any], top: int = 5) -> list[Reason]:
        """In: one record, how many reasons. Out: the ``top`` raw features with the largest
        absolute non-zero contribution, largest first ("raises"/"lowers" the churn risk)."""
        if isinstance(record, list):
            if len(record) != 1:
                raise ScoringInputError("explain takes one record")
            record = record[0]
        return self._reasons(record, self.contributions(record), top)

    @staticmethod
    def _reasons(record: Any, exp: Explanation, top: int) -> list[Reason]:
        ranked = sorted(((k, v) for k, v in exp.contributions.items() if v != 0.0),
                        key=lambda kv: -abs(kv[1]))
        reasons = []
        for name, value in ranked[: max(0, int(top))]:
            raw = record.get(name) if isinstance(record, dict) else None
            reasons.append(Reason(feature=name, value=raw, contribution=float(value),
                                  direction="raises" if value > 0 else "lowers"))
        return reasons


def load_model(model_dir: str | Path) -> ChurnModel:
    """In: a model directory (``model.json`` + ``pipeline/``). Out: a ``ChurnModel``.
    Raises ``ModelLoadError`` with a clear message when it is missing, corrupt or
    unsupported, or when model.json and the pipeline disagree."""
    directory = Path(model_dir)
    if not directory.is_dir():
        raise ModelLoadError(f"model directory {directory} does not exist (run `sparkify train` first)")
    meta = _read_model_json(directory / "model.json")
    scorer = PipelineScorer.load(directory / "pipeline")
    if meta["model_type"] != scorer.model_type:
        raise ModelLoadError(
            f"model.json says {meta['model_type']} but the pipeline's classifier is a {scorer.model_type}")
    names = {f["name"] for f in meta["features"]}
    undescribed = [c for c in scorer.raw_inputs if c not in names]
    if undescribed:
        raise ModelLoadError(
            f"the pipeline reads column(s) {', '.join(undescribed)} that model.json 'features' does not describe")
    kinds = {f["name"]: f.get("kind") for f in meta["features"]}
    for name, kind in scorer.raw_inputs.items():
        declared = kinds.get(name)
        if kind == "string" and declared not in (None, "categorical"):
            raise ModelLoadError(f"model.json says {name} is {declared} but the pipeline indexes it as a category")
    return ChurnModel(directory, meta, scorer)


def iter_reasons(reasons: Iterable[Reason]) -> list[dict[str, Any]]:
    """Reasons as JSON-ready dicts."""
    return [r.to_dict() for r in reasons]
