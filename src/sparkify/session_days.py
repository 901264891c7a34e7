"""The log reduced to session-day partial rows, and the one pass that builds them.

In:  cleaned events (:func:`session_day_partials`), or rows parsed straight from the raw
     JSON (:func:`one_pass_partials`, which also classifies them and checks for duplicates).
Out: :class:`SessionDays`: one row per (user, session, UTC day, cancellation flag,
     period), every value a count, min, max or set, so that features and labels over any
     window that starts and ends on a row boundary are exact sums over rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkify.rawlog import CANCEL_RELATED_SQL, CHURN_EVENT_SQL, CORRUPT_COLUMN, row_class, sql_literal

DAY_MS = 86_400_000

#: (page, feature stem, plural noun for descriptions)
PAGE_FEATURES: list[tuple[str, str, str]] = [
    ("NextSong", "songs", "songs played"),
    ("Thumbs Up", "thumbs_up", "thumbs up given"),
    ("Thumbs Down", "thumbs_down", "thumbs down given"),
    ("Add to Playlist", "add_to_playlist", "songs added to a playlist"),
    ("Add Friend", "add_friend", "friends added"),
    ("Roll Advert", "adverts", "adverts rolled"),
    ("Error", "errors", "error pages hit"),
    ("Help", "help", "help page visits"),
    ("Settings", "settings", "settings page visits"),
    ("Upgrade", "upgrade_visits", "upgrade page visits"),
    ("Downgrade", "downgrade_visits", "downgrade page visits"),
]


# ------------------------------------------------------------------ session-day partial rows
#: Keys of a partial row: one per user, session, UTC day, cancellation flag and period, and
#: per value of the user's attributes (constant within a session almost always, so they
#: seldom split a row; as keys they keep every aggregate numeric and fast).
ATTRIBUTES: list[str] = ["level", "gender", "userAgent", "location", "registration"]
PARTIAL_KEYS: list[str] = ["userId", "sessionId", "day", "cancel_rel", "period", *ATTRIBUTES]
#: Aggregated columns of a partial row (see :func:`partial_aggregates`).
PARTIAL_VALUES: list[str] = (["p_events", "p_start", "p_end"]
                             + [f"p_{stem}" for _, stem, _ in PAGE_FEATURES]
                             + ["p_level_changes", "p_order", "p_churn_ms", "p_item_min", "p_item_max"])


def partial_values(artists: bool = False) -> list[str]:
    """The aggregated columns of a partial row: :data:`PARTIAL_VALUES`, plus
    ``p_artists`` with ``artists``."""
    return PARTIAL_VALUES + (["p_artists"] if artists else [])


ORDER_ITEM_BITS = 20


def partial_key_columns(splits: tuple[int, ...] = ()) -> list[Column]:
    """The grouping keys of :data:`PARTIAL_KEYS` as expressions over event rows.

    ``day`` = floor(ts / 1 day) (UTC); ``cancel_rel`` = a Cancel / Cancellation Confirmation
    page or auth Cancelled; ``period`` = how many of ``splits`` (epoch ms) are <= ts, so
    that no partial row spans a split point; then the attributes as they are."""
    period = " + ".join(["0"] + [f"CAST(ts >= {int(point)} AS INT)" for point in sorted(set(splits))])
    return [F.col("userId"), F.col("sessionId"), F.expr(f"floor(ts / {DAY_MS}) AS day"),
            F.expr(f"{CANCEL_RELATED_SQL} AS cancel_rel"), F.expr(f"{period} AS period"),
            *[F.col(a) for a in ATTRIBUTES]]


LEVEL_CHANGE_PAGES = ("Submit Upgrade", "Submit Downgrade")


def _page_counters() -> list[tuple[str, tuple[str, ...]]]:
    """(partial column, pages it counts), the pages disjoint."""
    return ([(f"p_{stem}", (page,)) for page, stem, _ in PAGE_FEATURES]
            + [("p_level_changes", LEVEL_CHANGE_PAGES)])


def _pages_sql(pages: tuple[str, ...]) -> str:
    return f"page IN ({', '.join(sql_literal(page) for page in pages)})"


def partial_aggregates(artists: bool = False) -> list[Column]:
    """The aggregates of a partial row over the event rows of one key group: event count,
    first/last ts, one counter per page of :data:`PAGE_FEATURES` and of level changes, the
    order of the group's last event (``p_order`` = ts * 2^20 + itemInSession, to find the
    latest attributes), the first churn-event time (null if none), the smallest and
    largest ``itemInSession`` (``p_item_min``, ``p_item_max``: how the store finds a batch
    that repeats events it holds, :mod:`sparkify.store`) and, with ``artists``,
    the set of artist hashes played (``p_artists``: a set-valued aggregate, which turns
    Spark's code-generated hash aggregation into its slower object hash aggregation)."""
    item = f"least(greatest(coalesce(itemInSession, 0), 0), {(1 << ORDER_ITEM_BITS) - 1})"
    counters = [f"sum(CASE WHEN {_pages_sql(pages)} THEN 1 ELSE 0 END) AS {name}"
                for name, pages in _page_counters()]
    order = f"shiftleft(ts, {ORDER_ITEM_BITS}) + {item}"
    out = [
        "count(1) AS p_events", "min(ts) AS p_start", "max(ts) AS p_end",
        *counters,
        f"max({order}) AS p_order",
        f"min(CASE WHEN {CHURN_EVENT_SQL} THEN ts END) AS p_churn_ms",
        "min(itemInSession) AS p_item_min", "max(itemInSession) AS p_item_max",
    ]
    if artists:
        out.append("collect_set(CASE WHEN page = 'NextSong' AND artist IS NOT NULL THEN xxhash64(artist) END)"
                   " AS p_artists")
    return [F.expr(a) for a in out]


@dataclass
class SessionDays:
    """The event log reduced to partial rows: one per (user, session, UTC day, cancellation
    flag, period), with the columns :data:`PARTIAL_KEYS` + :data:`PARTIAL_VALUES` (and
    ``p_artists`` when ``artists``).

    Every feature and label is a sum, min, max or set union over these rows, so a cutoff
    that falls between rows can be applied to them exactly: any midnight (UTC), any of
    ``splits``, or any time after the last event. About one row per session and day:
    a full 2-month log of 26 M events gives about a million rows.
    """

    df: DataFrame
    splits: tuple[int, ...] = ()
    #: the rows carry ``p_artists`` (for the opt-in :data:`ARTIST_FEATURES`)
    artists: bool = False
    #: DataFrame[userId, churn_ms] of every user's first cancellation when ``df`` holds only
    #: part of the log (a store read for one window, :func:`sparkify.store.load_store`);
    #: None: taken from ``df``
    churn: DataFrame | None = None
    #: the time (epoch ms) ``df``'s rows start from when it holds only one window of the
    #: log (a store read for scoring): a feature window may not start before it; None: all
    rows_from_ms: int | None = None
    _end_ms: dict[str, int] = field(default_factory=dict, repr=False)
    _span_ms: tuple[int, int] | None = field(default=None, repr=False)

    def log_span_ms(self) -> tuple[int, int]:
        """(first, last) event time (epoch ms)."""
        if self._span_ms is None:
            first, last = self.df.agg(F.min("p_start"), F.max("p_end")).first()
            if first is None:
                raise ValueError("no events to build features from (empty event table)")
            self._span_ms = (int(first), int(last))
        return self._span_ms

    def log_end_ms(self, mode: str = "window") -> int:
        """Last event time (epoch ms); in 'ever' mode of non-cancellation events only."""
        if mode not in self._end_ms:
            df = self.df.filter(~F.col("cancel_rel")) if mode == "ever" else self.df
            value = df.agg(F.max("p_end")).first()[0]
            if value is None:
                raise ValueError("no events to build features from (empty event table)")
            self._end_ms[mode] = int(value)
        return self._end_ms[mode]

    def exact_at(self, ms: int, mode: str = "window") -> bool:
        """True when no partial row spans time ``ms``, so a cut there is exact ('ever'
        mode: among the rows it reads, those without cancellation events)."""
        return ms % DAY_MS == 0 or ms in self.splits or ms > self.log_end_ms(mode)


def session_day_partials(events: DataFrame, splits: tuple[int, ...] = (),
                         artists: bool = False) -> SessionDays:
    """Partial rows of cleaned events (lazy: one aggregation, partially aggregated on each
    partition, so only partial rows are shuffled). ``splits``: extra cut points (epoch
    ms) besides midnights, e.g. a cutoff that is not at 00:00 UTC; ``artists``: carry
    the artist sets of the opt-in :data:`ARTIST_FEATURES`."""
    splits = tuple(sorted({int(s) for s in splits}))
    df = events.groupBy(*partial_key_columns(splits)).agg(*partial_aggregates(artists))
    return SessionDays(df=df, splits=splits, artists=artists)


# ------------------------------------------------------------------ the one pass over raw JSON
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
    ITEM_WINDOW or more (the bitmap would wrap). 0: all is exact."""
    distinct = " + ".join(f"bit_count(coalesce(_item_bits{k}, 0L))" for k in range(ITEM_WINDOW // 64))
    return F.expr(f"CASE WHEN _kind != 'user' THEN 0"
                  f" WHEN _item_max - _item_min >= {ITEM_WINDOW} THEN p_events"
                  f" ELSE p_events - ({distinct}) END")


def one_pass_partials(raw: DataFrame, splits: tuple[int, ...], artists: bool = False) -> DataFrame:
    """Session-day partial rows straight from the rows parsed from raw JSON
    (``sparkify.rawlog.read_raw`` with ``pass_schema``), with what the quality summary and
    the quarantine need: ``_kind`` (:func:`sparkify.rawlog.row_class`), ``_reason`` and
    ``_line`` (malformed lines, grouped by their text; lines missing a field keep no text
    here, ``load_log`` re-reads them) and ``p_repeats`` (user rows the pass cannot vouch
    for as distinct: 0 in a log without duplicates).

    An exact duplicate repeats its line, so its session and itemInSession too, and lands
    in the same group; eventsim numbers a session's events 0, 1, 2, ..., so a group whose
    item numbers are all distinct has no duplicate. A repeated (or unverifiable) item only
    makes the loader fall back to the exact de-duplication of ``load_events``; it is never
    counted as a duplicate on this evidence. The check's state is fixed-width
    (:func:`_item_repeat_aggregates`), so the aggregation stays Spark's code-generated one
    unless ``artists`` adds the artist sets."""
    kind, reason = row_class()
    line = F.when(F.col(CORRUPT_COLUMN).isNotNull(), F.col(CORRUPT_COLUMN))
    parts = (raw.withColumn("_kind", kind)
             .groupBy("_kind", *partial_key_columns(splits), reason.alias("_reason"), line.alias("_line"))
             .agg(*partial_aggregates(artists), *_item_repeat_aggregates("_kind = 'user'"))
             .withColumn("p_repeats", _repeated_rows()))
    return parts.drop(*[name for name in parts.columns if name.startswith("_item_")])
