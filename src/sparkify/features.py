"""Leakage-free per-user features and churn labels.

In:  the cleaned user events of :func:`sparkify.dataset.load_events` (columns ``ts``
     (epoch ms), ``userId``, ``sessionId``, ``page``, ``auth``, ``level``, ``location``,
     ``userAgent``, ``registration``, ``gender``, ``artist``, ...).
Out: one row per user: ``userId``, the columns of :func:`feature_names` (every feature of
     :data:`FEATURES`; the :data:`ARTIST_FEATURES` only on request) and (for training)
     ``churn``.

Label designs (:class:`LabelSpec`):

* ``window`` (default, prediction-time): a cutoff T (default: the day the log ends, minus
  30 days, at 00:00 UTC). Features use only events with ``T - observation_days <= ts < T``
  (default: all history before T). Label = 1 if the user reaches Cancellation
  Confirmation in ``(T, T + horizon_days]``. Users gone (cancelled) before T, and users
  with no event in the observation window, are excluded.
* ``ever`` (seed-compatible): churn = the user ever reached Cancellation Confirmation.
  Features never see the Cancel / Cancellation Confirmation pages nor auth ``Cancelled``
  rows, and nothing is measured to a user's last event: the features of
  :data:`TIME_TO_END_FEATURES` are set to a neutral constant (0, or 1 for the trend).
  Use :func:`model_features` to get the columns that carry information in a mode.
  "Days since registration" is measured at the log's end (the same instant for every
  user, independent of when a churner left).

The aggregation goes through :class:`SessionDays`: one ``groupBy(userId, sessionId, day,
cancellation flag, period)`` over the events, partially aggregated on each partition so only
partial rows are shuffled, never the events. Features and labels for any cutoff that falls
between partial rows (any midnight UTC, or a time given in advance as a split point) are
then sums, mins and maxes over those rows (per session, then per user) and set unions
(per user). The raw-JSON loader :func:`sparkify.dataset.load_log` builds the rows
straight from the parse, so a 12 GB log is parsed once; its rows point to their latest
event instead of carrying the long text attributes (:data:`LINE_ATTRIBUTES`), which the
features then read for one event per user. The opt-in artist features
(:data:`ARTIST_FEATURES`) add an exact set of artists to every row, which makes that pass
Spark's object hash aggregation and costs about as much as the parse on a full log
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkify.config import (
    CHURN_PAGE,
    DEFAULT_CUTOFF_DAYS_BEFORE_END,
    DEFAULT_HORIZON_DAYS,
)

CANCEL_PAGE = "Cancel"
CANCELLED_AUTH = "Cancelled"
DAY_MS = 86_400_000
RECENT_DAYS = 14

# ------------------------------------------------------------------ user agent and location
#: (substring, OS) checked in order; the first match wins.
OS_RULES: list[tuple[str, str]] = [
    ("iPhone", "iPhone"), ("iPad", "iPad"), ("Macintosh", "Mac"),
    ("Windows", "Windows"), ("Linux", "Linux"), ("X11", "Linux"),
]
#: (substring, browser) checked in order; the first match wins.
BROWSER_RULES: list[tuple[str, str]] = [
    ("MSIE", "IE"), ("Trident", "IE"), ("Chromium", "Chromium"), ("Chrome", "Chrome"),
    ("Firefox", "Firefox"), ("iPhone", "Mobile Safari"), ("iPad", "Mobile Safari"),
    ("Safari", "Safari"),
]
OTHER = "Other"
UNKNOWN = "Unknown"

CENSUS_REGIONS: dict[str, tuple[str, ...]] = {
    "Northeast": ("CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA"),
    "Midwest": ("IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND", "SD"),
    "South": ("DE", "FL", "GA", "MD", "NC", "SC", "VA", "DC", "WV", "AL", "KY", "MS", "TN",
              "AR", "LA", "OK", "TX"),
    "West": ("AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR", "WA"),
}
STATE_REGION: dict[str, str] = {s: r for r, states in CENSUS_REGIONS.items() for s in states}


def parse_user_agent(ua: str | None) -> tuple[str, str]:
    """(os, browser) of a user-agent string, e.g. ``('Windows', 'Chrome')``; same rules as
    the Spark expressions. Unknown parts are ``'Other'``; None gives ``('Unknown', 'Unknown')``."""
    if not ua:
        return UNKNOWN, UNKNOWN
    os_name = next((name for key, name in OS_RULES if key in ua), OTHER)
    browser = next((name for key, name in BROWSER_RULES if key in ua), OTHER)
    return os_name, browser


def location_state(location: str | None) -> str | None:
    """The state code of a CBSA location: text after the comma, last part after '-'.

    ``'Boston-Cambridge-Newton, MA-NH'`` -> ``'NH'``; None when there is no comma."""
    if not location or "," not in location:
        return None
    return location.rsplit(",", 1)[1].strip().split("-")[-1].strip() or None


def location_region(location: str | None) -> str:
    """US Census region (Northeast, Midwest, South, West) of a location, else 'Unknown'."""
    return STATE_REGION.get(location_state(location) or "", UNKNOWN)


# The derived columns are written as Spark SQL text: each Column-API call is a round trip
# to the JVM, and the feature table's few hundred of them cost seconds of driver time per
# table (benchmarks/RESULTS.md); a text is parsed in one.
def sql_literal(value: str) -> str:
    """``value`` as a Spark SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rules_sql(col: str, rules: list[tuple[str, str]]) -> str:
    whens = " ".join(f"WHEN contains({col}, {sql_literal(key)}) THEN {sql_literal(name)}" for key, name in rules)
    return f"CASE WHEN {col} IS NULL THEN {sql_literal(UNKNOWN)} {whens} ELSE {sql_literal(OTHER)} END"


def os_sql(ua: str) -> str:
    """Spark SQL text of the OS (:data:`OS_RULES`) of user-agent column (SQL text) ``ua``."""
    return _rules_sql(ua, OS_RULES)


def browser_sql(ua: str) -> str:
    """Spark SQL text of the browser (:data:`BROWSER_RULES`) of user-agent column ``ua``."""
    return _rules_sql(ua, BROWSER_RULES)


def state_sql(location: str) -> str:
    """Spark SQL text of the state of ``location`` as :func:`location_state` finds it."""
    after_comma = f"trim(element_at(split({location}, ','), -1))"
    return f"CASE WHEN contains({location}, ',') THEN trim(element_at(split({after_comma}, '-'), -1)) END"


def region_sql(location: str) -> str:
    """Spark SQL text of the Census region of ``location`` (:func:`location_region`)."""
    pairs = ", ".join(f"{sql_literal(k)}, {sql_literal(v)}" for k, v in STATE_REGION.items())
    return f"coalesce(element_at(map({pairs}), {state_sql(location)}), {sql_literal(UNKNOWN)})"


def os_expr(ua: str) -> Column:
    """The OS of user-agent column ``ua`` (a name or SQL text), as :func:`parse_user_agent`."""
    return F.expr(os_sql(ua))


def browser_expr(ua: str) -> Column:
    """The browser of user-agent column ``ua``, as :func:`parse_user_agent`."""
    return F.expr(browser_sql(ua))


def region_expr(location: str) -> Column:
    """The Census region of location column ``location``, as :func:`location_region`."""
    return F.expr(region_sql(location))


# ------------------------------------------------------------------ feature catalogue
@dataclass(frozen=True)
class FeatureSpec:
    """One model input: ``name`` (snake_case column), ``kind`` ('numeric' | 'categorical'),
    ``unit`` (for numeric; '' for categorical), one-line ``description`` and, for
    categoricals, the known ``categories`` (others are handled as unseen)."""

    name: str
    kind: str
    unit: str
    description: str
    categories: tuple[str, ...] | None = None


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


def _build_catalogue() -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    for _page, stem, noun in PAGE_FEATURES:
        specs.append(FeatureSpec(f"n_{stem}", "numeric", "count", f"Number of {noun} before the cutoff."))
    for _page, stem, noun in PAGE_FEATURES:
        specs.append(FeatureSpec(f"{stem}_per_day", "numeric", "per active day",
                                 f"{noun.capitalize()} per active day."))
    for _page, stem, noun in PAGE_FEATURES:
        specs.append(FeatureSpec(f"{stem}_per_session", "numeric", "per session",
                                 f"{noun.capitalize()} per session."))
    specs += [
        FeatureSpec("thumbs_down_share", "numeric", "fraction",
                    "Thumbs down / (thumbs up + thumbs down); 0 with no thumbs."),
        FeatureSpec("thumbs_up_per_song", "numeric", "per song", "Thumbs up per song played."),
        FeatureSpec("adverts_per_song", "numeric", "per song", "Adverts rolled per song played."),
        FeatureSpec("n_events", "numeric", "count", "Number of events (page views) before the cutoff."),
        FeatureSpec("n_sessions", "numeric", "count", "Number of sessions before the cutoff."),
        FeatureSpec("mean_session_minutes", "numeric", "minutes",
                    "Mean session length (first to last event of a session)."),
        FeatureSpec("active_days", "numeric", "days", "Number of distinct days (UTC) with activity."),
        FeatureSpec("sessions_per_day", "numeric", "per active day", "Sessions per active day."),
        FeatureSpec("distinct_artists", "numeric", "count", "Number of distinct artists played."),
        FeatureSpec("artist_diversity", "numeric", "fraction", "Distinct artists / songs played."),
        FeatureSpec("paid_song_share", "numeric", "fraction", "Share of songs played at the paid level."),
        FeatureSpec("n_level_changes", "numeric", "count",
                    "Level changes (Submit Upgrade + Submit Downgrade)."),
        FeatureSpec("days_since_registration", "numeric", "days",
                    "Account age at the cutoff (at the log's end in 'ever' mode)."),
        FeatureSpec("days_since_last_activity", "numeric", "days",
                    "Days from the last event to the cutoff (0 in 'ever' mode)."),
        FeatureSpec("songs_last_14d", "numeric", "count",
                    "Songs played in the 14 days before the cutoff (0 in 'ever' mode)."),
        FeatureSpec("activity_trend", "numeric", "ratio",
                    "(songs/day in the last 14 days + 1) / (songs/day before + 1); 1 = steady, "
                    "< 1 = slowing down (1 in 'ever' mode and for users younger than 15 days)."),
        FeatureSpec("level", "categorical", "", "Subscription level at the cutoff.", ("free", "paid")),
        FeatureSpec("gender", "categorical", "", "Gender as registered.", ("F", "M", UNKNOWN)),
        FeatureSpec("os", "categorical", "", "Operating system from the user agent.",
                    ("Windows", "Mac", "Linux", "iPhone", "iPad", OTHER, UNKNOWN)),
        FeatureSpec("browser", "categorical", "", "Browser from the user agent.",
                    ("Chrome", "Firefox", "Safari", "IE", "Chromium", "Mobile Safari", OTHER, UNKNOWN)),
        FeatureSpec("region", "categorical", "", "US Census region of the user's location.",
                    ("Northeast", "Midwest", "South", "West", UNKNOWN)),
    ]
    return specs


FEATURES: list[FeatureSpec] = _build_catalogue()
FEATURE_NAMES: list[str] = [f.name for f in FEATURES]
#: Opt-in features (``artists=True`` in the loaders, ``sparkify train --artist-features``):
#: the exact set of artists each user played costs about as much as the JSON parse itself
#: on a full log, and added nothing to the models on the simulated logs
#: (benchmarks/RESULTS.md). Without them the pass is Spark's code-generated aggregation.
ARTIST_FEATURES: tuple[str, ...] = ("distinct_artists", "artist_diversity")
NUMERIC_FEATURES: list[str] = [f.name for f in FEATURES if f.kind == "numeric"]
CATEGORICAL_FEATURES: list[str] = [f.name for f in FEATURES if f.kind == "categorical"]
FEATURES_BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}

#: Measured to the user's last event / the log's end: constant in 'ever' mode.
TIME_TO_END_FEATURES: tuple[str, ...] = ("days_since_last_activity", "songs_last_14d", "activity_trend")


def feature_names(artists: bool = False) -> list[str]:
    """The columns of a feature table: :data:`FEATURE_NAMES`, without
    :data:`ARTIST_FEATURES` unless ``artists``."""
    return [n for n in FEATURE_NAMES if artists or n not in ARTIST_FEATURES]


def model_features(mode: str = "window", artists: bool = False) -> list[FeatureSpec]:
    """The features that carry information in a label mode ('ever' drops the constant
    :data:`TIME_TO_END_FEATURES`; the table still holds those columns), with the
    :data:`ARTIST_FEATURES` only if ``artists``."""
    names = set(feature_names(artists))
    if mode == "ever":
        names -= set(TIME_TO_END_FEATURES)
    return [f for f in FEATURES if f.name in names]


def uses_artists(feature_names_: list[str]) -> bool:
    """True when a model's features include the opt-in :data:`ARTIST_FEATURES`."""
    return any(n in ARTIST_FEATURES for n in feature_names_)


# ------------------------------------------------------------------ labels
@dataclass
class LabelSpec:
    """Label design. ``mode``: 'window' (prediction-time, default) or 'ever'.

    ``cutoff`` (T, UTC): None resolves to the log's last day at 00:00 UTC minus 30 days in
    'window' mode, and to just after the last non-cancellation event in 'ever' mode.
    ``horizon_days``: label window (T, T + horizon]. ``observation_days``: features from
    [T - observation_days, T) only; None = all history before T.
    """

    mode: str = "window"
    cutoff: datetime | None = None
    horizon_days: int = DEFAULT_HORIZON_DAYS
    observation_days: int | None = None

    def validate(self) -> None:
        if self.mode not in ("window", "ever"):
            raise ValueError(f"label mode must be 'window' or 'ever', not {self.mode!r}")
        if self.horizon_days is None or self.horizon_days <= 0:
            raise ValueError(f"horizon_days must be a positive number of days, not {self.horizon_days!r}")
        if self.observation_days is not None and self.observation_days <= 0:
            raise ValueError(f"observation_days must be positive or None, not {self.observation_days!r}")

    def to_dict(self) -> dict:
        return {"mode": self.mode,
                "cutoff": _iso(self.cutoff) if self.cutoff else None,
                "horizon_days": self.horizon_days, "observation_days": self.observation_days}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelSpec":
        cutoff = data.get("cutoff")
        return cls(mode=data.get("mode", "window"), cutoff=parse_time(cutoff) if cutoff else None,
                   horizon_days=data.get("horizon_days", DEFAULT_HORIZON_DAYS),
                   observation_days=data.get("observation_days"))


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _iso(dt: datetime) -> str:
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(dt: datetime) -> int:
    return int(round(_utc(dt).timestamp() * 1000))


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def parse_time(text: str | datetime) -> datetime:
    """Parse '2018-11-01', '2018-11-01T12:00:00Z' or a datetime into an aware UTC datetime
    (naive values are taken as UTC). Raises ValueError with the accepted formats."""
    if isinstance(text, datetime):
        return _utc(text)
    s = str(text).strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        return _utc(datetime.fromisoformat(s))
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ") from None


#: Spark SQL text: the event is a churn (a Cancellation Confirmation page or auth Cancelled).
CHURN_EVENT_SQL = f"(page = {sql_literal(CHURN_PAGE)} OR auth = {sql_literal(CANCELLED_AUTH)})"
#: Spark SQL text: the event is a Cancel or Cancellation Confirmation page or auth Cancelled.
CANCEL_RELATED_SQL = (f"(page IN ({sql_literal(CANCEL_PAGE)}, {sql_literal(CHURN_PAGE)})"
                      f" OR auth = {sql_literal(CANCELLED_AUTH)})")


def _is_cancel_related() -> Column:
    return F.expr(CANCEL_RELATED_SQL)


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


_ITEM_BITS = 20


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
    item = f"least(greatest(coalesce(itemInSession, 0), 0), {(1 << _ITEM_BITS) - 1})"
    if not packed:
        counters = [f"sum(CASE WHEN {_pages_sql(pages)} THEN 1 ELSE 0 END) AS {name}"
                    for name, pages in _page_counters()]
    else:
        counters = _packed_counter_sums()
    order = f"shiftleft(ts, {_ITEM_BITS}) + {item}"
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
    #: and carry ``p_row``; called with DataFrame[userId, p_row, ts] (one row per user),
    #: it returns DataFrame[userId, *LINE_ATTRIBUTES] of those events, materialised
    #: (``sparkify.dataset.LineAttributes``).
    line_attributes: Callable[[DataFrame], DataFrame] | None = field(default=None, repr=False)
    _end_ms: dict[str, int] = field(default_factory=dict, repr=False)

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


def spec_boundaries(spec: "LabelSpec") -> tuple[int, ...]:
    """The times (epoch ms) at which a resolved spec cuts the events: cutoff, the start of
    the observation window and of the recent-activity window."""
    cutoff_ms = _ms(spec.cutoff)
    out = {cutoff_ms}
    if spec.mode != "ever":           # 'ever' features have no recent window
        out.add(cutoff_ms - RECENT_DAYS * DAY_MS)
    if spec.observation_days is not None:
        out.add(cutoff_ms - spec.observation_days * DAY_MS)
    return tuple(sorted(out))


def _require_exact(days: SessionDays, boundaries: tuple[int, ...], mode: str) -> None:
    bad = [b for b in boundaries if not days.exact_at(b, mode)]
    if bad:
        raise ValueError(
            f"the session-day rows cannot be cut exactly at {', '.join(_iso(_from_ms(b)) for b in bad)}: "
            f"build them with session_day_partials(events, splits={tuple(bad)}) "
            "(or sparkify.dataset.load_log(..., splits=...))")


def log_end_ms(events: DataFrame, mode: str = "window") -> int:
    """Last event time (epoch ms); in 'ever' mode, of non-cancellation events only, so the
    reference does not move when a user's Cancel events are added or removed."""
    df = events.filter(~_is_cancel_related()) if mode == "ever" else events
    value = df.agg(F.max("ts")).first()[0]
    if value is None:
        raise ValueError("no events to build features from (empty event table)")
    return int(value)


def resolve_spec(source: DataFrame | SessionDays, spec: LabelSpec) -> LabelSpec:
    """The spec with ``cutoff`` filled in (one small aggregate when it is None).
    ``source``: cleaned events or their :class:`SessionDays`."""
    spec.validate()
    if spec.cutoff is not None:
        return replace(spec, cutoff=_utc(spec.cutoff))
    end = (source.log_end_ms(spec.mode) if isinstance(source, SessionDays)
           else log_end_ms(source, spec.mode))
    if spec.mode == "ever":
        return replace(spec, cutoff=_from_ms(end + 1000))
    last_day = _from_ms(end).replace(hour=0, minute=0, second=0, microsecond=0)
    return replace(spec, cutoff=last_day - timedelta(days=DEFAULT_CUTOFF_DAYS_BEFORE_END))


# ------------------------------------------------------------------ aggregation
def _grouped(df: DataFrame, keys: list[str], aggregates: list[str]) -> DataFrame:
    """``df`` grouped by ``keys``, with ``aggregates`` given as Spark SQL text."""
    return df.groupBy(*keys).agg(*[F.expr(a) for a in aggregates])


def _user_features(days: SessionDays, cutoff_ms: int, start_ms: int | None, neutral_time: bool,
                   drop_cancel: bool = False) -> DataFrame:
    """Per-user features from the partial rows with start_ms <= time < cutoff_ms (the
    caller has checked that no row spans a boundary). One row per user with at least one
    event there. ``drop_cancel`` leaves out the cancellation rows ('ever' mode)."""
    recent_ms = cutoff_ms - RECENT_DAYS * DAY_MS
    _require_exact(days, tuple(b for b in (cutoff_ms, start_ms, None if neutral_time else recent_ms)
                               if b is not None), "ever" if drop_cancel else "window")
    keep = [f"p_end < {cutoff_ms}"]
    if start_ms is not None:
        keep.append(f"p_start >= {start_ms}")
    if drop_cancel:
        keep.append("NOT cancel_rel")
    p = days.df.filter(" AND ".join(keep))
    stems = [stem for _, stem, _ in PAGE_FEATURES]
    # Numeric aggregates per session, then per user (Spark's code-generated hash
    # aggregation); the set-valued ones (days, latest attributes, artists) per user straight
    # from the partial rows, one aggregation instead of one per level.
    sessions = _grouped(p, ["userId", "sessionId"], [
        "min(p_start) AS s_start", "max(p_end) AS s_end", "sum(p_events) AS s_events",
        *[f"sum(p_{stem}) AS s_{stem}" for stem in stems],
        f"sum(CASE WHEN p_start >= {recent_ms} THEN p_songs ELSE 0 END) AS s_recent_songs",
        "sum(CASE WHEN level = 'paid' THEN p_songs ELSE 0 END) AS s_paid_songs",
        "sum(p_level_changes) AS s_level_changes",
    ])
    counts = _grouped(sessions, ["userId"], [
        "count(1) AS n_sessions", "min(s_start) AS first_ms", "max(s_end) AS last_ms",
        "sum(s_events) AS n_events", "avg((s_end - s_start) / 60000.0D) AS mean_session_minutes",
        *[f"sum(s_{stem}) AS n_{stem}" for stem in stems],
        "sum(s_recent_songs) AS songs_last_14d", "sum(s_paid_songs) AS paid_songs",
        "sum(s_level_changes) AS n_level_changes",
    ])
    lookup = days.line_attributes
    last = ATTRIBUTES if lookup is None else [*[a for a in ATTRIBUTES if a not in LINE_ATTRIBUTES], "p_row"]
    sets = _grouped(p, ["userId"], [
        "size(collect_set(day)) AS active_days",
        f"max_by(struct({', '.join(last)}), p_order) AS last",
        *(["max(p_order) AS last_order"] if lookup is not None else []),
        *(["size(array_distinct(flatten(collect_list(p_artists)))) AS distinct_artists"]
          if days.artists else []),
    ])
    if lookup is not None:
        # the text of each user's latest event, read for that one event (eager); the
        # per-user rows are computed once, for the lookup and for the table
        sets = sets.localCheckpoint()
        text = lookup(sets.selectExpr("userId", "last.p_row AS p_row", f"shiftright(last_order, {_ITEM_BITS}) AS ts"))
        fields = ", ".join(a if a in LINE_ATTRIBUTES else f"last.{a} AS {a}" for a in ATTRIBUTES)
        sets = sets.join(text, "userId", "left").selectExpr(
            "userId", "active_days", *(["distinct_artists"] if days.artists else []),
            f"struct({fields}) AS last")
    users = counts.join(sets, "userId")

    def ratio(num: str, den: str) -> str:
        return f"CASE WHEN ({den}) > 0 THEN CAST({num} AS DOUBLE) / ({den}) ELSE 0.0D END"

    earlier_days = f"(({recent_ms} - first_ms) / {DAY_MS})"
    recent_days = f"least({float(RECENT_DAYS)}D, ({cutoff_ms} - first_ms) / {DAY_MS})"
    trend = (f"CASE WHEN {earlier_days} < 1 THEN 1.0D ELSE (songs_last_14d / {recent_days} + 1.0D)"
             f" / ((n_songs - songs_last_14d) / {earlier_days} + 1.0D) END")
    reg_days = f"greatest(0.0D, ({cutoff_ms} - last.registration) / {DAY_MS})"
    out = ["userId"]
    out += [f"CAST(n_{stem} AS DOUBLE) AS n_{stem}" for stem in stems]
    out += [f"{ratio(f'n_{stem}', 'active_days')} AS {stem}_per_day" for stem in stems]
    out += [f"{ratio(f'n_{stem}', 'n_sessions')} AS {stem}_per_session" for stem in stems]
    out += [
        f"{ratio('n_thumbs_down', 'n_thumbs_up + n_thumbs_down')} AS thumbs_down_share",
        f"{ratio('n_thumbs_up', 'n_songs')} AS thumbs_up_per_song",
        f"{ratio('n_adverts', 'n_songs')} AS adverts_per_song",
        "CAST(n_events AS DOUBLE) AS n_events",
        "CAST(n_sessions AS DOUBLE) AS n_sessions",
        "CAST(mean_session_minutes AS DOUBLE) AS mean_session_minutes",
        "CAST(active_days AS DOUBLE) AS active_days",
        f"{ratio('n_sessions', 'active_days')} AS sessions_per_day",
        *([ "CAST(distinct_artists AS DOUBLE) AS distinct_artists",
           f"{ratio('distinct_artists', 'n_songs')} AS artist_diversity"] if days.artists else []),
        f"{ratio('paid_songs', 'n_songs')} AS paid_song_share",
        "CAST(n_level_changes AS DOUBLE) AS n_level_changes",
        f"coalesce({reg_days}, 0.0D) AS days_since_registration",
        ("0.0D" if neutral_time else f"({cutoff_ms} - last_ms) / {DAY_MS}") + " AS days_since_last_activity",
        ("0.0D" if neutral_time else "CAST(songs_last_14d AS DOUBLE)") + " AS songs_last_14d",
        ("1.0D" if neutral_time else trend) + " AS activity_trend",
        f"coalesce(last.level, {sql_literal(UNKNOWN)}) AS level",
        f"coalesce(last.gender, {sql_literal(UNKNOWN)}) AS gender",
        f"{os_sql('last.userAgent')} AS os",
        f"{browser_sql('last.userAgent')} AS browser",
        f"{region_sql('last.location')} AS region",
    ]
    return users.selectExpr(*out)


def _churn_times(days: SessionDays) -> DataFrame:
    """userId, churn_ms = first Cancellation Confirmation (or auth Cancelled) time. Tiny."""
    return (days.df.filter(F.col("p_churn_ms").isNotNull())
            .groupBy("userId").agg(F.min("p_churn_ms").alias("churn_ms")))


def _session_days_for(source: DataFrame | SessionDays, spec: LabelSpec, artists: bool | None
                      ) -> tuple[SessionDays, LabelSpec]:
    """(partial rows that can be cut exactly where ``spec`` cuts, the resolved spec)."""
    spec = resolve_spec(source, spec)
    if isinstance(source, SessionDays):
        if artists and not source.artists:
            raise ValueError("the artist features need session-day rows with artist sets: "
                             "load them with load_log(..., artists=True)")
        return source, spec
    return session_day_partials(source, spec_boundaries(spec), artists=bool(artists)), spec


def build_user_table(source: DataFrame | SessionDays, spec: LabelSpec | None = None,
                     artists: bool | None = None) -> tuple[DataFrame, LabelSpec]:
    """Training table: one row per user with the features of :func:`feature_names` and ``churn``.

    In:  cleaned user events (``LoadedEvents.events``) or their :class:`SessionDays`
         (``sparkify.dataset.load_log``), a :class:`LabelSpec`; ``artists``: add the
         opt-in :data:`ARTIST_FEATURES` (None: as the SessionDays were loaded, else no).
    Out: (DataFrame[userId, *feature_names(artists), churn (int 0/1)], the spec with its
         cutoff resolved). Lazy: nothing is computed until the caller acts, except one
         small aggregate to find the log's end when ``spec.cutoff`` is None and, for
         SessionDays with ``line_attributes``, the job that reads the text attributes
         of each user's latest event.
    Raises ValueError when ``source`` is SessionDays that cannot be cut exactly at the
    spec's times (see :meth:`SessionDays.exact_at`), or lacks the artist sets asked for.
    See the module docstring for the two label designs.
    """
    days, spec = _session_days_for(source, spec or LabelSpec(), artists)
    cutoff_ms = _ms(spec.cutoff)
    churn = _churn_times(days)
    start_ms = None if spec.observation_days is None else cutoff_ms - spec.observation_days * DAY_MS
    if spec.mode == "ever":
        feats = _user_features(days, cutoff_ms, start_ms, neutral_time=True, drop_cancel=True)
        table = (feats.join(F.broadcast(churn), "userId", "left")
                 .withColumn("churn", F.col("churn_ms").isNotNull().cast("int")))
    else:
        horizon_ms = cutoff_ms + spec.horizon_days * DAY_MS
        feats = _user_features(days, cutoff_ms, start_ms, neutral_time=False)
        table = (feats.join(F.broadcast(churn), "userId", "left")
                 .filter(F.col("churn_ms").isNull() | (F.col("churn_ms") >= F.lit(cutoff_ms)))
                 .withColumn("churn", (F.col("churn_ms").isNotNull()
                                       & (F.col("churn_ms") > F.lit(cutoff_ms))
                                       & (F.col("churn_ms") <= F.lit(horizon_ms))).cast("int")))
    return table.select("userId", *feature_names(days.artists), "churn"), spec


def build_scoring_table(events: DataFrame, as_of: datetime | None = None,
                        observation_days: int | None = None, artists: bool = False) -> DataFrame:
    """Scoring table: one row per user still active at ``as_of``, features only.

    In:  cleaned user events; ``as_of`` (UTC; default: just after the log's last event);
         optional observation window in days (use the model's); ``artists``: add the
         opt-in :data:`ARTIST_FEATURES` (use :func:`uses_artists` on the model's features).
    Out: DataFrame[userId, *feature_names(artists)] for users with an event before
         ``as_of`` and no cancellation before it; same feature definitions as
         :func:`build_user_table` in 'window' mode with cutoff = ``as_of``.
    """
    as_of_ms = _ms(as_of) if as_of is not None else log_end_ms(events) + 1000
    spec = LabelSpec(cutoff=_from_ms(as_of_ms), observation_days=observation_days)
    days = session_day_partials(events, spec_boundaries(spec), artists=artists)
    start_ms = None if observation_days is None else as_of_ms - observation_days * DAY_MS
    feats = _user_features(days, as_of_ms, start_ms, neutral_time=False)
    gone = _churn_times(days).filter(F.col("churn_ms") < F.lit(as_of_ms))
    return feats.join(F.broadcast(gone), "userId", "left_anti").select("userId", *feature_names(artists))
