"""Spark aggregations behind the report's exploration charts.

In:  the cleaned user events of :func:`sparkify.dataset.load_events` (columns ``ts``
     (epoch ms), ``userId``, ``page``, ``auth``, ...).
Out: small pandas tables (one row per day, page or week and group), ready for
     :mod:`sparkify.plots`. Every function aggregates in Spark and only brings the
     aggregated rows to the driver (``toPandas`` of a grouped frame, never of events).

Groups: in the exploration a *churner* is a user who reached Cancellation Confirmation
(or auth ``Cancelled``) anywhere in the log, a *stayer* everyone else; ``churn`` is 1 for
churners, 0 for stayers (the label convention of :mod:`sparkify.plots`). The model's own
label (prediction-time window) is used where the report shows the model's feature table.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from sparkify.config import CHURN_PAGE
from sparkify.rawlog import CANCEL_PAGE, CANCEL_RELATED_SQL, CHURN_EVENT_SQL
from sparkify.session_days import DAY_MS

WEEK_MS = 7 * DAY_MS

#: Pages counted in the weekly behaviour table: (page, column name).
WEEKLY_PAGES: list[tuple[str, str]] = [
    ("NextSong", "songs"),
    ("Thumbs Up", "thumbs_up"),
    ("Thumbs Down", "thumbs_down"),
    ("Roll Advert", "adverts"),
    ("Add Friend", "add_friend"),
    ("Error", "errors"),
]


def user_groups(events: DataFrame) -> DataFrame:
    """One row per user: ``userId``, ``churn`` (1 = cancelled in the log, else 0),
    ``churn_ms`` (first cancellation, epoch ms, null for stayers), ``first_ms`` and
    ``last_ms`` (first and last event). Lazy; one row per user (small)."""
    return events.groupBy("userId").agg(
        F.min(F.when(F.expr(CHURN_EVENT_SQL), F.col("ts"))).alias("churn_ms"),
        F.min("ts").alias("first_ms"),
        F.max("ts").alias("last_ms"),
    ).withColumn("churn", F.col("churn_ms").isNotNull().cast("int"))


def daily_activity(events: DataFrame, groups: DataFrame) -> pd.DataFrame:
    """Events, songs and active users per UTC day and group.

    In: events, :func:`user_groups`. Out: pandas ``date`` (datetime64, UTC midnight),
    ``churn`` (0/1), ``events``, ``songs``, ``active_users``; sorted by date, churn.
    """
    g = F.broadcast(groups.select("userId", "churn"))
    daily = (events.select("userId", "ts", "page").join(g, "userId")
             .withColumn("day", F.floor(F.col("ts") / DAY_MS))
             .groupBy("day", "churn").agg(
                 F.count(F.lit(1)).alias("events"),
                 F.sum(F.when(F.col("page") == "NextSong", 1).otherwise(0)).alias("songs"),
                 F.countDistinct("userId").alias("active_users"))
             .orderBy("day", "churn"))
    pdf = daily.toPandas()
    pdf.insert(0, "date", pd.to_datetime(pdf.pop("day").astype("int64") * DAY_MS, unit="ms", utc=True))
    for col in ("churn", "events", "songs", "active_users"):
        pdf[col] = pdf[col].astype("int64")
    return pdf.reset_index(drop=True)


def page_mix(events: DataFrame, groups: DataFrame, exclude_cancel: bool = True) -> pd.DataFrame:
    """How each group spends its events: count and share of every page.

    In: events, :func:`user_groups`; ``exclude_cancel`` drops the Cancel and Cancellation
    Confirmation pages (they only say who churned). Out: pandas ``page``, ``churn``,
    ``events``, ``users`` (distinct users who saw the page), ``share`` (of the group's
    events) and ``per_user`` (events per user of the group).
    """
    g = F.broadcast(groups.select("userId", "churn"))
    ev = events.select("userId", "page").join(g, "userId")
    if exclude_cancel:
        ev = ev.filter(~F.col("page").isin(CANCEL_PAGE, CHURN_PAGE))
    counts = ev.groupBy("page", "churn").agg(F.count(F.lit(1)).alias("events"),
                                             F.countDistinct("userId").alias("users"))
    pdf = counts.toPandas()
    sizes = groups.groupBy("churn").count().toPandas().set_index("churn")["count"]
    pdf["churn"] = pdf["churn"].astype("int64")
    pdf["events"] = pdf["events"].astype("int64")
    pdf["users"] = pdf["users"].astype("int64")
    totals = pdf.groupby("churn")["events"].transform("sum")
    pdf["share"] = pdf["events"] / totals
    pdf["per_user"] = pdf["events"] / pdf["churn"].map(sizes).astype(float)
    return pdf.sort_values(["churn", "events"], ascending=[True, False]).reset_index(drop=True)


def reference_times(groups: DataFrame, seed: int = 42) -> DataFrame:
    """Each user's reference time for the weeks-before-churn view.

    Churners: their cancellation. Stayers: a *matched calendar* date, one of the
    churners' cancellation times picked by a hash of the userId (deterministic for a
    ``seed``), so both groups are observed over the same calendar weeks.
    In: :func:`user_groups`. Out: ``userId``, ``churn``, ``ref_ms``, ``first_ms``
    (no stayer rows when there is no churner).
    """
    churners = groups.filter(F.col("churn") == 1).select("userId", "churn",
                                                         F.col("churn_ms").alias("ref_ms"), "first_ms")
    n = churners.count()
    if n == 0:
        return churners
    refs = (churners.select("ref_ms", "userId")
            .withColumn("idx", F.row_number().over(Window.orderBy("ref_ms", "userId")) - 1))
    stayers = (groups.filter(F.col("churn") == 0)
               .withColumn("idx", F.pmod(F.xxhash64(F.col("userId"), F.lit(seed)), F.lit(n)))
               .join(F.broadcast(refs.select("idx", "ref_ms")), "idx")
               .select("userId", "churn", "ref_ms", "first_ms"))
    return churners.unionByName(stayers)


def weeks_before_churn(events: DataFrame, groups: DataFrame, weeks: int = 8,
                       seed: int = 42) -> pd.DataFrame:
    """Behaviour in each of the ``weeks`` weeks before the cancellation (churners) or
    the matched calendar date (stayers, see :func:`reference_times`).

    Week 1 is the 7 days just before the reference time, week 2 the 7 days before that,
    and so on. A user counts in week *w* only if their first event lies before the week
    starts (they were already a customer), so new users do not dilute early weeks.
    Cancel / Cancellation Confirmation events are left out.

    Out: pandas with one row per (``churn``, ``week``): ``users`` (eligible), ``active_users``,
    ``active_days`` (user-days with activity), ``events``, one column per page of
    :data:`WEEKLY_PAGES`, and the rates ``songs_per_active_day``,
    ``active_days_per_user``, ``thumbs_down_per_100_songs``, ``thumbs_up_per_100_songs``,
    ``adverts_per_100_songs``.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be >= 1, not {weeks}")
    refs = reference_times(groups, seed)
    c = F.col
    week_df = events.sparkSession.range(1, weeks + 1).select(c("id").cast("int").alias("week"))
    eligible = (refs.crossJoin(F.broadcast(week_df))
                .filter(c("first_ms") <= c("ref_ms") - c("week").cast("long") * F.lit(WEEK_MS)))
    users = eligible.groupBy("churn", "week").agg(F.count(F.lit(1)).alias("users"))

    ev = (events.select("userId", "ts", "page", "auth")
          .filter(~F.expr(CANCEL_RELATED_SQL))
          .join(F.broadcast(refs), "userId")
          .filter(c("ts") < c("ref_ms"))
          .withColumn("week", (F.floor((c("ref_ms") - c("ts")) / WEEK_MS) + 1).cast("int"))
          .filter((c("week") <= weeks) & (c("first_ms") <= c("ref_ms") - c("week").cast("long") * F.lit(WEEK_MS)))
          .withColumn("day", F.floor((c("ref_ms") - c("ts")) / DAY_MS)))
    page_sums = [F.sum(F.when(c("page") == page, 1).otherwise(0)).alias(name) for page, name in WEEKLY_PAGES]
    per_user = ev.groupBy("churn", "week", "userId").agg(
        F.countDistinct("day").alias("active_days"), F.count(F.lit(1)).alias("events"), *page_sums)
    agg = per_user.groupBy("churn", "week").agg(
        F.count(F.lit(1)).alias("active_users"), F.sum("active_days").alias("active_days"),
        F.sum("events").alias("events"), *[F.sum(name).alias(name) for _, name in WEEKLY_PAGES])
    table = users.join(agg, ["churn", "week"], "left").orderBy("churn", "week")
    pdf = table.toPandas().fillna(0)
    for col in pdf.columns:
        pdf[col] = pdf[col].astype("int64")

    def rate(num, den, scale=1.0):
        return (num * scale / den.where(den > 0)).astype(float)

    pdf["songs_per_active_day"] = rate(pdf["songs"], pdf["active_days"])
    pdf["active_days_per_user"] = rate(pdf["active_days"], pdf["users"])
    pdf["thumbs_down_per_100_songs"] = rate(pdf["thumbs_down"], pdf["songs"], 100.0)
    pdf["thumbs_up_per_100_songs"] = rate(pdf["thumbs_up"], pdf["songs"], 100.0)
    pdf["adverts_per_100_songs"] = rate(pdf["adverts"], pdf["songs"], 100.0)
    return pdf.reset_index(drop=True)


def group_sizes(groups: DataFrame) -> dict[str, int]:
    """{"users": n, "churners": n, "stayers": n} from :func:`user_groups` (one small job)."""
    row = groups.agg(F.count(F.lit(1)).alias("users"), F.sum("churn").alias("churners")).first()
    users = int(row["users"] or 0)
    churners = int(row["churners"] or 0)
    return {"users": users, "churners": churners, "stayers": users - churners}
