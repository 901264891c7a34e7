"""``sparkify report``: one self-contained HTML report of the data and the models.

    sparkify report EVENTS --model DIR --out reports/ [--master URL]

In:  an event log (anything :func:`sparkify.dataset.load_events` reads) and a model
     directory written by ``sparkify train`` (docs/model-directory.md).
Out: ``<out>/sparkify_report.html`` (or ``--out`` itself when it ends in ``.html``): one
     file that opens offline. Plotly's JavaScript and Bootstrap's CSS are inlined once;
     every chart is a Plotly figure from :mod:`sparkify.plots` (the charts the web app's
     dashboard uses).

Sections: data quality and the training table (rows of (user, observation date), users,
churner rows), exploration (churners vs stayers), models (comparison of the families, the
saved model's in-time and out-of-time test figures side by side, its calibration with a
reliability curve, curves and importances), the true ceiling on simulated logs (the
simulator's own probability of churning within the horizon, on the same test rows) and,
when the model directory holds a ``backtest.json`` (``sparkify backtest``), the backtest.
Every figure names the rows, users and churners it rests on.

Where the work happens: every aggregation over events runs in Spark
(:mod:`sparkify.report_data`); only aggregated tables reach the driver. The model
section reads the model directory's small artifacts and scores its test users with the
JVM-free scorer (:func:`sparkify.scorer.load_model`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparkify.config import DEFAULT_MODEL_DIR, REPORTS_DIR
from sparkify.progress import Progress, quiet

REPORT_NAME = "sparkify_report.html"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates_report"
TEMPLATE_NAME = "report.html.j2"

#: Numeric features shown as churner-vs-stayer distributions (when the model has them): the
#: volume over the window and its recent part, the trend, engagement, taste, recency and tenure.
MAIN_FEATURES = (
    "songs_per_day", "songs_per_day_recent", "songs_trend",
    "active_day_share", "sessions_per_day", "mean_session_minutes",
    "thumbs_down_share", "adverts_per_song", "days_since_last_event",
)
CATEGORY_FEATURES = ("level", "gender", "os", "region")
#: Ratio features drawn on a log axis (1 = steady; heavy tails both ways).
LOG_FEATURES = ("songs_trend",)
#: The parts of a training table (features.parquet ``split`` and ``period``), in display order.
PART_NAMES = {
    ("train", "in_time"): "train",
    ("unused", "out_of_time"): "unused: train users, latest date",
    ("test", "in_time"): "test, in time",
    ("test", "out_of_time"): "test, out of time",
}
PERIOD_NAMES = {"in_time": "in time", "out_of_time": "out of time"}
WEEKLY_MEASURES = ("songs_per_active_day", "active_days_per_user", "thumbs_down_per_100_songs",
                   "adverts_per_100_songs")
WEEKLY_UNITS = {"active_days_per_user": "of 7"}
CATEGORY_NAMES = {"level": "Level (free / paid)", "gender": "Gender", "os": "Device / OS",
                  "region": "Region (US census)", "browser": "Browser"}

#: Columns of the model comparison table: (metrics key under "test", header, format).
TABLE_COLUMNS = (
    ("f1", "Churn F1", "{:.3f}"), ("precision", "Precision", "{:.3f}"), ("recall", "Recall", "{:.3f}"),
    ("pr_auc", "PR-AUC", "{:.3f}"), ("roc_auc", "ROC-AUC", "{:.3f}"), ("accuracy", "Accuracy", "{:.3f}"),
    ("weighted_f1", "Weighted F1", "{:.3f}"),
)


# --------------------------------------------------------------------------- CLI
def configure_report(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sparkify report``."""
    parser.add_argument("events", help="event log: .json/.json.gz file, directory of part files, glob, "
                                       "or a Parquet directory written by `sparkify ingest`")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help=f"model directory written by `sparkify train` (default: {DEFAULT_MODEL_DIR})")
    parser.add_argument("--out", default=str(REPORTS_DIR),
                        help=f"output directory (the file is {REPORT_NAME}) or a path ending in .html "
                             f"(default: {REPORTS_DIR})")
    parser.add_argument("--master", default=None, help="Spark master URL (default: local[*], "
                                                       "or spark-submit's)")
    parser.add_argument("--weeks", type=int, default=6,
                        help="weeks before cancellation to show in the behaviour chart (default: 6)")
    parser.add_argument("--title", default=None, help="report title (default: 'Sparkify churn report')")
    from sparkify.modeling.cli import add_spark_options

    add_spark_options(parser)


def run_report(args: argparse.Namespace) -> int:
    """Run ``sparkify report``: check the inputs, build the report, print where it went.

    Returns 0 on success. Bad input raises FileNotFoundError / PermissionError /
    ValueError with a message (the CLI prints it and exits with 2)."""
    model_dir = check_model_dir(args.model)
    out_path = resolve_out_path(args.out)
    if args.weeks < 1 or args.weeks > 52:
        raise ValueError(f"--weeks must be between 1 and 52, not {args.weeks}")
    if "://" not in str(args.events) and not any(ch in str(args.events) for ch in "*?[") \
            and not Path(args.events).exists():
        raise FileNotFoundError(f"no event log at {args.events}")
    progress = Progress()
    with progress.stage("spark"):
        from sparkify.spark import get_spark

        spark = get_spark(app_name="sparkify-report", master=args.master, verbose=getattr(args, "verbose", None))
    progress.attach(spark)
    data = collect_report_data(spark, args.events, model_dir, weeks=args.weeks, progress=progress)
    with progress.stage("render"):
        page = render_report(data, title=args.title)
        write_atomic(out_path, page)
    size = out_path.stat().st_size / 1e6
    print(f"report written to {out_path} ({size:.1f} MB, {progress.total():.0f} s)", flush=True)
    return 0


def check_model_dir(path: str | Path) -> Path:
    """The model directory as a Path; FileNotFoundError with a hint when it is not one."""
    p = Path(path)
    if not (p / "model.json").is_file() or not (p / "metrics.json").is_file():
        raise FileNotFoundError(
            f"no trained model at {p} (model.json and metrics.json expected); "
            f"train one with `sparkify train EVENTS --model {p}`")
    return p


def resolve_out_path(out: str | Path) -> Path:
    """``--out`` -> the report file: a path ending in .html is used as is, anything else
    is a directory receiving :data:`REPORT_NAME`. The directory is created; raises
    PermissionError when it cannot be written."""
    p = Path(out)
    target = p if p.suffix.lower() in (".html", ".htm") else p / REPORT_NAME
    if target.exists() and target.is_dir():
        raise ValueError(f"--out {target} is a directory; give a directory or a .html file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot create the output directory {target.parent}: a file is in the way") from None
    if not os.access(target.parent, os.W_OK):
        raise PermissionError(f"cannot write to {target.parent}")
    return target


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename, so a reader
    never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- data
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


@dataclass
class ReportData:
    """Everything the report shows; small (aggregates, one row per user at most)."""

    events_path: str
    model_dir: str
    quality: dict[str, Any]                      # DataQuality.to_dict() of this load
    groups: dict[str, int]                       # users / churners / stayers (ever cancelled)
    daily: pd.DataFrame                          # date, churn, events, songs, active_users
    pages: pd.DataFrame                          # page, churn, events, users, share, per_user
    weekly: pd.DataFrame                         # churn, week, users, ... rates
    features: pd.DataFrame | None                # the model's table: one row per (user, date), churn, split, period, score
    model_json: dict[str, Any]
    metrics: dict[str, Any]
    model_quality: dict[str, Any] | None         # data_quality.json of the model directory
    evaluations: list[ModelEvaluation] = field(default_factory=list)
    truth: dict[str, Any] | None = None          # simulator ground truth summary
    backtest: dict[str, Any] | None = None       # backtest.json of the model directory (sparkify backtest)
    notes: list[str] = field(default_factory=list)
    weeks: int = 6
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    timings: dict[str, float] = field(default_factory=dict)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file as a dict, or None when absent."""
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_backtest(model_dir: Path) -> dict[str, Any] | None:
    """The model directory's ``backtest.json`` (the latest ``sparkify backtest``), or None
    when there is none or it lacks its figures."""
    bt = read_json(Path(model_dir) / "backtest.json")
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
    from sparkify.modeling.calibration import Calibration

    out: list[ModelEvaluation] = []
    test = features[features["split"] == "test"].reset_index(drop=True)
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

    def users(frame: pd.DataFrame) -> np.ndarray | None:
        return frame["userId"].to_numpy() if "userId" in frame else None

    if len(test):
        scores = probs = None
        try:
            from sparkify.scorer import load_model

            model = load_model(model_dir)
            pred = model.predict(test[model.feature_names])
            scores = pred["score"].to_numpy(dtype=float)
            probs = pred["probability"].to_numpy(dtype=float)
            probs = None if np.isnan(probs).all() else probs
            source = "scored now with the NumPy scorer (sparkify.scorer)"
        except Exception as exc:  # noqa: BLE001 - fall back to the stored scores, say why
            if "score" not in test:
                notes.append(f"Could not score the test users ({exc}); no test-set curves.")
            else:
                notes.append(f"The NumPy scorer could not load the model ({exc}); the test scores "
                             "stored by `sparkify train` are shown.")
                scores = test["score"].to_numpy(dtype=float)
                probs = to_prob(test, scores)
                source = "stored in features.parquet by sparkify train"
        if scores is not None:
            labels = test["churn"].to_numpy(dtype=int)
            ids = users(test)
            out.append(ModelEvaluation("test, all rows", labels, scores, probs, source, ids))
            if "period" in test and test["period"].nunique() > 1:
                for period in ("in_time", "out_of_time"):
                    mask = (test["period"] == period).to_numpy()
                    if mask.any():
                        out.append(ModelEvaluation(
                            f"test, {PERIOD_NAMES[period]}", labels[mask], scores[mask],
                            None if probs is None else probs[mask], source,
                            None if ids is None else ids[mask]))
    train = features[features["split"] == "train"]
    if "score" in train and len(train) and train["score"].notna().all():
        scores = train["score"].to_numpy(dtype=float)
        out.append(ModelEvaluation("out-of-fold (train)", train["churn"].to_numpy(dtype=int), scores,
                                   to_prob(train, scores), "out-of-fold scores stored by sparkify train",
                                   users(train)))
    return out


def split_table(features: pd.DataFrame | None, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of the model's table: one dict per part (``name``, ``rows``, ``users``,
    ``churners`` = churner rows, ``churner_users``, ``dates`` = distinct observation
    dates, ``what``), in the order train, unused, test in time, test out of time, and a
    ``total``. From features.parquet when it has split and period columns, else from
    metrics.json's ``data`` counts (without the unused part)."""
    what = {
        "train": "training users' rows before the latest date: fitted, tuned and calibrated on (folds by user)",
        "unused: train users, latest date": "kept out of training so the latest date is out of time for every model",
        "test, in time": "held-out users at the dates training also covers",
        "test, out of time": "held-out users at the latest date, which no training row is from",
    }
    rows: list[dict[str, Any]] = []
    if features is not None and {"split", "churn"} <= set(features.columns) and "period" in features:
        for (split, period), name in PART_NAMES.items():
            part = features[(features["split"] == split) & (features["period"] == period)]
            if not len(part):
                continue
            rows.append({"name": name, "rows": int(len(part)), "users": int(part["userId"].nunique()),
                         "churners": int(part["churn"].sum()),
                         "churner_users": int(part.loc[part["churn"] == 1, "userId"].nunique()),
                         "dates": int(part["as_of_ms"].nunique()) if "as_of_ms" in part else None,
                         "what": what[name]})
        f = features
        rows.append({"name": "total", "rows": int(len(f)), "users": int(f["userId"].nunique()),
                     "churners": int(f["churn"].sum()),
                     "churner_users": int(f.loc[f["churn"] == 1, "userId"].nunique()),
                     "dates": int(f["as_of_ms"].nunique()) if "as_of_ms" in f else None, "what": ""})
        return rows
    d = metrics.get("data") or {}
    for prefix, name in (("train_", "train"), ("test_in_time_", "test, in time"),
                         ("test_out_of_time_", "test, out of time")):
        if d.get(f"{prefix}rows"):
            rows.append({"name": name, "rows": d.get(f"{prefix}rows"), "users": d.get(f"{prefix}users"),
                         "churners": d.get(f"{prefix}churner_rows", d.get(f"{prefix}churners")),
                         "churner_users": d.get(f"{prefix}churning_users"), "dates": None, "what": what[name]})
    if d.get("rows"):
        rows.append({"name": "total", "rows": d.get("rows"), "users": d.get("users"),
                     "churners": d.get("churner_rows"), "churner_users": d.get("churning_users"), "dates": None,
                     "what": ""})
    return rows


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


def collect_report_data(spark, events_path: str | Path, model_dir: str | Path, weeks: int = 6,
                        progress: Progress | None = None) -> ReportData:
    """Load the log, aggregate it in Spark and read the model directory.

    In: a SparkSession, the event log path, a model directory, the number of weeks of
    the before-churn view. Out: :class:`ReportData` (small pandas tables and dicts).
    Raises FileNotFoundError / ValueError from the loader for a missing or empty log."""
    from sparkify import report_data as rd
    from sparkify.dataset import load_events

    progress = progress or quiet()
    model_dir = Path(model_dir)
    with progress.stage("load"):
        loaded = load_events(spark, str(events_path))
    try:
        with progress.stage("explore (Spark aggregations)"):
            events = loaded.events
            groups_df = rd.user_groups(events).cache()
            groups = rd.group_sizes(groups_df)
            daily = rd.daily_activity(events, groups_df)
            pages = rd.page_mix(events, groups_df)
            weekly = rd.weeks_before_churn(events, groups_df, weeks=weeks)
            groups_df.unpersist()
    finally:
        loaded.unpersist()
    with progress.stage("model"):
        section = model_section(model_dir, events_path)
    model_quality = section["model_quality"]
    if model_quality and (model_quality.get("users"), model_quality.get("churners")) != \
            (loaded.quality.users, loaded.quality.churners):
        section["notes"].append(
            f"The model was trained on a different log ({model_quality.get('users')} users, "
            f"{model_quality.get('churners')} churners; this log: {loaded.quality.users} users, "
            f"{loaded.quality.churners} churners). Exploration describes this log; the model section "
            "describes the model's own test rows.")
    return ReportData(
        events_path=str(events_path), quality=loaded.quality.to_dict(),
        groups=groups, daily=daily, pages=pages, weekly=weekly, weeks=weeks,
        timings=progress.timings, **section,
    )


def model_section(model_dir: str | Path, events_path: str | Path) -> dict[str, Any]:
    """What the report reads from a model directory (no Spark): the :class:`ReportData`
    fields ``model_dir``, ``model_json``, ``metrics``, ``model_quality``, ``features``,
    ``evaluations`` (the test rows scored by the NumPy scorer), ``truth`` (the simulator's
    ground truth beside ``events_path``, if any), ``backtest`` (``backtest.json``, if any)
    and ``notes``."""
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


# --------------------------------------------------------------------------- figures and tables
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _counts(block: dict[str, Any] | None) -> dict[str, Any]:
    b = block or {}
    return {"rows": b.get("rows"), "users": b.get("users"), "churners": b.get("churners")}


def counts_text(block: dict[str, Any] | None) -> str:
    """'589 rows of 40 users, 86 churner rows' for a metrics block (empty when it has no
    counts)."""
    b = block or {}
    if b.get("rows") is None:
        return ""
    text = f"{int(b['rows']):,} rows"
    if b.get("users") is not None:
        text += f" of {int(b['users']):,} users"
    if b.get("churners") is not None:
        text += f", {int(b['churners']):,} churner rows"
    return text


def comparison_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the model comparison table from metrics.json: each family's test figures,
    the tuned best, the true ceiling and the constant baseline (when present).

    Each row: ``name``, ``kind`` (family/best/ceiling/baseline), the :data:`TABLE_COLUMNS`
    keys (float or None), ``train_seconds``, ``threshold``, and ``rows``, ``users``,
    ``churners`` (the test rows it was measured on)."""
    rows: list[dict[str, Any]] = []
    best = metrics.get("best") or {}
    models = metrics.get("models") or {}
    base_counts = _counts(best.get("test"))
    for key, fig in models.items():
        if not isinstance(fig, dict):
            continue
        test = fig.get("test") or {}
        row = {"name": fig.get("name") or key, "kind": "family", "family": key,
               "train_seconds": _num(fig.get("train_seconds")), "threshold": _num(fig.get("threshold")),
               "chosen": key == best.get("family"), **_counts(test)}
        row.update({k: _num(test.get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    if best:
        test = best.get("test") or {}
        src = best.get("selected_from")
        row = {"name": f"{best.get('name', 'best')} (saved{', tuned' if src == 'tuning' else ''})",
               "kind": "best", "family": best.get("family"),
               "train_seconds": _num(best.get("train_seconds")), "threshold": _num(best.get("threshold")),
               "chosen": True, **_counts(test)}
        row.update({k: _num(test.get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    ceiling = metrics.get("ceiling")
    if isinstance(ceiling, dict) and isinstance(ceiling.get("test"), dict):
        row = {"name": "True ceiling (simulator's probability)", "kind": "ceiling",
               "family": None, "train_seconds": None, "threshold": _num(ceiling.get("threshold")),
               "chosen": False, **_counts(ceiling["test"])}
        row.update({k: _num(ceiling["test"].get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    base = metrics.get("baseline")
    if isinstance(base, dict):
        row = {"name": "Constant predictor (knows nothing)", "kind": "baseline", "family": None,
               "train_seconds": None, "threshold": None, "chosen": False, **base_counts}
        row.update({k: None for k, _, _ in TABLE_COLUMNS})
        row["f1"] = _num(base.get("f1_flag_all"))
        row["pr_auc"] = _num(base.get("pr_auc"))
        row["roc_auc"] = _num(base.get("roc_auc"))
        rows.append(row)
    return rows


def _dates_text(dates: list[str]) -> str:
    days = [d[:10] for d in dates]
    if not days:
        return "–"
    if len(days) == 1:
        return days[0]
    return f"{len(days)} dates, {days[0]} to {days[-1]}"


def period_dates(label: dict[str, Any]) -> dict[str, str]:
    """The observation dates of each part of the test set, as text: ``in_time`` (every
    date but the latest), ``out_of_time`` (the latest, when there are two or more) and
    ``all``."""
    dates = sorted(label.get("dates") or [])
    if len(dates) >= 2:
        return {"in_time": _dates_text(dates[:-1]), "out_of_time": _dates_text(dates[-1:]), "all": _dates_text(dates)}
    return {"in_time": _dates_text(dates), "out_of_time": "–", "all": _dates_text(dates)}


#: The figures of a block of scored rows, in table order: (key, label, help).
FIGURE_ROWS = (
    ("rows", "rows (user, date)", "observations the figures rest on"),
    ("users", "users", "distinct users among them"),
    ("churners", "churner rows", "rows whose user cancels within the horizon; share = base rate"),
    ("pr_auc", "PR-AUC", "area under precision-recall; a random ranking scores the base rate"),
    ("roc_auc", "ROC-AUC", "0.5 = random ranking"),
    ("top10", "top 10 %: precision (lift)", "the highest-scored tenth of the rows"),
    ("flagged", "flagged at the threshold", "rows above the saved decision threshold"),
    ("precision", "precision", "at the saved threshold"),
    ("recall", "recall", "at the saved threshold"),
    ("f1", "churn-class F1", "at the saved threshold"),
    ("brier", "Brier score", "mean (probability - outcome)²; lower is better"),
    ("log_loss", "log loss", "lower is better"),
    ("expected", "expected vs realized churners", "sum of the probabilities vs churner rows (z = gap / its sd)"),
    ("bins_within", "reliability bins within the noise",
     "bins whose mean prediction lies in the 95 % interval of the observed rate"),
)


def figure_cell(block: dict[str, Any] | None, key: str) -> str:
    """One figure of a metrics block as display text ('–' when absent)."""
    b = block or {}
    if not b:
        return "–"
    if key in ("rows", "users"):
        return _fmt(b.get(key))
    if key == "churners":
        rows, ch = b.get("rows"), b.get("churners")
        if ch is None:
            return "–"
        return f"{int(ch):,}" + (f" ({ch / rows:.1%})" if rows else "")
    if key == "top10":
        t = b.get("top10") or {}
        if _num(t.get("precision")) is None:
            return "–"
        lift = _num(t.get("lift"))
        return f"{t['precision']:.3f}" + (f" ({lift:.2f}×)" if lift is not None else "")
    if key == "flagged":
        c = b.get("confusion") or {}
        if not c:
            return "–"
        return f"{int(c.get('tp', 0)) + int(c.get('fp', 0)):,} ({int(c.get('tp', 0)):,} churners)"
    if key == "expected":
        e, r = _num(b.get("expected_churners")), b.get("realized_churners")
        if e is None or r is None:
            return "–"
        z = _num(b.get("z"))
        return f"{e:,.1f} vs {int(r):,}" + (f" (z {z:+.1f})" if z is not None else "")
    if key == "bins_within":
        if b.get("bins") is None:
            return "–"
        return f"{b.get('bins_within', 0)} of {b['bins']}"
    spec = "{:.4f}" if key in ("brier", "log_loss") else "{:.3f}"
    return _fmt(_num(b.get(key)), spec)


def figure_table(columns: list[tuple[str, dict[str, Any] | None]], dates: dict[str, str] | None = None
                 ) -> list[dict[str, Any]]:
    """Rows of a side-by-side table: one per :data:`FIGURE_ROWS` entry (plus the
    observation dates when given, keyed like ``columns``' names), each with ``label``,
    ``help``, ``key`` and ``cells`` (one text per column)."""
    out = []
    if dates is not None:
        out.append({"key": "dates", "label": "observation dates", "help": "the dates t of the rows",
                    "cells": [dates.get(name, "–") for name, _ in columns]})
    for key, label, help_ in FIGURE_ROWS:
        cells = [figure_cell(block, key) for _, block in columns]
        if all(c == "–" for c in cells):
            continue
        out.append({"key": key, "label": label, "help": help_, "cells": cells})
    return out


def backtest_relation(backtest: dict[str, Any], label: dict[str, Any]) -> str:
    """How a backtest's date relates to the model's observation dates, in a sentence."""
    as_of = str(backtest.get("as_of") or "")[:10]
    dates = sorted(d[:10] for d in (backtest.get("model_dates") or label.get("dates") or []))
    if not dates or not as_of:
        return ""
    if as_of > dates[-1]:
        overlap = backtest.get("label_overlap_days") or 0
        if overlap:
            return (f"{as_of} is after the model's latest observation date ({dates[-1]}), but the model's "
                    f"training labels reach {overlap} days into this label period: users who cancel then also "
                    "taught the model, so these figures are somewhat optimistic. A clean out-of-time test starts "
                    f"a horizon after {dates[-1]}.")
        return (f"{as_of} is after the model's latest observation date ({dates[-1]}) and its horizon: a clean "
                "out-of-time test, on a period the model never saw.")
    return (f"{as_of} is not after the model's latest observation date ({dates[-1]}): training rows of that "
            "date or the days before it were fitted on, so these figures are optimistic. Backtest at a later date.")


def importance_series(metrics: dict[str, Any]) -> tuple[pd.Series, str]:
    """(feature -> importance or coefficient, kind) of the saved model, from metrics.json."""
    best = metrics.get("best") or {}
    items = best.get("importances") or []
    if isinstance(items, dict):
        return pd.Series(items, dtype="float64"), "importance"
    values = {}
    kind = "importance"
    for item in items:
        if isinstance(item, dict) and _num(item.get("value")) is not None:
            values[str(item.get("feature") or item.get("slot"))] = float(item["value"])
            kind = item.get("kind", kind)
    return pd.Series(values, dtype="float64"), kind


def _with_parts(features: pd.DataFrame) -> pd.DataFrame:
    """features.parquet with a ``part`` column (the :data:`PART_NAMES` of split and period)."""
    if "period" not in features:
        return features.assign(part=features["split"].astype(str))
    names = [PART_NAMES.get((a, b), f"{a}, {b}") for a, b in zip(features["split"], features["period"])]
    order = [n for n in PART_NAMES.values() if n in set(names)] + sorted(set(names) - set(PART_NAMES.values()))
    return features.assign(part=pd.Categorical(names, categories=order, ordered=True))


def build_figures(data: ReportData) -> dict[str, Any]:
    """Every chart of the report as a Plotly figure, keyed by name (missing data gives
    an explanatory empty figure, never an error)."""
    from sparkify import plots
    from sparkify import report_curves as rc

    figs: dict[str, Any] = {}
    daily_total = (data.daily.groupby("date", as_index=False)[["events", "songs", "active_users"]].sum()
                   if len(data.daily) else data.daily)
    figs["daily"] = plots.activity_over_time(daily_total, date="date", values=["events", "active_users"],
                                             title="User events and active users per day (UTC)")
    figs["daily_groups"] = plots.activity_over_time(
        data.daily, date="date", group="churn", values=["active_users", "songs"],
        title="Active users and songs per day: churners vs stayers")
    feats = data.features
    units = {}
    try:
        from sparkify.features import FEATURES_BY_NAME

        # the unit in a panel title, unless the name says it already ("songs_per_day")
        units = {k: v.unit for k, v in FEATURES_BY_NAME.items() if v.unit and v.unit.replace(" ", "_") not in k}
    except ImportError:  # pragma: no cover - features always ships with the package
        pass
    if feats is not None:
        cols = [c for c in MAIN_FEATURES if c in feats]
        figs["distributions"] = plots.group_comparison(
            feats, cols, kind="box", units=units, log_columns=[c for c in cols if c in LOG_FEATURES],
            title="Main features at each observation date: churner rows vs the others")
        figs["categories"] = plots.churn_rate_by_category(feats, [c for c in CATEGORY_FEATURES if c in feats],
                                                          names=CATEGORY_NAMES)
        if "split" in feats:
            parts = _with_parts(feats)
            figs["churn_rate"] = plots.churn_rate(parts, by="part", title="Label")
            figs["churn_rate"].update_layout(margin={"t": 110}, height=440, xaxis_title=None)
        else:
            figs["churn_rate"] = plots.churn_rate(feats, title="Label")
    figs["pages"] = plots.page_mix(data.pages)
    figs["weeks"] = plots.weeks_before_churn(data.weekly, WEEKLY_MEASURES, units=WEEKLY_UNITS)

    rows = comparison_rows(data.metrics)
    shown = [r for r in rows if r["kind"] in ("family", "best", "ceiling")]
    frame = pd.DataFrame([{k: r.get(k) for k in ("f1", "pr_auc", "roc_auc", "recall")} for r in shown],
                         index=[r["name"] for r in shown])
    frame.columns = ["churn-class F1", "PR-AUC", "ROC-AUC", "recall"]
    test_counts = counts_text((data.metrics.get("best") or {}).get("test"))
    figs["comparison"] = plots.model_comparison(
        frame.astype(float), columns=list(frame.columns),
        title="Test scores of the models" + (f" ({test_counts})" if test_counts else ""))
    figs["comparison"].update_layout(height=460)

    roc, pr, gains = {}, {}, {}
    for ev in data.evaluations:
        roc[ev.label] = rc.roc_points(ev.labels, ev.scores)
        pr[ev.label] = rc.pr_points(ev.labels, ev.scores)
        gains[ev.label] = rc.gains_table(ev.labels, ev.scores)
    base_rate = float(data.evaluations[0].labels.mean()) if data.evaluations else None
    figs["roc"] = plots.roc_curve(roc) if roc else plots.empty_figure("no test scores", "ROC curve")
    figs["pr"] = plots.precision_recall_curve(pr, base_rate=base_rate) if pr else \
        plots.empty_figure("no test scores", "Precision-recall curve")
    for fig in (figs["roc"], figs["pr"]):
        fig.update_layout(height=460, legend={"orientation": "h", "y": -0.22, "yanchor": "top", "x": 0,
                                              "xanchor": "left"}, margin={"b": 130})
    figs["gains"] = plots.gains_chart(gains)
    figs["gains"].update_layout(height=460, legend={"orientation": "h", "y": -0.25, "yanchor": "top", "x": 0,
                                                    "xanchor": "left"}, margin={"b": 140})

    best = data.metrics.get("best") or {}
    test_block = best.get("test") or {}
    periods = best.get("periods") or {}
    evals = {e.name: e for e in data.evaluations}
    curves = {}
    for name, block in (("test, all rows", test_block), ("test, out of time", periods.get("out_of_time") or {})):
        bins = chart_bins(block, evals.get(name))
        if bins:
            curves[f"{name} ({counts_text(block)}; {len(bins)} bin{'s' if len(bins) != 1 else ''})"] = bins
    figs["reliability"] = plots.reliability_curve(
        curves, title="Reliability of the calibrated probabilities (test rows)")
    _legend_below(figs["reliability"])
    ceiling = data.metrics.get("ceiling") if isinstance(data.metrics.get("ceiling"), dict) else None
    if ceiling and (ceiling.get("test") or {}).get("reliability") and test_block.get("reliability"):
        figs["ceiling_reliability"] = plots.reliability_curve(
            {f"saved model ({counts_text(test_block)})": test_block["reliability"],
             f"true probability ({counts_text(ceiling['test'])})": ceiling["test"]["reliability"]},
            title="Reliability: the model vs the true probability, same test rows")
        _legend_below(figs["ceiling_reliability"])
    if data.backtest:
        f = data.backtest.get("figures") or {}
        figs["backtest_reliability"] = plots.reliability_curve(
            {f"backtest at {str(data.backtest.get('as_of'))[:10]} ({counts_text(f)})": f.get("reliability") or []},
            title="Reliability of the backtest's probabilities")
        _legend_below(figs["backtest_reliability"])

    confusion = test_block.get("confusion")
    if confusion:
        figs["confusion"] = plots.confusion_matrix(
            rc.confusion_matrix_rows(confusion), title="Confusion matrix (test rows, saved threshold)")
    else:
        figs["confusion"] = plots.empty_figure("no confusion matrix in metrics.json", "Confusion matrix")
    threshold = _num(data.model_json.get("threshold"))
    test = next((e for e in data.evaluations if e.name == "test, all rows"), None)
    if test is not None:
        c = test.counts
        figs["scores"] = plots.score_distribution(
            test.scores, test.labels, threshold=threshold, unit="rows",
            xaxis_title=("score (SVM margin)" if data.model_json.get("score_kind") == "margin"
                         else "score (uncalibrated model output)"),
            title=f"Test rows' scores by actual outcome ({c['rows']:,} rows, {c['churners']:,} churner rows)")
    imp, kind = importance_series(data.metrics)
    figs["importances"] = plots.feature_importances(
        imp, top=15, signed=(kind == "coefficient"),
        title="Feature importances" if kind != "coefficient" else "Coefficients (standardised inputs)",
        xaxis_title=kind)
    return figs


#: Fewest rows a reliability bin should hold on a chart, on average: with fewer its interval spans most of [0, 1].
MIN_BIN_ROWS = 15


def chart_bins(block: dict[str, Any], evaluation: ModelEvaluation | None = None) -> list[dict[str, Any]]:
    """The reliability bins to draw for a metrics block: its stored bins (metrics.json)
    when each holds at least :data:`MIN_BIN_ROWS` rows on average; else, when the rows'
    probabilities are at hand (``evaluation``, scored by the NumPy scorer), the same curve
    (:func:`sparkify.modeling.calibration.reliability`) on fewer, larger bins; else the
    stored bins."""
    stored = list(block.get("reliability") or [])
    rows = int(block.get("rows") or sum(b.get("rows", 0) for b in stored))
    if not stored or rows >= MIN_BIN_ROWS * len(stored):
        return stored
    if evaluation is None or evaluation.probabilities is None or len(evaluation.labels) != rows:
        return stored
    from sparkify.modeling.calibration import reliability

    bins = max(1, min(len(stored), rows // MIN_BIN_ROWS))
    return reliability(evaluation.labels, evaluation.probabilities, bins, groups=evaluation.users)


def _legend_below(fig) -> None:
    fig.update_layout(height=520, legend={"orientation": "h", "y": -0.18, "yanchor": "top", "x": 0,
                                          "xanchor": "left"}, margin={"b": 120})


def figure_html(fig) -> str:
    """A figure as an HTML fragment (a div and its inline script; plotly.js not included)."""
    return fig.to_html(full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


def _asset_text(package_path: str) -> str:
    import flask_bootstrap

    path = Path(flask_bootstrap.__file__).resolve().parent / "static" / package_path
    return path.read_text(encoding="utf-8")


def _fmt(value: Any, spec: str = "{:,}") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    try:
        return spec.format(value)
    except (TypeError, ValueError):
        return str(value)


def class_weighted(metrics: dict[str, Any]) -> bool:
    """Whether the saved model was fitted with class weights: its tuned ``weightCol`` is
    the class-weight column, or (no ``weightCol`` among its parameters) training weighted
    the classes at all."""
    col = ((metrics.get("best") or {}).get("params") or {}).get("weightCol")
    if col is not None:
        return col == "weight"
    weights = metrics.get("class_weights") or {}
    return any(abs(float(v) - 1.0) > 1e-9 for v in weights.values())


def render_report(data: ReportData, title: str | None = None) -> str:
    """The complete, self-contained HTML page of a :class:`ReportData`."""
    import jinja2
    from plotly.offline import get_plotlyjs

    figs = build_figures(data)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    q = data.quality
    days = None
    if q.get("first_ts") and q.get("last_ts"):
        t0 = datetime.strptime(q["first_ts"], "%Y-%m-%dT%H:%M:%SZ")
        t1 = datetime.strptime(q["last_ts"], "%Y-%m-%dT%H:%M:%SZ")
        days = (t1 - t0).total_seconds() / 86400
    metrics = data.metrics
    best = metrics.get("best") or {}
    label = metrics.get("label") or data.model_json.get("label") or {}
    rows = comparison_rows(metrics)
    weekly = data.weekly
    week_table = []
    if len(weekly):
        for w in sorted(weekly["week"].unique()):
            entry = {"week": int(w)}
            for churn, key in ((1, "churned"), (0, "stayed")):
                part = weekly[(weekly["week"] == w) & (weekly["churn"] == churn)]
                entry[key] = part.iloc[0].to_dict() if len(part) else None
            week_table.append(entry)
    periods = best.get("periods") or {}
    pdates = period_dates(label)
    side_columns = [(name, periods.get(key)) for key, name in (("in_time", "in time"), ("out_of_time", "out of time"))
                    if periods.get(key)]
    side_columns.append(("all test rows", best.get("test")))
    side_dates = {"in time": pdates["in_time"], "out of time": pdates["out_of_time"], "all test rows": pdates["all"]}
    ceiling = metrics.get("ceiling") if isinstance(metrics.get("ceiling"), dict) else None
    ceiling_table = (figure_table([("saved model", best.get("test")), ("true ceiling", ceiling.get("test"))])
                     if ceiling and isinstance(ceiling.get("test"), dict) else [])
    bt = data.backtest
    backtest_table = (figure_table([(f"backtest at {str(bt.get('as_of'))[:10]}", bt.get("figures")),
                                    ("model's own test rows", best.get("test"))],
                                   {f"backtest at {str(bt.get('as_of'))[:10]}": str(bt.get("as_of"))[:10],
                                    "model's own test rows": pdates["all"]})
                      if bt else [])
    context = {
        "title": title or "Sparkify churn report",
        "counts_text": counts_text,
        "splits": split_table(data.features, metrics),
        "pdates": pdates,
        "side_columns": [name for name, _ in side_columns],
        "side_table": figure_table(side_columns, side_dates),
        "periods": periods,
        "calibration": best.get("calibration") if isinstance(best.get("calibration"), dict) else None,
        "class_weighted": class_weighted(metrics),
        "ceiling_table": ceiling_table,
        "backtest": bt,
        "backtest_table": backtest_table,
        "backtest_columns": [f"backtest at {str(bt.get('as_of'))[:10]}", "model's own test rows"] if bt else [],
        "backtest_relation": backtest_relation(bt, label) if bt else "",
        "data": data,
        "q": q,
        "days": days,
        "groups": data.groups,
        "figs": {k: jinja2.utils.markupsafe.Markup(figure_html(v)) for k, v in figs.items()},
        "rows": rows,
        "columns": TABLE_COLUMNS,
        "best": best,
        "label": label,
        "metrics": metrics,
        "model_json": data.model_json,
        "ceiling": ceiling,
        "label_comparison": metrics.get("label_comparison") if isinstance(metrics.get("label_comparison"), dict) else None,
        "seed_spread": metrics.get("seed_spread") if isinstance(metrics.get("seed_spread"), dict) else None,
        "evaluations": data.evaluations,
        "week_table": week_table,
        "n_features": len(data.model_json.get("features") or []),
        "bootstrap_css": jinja2.utils.markupsafe.Markup(_asset_text("bootstrap5/css/bootstrap.min.css")),
        "plotly_js": jinja2.utils.markupsafe.Markup(get_plotlyjs()),
    }
    return env.get_template(TEMPLATE_NAME).render(**context)


def write_report(spark, events_path: str | Path, model_dir: str | Path, out: str | Path,
                 weeks: int = 6, title: str | None = None, progress: Progress | None = None) -> Path:
    """Build the report and write it. In: as ``sparkify report``. Out: the report's path."""
    model_dir = check_model_dir(model_dir)
    target = resolve_out_path(out)
    data = collect_report_data(spark, events_path, model_dir, weeks=weeks, progress=progress)
    write_atomic(target, render_report(data, title=title))
    return target
