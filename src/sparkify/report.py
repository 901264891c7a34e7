"""``sparkify report``: one self-contained HTML report of the data and the models.

    sparkify report EVENTS --model DIR --out reports/ [--master URL]

In:  an event log (anything :func:`sparkify.dataset.load_events` reads) and a model
     directory written by ``sparkify train`` (docs/model-directory.md).
Out: ``<out>/sparkify_report.html`` (or ``--out`` itself when it ends in ``.html``): one
     file that opens offline. Plotly's JavaScript and Bootstrap's CSS are inlined once;
     every chart is a Plotly figure from :mod:`sparkify.plots` (the charts the web app's
     dashboard uses).

Sections: data quality, exploration (churners vs stayers), models (comparison of the
four families, curves of the tuned model on the held-out test users, importances) and,
for simulated logs, the ceiling a model on the simulator's true parameters reaches.

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
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from sparkify.config import DEFAULT_MODEL_DIR, REPORTS_DIR

REPORT_NAME = "sparkify_report.html"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates_report"
TEMPLATE_NAME = "report.html.j2"

#: Numeric features shown as churner-vs-stayer distributions (when the model has them).
MAIN_FEATURES = (
    "songs_per_day", "thumbs_up_per_day", "thumbs_down_per_day", "adverts_per_day",
    "n_add_friend", "n_sessions", "days_since_registration", "days_since_last_activity",
    "activity_trend",
)
CATEGORY_FEATURES = ("level", "gender", "os", "region")
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

        spark = get_spark(app_name="sparkify-report", master=args.master)
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


class Progress:
    """Prints each stage with its elapsed time (``[  12.3s] explore ... done in 4.1 s``)."""

    def __init__(self, out: Callable[[str], None] | None = None):
        self.start = time.perf_counter()
        self.out = out or (lambda s: print(s, flush=True))
        self.timings: dict[str, float] = {}

    def total(self) -> float:
        return time.perf_counter() - self.start

    def stage(self, name: str):
        progress = self

        class _Stage:
            def __enter__(self):
                self.t0 = time.perf_counter()
                progress.out(f"[{progress.total():7.1f}s] {name} ...")
                return self

            def __exit__(self, exc_type, exc, tb):
                dt = time.perf_counter() - self.t0
                progress.timings[name] = dt
                if exc_type is None:
                    progress.out(f"[{progress.total():7.1f}s] {name} done in {dt:.1f} s")
                return False

        return _Stage()


# --------------------------------------------------------------------------- data
@dataclass
class ModelEvaluation:
    """Scores of the saved model on users it was not trained on (one row per user)."""

    name: str                       # e.g. "test (held out)" or "out-of-fold (train)"
    labels: np.ndarray
    scores: np.ndarray              # the model's score (probability or margin)
    probabilities: np.ndarray | None   # churn probability (None when not calibrated)
    source: str                     # how the scores were obtained


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
    features: pd.DataFrame | None                # the model's user table (churn, split, score)
    model_json: dict[str, Any]
    metrics: dict[str, Any]
    model_quality: dict[str, Any] | None         # data_quality.json of the model directory
    evaluations: list[ModelEvaluation] = field(default_factory=list)
    truth: dict[str, Any] | None = None          # simulator ground truth summary
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
    """Scores of the saved model for the held-out test users (and, when the model
    directory kept them, the out-of-fold scores of the training users).

    Test users are scored afresh with :func:`sparkify.scorer.load_model` (NumPy, the
    same code the web app runs); when the scorer cannot read the model, the test scores
    stored in ``features.parquet`` are used instead (and a note says so).
    """
    if features is None or "split" not in features or "churn" not in features:
        notes.append("The model directory has no features.parquet with churn and split columns: "
                     "no test-set curves.")
        return []
    out: list[ModelEvaluation] = []
    test = features[features["split"] == "test"]
    calibration = model_json.get("calibration")
    score_kind = model_json.get("score_kind", "probability")

    def to_prob(scores: np.ndarray) -> np.ndarray | None:
        if score_kind == "probability":
            return np.clip(scores, 0.0, 1.0)
        if calibration:
            return 1.0 / (1.0 + np.exp(float(calibration["a"]) * scores + float(calibration["b"])))
        return None

    if len(test):
        try:
            from sparkify.scorer import load_model

            model = load_model(model_dir)
            pred = model.predict(test[model.feature_names].reset_index(drop=True))
            scores = pred["score"].to_numpy(dtype=float)
            probs = pred["probability"].to_numpy(dtype=float)
            probs = None if np.isnan(probs).all() else probs
            source = "scored now with the NumPy scorer (sparkify.scorer)"
        except Exception as exc:  # noqa: BLE001 - fall back to the stored scores, say why
            if "score" not in test:
                notes.append(f"Could not score the test users ({exc}); no test-set curves.")
                scores = None
            else:
                notes.append(f"The NumPy scorer could not load the model ({exc}); the test scores "
                             "stored by `sparkify train` are shown.")
                scores = test["score"].to_numpy(dtype=float)
                probs = to_prob(scores)
                source = "stored in features.parquet by sparkify train"
        if scores is not None:
            out.append(ModelEvaluation("test (held out)", test["churn"].to_numpy(dtype=int), scores, probs,
                                       source))
    train = features[features["split"] == "train"]
    if "score" in train and len(train) and train["score"].notna().all():
        scores = train["score"].to_numpy(dtype=float)
        out.append(ModelEvaluation("out-of-fold (train)", train["churn"].to_numpy(dtype=int), scores,
                                   to_prob(scores), "out-of-fold scores stored by sparkify train"))
    return out


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

    progress = progress or Progress(lambda s: None)
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
    notes: list[str] = []
    with progress.stage("model"):
        model_json, metrics, model_quality, features = read_model_artifacts(model_dir)
        evaluations = evaluate_saved_model(model_dir, model_json, features, notes)
        truth = truth_summary(truth_path_for(str(events_path)))
    if model_quality and (model_quality.get("users"), model_quality.get("churners")) != \
            (loaded.quality.users, loaded.quality.churners):
        notes.append(
            f"The model was trained on a different log ({model_quality.get('users')} users, "
            f"{model_quality.get('churners')} churners; this log: {loaded.quality.users} users, "
            f"{loaded.quality.churners} churners). Exploration describes this log; the model section "
            "describes the model's own test users.")
    return ReportData(
        events_path=str(events_path), model_dir=str(model_dir), quality=loaded.quality.to_dict(),
        groups=groups, daily=daily, pages=pages, weekly=weekly, features=features,
        model_json=model_json, metrics=metrics, model_quality=model_quality,
        evaluations=evaluations, truth=truth, notes=notes, weeks=weeks, timings=progress.timings,
    )


# --------------------------------------------------------------------------- figures and tables
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def comparison_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the model comparison table from metrics.json: each family's test figures,
    the tuned best, the ceiling and the constant baseline (when present).

    Each row: ``name``, ``kind`` (family/best/ceiling/baseline), the :data:`TABLE_COLUMNS`
    keys (float or None), ``train_seconds``, ``threshold``."""
    rows: list[dict[str, Any]] = []
    best = metrics.get("best") or {}
    models = metrics.get("models") or {}
    for key, fig in models.items():
        if not isinstance(fig, dict):
            continue
        test = fig.get("test") or {}
        row = {"name": fig.get("name") or key, "kind": "family", "family": key,
               "train_seconds": _num(fig.get("train_seconds")), "threshold": _num(fig.get("threshold")),
               "chosen": key == best.get("family")}
        row.update({k: _num(test.get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    if best:
        test = best.get("test") or {}
        src = best.get("selected_from")
        row = {"name": f"{best.get('name', 'best')} (saved{', tuned' if src == 'tuning' else ''})",
               "kind": "best", "family": best.get("family"),
               "train_seconds": _num(best.get("train_seconds")), "threshold": _num(best.get("threshold")),
               "chosen": True}
        row.update({k: _num(test.get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    ceiling = metrics.get("ceiling")
    if isinstance(ceiling, dict) and isinstance(ceiling.get("test"), dict):
        row = {"name": "Ceiling (simulator's true parameters)", "kind": "ceiling",
               "family": ceiling.get("family"), "train_seconds": None, "threshold": None, "chosen": False}
        row.update({k: _num(ceiling["test"].get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    base = metrics.get("baseline")
    if isinstance(base, dict):
        row = {"name": "Constant predictor (knows nothing)", "kind": "baseline", "family": None,
               "train_seconds": None, "threshold": None, "chosen": False}
        row.update({k: None for k, _, _ in TABLE_COLUMNS})
        row["f1"] = _num(base.get("f1_flag_all"))
        row["pr_auc"] = _num(base.get("pr_auc"))
        row["roc_auc"] = _num(base.get("roc_auc"))
        rows.append(row)
    return rows


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

        units = {k: v.unit for k, v in FEATURES_BY_NAME.items() if v.unit}
    except ImportError:  # pragma: no cover - features always ships with the package
        pass
    if feats is not None:
        cols = [c for c in MAIN_FEATURES if c in feats]
        figs["distributions"] = plots.group_comparison(feats, cols, kind="box", units=units,
                                                       title="Main features: churners vs stayers")
        figs["categories"] = plots.churn_rate_by_category(feats, [c for c in CATEGORY_FEATURES if c in feats],
                                                          names=CATEGORY_NAMES)
        figs["churn_rate"] = plots.churn_rate(feats, by="split" if "split" in feats else None,
                                              title="Label")
        figs["churn_rate"].update_layout(margin={"t": 110}, height=420)
    figs["pages"] = plots.page_mix(data.pages)
    figs["weeks"] = plots.weeks_before_churn(data.weekly, WEEKLY_MEASURES, units=WEEKLY_UNITS)

    rows = comparison_rows(data.metrics)
    frame = pd.DataFrame([{k: r.get(k) for k in ("f1", "pr_auc", "roc_auc", "recall")} for r in rows
                          if r["kind"] in ("family", "best", "ceiling")],
                         index=[r["name"] for r in rows if r["kind"] in ("family", "best", "ceiling")])
    frame.columns = ["churn-class F1", "PR-AUC", "ROC-AUC", "recall"]
    figs["comparison"] = plots.model_comparison(frame.astype(float), columns=list(frame.columns),
                                                title="Test-set scores of the models")
    figs["comparison"].update_layout(height=460)

    roc, pr, cal, gains = {}, {}, {}, {}
    for ev in data.evaluations:
        roc[ev.name] = rc.roc_points(ev.labels, ev.scores)
        pr[ev.name] = rc.pr_points(ev.labels, ev.scores)
        gains[ev.name] = rc.gains_table(ev.labels, ev.scores)
        if ev.probabilities is not None:
            cal[ev.name] = rc.calibration_bins(ev.labels, ev.probabilities)
    base_rate = float(data.evaluations[0].labels.mean()) if data.evaluations else None
    figs["roc"] = plots.roc_curve(roc) if roc else plots.empty_figure("no test scores", "ROC curve")
    figs["pr"] = plots.precision_recall_curve(pr, base_rate=base_rate) if pr else \
        plots.empty_figure("no test scores", "Precision-recall curve")
    figs["calibration"] = plots.calibration_plot(cal)
    figs["gains"] = plots.gains_chart(gains)
    confusion = ((data.metrics.get("best") or {}).get("test") or {}).get("confusion")
    if confusion:
        figs["confusion"] = plots.confusion_matrix(rc.confusion_matrix_rows(confusion),
                                                   title="Confusion matrix (test users, saved threshold)")
    else:
        figs["confusion"] = plots.empty_figure("no confusion matrix in metrics.json", "Confusion matrix")
    threshold = _num(data.model_json.get("threshold"))
    test = next((e for e in data.evaluations if e.name.startswith("test")), None)
    if test is not None:
        figs["scores"] = plots.score_distribution(test.scores, test.labels, threshold=threshold,
                                                  title="Test users' scores by actual outcome")
    imp, kind = importance_series(data.metrics)
    figs["importances"] = plots.feature_importances(
        imp, top=15, signed=(kind == "coefficient"),
        title="Feature importances" if kind != "coefficient" else "Coefficients (standardised inputs)",
        xaxis_title=kind)
    return figs


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
    context = {
        "title": title or "Sparkify churn report",
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
        "ceiling": metrics.get("ceiling") if isinstance(metrics.get("ceiling"), dict) else None,
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
