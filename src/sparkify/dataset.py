"""Load and clean a Sparkify event log: explicit schema, quarantine, one parse pass.

Two ways in, with the same cleaning rules and the same :class:`DataQuality` counts:

* :func:`load_log` (training, the scale benchmark): the log straight into session-day
  partial rows (:class:`sparkify.features.SessionDays`), one pass, no cache of events.
* :func:`load_events` (ingest, scoring, reports): the cleaned events themselves, described
  below.

In:  a raw event log (JSON Lines: a ``.json``/``.json.gz`` file, a directory of part
     files, or a glob) or the Parquet directory written by :func:`ingest`.
     A damaged compressed file (truncated or corrupt) stops the load with a
     :class:`sparkify.inputs.CorruptInputError` naming it; with ``skip_corrupt_files``
     every local compressed file is checked first and the damaged ones are left out and
     listed in ``DataQuality.skipped_files``.
Out: :class:`LoadedEvents` = the cleaned USER rows (auth ``Logged In`` or ``Cancelled``,
     exact duplicates removed, ``time`` as a UTC timestamp; columns :data:`EVENT_COLUMNS`,
     i.e. the raw fields minus method/status/firstName/lastName/song) and a
     :class:`DataQuality` summary.

Design (why the load costs about one JSON parse):

* the log is parsed once with :data:`EVENT_SCHEMA` (never inferred) in ``PERMISSIVE`` mode;
  unparseable lines (bad JSON, wrong types such as a string ``ts``) land in
  ``_corrupt_record`` with their text;
* every row is classified in the same pass as ``user``, ``hidden`` (Logged Out / Guest,
  whatever their userId placeholder) or ``bad`` (malformed, or a user row missing ts,
  userId, sessionId or page); hidden and bad rows keep only what the summary and the
  quarantine need (their kind; the reason and line text);
* the staged rows are persisted where they were parsed (no shuffle of events), narrow: the
  columns of :data:`EVENT_COLUMNS` plus a 64-bit fingerprint of all raw fields. The job
  that fills the cache also computes the per-user part of the quality summary (a partial
  aggregation on each partition, so only one small row per user and partition moves);
  a second job over the cache counts exact duplicates by grouping the fingerprints alone
  (8-byte keys). Only if there are any is an exact de-duplication run. The quarantine
  file and every later feature aggregation (partially aggregated per session before any
  shuffle) read the cache, never the JSON again. Call :meth:`LoadedEvents.unpersist`
  when done.
"""

from __future__ import annotations

import json
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from sparkify.config import CHURN_PAGE, USER_AUTHS
from sparkify.inputs import (
    CorruptInputError,
    compressed_file_problem,
    damage_of,
    display_path,
    failed_read_file,
    is_checked,
    local_path,
    same_file,
)

CORRUPT_COLUMN = "_corrupt_record"
CANCEL_PAGE = "Cancel"
CANCELLED_AUTH = "Cancelled"

#: The raw event fields in the real log's key order, with their types.
RAW_FIELDS: list[StructField] = [
    StructField("ts", LongType()),
    StructField("userId", StringType()),
    StructField("sessionId", LongType()),
    StructField("page", StringType()),
    StructField("auth", StringType()),
    StructField("method", StringType()),
    StructField("status", StringType()),     # not read by any step: any JSON value is kept as text
    StructField("level", StringType()),
    StructField("itemInSession", IntegerType()),
    StructField("location", StringType()),
    StructField("userAgent", StringType()),
    StructField("lastName", StringType()),
    StructField("firstName", StringType()),
    StructField("registration", LongType()),
    StructField("gender", StringType()),
    StructField("artist", StringType()),
    StructField("song", StringType()),
    StructField("length", DoubleType()),
]
RAW_COLUMNS: list[str] = [f.name for f in RAW_FIELDS]

#: Explicit read schema: the raw fields plus the PERMISSIVE corrupt-record column.
EVENT_SCHEMA = StructType([*RAW_FIELDS, StructField(CORRUPT_COLUMN, StringType())])

#: Raw fields carried into ``LoadedEvents.events`` (everything the features, labels and
#: reports read). The others (``method``, ``status``: implied by ``page``; ``firstName``,
#: ``lastName``: personal data no step needs; ``song``: the title) are parsed, take part
#: in duplicate detection (through a 64-bit hash), and are then dropped: keeping them
#: would roughly double the cost of the cached table.
KEPT_COLUMNS: list[str] = ["ts", "userId", "sessionId", "page", "auth", "level", "itemInSession",
                           "location", "userAgent", "registration", "gender", "artist", "length"]
DROPPED_COLUMNS: list[str] = [n for n in RAW_COLUMNS if n not in KEPT_COLUMNS]

#: Columns of ``LoadedEvents.events``: :data:`KEPT_COLUMNS` plus ``time`` (UTC timestamp of ts).
EVENT_COLUMNS: list[str] = [*KEPT_COLUMNS, "time"]

MALFORMED_REASON = "malformed JSON or wrong field type"
MISSING_REASON = "missing required field (ts, auth, userId, sessionId or page)"

#: What the one-pass loader parses: the kept fields only. The dropped ones are text no
#: step reads (so no type of theirs makes a line malformed, on either path); leaving them
#: out of the schema lets the JSON parser skip them, about 15 % of the parse.
PASS_SCHEMA = StructType([*[f for f in RAW_FIELDS if f.name in KEPT_COLUMNS],
                          StructField(CORRUPT_COLUMN, StringType())])
#: The same without ``artist`` (text, so never a cause of a malformed line): what the pass
#: parses unless the opt-in artist features are asked for.
PASS_SCHEMA_NO_ARTIST = StructType([f for f in PASS_SCHEMA.fields if f.name != "artist"])


def pass_schema(artists: bool = False, corrupt: bool = True) -> StructType:
    """The fields the one-pass loader reads from a raw log (see :data:`PASS_SCHEMA`);
    ``corrupt=False`` leaves out the corrupt-record column (a bare scan of the same fields).
    Its pass parses all but the long text attributes on every line, and those for one
    event per user (:func:`pointer_schema`, :class:`LineAttributes`)."""
    schema = PASS_SCHEMA if artists else PASS_SCHEMA_NO_ARTIST
    return schema if corrupt else StructType([f for f in schema.fields if f.name != CORRUPT_COLUMN])


def pointer_schema(artists: bool = False) -> StructType:
    """What the one pass parses on every line: :func:`pass_schema` without
    ``sparkify.features.LINE_ATTRIBUTES``. Those are text, so no value of theirs makes a
    line malformed: leaving them out changes no quarantine."""
    from sparkify.features import LINE_ATTRIBUTES

    return StructType([f for f in pass_schema(artists).fields if f.name not in LINE_ATTRIBUTES])

QUALITY_FILE = "_data_quality.json"       # inside an ingest directory (ignored by Parquet readers)
QUARANTINE_DIR = "_quarantine"            # idem
_REQUIRED_USER_FIELDS = ("ts", "userId", "sessionId", "page")


# --------------------------------------------------------------------------- quality
@dataclass
class DataQuality:
    """What the loader saw. Counts are rows (lines) unless named otherwise.

    rows_read = quarantined + hidden_rows + duplicates + user_rows.
    """

    rows_read: int = 0
    quarantined: int = 0          # malformed lines (bad JSON, wrong types, missing keys)
    hidden_rows: int = 0          # auth Logged Out / Guest (userId "" or a placeholder)
    duplicates: int = 0           # exact duplicate user events removed
    user_rows: int = 0            # cleaned user events kept
    users: int = 0
    churners: int = 0             # users with a Cancellation Confirmation
    first_ts: datetime | None = None   # first / last user event (UTC)
    last_ts: datetime | None = None
    source: str | None = None
    quarantine_path: str | None = None
    quarantine_sample: list[str] = field(default_factory=list)  # up to 5 malformed lines
    #: damaged input files left out (``skip_corrupt_files``): {"path", "problem"} each;
    #: their lines are in no count above
    skipped_files: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (times as ISO-8601 UTC strings)."""
        out = asdict(self)
        for key in ("first_ts", "last_ts"):
            value = out[key]
            out[key] = value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
        out["churn_rate"] = round(self.churners / self.users, 4) if self.users else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DataQuality":
        kwargs = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("first_ts", "last_ts"):
            if kwargs.get(key):
                kwargs[key] = datetime.strptime(kwargs[key], "%Y-%m-%dT%H:%M:%SZ").replace(
                    tzinfo=timezone.utc)
        return cls(**kwargs)

    def summary(self) -> str:
        """A few human-readable lines for the console."""
        span = ""
        if self.first_ts and self.last_ts:
            span = f"{self.first_ts:%Y-%m-%d %H:%M:%S} -> {self.last_ts:%Y-%m-%d %H:%M:%S} UTC"
        rate = f" ({100 * self.churners / self.users:.1f} %)" if self.users else ""
        lines = [
            f"rows read     {self.rows_read:>12,}",
            f"user rows     {self.user_rows:>12,}",
            f"hidden rows   {self.hidden_rows:>12,}  (Logged Out / Guest)",
            f"duplicates    {self.duplicates:>12,}  (removed)",
            f"quarantined   {self.quarantined:>12,}" + (
                f"  -> {self.quarantine_path}" if self.quarantine_path and self.quarantined else ""),
            f"users         {self.users:>12,}",
            f"churners      {self.churners:>12,}{rate}",
            f"date range    {span}",
        ]
        if self.skipped_files:
            lines.append(f"skipped files {len(self.skipped_files):>12,}  (damaged, not read: their events are "
                         "missing from every count)")
            lines.extend(f"  {f['path']}: {f['problem']}" for f in self.skipped_files)
        return "\n".join(lines)


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


# --------------------------------------------------------------------------- file system
def _hadoop_path(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, hpath


def _glob(spark: SparkSession, path: str) -> list:
    """FileStatus objects matching ``path`` (a file, directory or glob), on any Hadoop FS."""
    fs, hpath = _hadoop_path(spark, path)
    found = fs.globStatus(hpath)
    return list(found) if found is not None else []


def _is_parquet(spark: SparkSession, path: str) -> bool:
    """True when ``path`` is Parquet: a *.parquet file, or a directory holding Parquet parts."""
    if path.rstrip("/").endswith(".parquet"):
        return True
    for status in _glob(spark, path):
        if status.isDirectory():
            fs, _ = _hadoop_path(spark, path)
            names = [s.getPath().getName() for s in fs.listStatus(status.getPath())]
            # Spark skips names starting with "_" or "." (e.g. the simulator's _truth.parquet
            # beside JSON part files), so they do not make a directory Parquet either.
            if QUALITY_FILE in names or any(
                    n.endswith(".parquet") and not n.startswith(("_", ".")) for n in names):
                return True
    return False


def write_text(spark: SparkSession, path: str | Path, text: str) -> None:
    """Write a small text file on any Hadoop-compatible file system (local, HDFS, S3...)."""
    fs, hpath = _hadoop_path(spark, str(path))
    stream = fs.create(hpath, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def read_text(spark: SparkSession, path: str | Path) -> str | None:
    """Read a small text file on any Hadoop FS; None if it does not exist."""
    fs, hpath = _hadoop_path(spark, str(path))
    if not fs.exists(hpath):
        return None
    jvm = spark.sparkContext._jvm
    stream = fs.open(hpath)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        lines = []
        line = reader.readLine()
        while line is not None:
            lines.append(line)
            line = reader.readLine()
        return "\n".join(lines)
    finally:
        stream.close()


# --------------------------------------------------------------------------- damaged files
def _hidden(name: str) -> bool:
    """Names Spark's file readers skip (``_SUCCESS``, ``_truth.parquet``, ``.crc`` files...)."""
    return name.startswith(("_", ".")) or name.endswith("._COPYING_")


def input_files(spark: SparkSession, path: str) -> list[str]:
    """The files a read of ``path`` (a file, directory or glob) reads: every file below
    a directory whose name Spark does not skip, as Hadoop path strings."""
    fs, _ = _hadoop_path(spark, path)
    out: list[str] = []
    pending = [s for s in _glob(spark, path) if not (s.isDirectory() and _hidden(s.getPath().getName()))]
    while pending:
        status = pending.pop(0)
        if status.isDirectory():
            pending[:0] = [c for c in fs.listStatus(status.getPath()) if not _hidden(c.getPath().getName())]
        else:
            out.append(status.getPath().toString())
    return out


def _skip_corrupt(skip_corrupt_files: bool | None) -> bool:
    if skip_corrupt_files is None:
        from sparkify.spark import RUN_OPTIONS

        return RUN_OPTIONS.skip_corrupt_files
    return bool(skip_corrupt_files)


def _read_checked(spark: SparkSession, source: str, skip: bool, load):
    """``load(paths)`` (a LoadedEvents or LoadedLog) on the raw log ``source``, where a
    damaged file is named, not a stack trace.

    Without ``skip``: ``paths`` is ``source``; if Spark fails to read one of its files,
    :class:`CorruptInputError` names it and says how it is damaged.
    With ``skip``: every local compressed file is decompressed first
    (:func:`sparkify.inputs.compressed_file_problem`); the damaged ones are left out
    (``paths`` is then the list of the others), and so is any further file Spark cannot
    read (the load is run again without it). The skipped files are recorded in
    ``quality.skipped_files``; CorruptInputError when none is readable."""
    skipped: list[dict[str, str]] = []
    paths: str | list[str] = source
    if skip:
        readable = []
        for f in input_files(spark, source):
            problem = compressed_file_problem(local_path(f)) if is_checked(f) else None
            if problem:
                skipped.append({"path": display_path(f), "problem": problem})
            else:
                readable.append(f)
        if skipped:
            paths = readable
    while True:
        if isinstance(paths, list) and not paths:
            raise CorruptInputError([(f["path"], f["problem"]) for f in skipped], source, skipping=True)
        try:
            loaded = load(paths)
        except Exception as exc:  # noqa: BLE001 - only Spark's failure to read a file is handled
            failed = failed_read_file(exc)
            if failed is None:
                raise
            path, cause = failed
            problem = damage_of(path, cause)
            if not skip:
                raise CorruptInputError([(display_path(path), problem)], source) from None
            files = paths if isinstance(paths, list) else input_files(spark, source)
            rest = [f for f in files if not same_file(f, path)]
            if len(rest) == len(files):  # not one of ours: say so rather than read it again
                raise CorruptInputError([(display_path(path), problem)], source) from None
            skipped.append({"path": display_path(path), "problem": problem})
            paths = rest
            continue
        loaded.quality.skipped_files = skipped
        return loaded


# --------------------------------------------------------------------------- loading
def read_raw(spark: SparkSession, path: str | Path | list[str], schema: StructType = EVENT_SCHEMA) -> DataFrame:
    """The raw log (a path, or a list of files) parsed with ``schema`` (default
    :data:`EVENT_SCHEMA`; PERMISSIVE: bad lines in ``_corrupt_record``)."""
    return (spark.read.schema(schema)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
            .json(path if isinstance(path, list) else str(path)))


def row_class() -> tuple[Column, Column]:
    """(kind, reason) of a row parsed with a schema that has the corrupt-record column.

    kind: ``bad`` (malformed, or missing ts or auth, or a user row missing userId,
    sessionId or page), ``user`` (auth in USER_AUTHS) or ``hidden`` (Logged Out, Guest);
    reason: why a bad row is bad (:data:`MALFORMED_REASON`, :data:`MISSING_REASON`),
    null for the others."""
    c = F.col
    corrupt = c(CORRUPT_COLUMN).isNotNull()
    is_user = c("auth").isin(*USER_AUTHS)
    missing = c("ts").isNull() | c("auth").isNull() | (is_user & (
        c("userId").isNull() | (c("userId") == "") | c("sessionId").isNull() | c("page").isNull()))
    kind = F.when(corrupt | missing, F.lit("bad")).when(is_user, F.lit("user")).otherwise(F.lit("hidden"))
    reason = F.when(corrupt, F.lit(MALFORMED_REASON)).when(missing, F.lit(MISSING_REASON))
    return kind, reason


def _stage(raw: DataFrame) -> DataFrame:
    """Classify each parsed row as user / hidden / bad and keep only what each kind needs.

    Out columns: KEPT_COLUMNS, ``_fp`` (64-bit fingerprint of all raw fields, user rows
    only), ``_kind``, ``_reason``, ``_line``. Hidden rows are reduced to their kind (all
    else null); bad rows to their reason and line text.
    """
    c = F.col
    kind, reason = row_class()
    staged = raw.withColumn("_kind", kind)
    keep_raw = c("_kind") == "user"
    line = F.coalesce(c(CORRUPT_COLUMN), F.to_json(F.struct(*[c(n) for n in RAW_COLUMNS])))
    return staged.select(
        *[F.when(keep_raw, c(n)).alias(n) for n in KEPT_COLUMNS],
        F.when(keep_raw, F.xxhash64(*[c(n) for n in RAW_COLUMNS])).alias("_fp"),
        c("_kind"),
        F.when(c("_kind") == "bad", reason).alias("_reason"),
        F.when(c("_kind") == "bad", line).alias("_line"),
    )


def _quality_from_cache(cache: DataFrame, source: str) -> DataQuality:
    """Two jobs over the cache (the first materialises it).

    1. Per (kind, user): row counts, churn flag, first/last time, partially aggregated on
       each partition (hidden and bad rows have no userId: one group per kind), then summed.
    2. Exact duplicates among user rows: rows grouped by their 64-bit fingerprint of every
       raw field (which includes userId). Identical rows share a fingerprint, so no
       duplicate is missed; a collision can only over-report, and the exact
       de-duplication then runs and recounts (see load_events).
    """
    c = F.col
    user = c("_kind") == "user"
    per_user = cache.groupBy("_kind", "userId").agg(
        F.count(F.lit(1)).alias("_n"),
        F.max(F.when((c("page") == CHURN_PAGE) | (c("auth") == CANCELLED_AUTH), 1).otherwise(0)).alias("_churn"),
        F.min("ts").alias("ts_min"), F.max("ts").alias("ts_max"))
    row = per_user.agg(
        F.sum("_n"),
        F.sum(F.when(c("_kind") == "bad", c("_n")).otherwise(0)),
        F.sum(F.when(c("_kind") == "hidden", c("_n")).otherwise(0)),
        F.sum(F.when(user, c("_n")).otherwise(0)),
        F.sum(F.when(user, 1).otherwise(0)),
        F.sum(F.when(user, c("_churn")).otherwise(0)),
        F.min(F.when(user, c("ts_min"))),
        F.max(F.when(user, c("ts_max"))),
    ).first()
    rows_read, bad, hidden, user_rows, users, churners = (int(v or 0) for v in row[:6])
    duplicates = 0
    if user_rows:
        extra = (cache.filter(user).groupBy("_fp").agg(F.count(F.lit(1)).alias("_n"))
                 .filter(c("_n") > 1).agg(F.sum(c("_n") - 1)).first()[0])
        duplicates = int(extra or 0)

    def as_dt(ms):
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms is not None else None

    return DataQuality(
        rows_read=rows_read, quarantined=bad, hidden_rows=hidden, user_rows=user_rows - duplicates,
        duplicates=duplicates, users=users, churners=churners,
        first_ts=as_dt(row[6]), last_ts=as_dt(row[7]), source=source,
    )


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
    Raises FileNotFoundError when nothing matches ``path``, ValueError when no valid user
    event is found (after writing the quarantine), CorruptInputError (a ValueError) for a
    damaged file.
    """
    source = str(path)
    if not _glob(spark, source):
        raise FileNotFoundError(f"no event log at {source}")
    if _is_parquet(spark, source):
        return _load_ingested(spark, source)
    return _read_checked(spark, source, _skip_corrupt(skip_corrupt_files),
                         lambda paths: _load_json_events(spark, source, paths, quarantine_path, storage_level))


def _load_json_events(spark: SparkSession, source: str, paths: str | list[str],
                      quarantine_path: str | Path | None, storage_level: StorageLevel) -> LoadedEvents:
    """:func:`load_events` of the raw JSON files ``paths`` (``source`` as the user named it)."""
    # Persisted where parsed: no event-sized shuffle. Every later step aggregates (per
    # session or per user) on each partition first, so only partial rows move.
    cache = _stage(read_raw(spark, paths)).persist(storage_level)
    extra: DataFrame | None = None
    try:
        quality = _quality_from_cache(cache, source)   # the single parse pass happens here
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

    days: Any                      # sparkify.features.SessionDays
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

    def days_for(self, spec: Any) -> Any:
        """SessionDays that can be cut exactly where ``spec`` (a LabelSpec) cuts: these
        rows when they can, else rows rebuilt from the events with the spec's times as
        split points (re-reads the source; only for a spec whose default times are not at
        midnight, e.g. 'ever' labels with an observation window)."""
        from sparkify.features import resolve_spec, spec_boundaries

        resolved = resolve_spec(self.days, spec)
        needed = spec_boundaries(resolved)
        if all(self.days.exact_at(b, resolved.mode) for b in needed):
            return self.days
        from sparkify.features import session_day_partials

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


@dataclass
class LineAttributes:
    """Reads ``sparkify.features.LINE_ATTRIBUTES`` (gender, userAgent, location) for
    chosen events of a raw JSON log: the one pass parses these long strings on no line
    (about a quarter of the parse) and keeps, in each partial row, the number of its
    latest event (``p_row``, :func:`number_rows`) instead.

    Called with DataFrame[userId, p_row, ts] (one row per wanted event), returns
    DataFrame[userId, ROW_COLUMN, *LINE_ATTRIBUTES] of those events. The lines are found by number in
    a plain text read of the same files (the same read partitions; one row per non-empty
    line), and only the read partitions that hold one are read (``SparkContext.runJob``
    on those partitions; with the default cutoff, the log's later part is never read);
    only the lines found are parsed. Each must hold the expected userId and ts. If one
    does not (a line the JSON reader reads as no row, e.g. only spaces, or as several,
    e.g. an array), the rows are read again with the pass's JSON reader, whose row
    numbers are the pass's by construction.
    """

    spark: SparkSession
    source: str | list[str]     # what the one pass read: a path or a list of files
    artists: bool = False
    #: "text" or "json": how the last call found its lines (for tests and benchmarks)
    read_with: str | None = field(default=None, repr=False)
    #: how many read partitions the last call read, and of how many
    partitions_read: tuple[int, int] | None = field(default=None, repr=False)

    def __call__(self, pointers: DataFrame) -> DataFrame:
        from sparkify.features import LINE_ATTRIBUTES, ROW_COLUMN

        c = F.col
        wanted = (pointers.select(c("userId").alias("_user"), c("p_row").alias(ROW_COLUMN), c("ts").alias("_ts"))
                  .localCheckpoint())
        expected, parts = wanted.agg(F.count(F.lit(1)),
                                     F.collect_set(F.shiftright(c(ROW_COLUMN), 33).cast("int"))).first()
        fields = StructType([StructField("userId", StringType()), StructField("ts", LongType()),
                             *[StructField(a, StringType()) for a in LINE_ATTRIBUTES]])
        text = number_rows(self.spark.read.text(self.source).filter(c("value") != ""))
        found = self._lines(text.join(F.broadcast(wanted), ROW_COLUMN), sorted(parts), fields)
        self.read_with = "text"
        if not self._complete(found, expected):
            raw = number_rows(read_raw(self.spark, self.source, pass_schema(self.artists)))
            hits = (raw.join(F.broadcast(wanted), ROW_COLUMN)
                    .select("_user", "_ts", ROW_COLUMN, F.to_json(F.struct(*fields.names)).alias("value")))
            found = self._lines(hits, sorted(parts), fields)
            self.read_with = "json"
            if not self._complete(found, expected):
                raise RuntimeError(f"{self.source} changed while it was being read: "
                                   "the events the features point to are no longer where they were")
        return found.select(c("_user").alias("userId"), ROW_COLUMN, *LINE_ATTRIBUTES)

    def _lines(self, hits: DataFrame, parts: list[int], fields: StructType) -> DataFrame:
        """The joined rows of the read partitions ``parts`` only, parsed with ``fields``:
        DataFrame[_user, _ts, ROW_COLUMN, _ok, *fields] (small: one row per wanted event)."""
        from sparkify.features import ROW_COLUMN

        c = F.col
        rdd = hits.select("_user", "_ts", ROW_COLUMN, "value").rdd
        self.partitions_read = (len(parts), rdd.getNumPartitions())
        rows = self.spark.sparkContext.runJob(rdd, lambda it: [tuple(r) for r in it], parts) if parts else []
        small = self.spark.createDataFrame(rows, f"_user string, _ts long, {ROW_COLUMN} long, value string")
        parsed = (small.select("_user", "_ts", ROW_COLUMN, F.from_json("value", fields).alias("j"))
                  .select("_user", "_ts", ROW_COLUMN, "j.*"))
        return parsed.withColumn("_ok", (c("userId") == c("_user")) & (c("ts") == c("_ts"))).localCheckpoint()

    @staticmethod
    def _complete(found: DataFrame, expected: int) -> bool:
        n, good = found.agg(F.count(F.lit(1)), F.count(F.when(F.col("_ok"), 1))).first()
        return n == good == expected


#: Spark's switch for compressing the columns of cached tables.
CACHE_COMPRESSION_CONF = "spark.sql.inMemoryColumnarStorage.compressed"


@contextmanager
def uncompressed_cache(spark: SparkSession):
    """Tables persisted inside are stored without column compression (Spark reads the
    setting at ``persist``). For the session-day rows: they are small (395 k rows for the
    28 M-event full log), and compressing them was about 40 % of the CPU of the job that
    builds them (see benchmarks/RESULTS.md). The session's setting is restored on exit."""
    before = spark.conf.get(CACHE_COMPRESSION_CONF)
    spark.conf.set(CACHE_COMPRESSION_CONF, "false")
    try:
        yield
    finally:
        spark.conf.set(CACHE_COMPRESSION_CONF, before)


def _quality_from_partials(parts: DataFrame, source: str) -> tuple[DataQuality, int, dict[str, int]]:
    """Counts from the one-pass partial rows (one small job, which materialises them), how
    many user rows the pass could not vouch for as distinct (``p_repeats``), and the log's
    end as :meth:`sparkify.features.SessionDays.log_end_ms` gives it per mode (so that no
    further job is needed to find it).

    The user and churner counts are sizes of sets of user ids: one aggregation stage over
    the rows, where ``count_distinct`` would plan an expansion of every row and two more
    stages."""
    c = F.col
    user = c("_kind") == "user"
    row = parts.agg(
        F.sum("p_events"),
        F.sum(F.when(c("_kind") == "bad", c("p_events")).otherwise(0)),
        F.sum(F.when(c("_kind") == "hidden", c("p_events")).otherwise(0)),
        F.sum(F.when(user, c("p_events")).otherwise(0)),
        F.sum(F.when(user, c("p_repeats")).otherwise(0)),
        F.size(F.collect_set(F.when(user, c("userId")))),
        F.size(F.collect_set(F.when(user & c("p_churn_ms").isNotNull(), c("userId")))),
        F.min(F.when(user, c("p_start"))),
        F.max(F.when(user, c("p_end"))),
        F.max(F.when(user & ~c("cancel_rel"), c("p_end"))),
    ).first()
    rows_read, bad, hidden, user_rows, repeats, users, churners = (int(v or 0) for v in row[:7])

    def as_dt(ms):
        return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms is not None else None

    quality = DataQuality(rows_read=rows_read, quarantined=bad, hidden_rows=hidden,
                          user_rows=user_rows, duplicates=0, users=users, churners=churners,
                          first_ts=as_dt(row[7]), last_ts=as_dt(row[8]), source=source)
    end_ms = {mode: int(v) for mode, v in (("window", row[8]), ("ever", row[9])) if v is not None}
    return quality, repeats, end_ms


#: Width of the per-group bitmap of item numbers (itemInSession mod ITEM_WINDOW), in bits.
ITEM_WINDOW = 512


def _item_repeat_aggregates(valid: str) -> list[Column]:
    """Aggregates that show whether a group's ``itemInSession`` values are all distinct,
    with fixed-width numeric state (no set of ids: a few long buffers per row): their min
    and max and a bitmap of (item mod :data:`ITEM_WINDOW`) as ITEM_WINDOW / 64 bit-ORed
    words, over the rows where ``valid`` (Spark SQL text) holds. See :func:`_repeated_rows`."""
    item = "coalesce(CAST(itemInSession AS BIGINT), -1L)"
    word = f"shiftright(pmod({item}, {ITEM_WINDOW}L), 6)"
    bit = f"shiftleft(1L, CAST(pmod({item}, 64L) AS INT))"
    return [F.expr(a) for a in [
        f"min(CASE WHEN {valid} THEN {item} END) AS _item_min",
        f"max(CASE WHEN {valid} THEN {item} END) AS _item_max",
        *[f"bit_or(CASE WHEN ({valid}) AND {word} = {k} THEN {bit} END) AS _item_bits{k}"
          for k in range(ITEM_WINDOW // 64)]]]


def _repeated_rows() -> Column:
    """User rows of a group that the pass cannot vouch for: those that repeat another's
    item number (events minus distinct items), or all of them when the items span
    ITEM_WINDOW or more (the bitmap would wrap) or the group has so many events that a
    packed page counter could overflow (features.MAX_PACKED_EVENTS). 0: all is exact."""
    from sparkify.features import MAX_PACKED_EVENTS

    distinct = " + ".join(f"bit_count(coalesce(_item_bits{k}, 0L))" for k in range(ITEM_WINDOW // 64))
    return F.expr(f"CASE WHEN _kind != 'user' THEN 0"
                  f" WHEN _item_max - _item_min >= {ITEM_WINDOW} OR p_events >= {MAX_PACKED_EVENTS} THEN p_events"
                  f" ELSE p_events - ({distinct}) END")


def number_rows(raw: DataFrame) -> DataFrame:
    """``raw`` (rows straight from a file reader) with ``sparkify.features.ROW_COLUMN``:
    the same number for the same row whenever the same files are read again with the
    same reader, as the read partitions and their order do not change."""
    from sparkify.features import ROW_COLUMN

    return raw.withColumn(ROW_COLUMN, F.monotonically_increasing_id())


@dataclass(frozen=True)
class PassOptions:
    """How the one pass computes its rows. Every combination gives the same session-day
    rows, quality counts and features (tests/test_session_days.py); they differ in speed
    only, and each is measured on and off in benchmarks/RESULTS.md (``benchmarks/tricks.py``).

    * ``packed_counters``: page counters summed three to a 64-bit word
      (``sparkify.features.partial_aggregates(packed=True)``), else one sum per page;
    * ``row_pointers``: the long text attributes (``sparkify.features.LINE_ATTRIBUTES``)
      are not parsed on every line; each row keeps the number of its latest event and
      :class:`LineAttributes` reads them for the events the features use, else they are
      parsed on every line and kept as keys of the rows;
    * ``sql_text``: the row classification written as Spark SQL text, else as
      :func:`row_class` (Column expressions);
    * ``uncompressed_cache``: the persisted rows are stored without column compression
      (:func:`uncompressed_cache`), else with Spark's default.
    """

    packed_counters: bool = True
    row_pointers: bool = True
    sql_text: bool = True
    uncompressed_cache: bool = True


def _classification_sql() -> tuple[Column, Column, Column]:
    """(kind, reason, line) as Spark SQL text: :func:`row_class` and the malformed text."""
    from sparkify.features import sql_literal

    corrupt = f"{CORRUPT_COLUMN} IS NOT NULL"
    is_user = f"auth IN ({', '.join(sql_literal(a) for a in USER_AUTHS)})"
    missing = (f"(ts IS NULL OR auth IS NULL OR ({is_user} AND"
               " (userId IS NULL OR userId = '' OR sessionId IS NULL OR page IS NULL)))")
    kind = f"CASE WHEN {corrupt} OR {missing} THEN 'bad' WHEN {is_user} THEN 'user' ELSE 'hidden' END"
    reason = (f"CASE WHEN {corrupt} THEN {sql_literal(MALFORMED_REASON)}"
              f" WHEN {missing} THEN {sql_literal(MISSING_REASON)} END")
    line = f"CASE WHEN {corrupt} THEN {CORRUPT_COLUMN} END"
    return F.expr(kind), F.expr(reason), F.expr(line)


def _one_pass_partials(raw: DataFrame, splits: tuple[int, ...], artists: bool = False,
                       options: PassOptions = PassOptions()) -> DataFrame:
    """Session-day partial rows straight from the parsed rows, with what the quality
    summary and the quarantine need: ``_kind`` (user / hidden / bad), ``_reason`` and
    ``_line`` (bad rows, grouped by their text) and ``p_repeats`` (user rows the pass
    cannot vouch for as distinct: 0 in a log without duplicates).

    In: ``raw`` read with :func:`pointer_schema` and numbered by :func:`number_rows`
    (``options.row_pointers``; rows keyed by ``sparkify.features.POINTER_KEYS``, with
    ``p_row``) or with :func:`pass_schema` (rows keyed by ``PARTIAL_KEYS``).
    The duplicate check is fixed-width numeric state (:func:`_item_repeat_aggregates`), so
    the aggregation is Spark's code-generated one; ``artists`` adds the set of artists,
    which makes it the object hash aggregation (about twice the cost)."""
    from sparkify.features import partial_aggregates, partial_key_columns, unpack_page_counts

    if options.sql_text:
        kind, reason, line = _classification_sql()
    else:
        kind, reason = row_class()
        line = F.when(F.col(CORRUPT_COLUMN).isNotNull(), F.col(CORRUPT_COLUMN))
    # lines missing a field keep no text here: load_log re-reads them to render them.
    # An exact duplicate repeats its line, so its session and itemInSession too, and lands
    # in the same group. eventsim numbers a session's events 0, 1, 2, ...: a group whose
    # item numbers are all distinct has no duplicate. A repeated (or unverifiable) item
    # only makes the loader fall back to the exact, fingerprint-based de-duplication of
    # load_events; it is never counted as a duplicate on this evidence.
    pointer, packed = options.row_pointers, options.packed_counters
    staged = raw.withColumn("_kind", kind)
    checks = _item_repeat_aggregates("_kind = 'user'")
    parts = staged.groupBy("_kind", *partial_key_columns(splits, pointer=pointer),
                           reason.alias("_reason"), line.alias("_line")).agg(
        *partial_aggregates(artists=artists, packed=packed, pointer=pointer), *checks)
    if packed:
        parts = unpack_page_counts(parts)
    parts = parts.withColumn("p_repeats", _repeated_rows())
    return parts.drop(*[name for name in parts.columns if name.startswith("_item_")])


def load_log(
    spark: SparkSession,
    path: str | Path,
    quarantine_path: str | Path | None = None,
    *,
    splits: tuple[int, ...] = (),
    artists: bool = False,
    storage_level: StorageLevel = StorageLevel.MEMORY_AND_DISK,
    skip_corrupt_files: bool | None = None,
    options: PassOptions = PassOptions(),
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
    directory from :func:`ingest` is aggregated from its events.
    ``skip_corrupt_files`` and the errors raised are those of :func:`load_events`;
    ``options`` (:class:`PassOptions`): how the pass computes, for benchmarks.
    """
    from sparkify.features import session_day_partials

    source = str(path)
    if not _glob(spark, source):
        raise FileNotFoundError(f"no event log at {source}")
    splits = tuple(sorted({int(s) for s in splits}))
    if _is_parquet(spark, source):
        ingested = _load_ingested(spark, source)
        days = session_day_partials(ingested.events, splits, artists=artists)
        with uncompressed_cache(spark):
            days.df = days.df.persist(storage_level)
        return LoadedLog(days=days, quality=ingested.quality, source=source, _frames=[days.df])
    return _read_checked(spark, source, _skip_corrupt(skip_corrupt_files),
                         lambda paths: _load_json_log(spark, source, paths, quarantine_path, splits,
                                                      artists, storage_level, options))


def _load_json_log(spark: SparkSession, source: str, paths: str | list[str],
                   quarantine_path: str | Path | None, splits: tuple[int, ...], artists: bool,
                   storage_level: StorageLevel, options: PassOptions = PassOptions()) -> LoadedLog:
    """:func:`load_log` of the raw JSON files ``paths`` (``source`` as the user named it)."""
    from sparkify.features import PARTIAL_KEYS, POINTER_KEYS, partial_values, session_day_partials

    pointer = options.row_pointers
    raw = (number_rows(read_raw(spark, paths, pointer_schema(artists))) if pointer
           else read_raw(spark, paths, pass_schema(artists)))
    with uncompressed_cache(spark) if options.uncompressed_cache else nullcontext():
        parts = _one_pass_partials(raw, splits, artists, options).persist(storage_level)
    try:
        quality, repeats, end_ms = _quality_from_partials(parts, source)   # the single parse pass
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
    from sparkify.features import SessionDays

    days = SessionDays(df=parts.filter(F.col("_kind") == "user").select(
                           *(POINTER_KEYS if pointer else PARTIAL_KEYS), *partial_values(artists, pointer=pointer)),
                       splits=splits, artists=artists, _end_ms=end_ms,
                       line_attributes=LineAttributes(spark, paths, artists) if pointer else None)
    bad = parts.filter(F.col("_kind") == "bad")
    frames = [parts]
    if quality.quarantined and bad.filter(F.col("_reason") == MISSING_REASON).limit(1).count():
        # Lines that parsed but miss a field are shown re-rendered from their fields: from
        # every raw field, as load_events does (a second read, only for such logs).
        full = _stage(read_raw(spark, paths)).filter(F.col("_kind") == "bad")
        bad = full.groupBy("_reason", "_line").agg(F.count(F.lit(1)).alias("p_events")).persist(storage_level)
        frames.append(bad)
    loaded = LoadedLog(days=days, quality=quality, source=source, _frames=frames, _bad=bad, read_paths=paths)
    if quality.quarantined:
        quality.quarantine_sample = [r[0] for r in bad.select("_line").limit(5).collect()]
        if quarantine_path is not None:
            loaded.write_quarantine(quarantine_path)
    _require_user_rows(loaded, quality, source)
    return loaded
