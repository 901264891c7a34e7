"""Keep a store and an at-risk list up to date as files land: Spark Structured Streaming.

In:  a landing directory that new raw JSON log files are moved into (whole: write them
     elsewhere, then rename them in; names starting with ``_`` or ``.`` are ignored), a
     store (:mod:`sparkify.store`) and, optionally, a model directory.
Out: a running ``StreamingQuery`` (:func:`start_watch`): Spark's file source lists the
     landing directory every ``poll_s`` seconds; each micro-batch's new files are added to
     the store as one batch (:func:`sparkify.store.ingest_into_store`), and with a model
     the at-risk list is rescored from the store (its last feature window) when
     ``every_s`` seconds have passed since the last scoring, and after the first batch.

The file source records in its checkpoint (``STORE/_watch_checkpoint`` by default) which
files each micro-batch took, and the store's manifest which files it holds: a restart
neither loses a file (an uncommitted micro-batch is run again) nor counts one twice (a
file the store already holds is not read again).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkify.store import ingest_into_store, load_store, scoring_time_ms

CHECKPOINT_DIR = "_watch_checkpoint"


@dataclass
class WatchState:
    """What the watch has done so far: the store batches it added, its scorings (when,
    users scored), and whether new rows wait for a scoring."""

    batches: list[str] = field(default_factory=list)
    scored: list[tuple[float, int]] = field(default_factory=list)
    pending: bool = False
    error: str | None = None                      # why a batch was refused (it stops the watch)
    last_scored: float | None = None
    #: scores the store when new rows wait and the interval has passed (set by start_watch;
    #: call it now and then between micro-batches, as ``sparkify watch`` does)
    rescore_if_due: Callable[[], None] = field(default=lambda: None, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _files_of(batch: DataFrame) -> list[str]:
    """The distinct files of a micro-batch of the stream's ``file`` column (a few names)."""
    return sorted(r[0] for r in batch.distinct().collect())


def refresh_scores(spark: SparkSession, store: str, model_dir: str | Path, out: str | Path) -> int:
    """Score the store at the midnight after its last event with the model and write the
    ranked list to ``out`` (``sparkify.modeling.predict.write_scores``). Returns the
    number of users scored. Raises ``NoActiveUsers``, and leaves ``out`` as it was, when
    no user is active in the window before that time."""
    from sparkify.features import model_window_days, uses_artists
    from sparkify.modeling.artifacts import load_model_json
    from sparkify.modeling.predict import score_users, write_scores

    meta = load_model_json(Path(model_dir))
    artists = uses_artists([f["name"] for f in meta["features"]])
    with load_store(spark, store, artists=artists, window_end_ms=scoring_time_ms(spark, store),
                    long_days=model_window_days(meta)) as loaded:
        return len(write_scores(score_users(spark, loaded.days, model_dir), Path(out), refuse_empty=True))


def start_watch(spark: SparkSession, landing: str | Path, store: str | Path, *, model_dir: str | Path | None = None,
                scores_out: str | Path | None = None, every_s: float = 3600.0, poll_s: float = 10.0,
                once: bool = False, checkpoint: str | Path | None = None, artists: bool = False,
                keep_events: bool = False, progress=None):
    """Start watching ``landing``; returns (the StreamingQuery, its :class:`WatchState`).

    ``model_dir``: rescore with this model (``scores_out``, default ``MODEL/scores.csv``,
    which ``sparkify serve`` reads) every ``every_s`` seconds at most; ``once``: take the
    files there now and stop (Spark's available-now trigger); ``checkpoint``: the
    stream's checkpoint (default inside the store); ``artists``, ``keep_events`` as for
    ``ingest_into_store``. Raises FileNotFoundError when ``landing`` is not a directory.
    """
    from sparkify.modeling.predict import NoActiveUsers
    from sparkify.progress import quiet
    from sparkify.rawlog import glob_status

    landing, store = str(landing).rstrip("/"), str(store).rstrip("/")
    found = glob_status(spark, landing)
    if len(found) != 1 or not found[0].isDirectory():
        raise FileNotFoundError(f"no landing directory at {landing}")
    progress = progress or quiet()
    state = WatchState()
    out = Path(scores_out) if scores_out else (Path(model_dir) / "scores.csv" if model_dir else None)

    def each_batch(batch: DataFrame, batch_id: int) -> None:
        files = _files_of(batch)
        if files:
            try:
                result = ingest_into_store(spark, files, store, artists=artists, keep_events=keep_events,
                                           progress=progress)
            except ValueError as exc:
                state.error = str(exc)
                raise
            if result.batch is not None:
                state.batches.append(result.batch.id)
                state.pending = True
                progress.say(f"micro-batch {batch_id}: {result.summary().splitlines()[0]}")
        rescore_if_due()

    def rescore_if_due() -> None:
        """Score the store if new rows wait and ``every_s`` has passed since the last scoring."""
        if model_dir is None:
            return
        with state.lock:
            now = time.monotonic()
            if not state.pending or (state.last_scored is not None and now - state.last_scored < every_s):
                return
            with progress.stage(f"rescore -> {out}") as st:
                try:
                    users = refresh_scores(spark, store, model_dir, out)
                    st.note = f"{users:,} active users"
                except NoActiveUsers as exc:
                    users = 0
                    st.note = f"{exc}: the list in use is kept"
            state.pending, state.last_scored = False, now
            state.scored.append((time.time(), users))

    state.rescore_if_due = rescore_if_due
    stream = spark.readStream.format("text").load(landing).select(F.col("_metadata.file_path").alias("file"))
    writer = (stream.writeStream.foreachBatch(each_batch)
              .option("checkpointLocation", str(checkpoint or f"{store}/{CHECKPOINT_DIR}")))
    writer = writer.trigger(availableNow=True) if once else writer.trigger(processingTime=f"{poll_s:g} seconds")
    return writer.start(), state


# --------------------------------------------------------------------------- command line
def configure_watch(parser) -> None:
    from sparkify.modeling.cli import _add_master

    parser.add_argument("landing", metavar="LANDING_DIR",
                        help="directory that new raw JSON log files are moved into (whole: write, then rename in)")
    parser.add_argument("--store", metavar="DIR", required=True, help="the store to keep up to date (created if missing)")
    parser.add_argument("--model", metavar="DIR", default=None,
                        help="rescore the store's active users with this model after new files (the web app "
                             "serving DIR picks up DIR/scores.csv)")
    parser.add_argument("--scores", metavar="FILE", default=None, help="where to write the list (default MODEL/scores.csv)")
    parser.add_argument("--every", metavar="MIN", type=float, default=60.0,
                        help="at most one rescoring per this many minutes (default 60)")
    parser.add_argument("--poll", metavar="SEC", type=float, default=10.0,
                        help="seconds between looks at LANDING_DIR (default 10)")
    parser.add_argument("--once", action="store_true", help="take the files there now, then stop (for cron)")
    parser.add_argument("--checkpoint", metavar="DIR", default=None,
                        help=f"the stream's checkpoint (default STORE/{CHECKPOINT_DIR})")
    parser.add_argument("--artist-features", action="store_true", help="as `sparkify ingest --store`")
    parser.add_argument("--keep-events", action="store_true", help="as `sparkify ingest --store`")
    _add_master(parser)


def run_watch(args) -> int:
    from sparkify.modeling.cli import _err, _spark
    from sparkify.progress import Progress
    from sparkify.spark import JavaNotFoundError

    if args.model and not (Path(args.model) / "model.json").exists():
        return _err("watch", f"no model at {args.model} (missing model.json)")
    if args.every < 0 or args.poll <= 0:
        return _err("watch", "--every must be >= 0 and --poll > 0")
    try:
        spark = _spark(args.master)
    except JavaNotFoundError as exc:
        return _err("watch", str(exc))
    progress = Progress()
    progress.attach(spark)
    query, state = start_watch(spark, args.landing, args.store, model_dir=args.model, scores_out=args.scores,
                               every_s=args.every * 60, poll_s=args.poll, once=args.once, checkpoint=args.checkpoint,
                               artists=args.artist_features, keep_events=args.keep_events, progress=progress)
    progress.say(f"watching {args.landing} -> {args.store}" + ("" if args.once else " (Ctrl-C to stop)"))
    try:
        while not query.awaitTermination(args.poll):
            state.rescore_if_due()
    except KeyboardInterrupt:
        query.stop()
        raise
    except Exception:  # noqa: BLE001 - a refused batch is the user's to look at: its own words
        if state.error:
            return _err("watch", state.error)
        raise
    state.rescore_if_due()
    progress.say(f"stopped: {len(state.batches)} batch(es) added, {len(state.scored)} rescoring(s)")
    return 0
