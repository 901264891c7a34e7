"""``sparkify ingest | train | score | backtest``: argument parsing and console output only.

Each ``run_<name>(args)`` returns the exit code: 0 on success, 2 for a user mistake
(missing file, unwritable directory, bad option; printed as one line, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparkify.config import DEFAULT_HORIZON_DAYS, LONG_DAYS
from sparkify.progress import Progress


def _err(command: str, message: str) -> int:
    print(f"sparkify {command}: error: {message}", file=sys.stderr)
    return 2


def _spark(master: str | None, verbose: bool | None = None):
    """The SparkSession; ``verbose`` None: the command's ``--verbose`` (set by sparkify.cli)."""
    from sparkify.spark import get_spark

    return get_spark(master=master, verbose=verbose)


def _add_master(parser: argparse.ArgumentParser) -> None:
    """The options of every command that runs Spark on a log: --master, --verbose,
    --skip-corrupt-files (sparkify.cli applies the last two around the command)."""
    parser.add_argument("--master", metavar="URL", default=None,
                        help="Spark master URL (default local[*]; under spark-submit its own master is used)")
    add_spark_options(parser)


def add_spark_options(parser: argparse.ArgumentParser) -> None:
    """--verbose and --skip-corrupt-files (also used by ``sparkify report``)."""
    parser.add_argument("--verbose", action="store_true",
                        help="show Spark's own log (warnings) and progress bars on the console; by default "
                             "Spark reports errors only and the JVM's output goes to a log file")
    parser.add_argument("--skip-corrupt-files", action="store_true",
                        help="leave out damaged compressed files (truncated or corrupt .gz/.bz2) of a directory "
                             "or glob and use the readable ones; the skipped files are listed in the "
                             "data-quality summary (by default a damaged file stops the command)")


EVENTS_HELP = "event log: .json/.json.gz file, directory, glob, Parquet from `sparkify ingest --out`, or a store"


def add_events_argument(parser: argparse.ArgumentParser, help_text: str = EVENTS_HELP, store_note: str = "") -> None:
    """EVENTS (positional) or ``--store DIR`` (a store written by ``sparkify ingest --store``);
    ``store_note``: what this command reads of a store, appended to its help."""
    parser.add_argument("events", metavar="EVENTS", nargs="?", default=None, help=help_text)
    parser.add_argument("--store", metavar="DIR", default=None,
                        help="read a store written by `sparkify ingest --store` instead of EVENTS" + store_note)


def events_of(args: argparse.Namespace) -> str:
    """The log a command reads: EVENTS or ``--store``; ValueError for neither or both."""
    if (args.events is None) == (args.store is None):
        raise ValueError("give an event log (EVENTS) or a store (--store DIR), one of them")
    return str(args.store or args.events)


# --------------------------------------------------------------------------- ingest
def configure_ingest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", metavar="EVENTS", help="event log: .json/.json.gz file, directory of part files or glob")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", help="write the cleaned events here (Parquet; replaced if present)")
    target.add_argument("--store", metavar="DIR",
                        help="add the files of EVENTS not yet in this store (created if missing) as one batch of "
                             "session-day rows by day; what `train`, `score` and `backtest --store DIR` read")
    parser.add_argument("--artist-features", action="store_true",
                        help="with --store: keep each row's artist set, for models with the opt-in artist "
                             "features (fixed by the store's first batch)")
    parser.add_argument("--keep-events", action="store_true",
                        help="with --store: also keep the cleaned events by day, for `sparkify report --store` "
                             "(fixed by the store's first batch; the batch's files are parsed twice)")
    _add_master(parser)


def run_ingest(args: argparse.Namespace) -> int:
    from sparkify.spark import JavaNotFoundError

    progress = Progress()
    try:
        spark = _spark(args.master, getattr(args, "verbose", None))
    except JavaNotFoundError as exc:
        return _err("ingest", str(exc))
    if args.store:
        from sparkify.store import ingest_into_store

        progress.attach(spark)
        result = ingest_into_store(spark, args.events, args.store, artists=args.artist_features,
                                   keep_events=args.keep_events, progress=progress,
                                   skip_corrupt_files=getattr(args, "skip_corrupt_files", None))
        print(result.summary())
        return 0
    if args.artist_features or args.keep_events:
        return _err("ingest", "--artist-features and --keep-events go with --store (the --out Parquet keeps "
                              "every event)")
    from sparkify.dataset import ingest

    progress.attach(spark)
    with progress.stage(f"ingest {args.events}") as st:
        quality = ingest(spark, args.events, args.out, skip_corrupt_files=getattr(args, "skip_corrupt_files", None))
        st.note = f"cleaned log written to {args.out}"
    print(quality.summary())
    return 0


# --------------------------------------------------------------------------- train
def configure_train(parser: argparse.ArgumentParser) -> None:
    add_events_argument(parser)
    parser.add_argument("--model", metavar="DIR", required=True, help="model directory to write (replaced atomically)")
    _add_master(parser)
    parser.add_argument("--label", choices=("window", "ever"), default="window",
                        help="window: prediction-time label (default); ever: seed-compatible 'ever cancelled'")
    parser.add_argument("--cutoff", metavar="ISO", default=None,
                        help="one observation date T (UTC), e.g. 2018-11-01, instead of weekly snapshots")
    parser.add_argument("--last-date", metavar="ISO", default=None,
                        help="the latest observation date of the snapshots (a midnight UTC); default: the "
                             "latest whose horizon ends within the log")
    parser.add_argument("--step-days", type=int, default=None,
                        help="days between observation dates (default 7; 1 on a log of fewer than 2,000 users)")
    parser.add_argument("--horizon-days", type=int, default=DEFAULT_HORIZON_DAYS,
                        help="label window (t, t + horizon] in days (default 30)")
    parser.add_argument("--window-days", type=int, default=LONG_DAYS,
                        help=f"feature window before each date t in days (default {LONG_DAYS}, which leaves three "
                             "weekly dates in a 2-month log; 28 gives steadier rates per user where the log is "
                             "long enough); the model keeps it, and scoring uses it")
    parser.add_argument("--folds", type=int, default=None, help="k of the k-fold cross-validation (default 3; 2 with --quick)")
    parser.add_argument("--models", default="rf,gbt,lr,svc",
                        help="families to compare, comma-separated from rf,gbt,lr,svc (default all four)")
    parser.add_argument("--seed", type=int, default=42, help="split and model seed (default 42)")
    parser.add_argument("--scores", metavar="FILE", default=None,
                        help="also score every active user at the log's end with the new model, as `sparkify "
                             "score` does, and write the ranked list here (.csv or .parquet; e.g. DIR/scores.csv)")
    plan = parser.add_mutually_exclusive_group()
    plan.add_argument("--quick", action="store_true",
                      help="tiny grids and models, 2 folds (a smoke run)")
    plan.add_argument("--thorough", action="store_true",
                      help="also search the chosen family's tuning grid and class weights, compare with the seed-compatible "
                           "'ever' label and repeat the split with four more seeds (several times slower)")
    parser.add_argument("--artist-features", action="store_true",
                        help="add distinct_artists and artist_diversity (an exact set of artists per user; "
                             "about doubles the cost of loading a raw log)")


def train_config_from_args(args: argparse.Namespace):
    """A TrainConfig from the parsed ``sparkify train`` options (ValueError if invalid)."""
    from sparkify.features import LabelSpec, parse_time
    from sparkify.modeling.train import TrainConfig

    models = tuple(m.strip().lower() for m in args.models.split(",") if m.strip())
    label = LabelSpec(mode=args.label, cutoff=parse_time(args.cutoff) if args.cutoff else None,
                      horizon_days=args.horizon_days, step_days=args.step_days, long_days=args.window_days,
                      last_date=parse_time(args.last_date) if args.last_date else None)
    label.validate()
    common = {"models": models, "seed": args.seed, "label": label,
              "artist_features": args.artist_features}
    if args.folds is not None:
        common["folds"] = args.folds
    plan = TrainConfig.fast if args.quick else TrainConfig.thorough if args.thorough else TrainConfig
    config = plan(**common)
    config.validate()
    return config


def _summary_table(metrics: dict) -> str:
    rows = [("model", "churn F1", "precision", "recall", "PR-AUC", "ROC-AUC", "accuracy", "wF1", "train s")]
    for m in metrics["models"].values():
        t = m["test"]
        rows.append((m["name"], *(f"{t[k]:.3f}" for k in ("f1", "precision", "recall", "pr_auc", "roc_auc",
                                                             "accuracy", "weighted_f1")), f"{m['train_seconds']:.1f}"))
    b = metrics["best"]
    t = b["test"]
    rows.append((f"{b['name']} (saved)", *(f"{t[k]:.3f}" for k in ("f1", "precision", "recall", "pr_auc", "roc_auc",
                                                                    "accuracy", "weighted_f1")), f"{b['train_seconds']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def run_train(args: argparse.Namespace) -> int:
    from sparkify.spark import JavaNotFoundError

    try:
        config = train_config_from_args(args)
        events = events_of(args)
    except ValueError as exc:
        return _err("train", str(exc))
    if args.scores and Path(args.scores).suffix.lower() not in (".csv", ".parquet"):
        return _err("train", f"--scores must end in .csv or .parquet, not {Path(args.scores).name!r}")
    # fail before starting Spark on a missing log or an unwritable model directory
    from sparkify.modeling.train import check_paths

    try:
        check_paths(events, Path(args.model))
    except (FileNotFoundError, PermissionError, ValueError) as exc:
        return _err("train", str(exc))
    try:
        spark = _spark(args.master)
    except JavaNotFoundError as exc:
        return _err("train", str(exc))
    from sparkify.modeling.calibration import reliability_text
    from sparkify.modeling.evaluate import counts_text, spread_sizes
    from sparkify.modeling.selection import fraction_text
    from sparkify.modeling.train import train

    result = train(spark, events, args.model, config, scores_out=args.scores)
    m = result.metrics
    print()
    d = m["data"]
    dates = m["label"].get("dates") or []
    print(f"test set: {d['test_rows']:,} rows of {d['test_users']:,} held-out users, {d['test_churners']:,} churner "
          f"rows (label {m['label']['mode']}, {len(dates)} observation date(s)"
          + (f" {dates[0][:10]} .. {dates[-1][:10]}" if dates else "")
          + f", {m['label'].get('long_days', LONG_DAYS)}-day feature window)")
    print(_summary_table(m))
    best = m["best"]
    print(f"best: {best['name']} {best['params']}  threshold {result.threshold:.4f}, "
          f"calibration {best['calibration']['method']}")
    for period, b in best.get("periods", {}).items():
        print(f"  {period.replace('_', '-')}: {b['rows']:,} rows of {b['users']:,} users, {b['churners']:,} churner "
              f"rows: F1 {b['f1']:.3f}, PR-AUC {b['pr_auc']:.3f}, Brier {b['brier']:.4f}, expected/realized "
              f"churners {b['expected_churners']:.1f}/{b['realized_churners']}, {reliability_text(b)}")
    if m.get("label_comparison"):
        lc = m["label_comparison"]
        print(f"seed-compatible 'ever' label: churn F1 {lc['ever']['f1']:.3f}, weighted F1 "
              f"{lc['ever']['weighted_f1']:.3f} on {counts_text(lc['ever'])} (prediction-time: "
              f"{lc['window']['f1']:.3f} / {lc['window']['weighted_f1']:.3f} on {counts_text(lc['window'])})")
    if m.get("ceiling"):
        c = m["ceiling"]
        print(f"true ceiling on the same test rows ({counts_text(c['test'])}): churn F1 {c['test']['f1']:.3f}, "
              f"PR-AUC {c['test']['pr_auc']:.3f}; the model reaches {fraction_text(c)} of it")
    if m.get("seed_spread"):
        s = m["seed_spread"]["f1"]
        print(f"churn F1 over {s['n']} splits: mean {s['mean']:.3f}, sd {s['sd']:.3f}, "
              f"min {s['min']:.3f}, max {s['max']:.3f} ({spread_sizes(m['seed_spread'])})")
    print(f"model directory: {result.model_dir}")
    return 0


# --------------------------------------------------------------------------- score
def _check_model_log_time(model_dir: Path, events: str, as_of: str | None, after_training: bool = False):
    """(the user's mistake in words or None, the parsed time or None) for commands that
    apply a saved model to a log, checked before Spark starts: the model directory is
    whole (model.json readable, the Spark pipeline present), the log exists, ``as_of``
    parses and, with ``after_training``, is later than the model's last observation date."""
    from sparkify.features import parse_time
    from sparkify.modeling.artifacts import MODEL_JSON, PIPELINE_DIR, load_model_json
    from sparkify.modeling.backtest import check_after_training

    try:
        meta = load_model_json(model_dir)
    except FileNotFoundError as exc:
        return str(exc), None
    except (ValueError, OSError) as exc:
        return f"damaged model at {model_dir}: {MODEL_JSON} cannot be read ({exc}); train it again", None
    if not (model_dir / PIPELINE_DIR / "metadata").is_dir():
        return f"damaged model at {model_dir}: its Spark pipeline ({PIPELINE_DIR}/) is missing; train it again", None
    if "://" not in events and not any(ch in events for ch in "*?[") and not Path(events).exists():
        return f"event log not found: {events}", None
    try:
        when = parse_time(as_of) if as_of else None
        if after_training and when is not None:
            check_after_training(meta, when)
    except ValueError as exc:
        return str(exc), None
    return None, when


def _open_model_run(command: str, args: argparse.Namespace, model_dir: Path, after_training: bool = False):
    """The start of a command that applies a saved model to a log: the log's path, the
    model and the time checked before Spark starts (:func:`_check_model_log_time`), then
    the session. Out: (exit code after a printed error, or None; events; as_of; spark)."""
    from sparkify.spark import JavaNotFoundError

    try:
        events = events_of(args)
    except ValueError as exc:
        return _err(command, str(exc)), None, None, None
    problem, as_of = _check_model_log_time(model_dir, events, args.as_of, after_training=after_training)
    if problem:
        return _err(command, problem), None, None, None
    try:
        return None, events, as_of, _spark(args.master, getattr(args, "verbose", None))
    except JavaNotFoundError as exc:
        return _err(command, str(exc)), None, None, None


def _load_for_model(spark, events: str, model_dir: Path, as_of, progress: Progress, window_only: bool = False,
                    quarantine: Path | None = None):
    """The log as session-day rows that serve a saved model at ``as_of`` (its split points,
    its artist sets when the model uses them): a ``LoadedLog`` to use in ``with``.
    ``window_only``: from a store, read only the days of the feature window before
    ``as_of`` (default: the midnight after the store's last event). Malformed lines of a
    raw log go to ``quarantine`` (when there are any); the stage's note counts them and
    names the damaged files skipped."""
    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, model_window_days, spec_boundaries, uses_artists
    from sparkify.modeling.artifacts import load_model_json
    from sparkify.store import is_store, load_store, scoring_time_ms

    meta = load_model_json(model_dir)
    artists = uses_artists([f["name"] for f in meta["features"]])
    long_days = model_window_days(meta)
    splits = spec_boundaries(LabelSpec(cutoff=as_of, long_days=long_days))
    progress.attach(spark)
    with progress.stage(f"load {events}") as st:
        if window_only and is_store(spark, events):
            loaded = load_store(spark, events, artists=artists, splits=splits,
                                window_end_ms=scoring_time_ms(spark, events, as_of), long_days=long_days)
        else:
            loaded = load_log(spark, events, splits=splits, artists=artists,
                              quarantine_path=str(quarantine) if quarantine else None)
        q = loaded.quality
        st.note = (f"{q.user_rows:,} user events, {q.users:,} users"
                   + (f", {q.quarantined:,} malformed lines quarantined"
                      + (f" -> {q.quarantine_path}" if q.quarantine_path else " (at ingest)") if q.quarantined else "")
                   + (f", {len(q.skipped_files):,} damaged file(s) skipped: "
                      + ", ".join(f["path"] for f in q.skipped_files) if q.skipped_files else ""))
    return loaded


def _drop_stale_quarantine(path: Path, quality) -> None:
    """Remove the quarantine folder ``path`` that an earlier run of the same output left,
    unless this run's load (``quality``) wrote it: its lines are not this run's."""
    import shutil

    if path.is_dir() and quality.quarantine_path != str(path):
        shutil.rmtree(path)


def configure_score(parser: argparse.ArgumentParser) -> None:
    add_events_argument(parser, store_note=" (only the days of the model's feature window are read)")
    parser.add_argument("--model", metavar="DIR", required=True, help="model directory written by `sparkify train`")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="output .csv or .parquet (default DIR/scores.csv, which the web app reads)")
    parser.add_argument("--as-of", metavar="ISO", default=None,
                        help="score as of this time (UTC); default: the log's end")
    _add_master(parser)


def run_score(args: argparse.Namespace) -> int:
    progress = Progress()
    model_dir = Path(args.model)
    out = Path(args.out) if args.out else model_dir / "scores.csv"
    if out.suffix.lower() not in (".csv", ".parquet"):
        return _err("score", f"--out must end in .csv or .parquet, not {out.name!r}")
    code, events, as_of, spark = _open_model_run("score", args, model_dir)
    if code is not None:
        return code
    from sparkify.features import iso_ms
    from sparkify.modeling.predict import NoActiveUsers, score_users, write_scores

    quarantine = out.with_name(f"{out.stem}.quarantine")
    with _load_for_model(spark, events, model_dir, as_of, progress, window_only=True,
                         quarantine=quarantine) as loaded:
        try:
            with progress.stage("scoring") as st:
                written = write_scores(score_users(spark, loaded.days, model_dir, as_of=as_of), out,
                                       refuse_empty=True)
                flagged = int(written["decision"].sum())
                st.note = f"{len(written):,} active users scored, {flagged:,} flagged as likely to churn -> {out}"
        except NoActiveUsers:
            first, last = (iso_ms(t) for t in loaded.days.log_span_ms())
            when = f"{as_of:%Y-%m-%dT%H:%M:%SZ}" if as_of else "the log's end"
            return _err("score", f"no user is subscribed and active in the feature window before {when} "
                                 f"(the log runs from {first} to {last}); nothing written to {out}")
        _drop_stale_quarantine(quarantine, loaded.quality)
    from sparkify.modeling.predict import rows_path

    if rows_path(out).exists():
        progress.say(f"the scored feature rows (for per-user reasons in the web app) -> {rows_path(out)}")
    if len(written):
        print(written.head(10).to_string(index=False))
    return 0


# --------------------------------------------------------------------------- backtest
def configure_backtest(parser: argparse.ArgumentParser) -> None:
    add_events_argument(parser, "event log (or store) reaching at least the model's horizon past --as-of")
    parser.add_argument("--model", metavar="DIR", required=True, help="model directory written by `sparkify train`")
    parser.add_argument("--as-of", metavar="ISO", required=True,
                        help="the later date to apply the model at (UTC), e.g. 2018-12-01")
    _add_master(parser)


def run_backtest(args: argparse.Namespace) -> int:
    progress = Progress()
    model_dir = Path(args.model)
    code, events, as_of, spark = _open_model_run("backtest", args, model_dir, after_training=True)
    if code is not None:
        return code
    from sparkify.modeling.backtest import BACKTEST_DIR, backtest, summary, write_backtest

    quarantine = model_dir / BACKTEST_DIR / f"quarantine_{as_of:%Y-%m-%d}"
    with _load_for_model(spark, events, model_dir, as_of, progress, quarantine=quarantine) as loaded:
        try:
            from sparkify.modeling.train import truth_path_for

            with progress.stage("backtest"):
                result = backtest(spark, loaded.days, model_dir, as_of, truth=truth_path_for(events))
        except ValueError as exc:
            return _err("backtest", str(exc))
        _drop_stale_quarantine(quarantine, loaded.quality)
    path = write_backtest(model_dir, result)
    print(summary(result))
    progress.say(f"written to {path} and {model_dir / 'backtest.json'}")
    return 0
