"""What a load saw: the data-quality summary and the counts it is made from.

In:  the staged events of the event path (:func:`quality_from_staged`) or the partial
     rows of the one pass (:func:`quality_from_partials`), both with a ``_kind`` column
     (``sparkify.rawlog.row_class``).
Out: :class:`DataQuality` (JSON-ready, printable).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkify.config import CHURN_PAGE
from sparkify.rawlog import CANCELLED_AUTH


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


def quality_from_staged(cache: DataFrame, source: str) -> DataQuality:
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


def quality_from_partials(parts: DataFrame, source: str) -> tuple[DataQuality, int, dict[str, int]]:
    """Counts from the one-pass partial rows (one small job, which materialises them), how
    many user rows the pass could not vouch for as distinct (``p_repeats``), and the log's
    end as :meth:`sparkify.session_days.SessionDays.log_end_ms` gives it per mode (so that no
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
