"""What the app loads once at start-up, and the scores it re-reads when they change.

:func:`load_bundle` reads a model directory (docs/model-directory.md) into a
:class:`ModelBundle`: the NumPy scorer, the form's field specs, metrics, data
quality, the small training tables and the dashboard's pre-rendered charts.
:class:`ScoresStore` serves the latest ``sparkify score`` output for user
look-up and the ranked at-risk list, re-reading the file when its mtime changes.

Nothing here imports pyspark.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparkify.webapp.validation import FieldSpec, field_specs

log = logging.getLogger(__name__)

IMPORTANCE_SAMPLE = 200  # training rows explained to estimate global importances
IMPORTANCE_BUDGET_S = 1.0  # ... within about this much start-up time
MAIN_FEATURES = 6  # panels in the churners-vs-stayers chart
KEY_FIELDS = 10  # form fields shown unfolded (most important first)


class AppStartupError(RuntimeError):
    """The app cannot start (missing or unreadable model directory); the message says why."""


@dataclass
class ModelBundle:
    """Everything the pages and the API need, loaded once."""

    model_dir: Path
    model: Any
    specs: list[FieldSpec]
    metrics: dict = field(default_factory=dict)
    data_quality: dict = field(default_factory=dict)
    features: pd.DataFrame | None = None
    activity: pd.DataFrame | None = None
    importances: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))
    importance_kind: str = ""
    typical_probability: float | None = None  # mean predicted probability of a sample of training rows
    typical_rows: int = 0  # the rows that mean rests on
    _charts: dict[str, str] | None = field(default=None, repr=False)
    _charts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    metrics_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)

    @property
    def charts(self) -> dict[str, str]:
        """The dashboard's charts as HTML fragments, rendered once on first use
        (``sparkify serve`` renders them before it starts listening)."""
        if self._charts is None:
            with self._charts_lock:
                if self._charts is None:
                    self._charts = build_charts(self)
        return self._charts

    @property
    def spec_by_name(self) -> dict[str, FieldSpec]:
        return {s.name: s for s in self.specs}

    @property
    def key_specs(self) -> list[FieldSpec]:
        """The form's first fields: the most important inputs (all of them for small models)."""
        if len(self.specs) <= KEY_FIELDS + 4:
            return list(self.specs)
        by_name = self.spec_by_name
        ranked = [by_name[n] for n in self.importances.index if n in by_name][:KEY_FIELDS]
        return ranked or list(self.specs[:KEY_FIELDS])

    @property
    def other_specs(self) -> list[FieldSpec]:
        """The remaining fields, in the model's order (folded away in the form)."""
        key = {s.name for s in self.key_specs}
        return [s for s in self.specs if s.name not in key]

    @property
    def threshold(self) -> float:
        return float(self.model.threshold)

    @property
    def model_type(self) -> str:
        return str(getattr(self.model, "model_type", "model"))

    def churn_rate(self) -> float | None:
        """The churn rate of all labelled rows: ``churn_basis()["rate"]``."""
        return self.churn_basis()["rate"]

    @property
    def data_counts(self) -> dict:
        """metrics.json's ``data`` section (split counts), or {} when absent."""
        data = self.metrics.get("data") if isinstance(self.metrics, dict) else None
        return data if isinstance(data, dict) else {}

    def training_counts(self) -> dict[str, int | None]:
        """The training part's rows (user x observation date), distinct users and churner
        rows, from metrics.json's ``data`` section; None for a count it does not hold."""
        data = self.data_counts
        return {"rows": whole_count(data.get("train_rows")),
                "users": whole_count(data.get("train_users")),
                "churner_rows": first_count(data, "train_churner_rows", "train_churners")}

    def churn_basis(self) -> dict[str, Any]:
        """The churn rate of all labelled rows and what it rests on: ``rate``, ``rows``,
        ``users``, ``churner_rows`` (None when unknown). From metrics.json's ``data``
        section; recounted from features.parquet only when metrics.json lacks it."""
        data = self.data_counts
        rows, churner_rows = whole_count(data.get("rows")), first_count(data, "churner_rows", "churners")
        if rows and churner_rows is not None and churner_rows <= rows:
            return {"rate": churner_rows / rows, "rows": rows, "users": whole_count(data.get("users")),
                    "churner_rows": churner_rows}
        out: dict[str, Any] = {"rate": None, "rows": None, "users": None, "churner_rows": None}
        frame = self.features
        if frame is None or "churn" not in frame:
            return out
        label = pd.to_numeric(frame["churn"], errors="coerce").dropna()
        if len(label) == 0:
            return out
        out.update(rate=float(label.mean()), rows=int(len(label)), churner_rows=int((label == 1).sum()))
        if "userId" in frame:
            out["users"] = int(frame.loc[label.index, "userId"].nunique())
        return out

    def figure_basis(self, prefixes: Sequence[str] = ("test", "validation")) -> list[dict[str, Any]]:
        """What the model-comparison figures rest on, per figure group (``test``,
        ``validation``): one dict each with ``prefix``, ``uniform`` (the counts when every
        model's figures rest on the same rows, else None) and ``per_model`` (model name ->
        ``{"rows", "users", "churner_rows"}``). Groups with no count at all are left out."""
        table = self.metrics_table
        out = []
        for prefix in prefixes:
            columns = {key: next((f"{prefix}_{c}" for c in names if f"{prefix}_{c}" in table.columns), None)
                       for key, names in (("rows", ("rows",)), ("users", ("users",)),
                                          ("churner_rows", ("churner_rows", "churners")))}
            if table.empty or not any(columns.values()):
                continue
            per_model = {str(name): {key: whole_count(row[col]) if col else None for key, col in columns.items()}
                         for name, row in table.iterrows()}
            distinct = {tuple(c.values()) for c in per_model.values()}
            uniform = dict(zip(columns, distinct.pop())) if len(distinct) == 1 else None
            out.append({"prefix": prefix, "uniform": uniform, "per_model": per_model})
        return out


def whole_count(value: Any) -> int | None:
    """``value`` as a non-negative whole number (JSON counts may come back as floats),
    else None: missing, text, booleans, NaN, negative or fractional values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number) or number < 0 or number != int(number):
        return None
    return int(number)


def first_count(mapping: dict, *keys: str) -> int | None:
    """The first of ``keys`` in ``mapping`` that holds a whole count (None if none does)."""
    for key in keys:
        count = whole_count(mapping.get(key))
        if count is not None:
            return count
    return None


def _read_json(path: Path, warnings: list[str]) -> dict:
    if not path.exists():
        warnings.append(f"{path.name} not found")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warnings.append(f"{path.name} unreadable: {exc}")
        return {}
    return data if isinstance(data, dict) else {"value": data}


def _read_parquet(path: Path, warnings: list[str]) -> pd.DataFrame | None:
    if not path.exists():
        warnings.append(f"{path.name} not found")
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        warnings.append(f"{path.name} unreadable: {exc}")
        return None


def load_model_object(model_dir: Path):
    """Load the NumPy scorer for ``model_dir``; AppStartupError with a clear reason if impossible."""
    model_dir = Path(model_dir)
    hint = ("Train one first: `make run` (simulates a sample log, trains and serves), or "
            f"`sparkify simulate --preset mini --out data/mini_sparkify_event_data.json` then "
            f"`sparkify train data/mini_sparkify_event_data.json --model {model_dir}`")
    if not model_dir.exists():
        raise AppStartupError(f"no model directory at {model_dir}. {hint}")
    if not model_dir.is_dir():
        raise AppStartupError(f"{model_dir} is not a directory. {hint}")
    if not (model_dir / "model.json").exists():
        raise AppStartupError(f"{model_dir} is not a model directory (no model.json). {hint}")
    from sparkify.scorer import ModelLoadError, load_model

    try:
        return load_model(model_dir)
    except ModelLoadError as exc:
        raise AppStartupError(f"cannot load the model in {model_dir}: {exc}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AppStartupError(
            f"cannot load the model in {model_dir} (corrupt or incomplete): {type(exc).__name__}: {exc}"
        ) from None


def training_records(features: pd.DataFrame | None, specs: Sequence[FieldSpec], n: int,
                     seed: int = 0) -> list[dict]:
    """Up to ``n`` complete customer records drawn from the training part's feature rows
    (all rows of a features table without a ``split`` column)."""
    if features is None or len(features) == 0:
        return []
    names = [s.name for s in specs]
    if any(name not in features for name in names):
        return []
    if "split" in features:
        features = features[features["split"] == "train"]
    frame = features[names].dropna()
    if len(frame) > n:
        frame = frame.sample(n=n, random_state=seed)
    records = []
    for row in frame.to_dict("records"):
        records.append({s.name: (float(row[s.name]) if s.numeric else str(row[s.name])) for s in specs})
    return records


def global_importances(model: Any, records: Sequence[dict], n_features: int,
                       budget_s: float = IMPORTANCE_BUDGET_S, min_records: int = 20) -> tuple[pd.Series, int]:
    """Mean absolute per-feature contribution (``model.explain``) over ``records``.

    Stops after ``budget_s`` seconds once ``min_records`` are explained (exact
    TreeSHAP on a large forest costs milliseconds per customer), so start-up stays quick.
    Out: (Series feature -> mean |contribution| largest first, records used);
    empty when there are no records.
    """
    totals: dict[str, float] = {}
    used = 0
    start = time.perf_counter()
    for record in records:
        for reason in model.explain(record, top=n_features):
            c = float(reason.contribution)
            if math.isfinite(c):
                totals[reason.feature] = totals.get(reason.feature, 0.0) + abs(c)
        used += 1
        if used >= min_records and time.perf_counter() - start > budget_s:
            break
    if not used:
        return pd.Series(dtype="float64"), 0
    series = pd.Series(totals, dtype="float64") / used
    return series.sort_values(ascending=False), used


def _chart_html(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


def build_charts(bundle: ModelBundle) -> dict[str, str]:
    """Render the dashboard's figures to HTML fragments (plotly.js loaded by the page)."""
    from sparkify import plots

    specs = bundle.specs
    numeric = [s.name for s in specs if s.numeric]
    ranked = [name for name in bundle.importances.index if name in numeric]
    main = (ranked + [n for n in numeric if n not in ranked])[:MAIN_FEATURES]
    units = {s.name: s.unit for s in specs if s.unit}
    charts = {
        "churn_rate": plots.churn_rate(bundle.features if bundle.features is not None else pd.DataFrame()),
        "comparison": plots.group_comparison(
            bundle.features if bundle.features is not None else pd.DataFrame(), main, units=units,
            title=None),
        "activity": plots.activity_over_time(bundle.activity, title=None),
        "models": plots.model_comparison(bundle.metrics_table, title=None),
        "importances": plots.feature_importances(
            bundle.importances, title="Feature importance",
            xaxis_title=bundle.importance_kind or "importance"),
    }
    return {name: _chart_html(fig) for name, fig in charts.items()}


def load_bundle(model_dir: str | Path, model: Any | None = None, charts: bool = False) -> ModelBundle:
    """Read a model directory into a :class:`ModelBundle`.

    In: the directory; optionally an already-loaded scorer object (``model``);
    ``charts=True`` renders the dashboard's charts now (else on first use).
    Out: the bundle. Raises :class:`AppStartupError` when the model itself
    cannot be loaded; missing side files (metrics, charts' data) only add a
    warning and leave the matching dashboard panel empty.
    """
    model_dir = Path(model_dir)
    if model is None:
        model = load_model_object(model_dir)
    try:
        specs = field_specs(model.features)
    except (KeyError, TypeError, ValueError) as exc:
        raise AppStartupError(f"the feature list in {model_dir / 'model.json'} is malformed: {exc}") from None
    if not specs:
        raise AppStartupError(f"the model in {model_dir} lists no features")
    warnings: list[str] = []
    bundle = ModelBundle(
        model_dir=model_dir, model=model, specs=specs,
        metrics=_read_json(model_dir / "metrics.json", warnings),
        data_quality=_read_json(model_dir / "data_quality.json", warnings),
        features=_read_parquet(model_dir / "features.parquet", warnings),
        activity=_read_parquet(model_dir / "activity.parquet", warnings),
        warnings=warnings,
    )
    from sparkify import plots

    bundle.metrics_table = plots.metrics_frame(bundle.metrics)
    try:
        sample = training_records(bundle.features, specs, IMPORTANCE_SAMPLE)
        if sample:
            scored = model.predict(sample)
            mean = float(pd.to_numeric(scored["probability"], errors="coerce").mean())
            bundle.typical_probability = mean if math.isfinite(mean) else None
            bundle.typical_rows = len(sample)
        bundle.importances, used = global_importances(model, sample, len(specs))
        bundle.importance_kind = f"mean |contribution| over {used} rows (user x date) of the training part"
    except Exception as exc:  # an explanation failure must not stop the app
        log.warning("feature importances unavailable: %s", exc)
        warnings.append(f"feature importances unavailable: {exc}")
    if charts:
        bundle.charts  # noqa: B018 - render now rather than on the first dashboard request
    for message in warnings:
        log.warning("model directory %s: %s", model_dir, message)
    return bundle


# --------------------------------------------------------------------------- scores

class ScoresStore:
    """The latest ``sparkify score`` output (CSV or Parquet), re-read when it changes,
    and the feature rows it scored (``scores.rows.parquet`` beside it, also re-read when
    it changes).

    Columns used: ``userId`` (required), ``probability``, ``score``, ``decision``,
    ``rank`` (when present; otherwise ranks are computed from the probability),
    ``band`` (computed from the score and the model's band edges when absent),
    and any others (shown and exported as they are).

    The rows file (:func:`sparkify.modeling.predict.rows_path`) holds userId and every
    feature the model scored; :meth:`feature_rows` serves them, so the pages can compute
    each user's exact reasons. When it is missing or unreadable, ``rows_error`` says why.
    """

    def __init__(self, path: str | Path | None, band_edges: tuple[float, float] | None = None):
        from sparkify.modeling.predict import rows_path

        self.path = Path(path) if path else None
        self.rows_path = rows_path(self.path) if self.path is not None else None
        self.band_edges = band_edges  # (medium, high) score edges: adds a band when the file has none
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._frame: pd.DataFrame | None = None
        self._index: dict[str, int] = {}
        self.error: str | None = None
        self._rows_key: tuple[int, int] | None = None
        self._rows: pd.DataFrame | None = None
        self._rows_index: dict[str, int] = {}
        self.rows_error: str | None = None

    def _read(self, path: Path) -> pd.DataFrame:
        if path.suffix == ".parquet" or path.is_dir():
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={"userId": str})
        if "userId" not in frame:
            raise ValueError("no userId column")
        frame["userId"] = frame["userId"].astype(str)
        if "probability" in frame:
            frame["probability"] = pd.to_numeric(frame["probability"], errors="coerce")
        if "decision" in frame:
            frame["decision"] = frame["decision"].map(_as_bool)
        if "band" not in frame and self.band_edges is not None:
            column = "score" if "score" in frame else ("probability" if "probability" in frame else None)
            if column is not None:
                score = pd.to_numeric(frame[column], errors="coerce").to_numpy()
                medium, high = self.band_edges
                frame["band"] = np.where(score > high, "high", np.where(score > medium, "medium", "low"))
        if "rank" not in frame and "probability" in frame:
            frame["rank"] = frame["probability"].rank(ascending=False, method="first").astype("int64")
        if "rank" in frame:
            frame = frame.sort_values("rank", kind="stable")
        return frame.reset_index(drop=True)

    def frame(self) -> pd.DataFrame | None:
        """The current scores (None when there is no readable file)."""
        if self.path is None:
            return None
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            with self._lock:
                self._frame, self._mtime, self._index = None, None, {}
                self.error = f"no scores file at {self.path}"
            return None
        with self._lock:
            if mtime != self._mtime:
                try:
                    frame = self._read(self.path)
                    self._frame, self.error = frame, None
                    self._index = {uid: i for i, uid in enumerate(frame["userId"])}
                except Exception as exc:  # a bad file must not break the pages
                    log.warning("cannot read scores %s: %s", self.path, exc)
                    self._frame, self._index = None, {}
                    self.error = f"cannot read {self.path.name}: {exc}"
                self._mtime = mtime
            return self._frame

    def lookup(self, user_id: str) -> dict | None:
        """The scores row of ``user_id`` as a dict, or None."""
        frame = self.frame()
        if frame is None:
            return None
        with self._lock:
            i = self._index.get(str(user_id))
        if i is None:
            return None
        return {k: _plain(v) for k, v in frame.iloc[i].to_dict().items()}

    # ------------------------------------------------------------------ feature rows
    @staticmethod
    def _read_rows(path: Path) -> pd.DataFrame:
        frame = pd.read_parquet(path)
        if "userId" not in frame:
            raise ValueError("no userId column")
        frame["userId"] = frame["userId"].astype(str)
        return frame.drop_duplicates("userId", keep="first").reset_index(drop=True)

    def rows(self) -> pd.DataFrame | None:
        """The scored feature rows (userId + features), or None with ``rows_error`` set
        when the rows file is missing or unreadable. Re-read when its mtime or size changes."""
        return self._rows_state()[0]

    def _rows_state(self) -> tuple[pd.DataFrame | None, dict[str, int]]:
        """(rows, userId -> position), taken together (a re-read replaces both)."""
        path = self.rows_path
        if path is None:
            return None, {}
        try:
            st = path.stat()
        except OSError:
            with self._lock:
                self._rows, self._rows_key, self._rows_index = None, None, {}
                self.rows_error = (f"no feature rows file {path.name} beside {self.path.name}; "
                                   "run `sparkify score` again to keep the rows it scores")
            return None, {}
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._rows_key:
                try:
                    rows = self._read_rows(path)
                    self._rows, self.rows_error = rows, None
                    self._rows_index = {uid: i for i, uid in enumerate(rows["userId"])}
                except Exception as exc:  # a bad file must not break the pages
                    log.warning("cannot read feature rows %s: %s", path, exc)
                    self._rows, self._rows_index = None, {}
                    self.rows_error = f"cannot read {path.name}: {str(exc)[:200]}"
                self._rows_key = key
            return self._rows, self._rows_index

    def feature_rows(self, user_ids: Sequence[str]) -> dict[str, dict]:
        """The feature row (plain values) of each of ``user_ids`` found in the rows file."""
        rows, index = self._rows_state()
        if rows is None:
            return {}
        out = {}
        for uid in user_ids:
            i = index.get(str(uid))
            if i is not None:
                out[str(uid)] = {k: _plain(v) for k, v in rows.iloc[i].to_dict().items()}
        return out

    def at_risk(self, flagged_only: bool = True) -> pd.DataFrame | None:
        """Users in rank order; only those the model flags (decision true) by default."""
        frame = self.frame()
        if frame is None:
            return None
        if flagged_only and "decision" in frame:
            frame = frame[frame["decision"].fillna(False).astype(bool)]
        return frame


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return None if (isinstance(value, float) and math.isnan(value)) else bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "churn", "1.0"):
        return True
    if text in ("false", "0", "no", "stay", "0.0"):
        return False
    return None


def _plain(value: Any) -> Any:
    """numpy/pandas scalars -> plain Python (JSON-ready); NaN -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NaT:
        return None
    return value
