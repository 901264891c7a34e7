"""A store of session-day rows that grows batch by batch, read back only where needed.

In:  raw JSON log files, one batch at a time (:func:`ingest_into_store`: a day's file, a
     week, a whole log; a directory or glob of which only the files not yet in the store
     are read).
Out: a directory (local, or on any Hadoop file system a cluster shares) holding::

    _manifest/v00001.json, ...      the committed versions; the highest is the store
    rows/batch=b00001-9f3a.../day=17805/  a batch's session-day rows of one UTC day (Parquet,
                                    the columns of sparkify.session_days.SessionDays)
    users/batch=b00001/             per user of the batch: first and last event time and
                                    first cancellation (``churn_ms``)
    events/batch=b00001/day=17805/  with ``--keep-events``: the batch's cleaned events
                                    (``sparkify.rawlog.KEPT_COLUMNS``), for ``sparkify report``
    batches/b00001/quarantine/      the batch's malformed lines (JSON Lines), if any

     and :func:`load_store`, which reads it back as a ``sparkify.dataset.LoadedLog``:
     whole (train, backtest) or only the days of one feature window and the users' state
     (score); and :func:`load_store_events`, the kept events (report).

A batch is written under directories of its own (its id: the next sequence number and a
random suffix) and joins the store only when the manifest version that names it is
committed (written under a temporary name, then renamed): a batch that fails half-way, or
loses the race to a concurrent ingest, leaves the store as it was; its leftovers are
removed by a later ingest. A file already in the store (same path, size and modification time) is
not read again; a damaged file left out (``skip_corrupt_files``) is not held, so it is
tried again next time. A batch whose events repeat events the store holds (the same user and
session with overlapping item numbers on the same day; eventsim numbers a session's
events 0, 1, 2, ...) is refused and nothing is written.

Features and labels are sums, minima and maxima over session-day rows, so the rows of one
session-day written by two batches add up as one row would: the store gives the feature
rows, and so the scores, of the raw log it was ingested from, value for value.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkify.config import LONG_DAYS
from sparkify.inputs import display_path
from sparkify.quality import DataQuality
from sparkify.rawlog import _hadoop_path, input_files, is_parquet, read_text, write_text
from sparkify.session_days import DAY_MS, PARTIAL_KEYS, SessionDays, partial_values

MANIFEST_DIR = "_manifest"
ROWS_DIR = "rows"
USERS_DIR = "users"
EVENTS_DIR = "events"
BATCHES_DIR = "batches"
FORMAT = 1
#: DataQuality counts that add up over batches
_SUMMED = ("rows_read", "quarantined", "hidden_rows", "duplicates", "user_rows")


@dataclass
class Batch:
    """One committed ingest: its ``id``, the files read (``path``, ``size``, ``mtime``),
    the UTC days (epoch day numbers) it wrote rows for, its row count, its event span
    (epoch ms; ``ever_last_ms``: the last non-cancellation event), its quality summary
    (``DataQuality.to_dict()``) and when it was ingested."""

    id: str
    sources: list[dict]
    days: list[int]
    rows: int
    first_ms: int
    last_ms: int
    ever_last_ms: int | None
    quality: dict
    ingested_at: str


@dataclass
class Manifest:
    """The store's table of contents: ``version`` (0: empty store), whether its rows carry
    artist sets, whether it keeps the cleaned events, and the committed batches in order."""

    version: int = 0
    artists: bool = False
    batches: list[Batch] = field(default_factory=list)
    events: bool = False

    def known_files(self) -> set[tuple[str, int, int]]:
        return {(s["path"], int(s["size"]), int(s["mtime"])) for b in self.batches for s in b.sources}

    def days(self) -> set[int]:
        return {d for b in self.batches for d in b.days}

    def end_ms(self) -> int:
        return max(b.last_ms for b in self.batches)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"store manifest format {data.get('format')!r} is not {FORMAT}: "
                             "written by another version of sparkify")
        return cls(version=int(data["version"]), artists=bool(data["artists"]),
                   batches=[Batch(**b) for b in data["batches"]], events=bool(data.get("events", False)))


@dataclass
class IngestResult:
    """What :func:`ingest_into_store` did: the committed ``batch`` (None: nothing new),
    how many files were new and how many already in the store, the manifest version."""

    store: str
    batch: Batch | None
    new_files: int
    known_files: int
    version: int

    def summary(self) -> str:
        if self.batch is None:
            return (f"nothing new: all {self.known_files:,} file(s) are already in the store "
                    f"{self.store} (version {self.version})")
        q = DataQuality.from_dict(self.batch.quality)
        first = datetime.fromtimestamp(min(self.batch.days) * DAY_MS / 1000, tz=timezone.utc)
        last = datetime.fromtimestamp(max(self.batch.days) * DAY_MS / 1000, tz=timezone.utc)
        known = f" ({self.known_files:,} already in the store, not read again)" if self.known_files else ""
        return (f"batch {self.batch.id}: {self.new_files:,} new file(s){known}, "
                f"{self.batch.rows:,} session-day rows over {len(self.batch.days)} day(s) "
                f"({first:%Y-%m-%d} to {last:%Y-%m-%d}); store {self.store} is at version {self.version}\n"
                + q.summary())


# --------------------------------------------------------------------------- manifest
def _path(store: str, *parts: str) -> str:
    return "/".join([store.rstrip("/"), *parts])


def is_store(spark: SparkSession, path: str) -> bool:
    """True when ``path`` is a store directory (it has a ``_manifest`` directory)."""
    fs, hpath = _hadoop_path(spark, _path(str(path), MANIFEST_DIR))
    return bool(fs.exists(hpath))


def read_manifest(spark: SparkSession, store: str) -> Manifest:
    """The store's current manifest (an empty one when ``store`` holds none yet)."""
    fs, hpath = _hadoop_path(spark, _path(store, MANIFEST_DIR))
    if not fs.exists(hpath):
        return Manifest()
    versions = sorted(s.getPath().getName() for s in fs.listStatus(hpath)
                      if s.getPath().getName().startswith("v") and s.getPath().getName().endswith(".json"))
    if not versions:
        return Manifest()
    return Manifest.from_json(read_text(spark, _path(store, MANIFEST_DIR, versions[-1])))


def _commit(spark: SparkSession, store: str, manifest: Manifest) -> None:
    """Write ``manifest`` as the next version: under a temporary name, then renamed, so a
    reader sees the old version or the new one whole. Raises RuntimeError when another
    ingest committed this version first."""
    name = f"v{manifest.version:05d}.json"
    tmp = _path(store, MANIFEST_DIR, f"_{name}.tmp")
    write_text(spark, tmp, manifest.to_json())
    fs, tmp_path = _hadoop_path(spark, tmp)
    final = _hadoop_path(spark, _path(store, MANIFEST_DIR, name))[1]
    if fs.exists(final) or not fs.rename(tmp_path, final):
        fs.delete(tmp_path, False)
        raise RuntimeError(f"another ingest committed version {manifest.version} of {store} first; "
                           "this batch was not added: run the ingest again")


def _committed(spark: SparkSession, store: str) -> Manifest:
    """The manifest of a store with at least one batch; ValueError otherwise."""
    manifest = read_manifest(spark, store)
    if not manifest.batches:
        raise ValueError(f"the store {store} holds no batch yet: add one with `sparkify ingest EVENTS --store {store}`")
    return manifest


def _user_state(spark: SparkSession, store: str, manifest: Manifest) -> tuple[DataFrame, int, int]:
    """(DataFrame[userId, churn_ms]: every user's first cancellation, null for none; the
    number of users; of churners) over the store's batches."""
    users = spark.read.parquet(*[_path(store, USERS_DIR, f"batch={b.id}") for b in manifest.batches])
    state = users.groupBy("userId").agg(F.min("churn_ms").alias("churn_ms"))
    n_users, n_churners = state.agg(F.count(F.lit(1)), F.count("churn_ms")).first()
    return state, int(n_users), int(n_churners)


def _check_store_dir(spark: SparkSession, store: str) -> None:
    """ValueError when ``store`` exists, holds more than hidden entries (``_``, ``.``: a
    watch's checkpoint) and is not a store."""
    fs, hpath = _hadoop_path(spark, store)
    if fs.exists(hpath) and not is_store(spark, store):
        if not fs.getFileStatus(hpath).isDirectory() or any(
                not s.getPath().getName().startswith(("_", ".")) for s in fs.listStatus(hpath)):
            raise ValueError(f"{store} exists and is not a Sparkify store (no {MANIFEST_DIR}/): "
                             "give a new or empty directory")


# --------------------------------------------------------------------------- ingest
def _file_identity(spark: SparkSession, path: str) -> dict:
    fs, hpath = _hadoop_path(spark, path)
    status = fs.getFileStatus(hpath)
    return {"path": status.getPath().toString(), "size": int(status.getLen()),
            "mtime": int(status.getModificationTime())}


def _repeated_events(spark: SparkSession, store: str, manifest: Manifest, rows: DataFrame,
                     days: set[int]) -> tuple[int, list[str]]:
    """(session-day rows of ``rows`` whose item numbers overlap a stored row of the same
    user, session and day, up to 3 examples) over the stored ``days``."""
    stored = _read_rows(spark, store, manifest, days, columns=["userId", "sessionId", "day", "p_item_min",
                                                                "p_item_max"])
    if stored is None:
        return 0, []
    keys = ["userId", "sessionId", "day"]
    new = rows.select(*keys, F.col("p_item_min").alias("n_min"), F.col("p_item_max").alias("n_max"))
    clash = (new.join(stored, keys)
             .filter((F.col("n_min") <= F.col("p_item_max")) & (F.col("p_item_min") <= F.col("n_max")))
             .select(*keys).distinct().persist())
    try:
        count = clash.count()
        examples = [f"user {r.userId} session {r.sessionId} on "
                    f"{datetime.fromtimestamp(r.day * DAY_MS / 1000, tz=timezone.utc):%Y-%m-%d}"
                    for r in clash.orderBy(*keys).limit(3).collect()] if count else []
    finally:
        clash.unpersist()
    return count, examples


def ingest_into_store(spark: SparkSession, events: str | Path | list[str], store: str | Path, *,
                      artists: bool = False,
                      keep_events: bool = False, skip_corrupt_files: bool | None = None,
                      progress=None) -> IngestResult:
    """Add the files of ``events`` that the store does not hold yet as one batch.

    In:  ``events``: a raw JSON log (file, directory of part files or glob, or a list of
         files: ``sparkify.watch``); ``store``: a
         store directory (created when missing); ``artists``: keep artist sets (for
         models with the opt-in artist features); ``keep_events``: also keep the
         cleaned events (what ``sparkify report`` reads; a second parse of the batch);
         both fixed by a store's first batch;
         ``skip_corrupt_files`` as for ``sparkify.dataset.load_log``.
    Out: :class:`IngestResult`. The store then holds the batch's session-day rows by
         day, its users' state, its quarantine, and a manifest version naming it.
    Raises FileNotFoundError (no file), ValueError (not raw JSON, not a store, artist
    sets that differ from the store's, events that repeat the store's, no valid event),
    leaving the store as it was.
    """
    from sparkify.dataset import load_log
    from sparkify.progress import quiet

    progress = progress or quiet()
    store = str(store).rstrip("/")
    if isinstance(events, list):
        files = list(events)
        source = files[0] if len(files) == 1 else f"{files[0]} and {len(files) - 1:,} more file(s)"
    else:
        source = str(events)
        if source.rstrip("/") == store:
            raise ValueError("ingest: the store must differ from the input path")
        files = input_files(spark, source)
        if files and is_parquet(spark, source):
            raise ValueError(f"{source} is Parquet: a store ingests raw JSON log files")
    _check_store_dir(spark, store)
    if not files:
        raise FileNotFoundError(f"no event log at {source}")
    manifest = read_manifest(spark, store)
    for name, theirs, ours, option in (("artist sets", manifest.artists, artists, "--artist-features"),
                                       ("the events", manifest.events, keep_events, "--keep-events")):
        if manifest.batches and theirs != ours:
            raise ValueError(f"the store {store} was built {'with' if theirs else 'without'} {name}: "
                             f"ingest {'with' if theirs else 'without'} {option}")
    _remove_leftovers(spark, store, manifest)
    known = manifest.known_files()
    identities = [_file_identity(spark, f) for f in files]
    new = [i for i in identities if (i["path"], i["size"], i["mtime"]) not in known]
    if not new:
        return IngestResult(store, None, 0, len(files), manifest.version)
    batch_id = f"b{manifest.version + 1:05d}-{secrets.token_hex(4)}"
    with progress.stage(f"read {len(new):,} new file(s)") as st:
        loaded = load_log(spark, source, artists=artists, skip_corrupt_files=skip_corrupt_files,
                          files=[i["path"] for i in new])
        st.note = f"{loaded.quality.user_rows:,} user events, {loaded.quality.users:,} users"
    with loaded:
        rows = loaded.days.df
        # rows, first and last event (and last non-cancellation event) of each day: one job
        per_day = {int(r["day"]): r for r in rows.groupBy("day").agg(
            F.count(F.lit(1)).alias("rows"), F.min("p_start").alias("first"), F.max("p_end").alias("last"),
            F.max(F.when(~F.col("cancel_rel"), F.col("p_end"))).alias("ever_last")).collect()}
        overlap = set(per_day) & manifest.days()
        if overlap:
            with progress.stage("check for events the store holds"):
                count, examples = _repeated_events(spark, store, manifest, rows, overlap)
            if count:
                raise ValueError(
                    f"{count:,} session-day(s) of {source} repeat events the store {store} holds (the same "
                    f"user and session with the same item numbers on the same day; e.g. {'; '.join(examples)}): "
                    "was this data ingested before under another name? Nothing was written.")
        with progress.stage(f"write batch {batch_id}") as st:
            rows.repartition("day").write.mode("overwrite").partitionBy("day").parquet(
                _path(store, ROWS_DIR, f"batch={batch_id}"))
            (rows.groupBy("userId").agg(F.min("p_start").alias("first_ms"), F.max("p_end").alias("last_ms"),
                                        F.min("p_churn_ms").alias("churn_ms"))
             .coalesce(1).write.mode("overwrite").parquet(_path(store, USERS_DIR, f"batch={batch_id}")))
            loaded.write_quarantine(_path(store, BATCHES_DIR, batch_id, "quarantine"))
            q = loaded.quality
            skipped = {f["path"] for f in q.skipped_files}   # damaged: not held, tried again next time
            read = [i for i in new if display_path(i["path"]) not in skipped]
            if keep_events:
                _write_events(spark, source, [i["path"] for i in read], _path(store, EVENTS_DIR, f"batch={batch_id}"),
                              skip_corrupt_files)
            ever = [int(r["ever_last"]) for r in per_day.values() if r["ever_last"] is not None]
            batch = Batch(id=batch_id, sources=read, days=sorted(per_day),
                          rows=sum(int(r["rows"]) for r in per_day.values()),
                          first_ms=min(int(r["first"]) for r in per_day.values()),
                          last_ms=max(int(r["last"]) for r in per_day.values()),
                          ever_last_ms=max(ever) if ever else None,
                          quality=q.to_dict(), ingested_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            updated = Manifest(version=manifest.version + 1, artists=artists, batches=[*manifest.batches, batch],
                               events=keep_events)
            _commit(spark, store, updated)
            st.note = f"{batch.rows:,} rows over {len(batch.days)} day(s); version {updated.version}"
    return IngestResult(store, batch, len(read), len(files) - len(new), updated.version)


def _remove_leftovers(spark: SparkSession, store: str, manifest: Manifest) -> None:
    """Delete the directories of batches that never joined the store: those numbered at
    or below the current version (a running ingest writes the next number) that the
    manifest does not name."""
    committed = {b.id for b in manifest.batches}
    for parent, prefix in ((ROWS_DIR, "batch="), (USERS_DIR, "batch="), (EVENTS_DIR, "batch="), (BATCHES_DIR, "")):
        fs, hpath = _hadoop_path(spark, _path(store, parent))
        if not fs.exists(hpath):
            continue
        for status in fs.listStatus(hpath):
            name = status.getPath().getName()
            batch_id = name[len(prefix):] if name.startswith(prefix) else None
            if batch_id and batch_id not in committed and batch_id[1:6].isdigit() \
                    and int(batch_id[1:6]) <= manifest.version:
                fs.delete(status.getPath(), True)


def _write_events(spark: SparkSession, source: str, files: list[str], out: str,
                  skip_corrupt_files: bool | None) -> None:
    """The cleaned events of ``files`` (``sparkify.dataset.load_events``), by UTC day, to ``out``."""
    from sparkify.dataset import load_events

    with load_events(spark, source, files=files, skip_corrupt_files=skip_corrupt_files) as loaded:
        (loaded.events.drop("time").withColumn("day", F.floor(F.col("ts") / DAY_MS))
         .repartition("day").write.mode("overwrite").partitionBy("day").parquet(out))


# --------------------------------------------------------------------------- read
def _read_rows(spark: SparkSession, store: str, manifest: Manifest, days: set[int] | None,
               columns: list[str]) -> DataFrame | None:
    """``columns`` of the stored rows of ``days`` (None: all), every batch; None when no
    batch has rows on those days."""
    paths = [_path(store, ROWS_DIR, f"batch={b.id}", f"day={d}")
             for b in manifest.batches for d in b.days if days is None or d in days]
    if not paths:
        return None
    df = spark.read.option("basePath", _path(store, ROWS_DIR)).parquet(*paths)
    return df.withColumn("day", F.col("day").cast("long")).select(*columns)


def window_days(end_ms: int, long_days: int) -> set[int]:
    """The UTC days (epoch day numbers) holding the rows of a feature window of
    ``long_days`` that ends at ``end_ms`` (rows that start at or after its start and end
    before ``end_ms``)."""
    return set(range((end_ms - long_days * DAY_MS) // DAY_MS, (end_ms - 1) // DAY_MS + 1))


def scoring_time_ms(spark: SparkSession, store: str, as_of: datetime | None = None) -> int:
    """The time a score of the store observes (epoch ms): ``as_of``, or by default the
    midnight after its last event (as ``sparkify.features.build_scoring_table`` takes it)."""
    if as_of is not None:
        return int(as_of.timestamp() * 1000)
    manifest = _committed(spark, str(store).rstrip("/"))
    return (manifest.end_ms() // DAY_MS + 1) * DAY_MS


def inexact_cut(store: str, times_ms: list[int]) -> ValueError:
    """The error for cuts (epoch ms) a store cannot make: its rows end at midnights UTC."""
    when = ", ".join(datetime.fromtimestamp(t / 1000, tz=timezone.utc).isoformat() for t in times_ms)
    return ValueError(f"the store {store} cuts its rows at midnights UTC, not at {when}: "
                      "use a time at 00:00 UTC, or give the raw log")


def load_store(spark: SparkSession, store: str | Path, *, artists: bool = False, splits: tuple[int, ...] = (),
               window_end_ms: int | None = None, long_days: int = LONG_DAYS,
               storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK):
    """The store read back as a ``sparkify.dataset.LoadedLog`` (``from_store`` True).

    In:  ``store``; ``artists``: the rows must carry artist sets; ``splits``: the times
         (epoch ms) the caller will cut at: the store cuts at midnights UTC (and after its
         last event) only; ``window_end_ms``: read only the days of the feature window
         ending then (``long_days`` long: the model's, ``sparkify.features.model_window_days``)
         and take every user's first cancellation from the users' state, for scoring at that
         time; None: every row.
    Out: LoadedLog whose ``days`` are persisted rows of every committed batch, with the
         log's span and end from the manifest, and ``quality`` the batches' counts added up
         (users and churners counted over the whole store).
    Raises ValueError for an empty store, a cut that is not at midnight, artist sets the
    store lacks.
    """
    from sparkify.dataset import LoadedLog

    store = str(store).rstrip("/")
    manifest = _committed(spark, store)
    if artists and not manifest.artists:
        raise ValueError(f"the store {store} has no artist sets (the model uses the artist features): build a store "
                         "with `sparkify ingest --artist-features`, or give the raw log")
    end_ms = manifest.end_ms()
    inexact = [s for s in splits if s % DAY_MS and s <= end_ms]
    if inexact:
        raise inexact_cut(store, inexact)
    columns = [*PARTIAL_KEYS, *partial_values(artists)]
    days = None if window_end_ms is None else window_days(window_end_ms, long_days)
    rows = _read_rows(spark, store, manifest, days, columns)
    if rows is None:  # nothing in the window: the schema of any stored day, no rows
        rows = _read_rows(spark, store, manifest, None, columns).limit(0)
    rows = rows.persist(storage_level)
    user_state, n_users, n_churners = _user_state(spark, store, manifest)
    ever = [b.ever_last_ms for b in manifest.batches if b.ever_last_ms is not None]
    session_days = SessionDays(
        df=rows, artists=artists,
        churn=None if days is None else user_state.filter(F.col("churn_ms").isNotNull()),
        rows_from_ms=None if days is None else min(days) * DAY_MS,
        _end_ms={"window": end_ms, **({"ever": max(ever)} if ever else {})},
        _span_ms=(min(b.first_ms for b in manifest.batches), end_ms))
    return LoadedLog(days=session_days, quality=_store_quality(store, manifest, n_users, n_churners),
                     source=store, _frames=[rows], from_store=True)


def _store_quality(store: str, manifest: Manifest, users: int, churners: int) -> DataQuality:
    """The batches' quality summaries added up, with the store's user and churner counts."""
    parts = [DataQuality.from_dict(b.quality) for b in manifest.batches]
    quality = DataQuality(**{k: sum(getattr(p, k) for p in parts) for k in _SUMMED}, users=users,
                          churners=churners, source=store)
    quality.first_ts = min(p.first_ts for p in parts if p.first_ts)
    quality.last_ts = max(p.last_ts for p in parts if p.last_ts)
    quality.skipped_files = [f for p in parts for f in p.skipped_files]
    quality.quarantine_sample = [line for p in parts for line in p.quarantine_sample][:5]
    return quality


def load_store_events(spark: SparkSession, store: str | Path):
    """The cleaned events a store keeps (``ingest --keep-events``), as a
    ``sparkify.dataset.LoadedEvents`` with the store's quality summary. Raises ValueError
    for a store that keeps none."""
    from sparkify.dataset import LoadedEvents, with_time
    from sparkify.rawlog import KEPT_COLUMNS

    store = str(store).rstrip("/")
    manifest = _committed(spark, store)
    if not manifest.events:
        raise ValueError(f"the store {store} keeps session-day rows, not events (build it with `sparkify ingest "
                         "--store DIR --keep-events`); this command needs every event: give the raw log")
    paths = [_path(store, EVENTS_DIR, f"batch={b.id}") for b in manifest.batches]
    events = with_time(spark.read.option("basePath", _path(store, EVENTS_DIR)).parquet(*paths).select(*KEPT_COLUMNS))
    _, n_users, n_churners = _user_state(spark, store, manifest)
    return LoadedEvents(events=events, quality=_store_quality(store, manifest, n_users, n_churners))
