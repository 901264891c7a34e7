"""The log reduced to session-day partial rows, and the one pass that builds them.

In:  cleaned events (:func:`session_day_partials`), or rows parsed straight from the raw
     JSON (:func:`one_pass_partials`, which also classifies them and checks for duplicates).
Out: :class:`SessionDays`: one row per (user, session, UTC day, cancellation flag,
     period), every value a count, min, max or set, so that features and labels over any
     window that starts and ends on a row boundary are exact sums over rows.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from sparkify.rawlog import (
    CANCEL_RELATED_SQL,
    CHURN_EVENT_SQL,
    CORRUPT_COLUMN,
    classification_sql,
    pass_schema,
    row_class,
    sql_literal,
)

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
PARTIAL_KEYS: list[str] = ["userId", "sessionId", "day", "cancel_rel", "period",
                           "level", "gender", "userAgent", "location", "registration"]
ATTRIBUTES: list[str] = ["level", "gender", "userAgent", "location", "registration"]
#: The long text attributes that the raw-JSON pass does not parse on every line: its rows
#: key by the others only and point to their latest event instead (``p_row``, see
#: :data:`ROW_COLUMN`); the features read these from the one event per user they use
#: (:attr:`SessionDays.line_attributes`).
LINE_ATTRIBUTES: list[str] = ["gender", "userAgent", "location"]
#: Keys of a partial row built with pointers instead of :data:`LINE_ATTRIBUTES`.
POINTER_KEYS: list[str] = [k for k in PARTIAL_KEYS if k not in LINE_ATTRIBUTES]
#: The number of an event row as the raw-JSON reader produced it
#: (``monotonically_increasing_id``: the read partition's index x 2^33 + the row's position
#: in it); ``p_row`` is the number of a partial row's latest event.
ROW_COLUMN = "_row"
#: Aggregated columns of a partial row (see :func:`partial_aggregates`).
PARTIAL_VALUES: list[str] = (["p_events", "p_start", "p_end"]
                             + [f"p_{stem}" for _, stem, _ in PAGE_FEATURES]
                             + ["p_level_changes", "p_order", "p_churn_ms"])


def partial_values(artists: bool = False, pointer: bool = False) -> list[str]:
    """The aggregated columns of a partial row: :data:`PARTIAL_VALUES`, plus
    ``p_artists`` with ``artists`` and ``p_row`` with ``pointer``."""
    return PARTIAL_VALUES + (["p_artists"] if artists else []) + (["p_row"] if pointer else [])


ORDER_ITEM_BITS = 20


def partial_key_columns(splits: tuple[int, ...] = (), pointer: bool = False) -> list[Column]:
    """The grouping keys of :data:`PARTIAL_KEYS` (``pointer``: :data:`POINTER_KEYS`) as
    expressions over event rows.

    ``day`` = floor(ts / 1 day) (UTC); ``cancel_rel`` = a Cancel / Cancellation Confirmation
    page or auth Cancelled; ``period`` = how many of ``splits`` (epoch ms) are <= ts, so
    that no partial row spans a split point; then the attributes as they are."""
    period = " + ".join(["0"] + [f"CAST(ts >= {int(point)} AS INT)" for point in sorted(set(splits))])
    return [F.col("userId"), F.col("sessionId"), F.expr(f"floor(ts / {DAY_MS}) AS day"),
            F.expr(f"{CANCEL_RELATED_SQL} AS cancel_rel"), F.expr(f"{period} AS period"),
            *[F.col(a) for a in ATTRIBUTES if not (pointer and a in LINE_ATTRIBUTES)]]


#: Page counters of a partial row, packed COUNTER_BITS bits each, COUNTERS_PER_WORD to a
#: 64-bit sum: an event has one page, so one sum per word counts several pages (fewer
#: aggregation buffers per event row). A row with MAX_PACKED_EVENTS events or more could
#: carry one counter into the next; the one-pass loader then rebuilds its rows the exact
#: way. The top 16 bits stay free, so the sum itself cannot overflow.
COUNTER_BITS = 16
COUNTERS_PER_WORD = 3
MAX_PACKED_EVENTS = 1 << COUNTER_BITS
LEVEL_CHANGE_PAGES = ("Submit Upgrade", "Submit Downgrade")


def _page_counters() -> list[tuple[str, tuple[str, ...]]]:
    """(partial column, pages it counts), the pages disjoint."""
    return ([(f"p_{stem}", (page,)) for page, stem, _ in PAGE_FEATURES]
            + [("p_level_changes", LEVEL_CHANGE_PAGES)])


def _packed_words() -> list[list[tuple[str, tuple[str, ...]]]]:
    counters = _page_counters()
    return [counters[i:i + COUNTERS_PER_WORD] for i in range(0, len(counters), COUNTERS_PER_WORD)]


def _pages_sql(pages: tuple[str, ...]) -> str:
    return f"page IN ({', '.join(sql_literal(page) for page in pages)})"


def partial_aggregates(artists: bool = False, packed: bool = False, pointer: bool = False) -> list[Column]:
    """The aggregates of a partial row over the event rows of one key group: event count,
    first/last ts, the page counters (``packed``: in a few words ``_pages0``, ...; see
    :func:`unpack_page_counts`), the order of the group's last event (``p_order`` =
    ts * 2^20 + itemInSession, to find the latest attributes), the first churn-event time
    (null if none) and, with ``artists``, the set of artist hashes played (``p_artists``:
    a set-valued aggregate, which turns Spark's code-generated hash aggregation into its
    much slower object hash aggregation) and, with ``pointer``, ``p_row``: the
    :data:`ROW_COLUMN` of the group's last event."""
    item = f"least(greatest(coalesce(itemInSession, 0), 0), {(1 << ORDER_ITEM_BITS) - 1})"
    if not packed:
        counters = [f"sum(CASE WHEN {_pages_sql(pages)} THEN 1 ELSE 0 END) AS {name}"
                    for name, pages in _page_counters()]
    else:
        counters = _packed_counter_sums()
    order = f"shiftleft(ts, {ORDER_ITEM_BITS}) + {item}"
    out = [
        "count(1) AS p_events", "min(ts) AS p_start", "max(ts) AS p_end",
        *counters,
        f"max({order}) AS p_order",
        f"min(CASE WHEN {CHURN_EVENT_SQL} THEN ts END) AS p_churn_ms",
    ]
    if pointer:
        out.append(f"max_by({ROW_COLUMN}, {order}) AS p_row")
    if artists:
        out.append("collect_set(CASE WHEN page = 'NextSong' AND artist IS NOT NULL THEN xxhash64(artist) END)"
                   " AS p_artists")
    return [F.expr(a) for a in out]


def _packed_counter_sums() -> list[str]:
    words = []
    for w, counters in enumerate(_packed_words()):
        whens = " ".join(f"WHEN {_pages_sql(pages)} THEN {1 << (COUNTER_BITS * j)}L"
                         for j, (_name, pages) in enumerate(counters))
        words.append(f"sum(CASE {whens} ELSE 0L END) AS _pages{w}")
    return words


def unpack_page_counts(df: DataFrame) -> DataFrame:
    """``df`` with the packed words of :func:`partial_aggregates` replaced by one count
    column per page counter (``p_songs``, ..., ``p_level_changes``), exact while the row
    has fewer than MAX_PACKED_EVENTS events."""
    mask = (1 << COUNTER_BITS) - 1
    words = [f"_pages{w}" for w in range(len(_packed_words()))]
    counts = [f"shiftright(_pages{w}, {COUNTER_BITS * j}) & {mask}L AS {name}"
              for w, counters in enumerate(_packed_words()) for j, (name, _) in enumerate(counters)]
    return df.selectExpr("*", *counts).drop(*words)


@dataclass
class SessionDays:
    """The event log reduced to partial rows: one per (user, session, UTC day, cancellation
    flag, period), with the columns :data:`PARTIAL_KEYS` + :data:`PARTIAL_VALUES` (and
    ``p_artists`` when ``artists``). Rows from the raw-JSON pass have :data:`POINTER_KEYS`
    and ``p_row`` instead, and ``line_attributes`` reads the :data:`LINE_ATTRIBUTES` of
    the events they point to.

    Every feature and label is a sum, min, max or set union over these rows, so a cutoff
    that falls between rows can be applied to them exactly: any midnight (UTC), any of
    ``splits``, or any time after the last event. About one row per session and day:
    a full 2-month log of 26 M events gives about a million rows.
    """

    df: DataFrame
    splits: tuple[int, ...] = ()
    #: the rows carry ``p_artists`` (for the opt-in :data:`ARTIST_FEATURES`)
    artists: bool = False
    #: None: the rows key by every attribute. Else the rows key by :data:`POINTER_KEYS`
    #: and carry ``p_row``; called with DataFrame[userId, p_row, ts] (one row per event),
    #: it returns DataFrame[userId, ROW_COLUMN, *LINE_ATTRIBUTES] of those events, materialised
    #: (``sparkify.line_attributes.LineAttributes``).
    line_attributes: Callable[[DataFrame], DataFrame] | None = field(default=None, repr=False)
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
def pointer_schema(artists: bool = False) -> StructType:
    """What the one pass parses on every line: :func:`pass_schema` without
    :data:`LINE_ATTRIBUTES`. Those are text, so no value of theirs makes a
    line malformed: leaving them out changes no quarantine."""
    return StructType([f for f in pass_schema(artists).fields if f.name not in LINE_ATTRIBUTES])


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
    packed page counter could overflow (:data:`MAX_PACKED_EVENTS`). 0: all is exact."""
    distinct = " + ".join(f"bit_count(coalesce(_item_bits{k}, 0L))" for k in range(ITEM_WINDOW // 64))
    return F.expr(f"CASE WHEN _kind != 'user' THEN 0"
                  f" WHEN _item_max - _item_min >= {ITEM_WINDOW} OR p_events >= {MAX_PACKED_EVENTS} THEN p_events"
                  f" ELSE p_events - ({distinct}) END")


def number_rows(raw: DataFrame) -> DataFrame:
    """``raw`` (rows straight from a file reader) with :data:`ROW_COLUMN`:
    the same number for the same row whenever the same files are read again with the
    same reader, as the read partitions and their order do not change."""
    return raw.withColumn(ROW_COLUMN, F.monotonically_increasing_id())


@dataclass(frozen=True)
class PassOptions:
    """How the one pass computes its rows. Every combination gives the same session-day
    rows, quality counts and features (tests/test_session_days.py); they differ in speed
    only, and each is measured on and off in benchmarks/RESULTS.md (``benchmarks/features.py options``).

    * ``packed_counters``: page counters summed three to a 64-bit word
      (:func:`partial_aggregates` ``packed=True``), else one sum per page;
    * ``row_pointers``: the long text attributes (:data:`LINE_ATTRIBUTES`)
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


def one_pass_partials(raw: DataFrame, splits: tuple[int, ...], artists: bool = False,
                       options: PassOptions | None = None) -> DataFrame:
    """Session-day partial rows straight from the parsed rows, with what the quality
    summary and the quarantine need: ``_kind`` (user / hidden / bad), ``_reason`` and
    ``_line`` (bad rows, grouped by their text) and ``p_repeats`` (user rows the pass
    cannot vouch for as distinct: 0 in a log without duplicates).

    In: ``raw`` read with :func:`pointer_schema` and numbered by :func:`number_rows`
    (``options.row_pointers``; rows keyed by :data:`POINTER_KEYS`, with
    ``p_row``) or with :func:`pass_schema` (rows keyed by ``PARTIAL_KEYS``).
    The duplicate check is fixed-width numeric state (:func:`_item_repeat_aggregates`), so
    the aggregation is Spark's code-generated one; ``artists`` adds the set of artists,
    which makes it the object hash aggregation (about twice the cost)."""
    options = options or PassOptions()
    if options.sql_text:
        kind, reason, line = classification_sql()
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
