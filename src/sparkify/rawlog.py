"""Reading a raw Sparkify log: its fields and schemas, the files a path names (damaged
ones named, not a stack trace), and the one rule that classifies each parsed line.

In:  a path (a ``.json``/``.json.gz`` file, a directory of part files, a glob) on any
     Hadoop file system.
Out: DataFrames of parsed rows (:func:`read_raw`, schema :data:`EVENT_SCHEMA` or
     :func:`pass_schema`, never inferred; malformed lines land in :data:`CORRUPT_COLUMN`),
     their class (:func:`row_class`: user / hidden / bad, and why bad), and the event
     predicates every step shares (:data:`CHURN_EVENT_SQL`, :data:`CANCEL_RELATED_SQL`).
"""

from __future__ import annotations

from pathlib import Path

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
    ``corrupt=False`` leaves out the corrupt-record column (a bare scan of the same fields)."""
    schema = PASS_SCHEMA if artists else PASS_SCHEMA_NO_ARTIST
    return schema if corrupt else StructType([f for f in schema.fields if f.name != CORRUPT_COLUMN])


QUALITY_FILE = "_data_quality.json"       # inside an ingest directory (ignored by Parquet readers)
QUARANTINE_DIR = "_quarantine"            # idem


def sql_literal(value: str) -> str:
    """``value`` as a Spark SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: Spark SQL text: the event is a churn (a Cancellation Confirmation page or auth Cancelled).
CHURN_EVENT_SQL = f"(page = {sql_literal(CHURN_PAGE)} OR auth = {sql_literal(CANCELLED_AUTH)})"
#: Spark SQL text: the event is a Cancel or Cancellation Confirmation page or auth Cancelled.
CANCEL_RELATED_SQL = (f"(page IN ({sql_literal(CANCEL_PAGE)}, {sql_literal(CHURN_PAGE)})"
                      f" OR auth = {sql_literal(CANCELLED_AUTH)})")


def _is_cancel_related() -> Column:
    return F.expr(CANCEL_RELATED_SQL)


# --------------------------------------------------------------------------- file system
def _hadoop_path(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, hpath


def glob_status(spark: SparkSession, path: str) -> list:
    """FileStatus objects matching ``path`` (a file, directory or glob), on any Hadoop FS."""
    fs, hpath = _hadoop_path(spark, path)
    found = fs.globStatus(hpath)
    return list(found) if found is not None else []


def is_parquet(spark: SparkSession, path: str) -> bool:
    """True when ``path`` is Parquet: a *.parquet file, or a directory holding Parquet parts."""
    if path.rstrip("/").endswith(".parquet"):
        return True
    for status in glob_status(spark, path):
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
    pending = [s for s in glob_status(spark, path) if not (s.isDirectory() and _hidden(s.getPath().getName()))]
    while pending:
        status = pending.pop(0)
        if status.isDirectory():
            pending[:0] = [c for c in fs.listStatus(status.getPath()) if not _hidden(c.getPath().getName())]
        else:
            out.append(status.getPath().toString())
    return out


def skip_corrupt(skip_corrupt_files: bool | None) -> bool:
    if skip_corrupt_files is None:
        from sparkify.spark import RUN_OPTIONS

        return RUN_OPTIONS.skip_corrupt_files
    return bool(skip_corrupt_files)


def read_checked(spark: SparkSession, source: str, skip: bool, load, files: list[str] | None = None):
    """``load(paths)`` (a LoadedEvents or LoadedLog) on the raw log ``source``, where a
    damaged file is named, not a stack trace.

    Without ``skip``: ``paths`` is ``source``; if Spark fails to read one of its files,
    :class:`CorruptInputError` names it and says how it is damaged.
    With ``skip``: every local compressed file is decompressed first
    (:func:`sparkify.inputs.compressed_file_problem`); the damaged ones are left out
    (``paths`` is then the list of the others), and so is any further file Spark cannot
    read (the load is run again without it). The skipped files are recorded in
    ``quality.skipped_files``; CorruptInputError when none is readable.
    ``files``: read these files of ``source`` only (``paths`` is then a list from the start)."""
    skipped: list[dict[str, str]] = []
    paths: str | list[str] = list(files) if files is not None else source
    if skip:
        readable = []
        for f in (files if files is not None else input_files(spark, source)):
            problem = compressed_file_problem(local_path(f)) if is_checked(f) else None
            if problem:
                skipped.append({"path": display_path(f), "problem": problem})
            else:
                readable.append(f)
        if skipped or files is not None:
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


def stage(raw: DataFrame) -> DataFrame:
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
