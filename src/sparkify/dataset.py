"""Load and clean a Sparkify event log: the entry points every command uses.

In:  a raw event log (JSON Lines: a ``.json``/``.json.gz`` file, a directory of part
     files, or a glob) or the Parquet directory written by :func:`ingest`.
Out: :func:`load_log` (train, score, report, backtest): :class:`LoadedLog`, the log as
     session-day partial rows (``sparkify.session_days.SessionDays``) from one parse;
     :func:`load_events` (ingest, the activity charts' events): :class:`LoadedEvents`,
     the cleaned user events themselves (auth ``Logged In`` or ``Cancelled``, exact
     duplicates removed, columns ``sparkify.rawlog.EVENT_COLUMNS``). Both come with the
     same ``sparkify.quality.DataQuality`` counts and quarantine of malformed lines.

The steps live in their own modules: reading files and classifying each line
(:mod:`sparkify.rawlog`: one rule, :func:`sparkify.rawlog.row_class`), the quality
summary (:mod:`sparkify.quality`), the session-day rows and the one pass over raw JSON
(:mod:`sparkify.session_days`).

A damaged compressed file (truncated or corrupt) stops the load with a
:class:`sparkify.inputs.CorruptInputError` naming it; with ``skip_corrupt_files`` the
damaged files are left out and listed in ``DataQuality.skipped_files``.

The event path parses the log once with ``sparkify.rawlog.EVENT_SCHEMA`` and persists
the classified rows where they were parsed (no shuffle of events); the quality counts,
the duplicate check (64-bit fingerprints of every raw field) and the quarantine read that
cache; only a log with duplicates pays an exact de-duplication.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkify.config import CHURN_PAGE
from sparkify.features import LabelSpec, resolve_spec, spec_boundaries
from sparkify.quality import DataQuality, quality_from_partials, quality_from_staged
from sparkify.rawlog import (
    CANCELLED_AUTH,
    KEPT_COLUMNS,
    MISSING_REASON,
    QUALITY_FILE,
    QUARANTINE_DIR,
    glob_status,
    is_parquet,
    pass_schema,
    read_checked,
    read_raw,
    read_text,
    skip_corrupt,
    stage,
    write_text,
)
from sparkify.session_days import (
    PARTIAL_KEYS,
    SessionDays,
    one_pass_partials,
    partial_values,
    session_day_partials,
)


@dataclass
class LoadedEvents:
    """The cleaned user events and the quality summary of one load.

    ``events`` reads a persisted DataFrame when the source was raw JSON; call
    :meth:`unpersist` (or use ``with load_events(...) as loaded:``) to free it.
    """

    events: DataFrame
    quality: DataQuality
    _cache: DataFrame | None = None
    _extra: DataFrame | None = None

    def unpersist(self) -> None:
        for df in (self._cache, self._extra):
            if df is not None:
                df.unpersist()
        self._cache = self._extra = None

    def write_quarantine(self, path: str | Path) -> int:
        """Write the malformed lines (JSON Lines: ``reason``, ``line``) to directory ``path``.

        Returns the number of lines written (0 writes nothing).
        """
        if self._cache is None or not self.quality.quarantined:
            return 0
        bad = (self._cache.filter(F.col("_kind") == "bad")
               .select(F.col("_reason").alias("reason"), F.col("_line").alias("line")))
        bad.coalesce(1).write.mode("overwrite").json(str(path))
        self.quality.quarantine_path = str(path)
        return self.quality.quarantined

    def __enter__(self) -> "LoadedEvents":
        return self

    def __exit__(self, *exc) -> None:
        self.unpersist()


def with_time(df: DataFrame) -> DataFrame:
    """Add ``time`` = ts (epoch ms) as a timestamp; Spark shows it in the session time zone
    (UTC under :func:`sparkify.spark.get_spark`), the instant is exact either way."""
    return df.withColumn("time", F.timestamp_millis(F.col("ts")))


def _load_ingested(spark: SparkSession, path: str) -> LoadedEvents:
    """Read a Parquet directory written by :func:`ingest` (already clean)."""
    df = spark.read.parquet(path)
    missing = [n for n in KEPT_COLUMNS if n not in df.columns]
    if missing:
        raise ValueError(f"{path} is Parquet but not a Sparkify event table (missing columns: "
                         f"{', '.join(missing)}); write it with `sparkify ingest`")
    events = df.select(*KEPT_COLUMNS)
    events = with_time(events)
    text = read_text(spark, f"{path.rstrip('/')}/{QUALITY_FILE}")
    if text:
        quality = DataQuality.from_dict(json.loads(text))
    else:  # plain Parquet of events: summarise it (cheap columnar scan)
        c = F.col
        row = events.agg(
            F.count("*"), F.countDistinct("userId"),
            F.countDistinct(F.when((c("page") == CHURN_PAGE) | (c("auth") == CANCELLED_AUTH),
                                   c("userId"))),
            F.min("ts"), F.max("ts")).first()
        as_dt = lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms else None  # noqa: E731
        quality = DataQuality(rows_read=row[0], user_rows=row[0], users=row[1], churners=row[2],
                              first_ts=as_dt(row[3]), last_ts=as_dt(row[4]), source=path)
    return LoadedEvents(events=events, quality=quality)


def _require_user_rows(loaded: "LoadedEvents | LoadedLog", quality: DataQuality, source: str) -> None:
    """Free ``loaded`` and raise ValueError when the log had no valid user event."""
    if quality.user_rows:
        return
    loaded.unpersist()
    where = f"; malformed lines are in {quality.quarantine_path}" if quality.quarantine_path else ""
    raise ValueError(
        f"no valid user events in {source} ({quality.rows_read:,} lines read, "
        f"{quality.quarantined:,} malformed, {quality.hidden_rows:,} logged-out/guest){where}. "
        "Expected Sparkify JSON Lines (one event object per line).")


def load_events(
    spark: SparkSession,
    path: str | Path,
    quarantine_path: str | Path | None = None,
    *,
    storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK,
    skip_corrupt_files: bool | None = None,
    files: list[str] | None = None,
) -> LoadedEvents:
    """Load, validate and clean an event log.

    In:  ``path`` = a JSON Lines file (``.json``/``.json.gz``), a directory of part files, a
         glob, or a Parquet directory written by :func:`ingest`; ``quarantine_path`` = where
         to write malformed lines (a directory of JSON Lines with ``reason`` and ``line``),
         or None to only count them (a sample of 5 stays in ``quality.quarantine_sample``).
    Out: :class:`LoadedEvents` with ``events`` = user rows (auth Logged In / Cancelled),
         exact duplicates removed, columns :data:`EVENT_COLUMNS`; and ``quality``
         (:class:`DataQuality`).
    ``skip_corrupt_files`` (default: the command's ``--skip-corrupt-files``,
    ``sparkify.spark.RUN_OPTIONS``): leave out damaged compressed files and list them in
    ``quality.skipped_files`` (see :func:`_read_checked`).
    ``files``: read only these files of ``path`` (raw JSON). A store
    (:mod:`sparkify.store`) gives the events it keeps (``ingest --keep-events``).
    Raises FileNotFoundError when nothing matches ``path``, ValueError when no valid user
    event is found (after writing the quarantine), CorruptInputError (a ValueError) for a
    damaged file.
    """
    source = str(path)
    if files is not None:
        return read_checked(spark, source, skip_corrupt(skip_corrupt_files),
                            lambda paths: _load_json_events(spark, source, paths, quarantine_path, storage_level),
                            files=files)
    if not glob_status(spark, source):
        raise FileNotFoundError(f"no event log at {source}")
    from sparkify.store import is_store, load_store_events

    if is_store(spark, source):
        return load_store_events(spark, source)
    if is_parquet(spark, source):
        return _load_ingested(spark, source)
    return read_checked(spark, source, skip_corrupt(skip_corrupt_files),
                         lambda paths: _load_json_events(spark, source, paths, quarantine_path, storage_level))


def _load_json_events(spark: SparkSession, source: str, paths: str | list[str],
                      quarantine_path: str | Path | None, storage_level: StorageLevel) -> LoadedEvents:
    """:func:`load_events` of the raw JSON files ``paths`` (``source`` as the user named it)."""
    # Persisted where parsed: no event-sized shuffle. Every later step aggregates (per
    # session or per user) on each partition first, so only partial rows move.
    cache = stage(read_raw(spark, paths)).persist(storage_level)
    extra: DataFrame | None = None
    try:
        quality = quality_from_staged(cache, source)   # the single parse pass happens here
        if quality.quarantined:
            quality.quarantine_sample = [
                r[0] for r in cache.filter(F.col("_kind") == "bad").select("_line").limit(5).collect()]
        users = cache.filter(F.col("_kind") == "user")
        if quality.duplicates:
            # exact de-duplication (all kept columns + the fingerprint of every raw field);
            # the one event shuffle, only when the log has duplicates; persisted once.
            extra = users.groupBy(*KEPT_COLUMNS, "_fp").agg(F.count(F.lit(1)).alias("_n")).persist(storage_level)
            quality.user_rows = extra.count()
            quality.duplicates = quality.rows_read - quality.quarantined - quality.hidden_rows - quality.user_rows
            users = extra
        events = with_time(users.select(*KEPT_COLUMNS))
        loaded = LoadedEvents(events=events, quality=quality, _cache=cache, _extra=extra)
        if quarantine_path is not None:
            loaded.write_quarantine(quarantine_path)
    except BaseException:
        cache.unpersist()
        if extra is not None:
            extra.unpersist()
        raise
    _require_user_rows(loaded, quality, source)
    return loaded


def ingest(spark: SparkSession, path: str | Path, out_dir: str | Path, *,
           skip_corrupt_files: bool | None = None) -> DataQuality:
    """Clean a raw log once and store it as Parquet for repeated work.

    In:  ``path`` and ``skip_corrupt_files`` as for :func:`load_events`; ``out_dir`` a
         directory (replaced if present).
    Out: the :class:`DataQuality`. ``out_dir`` then holds the Parquet parts of the cleaned
         user events (columns :data:`EVENT_COLUMNS`),
         ``_data_quality.json`` and, if any line was malformed, ``_quarantine/``. Names
         starting with ``_`` are ignored by Parquet readers, so ``out_dir`` can be passed to
         :func:`load_events`, ``sparkify train`` or ``spark.read.parquet`` directly.
    """
    out = str(out_dir).rstrip("/")
    if str(path).rstrip("/") == out:
        raise ValueError("ingest: --out must differ from the input path")
    with load_events(spark, path, skip_corrupt_files=skip_corrupt_files) as loaded:
        loaded.events.write.mode("overwrite").parquet(out)
        loaded.write_quarantine(f"{out}/{QUARANTINE_DIR}")
        quality = loaded.quality
        write_text(spark, f"{out}/{QUALITY_FILE}", json.dumps(quality.to_dict(), indent=2) + "\n")
    return quality


# --------------------------------------------------------------------------- one-pass load
@dataclass
class LoadedLog:
    """A log loaded as session-day partial rows (all that features, labels and the
    activity charts need) and its quality summary. ``days.df`` is persisted: call
    :meth:`unpersist` (or use ``with load_log(...) as log:``) when done."""

    days: SessionDays
    quality: DataQuality
    source: str
    _frames: list[DataFrame] = field(default_factory=list, repr=False)
    _events: LoadedEvents | None = field(default=None, repr=False)
    _bad: DataFrame | None = field(default=None, repr=False)   # malformed lines, grouped
    #: True when the one pass could not vouch for some rows (a repeated item number, i.e.
    #: a possible duplicate, or a row too wide to check) and the rows were rebuilt from
    #: exactly de-duplicated events (:func:`load_events`).
    rebuilt_from_events: bool = False
    #: what was read of a raw log: ``source``, or its readable files when damaged ones
    #: were skipped (None: an ingest Parquet directory)
    read_paths: str | list[str] | None = field(default=None, repr=False)
    #: the rows come from a store (:mod:`sparkify.store`): they cut at midnights UTC only
    from_store: bool = False

    def days_for(self, spec: LabelSpec) -> SessionDays:
        """SessionDays that can be cut exactly where ``spec`` (a LabelSpec) cuts: these
        rows when they can, else rows rebuilt from the events with the spec's times as
        split points (re-reads the source; only for a spec whose default times are not at
        midnight, e.g. 'ever' labels with an observation window)."""
        resolved = resolve_spec(self.days, spec)
        needed = spec_boundaries(resolved)
        if all(self.days.exact_at(b, resolved.mode) for b in needed):
            return self.days
        if self.from_store:
            from sparkify.store import inexact_cut

            raise inexact_cut(self.source, [b for b in needed if not self.days.exact_at(b, resolved.mode)])
        if self._events is None:
            spark = self.days.df.sparkSession
            self._events = (load_events(spark, self.source) if self.read_paths is None else
                            _load_json_events(spark, self.source, self.read_paths, None,
                                              StorageLevel.MEMORY_AND_DISK))
        days = session_day_partials(self._events.events, needed, artists=self.days.artists)
        days.df = days.df.persist(StorageLevel.MEMORY_AND_DISK)
        self._frames.append(days.df)
        return days

    def write_quarantine(self, path: str | Path) -> int:
        """Write the malformed lines (JSON Lines: ``reason``, ``line``) to directory ``path``.
        Returns the number of lines written (0 writes nothing)."""
        bad = self._bad
        if bad is None or not self.quality.quarantined:
            return 0
        # one row per distinct bad line with its count: write it that many times
        copies = F.explode(F.sequence(F.lit(1), F.col("p_events"))).alias("_copy")
        lines = bad.select(F.col("_reason").alias("reason"), F.col("_line").alias("line"), copies)
        lines.drop("_copy").coalesce(1).write.mode("overwrite").json(str(path))
        self.quality.quarantine_path = str(path)
        return self.quality.quarantined

    def unpersist(self) -> None:
        for df in self._frames:
            df.unpersist()
        self._frames = []
        if self._events is not None:
            self._events.unpersist()
            self._events = None

    def __enter__(self) -> "LoadedLog":
        return self

    def __exit__(self, *exc) -> None:
        self.unpersist()


def load_log(
    spark: SparkSession,
    path: str | Path,
    quarantine_path: str | Path | None = None,
    *,
    splits: tuple[int, ...] = (),
    artists: bool = False,
    storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK,
    skip_corrupt_files: bool | None = None,
    files: list[str] | None = None,
) -> LoadedLog:
    """Load an event log straight into session-day partial rows: one JSON parse, no cache
    of events.

    In:  ``path`` and ``quarantine_path`` as for :func:`load_events`; ``splits``: times
         (epoch ms) besides midnights UTC where features may be cut (e.g. an explicit
         cutoff that is not at 00:00); ``artists``: carry each row's set of artists, for
         the opt-in artist features (``sparkify.features.ARTIST_FEATURES``; about doubles
         the cost of the pass).
    Out: :class:`LoadedLog`: ``days`` (:class:`sparkify.features.SessionDays`, persisted)
         and ``quality`` (:class:`DataQuality`, the same counts as :func:`load_events`).

    From raw JSON, the parse, the row classification, the quality counts, the duplicate
    check and the per-(user, session, day) aggregation are one job: rows are partially
    aggregated on each partition, so what moves is one row per session-day (with
    ``artists``, plus its artist hashes). Malformed lines are kept (grouped by their
    text, with a count) for the quarantine. If any user event repeats another's
    itemInSession within a session-day (or a group's items span too far to check), the
    rows are rebuilt from exactly de-duplicated events (:func:`load_events`;
    ``rebuilt_from_events`` is then True), so a duplicate never counts twice. A Parquet
    directory from :func:`ingest` is aggregated from its events; a store
    (:mod:`sparkify.store`) is read whole (:func:`sparkify.store.load_store`).
    ``files``: read only these files of ``path`` (raw JSON; the store's new files).
    ``skip_corrupt_files`` and the errors raised are those of :func:`load_events`.
    """
    source = str(path)
    splits = tuple(sorted({int(s) for s in splits}))
    if files is not None:
        return read_checked(spark, source, skip_corrupt(skip_corrupt_files),
                            lambda paths: _load_json_log(spark, source, paths, quarantine_path, splits,
                                                         artists, storage_level), files=files)
    if not glob_status(spark, source):
        raise FileNotFoundError(f"no event log at {source}")
    from sparkify.store import is_store, load_store

    if is_store(spark, source):
        return load_store(spark, source, artists=artists, splits=splits, storage_level=storage_level)
    if is_parquet(spark, source):
        ingested = _load_ingested(spark, source)
        days = session_day_partials(ingested.events, splits, artists=artists)
        days.df = days.df.persist(storage_level)
        return LoadedLog(days=days, quality=ingested.quality, source=source, _frames=[days.df])
    return read_checked(spark, source, skip_corrupt(skip_corrupt_files),
                         lambda paths: _load_json_log(spark, source, paths, quarantine_path, splits,
                                                      artists, storage_level))


def _load_json_log(spark: SparkSession, source: str, paths: str | list[str],
                   quarantine_path: str | Path | None, splits: tuple[int, ...], artists: bool,
                   storage_level: StorageLevel) -> LoadedLog:
    """:func:`load_log` of the raw JSON files ``paths`` (``source`` as the user named it)."""
    raw = read_raw(spark, paths, pass_schema(artists))
    parts = one_pass_partials(raw, splits, artists).persist(storage_level)
    try:
        quality, repeats, end_ms = quality_from_partials(parts, source)   # the single parse pass
    except BaseException:
        parts.unpersist()
        raise
    if repeats:
        parts.unpersist()
        events = _load_json_events(spark, source, paths, quarantine_path, storage_level)
        days = session_day_partials(events.events, splits, artists=artists)
        days.df = days.df.persist(storage_level)
        return LoadedLog(days=days, quality=events.quality, source=source, _frames=[days.df],
                         _events=events, rebuilt_from_events=True, read_paths=paths)
    days = SessionDays(df=parts.filter(F.col("_kind") == "user").select(*PARTIAL_KEYS, *partial_values(artists)),
                       splits=splits, artists=artists, _end_ms=end_ms)
    bad = parts.filter(F.col("_kind") == "bad")
    frames = [parts]
    if quality.quarantined and bad.filter(F.col("_reason") == MISSING_REASON).limit(1).count():
        # Lines that parsed but miss a field are shown re-rendered from their fields: from
        # every raw field, as load_events does (a second read, only for such logs).
        full = stage(read_raw(spark, paths)).filter(F.col("_kind") == "bad")
        bad = full.groupBy("_reason", "_line").agg(F.count(F.lit(1)).alias("p_events")).persist(storage_level)
        frames.append(bad)
    loaded = LoadedLog(days=days, quality=quality, source=source, _frames=frames, _bad=bad, read_paths=paths)
    if quality.quarantined:
        quality.quarantine_sample = [r[0] for r in bad.select("_line").limit(5).collect()]
        if quarantine_path is not None:
            loaded.write_quarantine(quarantine_path)
    _require_user_rows(loaded, quality, source)
    return loaded
