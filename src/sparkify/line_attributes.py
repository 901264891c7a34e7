"""The long text attributes of chosen events, read late from the raw log.

In:  DataFrame[userId, p_row, ts] (one row per wanted event of a raw-JSON log whose
     session-day rows were built with row pointers).
Out: DataFrame[userId, ROW_COLUMN, *LINE_ATTRIBUTES] of those events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from sparkify.rawlog import pass_schema, read_raw
from sparkify.session_days import LINE_ATTRIBUTES, ROW_COLUMN, number_rows


@dataclass
class LineAttributes:
    """Reads ``sparkify.session_days.LINE_ATTRIBUTES`` (gender, userAgent, location) for
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
