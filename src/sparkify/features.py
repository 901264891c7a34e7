"""Leakage-free features and churn labels, one row per (user, observation date).

In:  the cleaned user events of :func:`sparkify.dataset.load_events` (columns ``ts``
     (epoch ms), ``userId``, ``sessionId``, ``page``, ``auth``, ``level``, ``location``,
     ``userAgent``, ``registration``, ``gender``, ``artist``, ...), or their
     :class:`SessionDays` (:func:`sparkify.dataset.load_log`).
Out: one row per user and observation time t: ``userId``, ``as_of_ms`` (t, epoch ms), the
     columns of :func:`feature_names` (every feature of :data:`FEATURES`; the
     :data:`ARTIST_FEATURES` only on request) and (for training) ``churn``.

Features (:data:`FEATURES`, one catalogue: each entry's name, kind, unit, description,
categories and Spark SQL expression; the model card, the web form and the API help come
from it): every behavioural feature is measured over fixed windows that end at t, the last
``long_days`` days (:attr:`LabelSpec.long_days`, default :data:`LONG_DAYS`; a model keeps
its own) and, for recent activity and the trend, the last :data:`RECENT_DAYS`: rates per
day the user existed in the window, per session, shares, plus recency, tenure and level at
t. Nothing depends on how much log precedes t.

Label designs (:class:`LabelSpec`):

* ``window`` (default, prediction-time): observation dates every ``step_days`` (or one
  ``cutoff``); label = 1 if the user reaches Cancellation Confirmation in
  ``(t, t + horizon_days]``. Users gone (cancelled) before t, and users with no event in
  the window before t, have no row at t.
* ``ever`` (seed-compatible): one row per user, observed at the midnight after the user's
  last non-cancellation event; churn = the user ever reached Cancellation Confirmation.
  Features never see the Cancel / Cancellation Confirmation pages nor auth ``Cancelled``
  rows, and the features measured to the user's last event (:data:`TIME_TO_END_FEATURES`)
  take a neutral constant. "Days since registration" is measured at the log's end.

The aggregation goes through ``sparkify.session_days.SessionDays``: one ``groupBy(userId, sessionId, day,
cancellation flag, period)`` over the events, partially aggregated on each partition so only
partial rows are shuffled, never the events. A partial row belongs to the window of every
observation time t with t - long_days <= its start and its end < t (a handful of dates
each), so all dates' features come from one aggregation over those rows (per session, then
per user and date). Any midnight UTC is an exact cut; another time must be given to the
loader in advance as a split point. The raw-JSON loader :func:`sparkify.dataset.load_log`
builds the rows straight from the parse, so a 12 GB log is parsed once. The opt-in artist
features (:data:`ARTIST_FEATURES`) add an exact set of artists to every row, which makes
that pass Spark's object hash aggregation, about as costly as the parse itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkify.attributes import OTHER, UNKNOWN, browser_sql, os_sql, region_sql
from sparkify.config import DEFAULT_HORIZON_DAYS, DEFAULT_STEP_DAYS, LONG_DAYS, RECENT_DAYS
from sparkify.rawlog import CANCEL_RELATED_SQL, sql_literal
from sparkify.session_days import (
    ATTRIBUTES,
    DAY_MS,
    PAGE_FEATURES,
    SessionDays,
    session_day_partials,
)


# ------------------------------------------------------------------ feature catalogue
@dataclass(frozen=True)
class FeatureSpec:
    """One model input: ``name`` (snake_case column), ``kind`` ('numeric' | 'categorical'),
    ``unit`` (for numeric; '' for categorical), one-line ``description`` (``{long}`` and
    ``{recent}`` stand for the windows' lengths: :meth:`describe`), ``sql``: its value as
    Spark SQL text over the per-observation aggregates (see :func:`_observation_aggregates`;
    ``long_days`` is the window's length), ``neutral``: its constant value in 'ever' mode
    when it is measured to the end of the user's history (None: it carries information
    there), and for categoricals the known ``categories`` (others are handled as unseen)."""

    name: str
    kind: str
    unit: str
    description: str
    sql: str
    neutral: str | None = None
    categories: tuple[str, ...] | None = None

    def describe(self, long_days: int = LONG_DAYS) -> str:
        """The description for a model whose long window is ``long_days`` days."""
        return self.description.format(long=long_days, recent=RECENT_DAYS)


def ratio_sql(num: str, den: str) -> str:
    """Spark SQL text of num / den as a double, 0.0 when den is 0."""
    return f"CASE WHEN ({den}) > 0 THEN CAST({num} AS DOUBLE) / ({den}) ELSE 0.0D END"


#: How descriptions name the windows; :meth:`FeatureSpec.describe` fills in the lengths.
_W = "the last {long} days"
_R = "the last {recent} days"
#: Days of the long window the user existed in (from registration, or the first event
#: seen in the window when registration is unknown), at least one: every rate is per
#: such day, so a user younger than the window is measured over the days it existed.
EXPOSURE_SQL = "exposure_days"
#: The UTC calendar days that the long window and the user's existence share, at least
#: one: what an active-day share counts against (a user registered on a Tuesday evening
#: and seen that evening and on Wednesday was active on 2 of 2 days, not of 1.25).
CALENDAR_DAYS_SQL = "calendar_days"


def _build_catalogue() -> list[FeatureSpec]:
    specs = [FeatureSpec(f"{stem}_per_day", "numeric", "per day",
                         f"{noun.capitalize()} per day over {_W}.", ratio_sql(f"w_{stem}", EXPOSURE_SQL))
             for _page, stem, noun in PAGE_FEATURES]
    recent_rate = ratio_sql("r_songs", "recent_days")
    earlier_rate = ratio_sql("w_songs - r_songs", f"{EXPOSURE_SQL} - recent_days")
    specs += [
        FeatureSpec("events_per_day", "numeric", "per day", f"Events (page views) per day over {_W}.",
                    ratio_sql("w_events", EXPOSURE_SQL)),
        FeatureSpec("sessions_per_day", "numeric", "per day", f"Sessions per day over {_W}.",
                    ratio_sql("w_sessions", EXPOSURE_SQL)),
        FeatureSpec("active_day_share", "numeric", "fraction",
                    f"Share of the (UTC) calendar days of {_W} with any activity.",
                    ratio_sql("w_active_days", CALENDAR_DAYS_SQL)),
        FeatureSpec("songs_per_session", "numeric", "per session", f"Songs per session over {_W}.",
                    ratio_sql("w_songs", "w_sessions")),
        FeatureSpec("mean_session_minutes", "numeric", "minutes",
                    f"Mean session length (first to last event) over {_W}.", "w_session_minutes"),
        FeatureSpec("thumbs_down_share", "numeric", "fraction",
                    "Thumbs down / (thumbs up + thumbs down); 0 with no thumbs.",
                    ratio_sql("w_thumbs_down", "w_thumbs_up + w_thumbs_down")),
        FeatureSpec("thumbs_up_per_song", "numeric", "per song", "Thumbs up per song played.",
                    ratio_sql("w_thumbs_up", "w_songs")),
        FeatureSpec("adverts_per_song", "numeric", "per song", "Adverts rolled per song played.",
                    ratio_sql("w_adverts", "w_songs")),
        FeatureSpec("paid_song_share", "numeric", "fraction", f"Share of songs played at the paid level, {_W}.",
                    ratio_sql("w_paid_songs", "w_songs")),
        FeatureSpec("level_changes", "numeric", "count",
                    f"Level changes (Submit Upgrade + Submit Downgrade) in {_W}.", "CAST(w_level_changes AS DOUBLE)"),
        FeatureSpec("distinct_artists", "numeric", "count", f"Distinct artists played in {_W}.",
                    "CAST(w_distinct_artists AS DOUBLE)"),
        FeatureSpec("artist_diversity", "numeric", "fraction", "Distinct artists / songs played.",
                    ratio_sql("w_distinct_artists", "w_songs")),
        FeatureSpec("songs_per_day_recent", "numeric", "per day", f"Songs per day over {_R}.",
                    recent_rate, neutral="0.0D"),
        FeatureSpec("sessions_per_day_recent", "numeric", "per day", f"Sessions per day over {_R}.",
                    ratio_sql("r_sessions", "recent_days"), neutral="0.0D"),
        FeatureSpec("songs_trend", "numeric", "ratio",
                    f"(songs/day in {_R} + 1) / (songs/day in the days of the window before them + 1): "
                    "1 = steady, < 1 = slowing down; 1 for users younger than the recent window.",
                    f"CASE WHEN {EXPOSURE_SQL} - recent_days < 1 THEN 1.0D "
                    f"ELSE ({recent_rate} + 1.0D) / ({earlier_rate} + 1.0D) END", neutral="1.0D"),
        FeatureSpec("days_since_last_event", "numeric", "days",
                    "Days from the last event to the observation time (at most {long}).",
                    f"(as_of_ms - last_ms) / {DAY_MS}.0D", neutral="0.0D"),
        FeatureSpec("days_since_registration", "numeric", "days",
                    "Account age at the observation time (at the log's end in 'ever' mode).",
                    f"coalesce(greatest(0.0D, (tenure_at_ms - last.registration) / {DAY_MS}.0D), 0.0D)"),
        FeatureSpec("window_coverage", "numeric", "fraction",
                    "Share of the {long}-day window the account existed in: < 1 for a user "
                    "younger than the window, whose rates are over the days it existed.",
                    f"{EXPOSURE_SQL} / long_days"),
        FeatureSpec("level", "categorical", "", "Subscription level at the observation time.",
                    f"coalesce(last.level, {sql_literal(UNKNOWN)})", categories=("free", "paid")),
        FeatureSpec("gender", "categorical", "", "Gender as registered.",
                    f"coalesce(last.gender, {sql_literal(UNKNOWN)})", categories=("F", "M", UNKNOWN)),
        FeatureSpec("os", "categorical", "", "Operating system from the user agent.", os_sql("last.userAgent"),
                    categories=("Windows", "Mac", "Linux", "iPhone", "iPad", OTHER, UNKNOWN)),
        FeatureSpec("browser", "categorical", "", "Browser from the user agent.", browser_sql("last.userAgent"),
                    categories=("Chrome", "Firefox", "Safari", "IE", "Chromium", "Mobile Safari", OTHER, UNKNOWN)),
        FeatureSpec("region", "categorical", "", "US Census region of the user's location.",
                    region_sql("last.location"), categories=("Northeast", "Midwest", "South", "West", UNKNOWN)),
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

#: Measured to the user's last event: constant in 'ever' mode.
TIME_TO_END_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.neutral is not None)


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


def model_window_days(model_json: dict) -> int:
    """The feature window (days) a saved model was trained on: ``label.long_days`` of its
    model.json (:data:`LONG_DAYS` for models written before the window was a choice)."""
    return int((model_json.get("label") or {}).get("long_days") or LONG_DAYS)


# ------------------------------------------------------------------ labels
@dataclass
class LabelSpec:
    """Label design and observation dates. ``mode``: 'window' (prediction-time, default)
    or 'ever' (seed-compatible).

    'window': one row per (user, observation date t); label = Cancellation Confirmation in
    ``(t, t + horizon_days]``; users gone before t, or with no event in the
    ``long_days`` window before t, are left out. With ``cutoff`` the dates are that one
    time; else every ``step_days`` (None: 7; ``sparkify train`` picks 1 on small logs) back from ``last_date`` (default: the latest midnight
    whose horizon ends within the log) to the first midnight with a full window of log
    before it. 'ever': one row per user, observed at the midnight after the user's last
    non-cancellation event; label = the user ever cancelled.
    """

    mode: str = "window"
    cutoff: datetime | None = None
    horizon_days: int = DEFAULT_HORIZON_DAYS
    step_days: int | None = None
    last_date: datetime | None = None
    #: the length of the feature window before each date, in days (more than RECENT_DAYS)
    long_days: int = LONG_DAYS
    #: the observation dates (epoch ms), filled in by :func:`resolve_spec`
    dates: tuple[int, ...] = ()

    def validate(self) -> None:
        if self.mode not in ("window", "ever"):
            raise ValueError(f"label mode must be 'window' or 'ever', not {self.mode!r}")
        if self.horizon_days is None or self.horizon_days <= 0:
            raise ValueError(f"horizon_days must be a positive number of days, not {self.horizon_days!r}")
        if not isinstance(self.long_days, int) or self.long_days <= RECENT_DAYS:
            raise ValueError(f"the feature window must be a whole number of days above the {RECENT_DAYS}-day recent "
                             f"window (e.g. 14 or 28), not {self.long_days!r}")
        if self.step_days is not None and self.step_days <= 0:
            raise ValueError(f"step_days must be a positive number of days, not {self.step_days!r}")
        if self.cutoff is not None and self.last_date is not None:
            raise ValueError("give either a cutoff (one observation date) or a last date (weekly snapshots up to it)")
        if self.last_date is not None and _ms(self.last_date) % DAY_MS:
            raise ValueError(f"the last observation date must be a midnight UTC, not {_iso(self.last_date)}")

    def to_dict(self) -> dict:
        return {"mode": self.mode,
                "cutoff": _iso(self.cutoff) if self.cutoff else None,
                "horizon_days": self.horizon_days, "step_days": self.step_days,
                "last_date": _iso(self.last_date) if self.last_date else None,
                "dates": [_iso(_from_ms(d)) for d in self.dates],
                "long_days": self.long_days, "recent_days": RECENT_DAYS}

    @classmethod
    def from_dict(cls, data: dict) -> "LabelSpec":
        def when(key):
            return parse_time(data[key]) if data.get(key) else None

        return cls(mode=data.get("mode", "window"), cutoff=when("cutoff"),
                   horizon_days=data.get("horizon_days", DEFAULT_HORIZON_DAYS),
                   step_days=data.get("step_days"), last_date=when("last_date"),
                   long_days=int(data.get("long_days") or LONG_DAYS),
                   dates=tuple(_ms(parse_time(d)) for d in data.get("dates", ())))


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _iso(dt: datetime) -> str:
    return _utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(ms: int) -> str:
    """An epoch-ms time as ISO 8601 UTC to the second ('2018-11-01T00:00:00Z')."""
    return _iso(_from_ms(ms))


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


def spec_boundaries(spec: "LabelSpec") -> tuple[int, ...]:
    """The times (epoch ms) at which a spec with a ``cutoff`` cuts the events: the cutoff
    and the starts of its windows (snapshot dates are midnights, where every cut is exact)."""
    if spec.cutoff is None:
        return ()
    cutoff_ms = _ms(spec.cutoff)
    return tuple(sorted({cutoff_ms, cutoff_ms - RECENT_DAYS * DAY_MS, cutoff_ms - spec.long_days * DAY_MS}))


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
    df = events.filter(~F.expr(CANCEL_RELATED_SQL)) if mode == "ever" else events
    value = df.agg(F.max("ts")).first()[0]
    if value is None:
        raise ValueError("no events to build features from (empty event table)")
    return int(value)


def fitting_dates(start_ms: int, end_ms: int, horizon_days: int, long_days: int) -> tuple[int, int]:
    """(earliest, latest) observation midnight (epoch ms) that a log spanning [start_ms,
    end_ms] holds whole: a full ``long_days`` window after its first midnight before it, a
    full ``horizon_days`` after it. Earliest > latest when no date fits."""
    earliest = -(-start_ms // DAY_MS) * DAY_MS + long_days * DAY_MS
    latest = ((end_ms - horizon_days * DAY_MS) // DAY_MS) * DAY_MS
    return earliest, latest


def _too_short(start_ms: int, end_ms: int, horizon_days: int, long_days: int, suffix: str = "") -> ValueError:
    """The error for a log that holds no observation date whole."""
    return ValueError(f"the log ({iso_ms(start_ms)} to {iso_ms(end_ms)}) is too short for a {long_days}-day "
                      f"feature window and a {horizon_days}-day horizon{suffix}: use a longer log, a shorter "
                      "--horizon-days or --window-days, or --label ever")


def snapshot_dates(start_ms: int, end_ms: int, horizon_days: int, step_days: int = DEFAULT_STEP_DAYS,
                   last_date: datetime | None = None, long_days: int = LONG_DAYS) -> tuple[int, ...]:
    """Observation dates (epoch ms, midnights UTC, ascending) for a log spanning
    [start_ms, end_ms]: every ``step_days`` back from ``last_date`` (default: the latest
    midnight t with t + horizon <= end_ms) while a full ``long_days`` window of log
    lies before the date. Raises ValueError when no date fits."""
    first, latest = fitting_dates(start_ms, end_ms, horizon_days, long_days)
    last = latest if last_date is None else _ms(last_date)
    dates = []
    t = last
    while t >= first:
        dates.append(t)
        t -= step_days * DAY_MS
    if not dates:
        raise _too_short(start_ms, end_ms, horizon_days, long_days,
                         f" ending at {_iso(last_date)}" if last_date else "")
    return tuple(sorted(dates))


def check_dates_fit(spec: LabelSpec, start_ms: int, end_ms: int) -> None:
    """Raise ValueError when a resolved 'window' spec's dates do not fit a log spanning
    [start_ms, end_ms]: the latest date's horizon runs past the log's end (its labels would
    miss the cancellations after the end: churners counted as stayers), or the earliest
    date's feature window starts before the log's first midnight (its features would depend
    on how much log precedes it). 'ever' specs always fit."""
    if spec.mode != "window" or not spec.dates:
        return
    latest, earliest = max(spec.dates), min(spec.dates)
    span = f"the log runs from {iso_ms(start_ms)} to {iso_ms(end_ms)}"
    earliest_fit, latest_fit = fitting_dates(start_ms, end_ms, spec.horizon_days, spec.long_days)
    if latest_fit < earliest_fit:
        raise _too_short(start_ms, end_ms, spec.horizon_days, spec.long_days)
    if latest + spec.horizon_days * DAY_MS > end_ms:
        raise ValueError(
            f"the observation date {iso_ms(latest)} has no full {spec.horizon_days}-day horizon of log after "
            f"it ({span}), so its labels would miss later cancellations; the latest date that fits is "
            f"{iso_ms(latest_fit)} (or use a shorter --horizon-days)")
    if earliest < earliest_fit:
        raise ValueError(
            f"the observation date {iso_ms(earliest)} has no full {spec.long_days}-day feature window of log "
            f"before it ({span}); the earliest date that fits is "
            f"{iso_ms(earliest_fit)} (or use a shorter --window-days)")


def resolve_spec(source: DataFrame | SessionDays, spec: LabelSpec) -> LabelSpec:
    """The spec with its observation ``dates`` filled in (one small aggregate when they
    depend on the log's span; a spec that has dates keeps them). ``source``: cleaned
    events or their :class:`SessionDays`."""
    spec.validate()
    if spec.mode == "ever":
        return replace(spec, dates=())
    if spec.dates:
        return spec
    if spec.cutoff is not None:
        cutoff = _utc(spec.cutoff)
        return replace(spec, cutoff=cutoff, dates=(_ms(cutoff),))
    if isinstance(source, SessionDays):
        start, end = source.log_span_ms()
    else:
        start, end = (int(v) for v in source.agg(F.min("ts"), F.max("ts")).first())
    step = spec.step_days or DEFAULT_STEP_DAYS
    return replace(spec, step_days=step, dates=snapshot_dates(start, end, spec.horizon_days, step, spec.last_date,
                                                              spec.long_days))


# ------------------------------------------------------------------ aggregation
def _grouped(df: DataFrame, keys: list[str], aggregates: list[str]) -> DataFrame:
    """``df`` grouped by ``keys``, with ``aggregates`` given as Spark SQL text."""
    return df.groupBy(*keys).agg(*[F.expr(a) for a in aggregates])


OBS_KEYS = ["userId", "as_of_ms"]


def _observation_rows(days: SessionDays, dates: tuple[int, ...] | None, ever_at: DataFrame | None,
                      long_days: int) -> DataFrame:
    """The partial rows of each observation's window, with the observation time
    ``as_of_ms``: a row of day d belongs to the observation at t when
    t - long_days <= its start and its end < t. ``dates``: the same times for every user
    (a row joins at most long_days / step of them); ``ever_at``: DataFrame[userId,
    as_of_ms], one time per user, cancellation rows left out."""
    long_ms = long_days * DAY_MS
    if ever_at is not None:
        return (days.df.filter("NOT cancel_rel").join(ever_at, "userId")
                .filter(f"p_end < as_of_ms AND p_start >= as_of_ms - {long_ms}"))
    times = ", ".join(f"{int(t)}L" for t in dates)
    return days.df.selectExpr(
        "*", f"explode(filter(array({times}), t -> p_end < t AND p_start >= t - {long_ms})) AS as_of_ms")


def _observation_aggregates(rows: DataFrame, days: SessionDays) -> DataFrame:
    """One row per (userId, as_of_ms) with the aggregates the catalogue's ``sql`` reads:
    ``w_<stem>`` page counts, ``w_events``, ``w_sessions``, ``w_active_days``,
    ``w_session_minutes`` (mean), ``w_paid_songs``, ``w_level_changes``,
    ``w_distinct_artists`` (with artist sets) over the long window, ``r_songs`` and
    ``r_sessions`` over the recent one, ``first_ms`` and ``last_ms`` (first and last event
    in the window) and ``last`` (struct: the attributes of the latest event)."""
    stems = [stem for _, stem, _ in PAGE_FEATURES]
    recent = f"p_start >= as_of_ms - {RECENT_DAYS * DAY_MS}"
    sessions = _grouped(rows, [*OBS_KEYS, "sessionId"], [
        "min(p_start) AS s_start", "max(p_end) AS s_end", "sum(p_events) AS s_events",
        *[f"sum(p_{stem}) AS s_{stem}" for stem in stems],
        f"sum(CASE WHEN {recent} THEN p_songs ELSE 0 END) AS s_recent_songs",
        f"max(CASE WHEN {recent} THEN 1 ELSE 0 END) AS s_recent",
        "sum(CASE WHEN level = 'paid' THEN p_songs ELSE 0 END) AS s_paid_songs",
        "sum(p_level_changes) AS s_level_changes",
    ])
    counts = _grouped(sessions, OBS_KEYS, [
        "count(1) AS w_sessions", "min(s_start) AS first_ms", "max(s_end) AS last_ms",
        "sum(s_events) AS w_events", "sum(s_end - s_start) / 60000.0D / count(1) AS w_session_minutes",
        *[f"sum(s_{stem}) AS w_{stem}" for stem in stems],
        "sum(s_recent_songs) AS r_songs", "sum(s_recent) AS r_sessions",
        "sum(s_paid_songs) AS w_paid_songs", "sum(s_level_changes) AS w_level_changes",
    ])
    sets = _grouped(rows, OBS_KEYS, [
        "size(collect_set(day)) AS w_active_days",
        f"max_by(struct({', '.join(ATTRIBUTES)}), p_order) AS last",
        *(["size(array_distinct(flatten(collect_list(p_artists)))) AS w_distinct_artists"]
          if days.artists else []),
    ])
    return counts.join(sets, OBS_KEYS)


def _observation_features(days: SessionDays, long_days: int, *, dates: tuple[int, ...] | None = None,
                          ever_at: DataFrame | None = None, tenure_at_ms: int | None = None) -> DataFrame:
    """DataFrame[userId, as_of_ms, *feature_names(days.artists)]: one row per observation
    with at least one event in its ``long_days`` window (see :func:`_observation_rows`).
    In 'ever' mode (``ever_at``) the :data:`TIME_TO_END_FEATURES` take their neutral value
    and tenure is measured at ``tenure_at_ms`` (the log's end)."""
    long_ms = long_days * DAY_MS
    if dates is not None:
        _require_exact(days, tuple(b for t in dates for b in (t, t - RECENT_DAYS * DAY_MS, t - long_ms)), "window")
        if days.rows_from_ms is not None and min(dates) - long_ms < days.rows_from_ms:
            raise ValueError(
                f"these rows hold the log from {_iso(_from_ms(days.rows_from_ms))} only, and a {long_days}-day window "
                f"before {_iso(_from_ms(min(dates)))} starts earlier: read the store for this window "
                "(sparkify.store.load_store(..., long_days=...)) or the whole log")
    agg = _observation_aggregates(_observation_rows(days, dates, ever_at, long_days), days)
    start = "least(first_ms, coalesce(last.registration, first_ms))"
    agg = agg.selectExpr(
        "*", f"{float(long_days)}D AS long_days",
        f"greatest(1.0D, least({float(long_days)}D, (as_of_ms - {start}) / {DAY_MS}.0D)) AS exposure_days",
        f"CAST(greatest(1L, least(ceil(as_of_ms / {DAY_MS}.0D) - floor((as_of_ms - {long_ms}L) / {DAY_MS}.0D), "
        f"ceil(as_of_ms / {DAY_MS}.0D) - floor({start} / {DAY_MS}.0D))) AS DOUBLE) AS calendar_days",
        f"{'as_of_ms' if tenure_at_ms is None else f'{int(tenure_at_ms)}L'} AS tenure_at_ms")
    agg = agg.selectExpr("*", f"least({float(RECENT_DAYS)}D, exposure_days) AS recent_days")
    ever = ever_at is not None
    out = [f"{spec.neutral if ever and spec.neutral is not None else spec.sql} AS {spec.name}"
           for spec in FEATURES if spec.name in feature_names(days.artists)]
    return agg.selectExpr("userId", "as_of_ms", *out)


def _churn_times(days: SessionDays) -> DataFrame:
    """userId, churn_ms = first Cancellation Confirmation (or auth Cancelled) time. Tiny."""
    if days.churn is not None:
        return days.churn
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
    """Training table: one row per (user, observation date) with the features of
    :func:`feature_names` and ``churn``.

    In:  cleaned user events (``LoadedEvents.events``) or their :class:`SessionDays`
         (``sparkify.dataset.load_log``), a :class:`LabelSpec`; ``artists``: add the
         opt-in :data:`ARTIST_FEATURES` (None: as the SessionDays were loaded, else no).
    Out: (DataFrame[userId, as_of_ms (epoch ms), *feature_names(artists), churn (int 0/1)],
         the spec with its dates resolved). Lazy, except one small aggregate to find the
         log's span when the dates depend on it.
    Raises ValueError when ``source`` is SessionDays that cannot be cut exactly at the
    spec's times (see :meth:`SessionDays.exact_at`), lacks the artist sets asked for, or
    the log is too short for any observation date.
    See the module docstring for the two label designs.
    """
    days, spec = _session_days_for(source, spec or LabelSpec(), artists)
    churn = F.broadcast(_churn_times(days))
    if spec.mode == "ever":
        ever_at = _grouped(days.df.filter("NOT cancel_rel"), ["userId"],
                           [f"(floor(max(p_end) / {DAY_MS}) + 1) * {DAY_MS} AS as_of_ms"])
        feats = _observation_features(days, spec.long_days, ever_at=ever_at, tenure_at_ms=days.log_end_ms("ever"))
        table = (feats.join(churn, "userId", "left")
                 .withColumn("churn", F.col("churn_ms").isNotNull().cast("int")))
    else:
        horizon_ms = spec.horizon_days * DAY_MS
        table = (_observation_features(days, spec.long_days, dates=spec.dates).join(churn, "userId", "left")
                 .filter("churn_ms IS NULL OR churn_ms >= as_of_ms")
                 .withColumn("churn", F.expr(f"coalesce(churn_ms > as_of_ms AND churn_ms <= as_of_ms + {horizon_ms}, "
                                             "false)").cast("int")))
    return table.select("userId", "as_of_ms", *feature_names(days.artists), "churn"), spec


def build_scoring_table(source: DataFrame | SessionDays, as_of: datetime | None = None,
                        artists: bool = False, long_days: int = LONG_DAYS) -> DataFrame:
    """Scoring table: one row per user still subscribed at ``as_of`` and active in the
    window before it, features only: the rows :func:`build_user_table` builds for that
    date, by the same code.

    In:  cleaned user events or their :class:`SessionDays`; ``as_of`` (UTC; default: the
         midnight after the log's last event); ``artists``: add the opt-in
         :data:`ARTIST_FEATURES` (use :func:`uses_artists` on the model's features);
         ``long_days``: the model's feature window (:func:`model_window_days`).
    Out: DataFrame[userId, as_of_ms, *feature_names(artists)].
    """
    if isinstance(source, SessionDays):
        end = source.log_end_ms()
    else:
        end = log_end_ms(source)
    when = _utc(as_of) if as_of is not None else _from_ms((end // DAY_MS + 1) * DAY_MS)
    spec = LabelSpec(cutoff=when, long_days=long_days)
    days, spec = _session_days_for(source, spec, artists)
    t = spec.dates[0]
    gone = F.broadcast(_churn_times(days).filter(F.col("churn_ms") < F.lit(t)))
    feats = _observation_features(days, long_days, dates=spec.dates)
    return feats.join(gone, "userId", "left_anti").select("userId", "as_of_ms", *feature_names(days.artists))
