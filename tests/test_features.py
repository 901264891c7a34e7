"""Per-user features and labels on a hand-built event table with known answers, the
user-agent / location parsers, the feature catalogue, and the simulated small log."""

from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta, timezone

import pytest

from sparkify.config import SIMULATOR_DATA_DIR

UTC = timezone.utc
T = datetime(2018, 11, 1, tzinfo=UTC)
QUOTED_CHROME_WIN = ('"Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) '
                     'Chrome/37.0.2062.103 Safari/537.36"')
IPHONE = ('"Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) AppleWebKit/537.51.2 '
          '(KHTML, like Gecko) Version/7.0 Mobile/11D257 Safari/9537.53"')
FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.9; rv:31.0) Gecko/20100101 Firefox/31.0"


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


USERS = {
    "A": dict(gender="F", registration=ms(datetime(2018, 9, 1, tzinfo=UTC)),
              location="Boston-Cambridge-Newton, MA-NH", userAgent=QUOTED_CHROME_WIN),
    "B": dict(gender="M", registration=ms(datetime(2018, 10, 20, tzinfo=UTC)),
              location="Corpus Christi, TX", userAgent=IPHONE),
    "C": dict(gender="F", registration=ms(datetime(2018, 9, 15, tzinfo=UTC)),
              location="Bakersfield, CA", userAgent=FIREFOX_MAC),
    "D": dict(gender="M", registration=ms(datetime(2018, 11, 2, tzinfo=UTC)),
              location="Chicago-Naperville-Elgin, IL-IN-WI", userAgent=FIREFOX_MAC),
    "E": dict(gender="F", registration=ms(datetime(2018, 10, 30, 18, tzinfo=UTC)),
              location="Corpus Christi, TX", userAgent=IPHONE),
}


def make_events(spark, rows):
    """rows: (userId, sessionId, datetime, page, level, artist[, auth]) -> cleaned events."""
    from pyspark.sql.types import StructType

    from sparkify.dataset import with_time
    from sparkify.rawlog import RAW_FIELDS

    records = []
    items: dict[tuple, int] = {}
    for row in rows:
        user, session, when, page, level, artist, *rest = row
        i = items[(user, session)] = items.get((user, session), -1) + 1   # 0, 1, ... per session
        auth = rest[0] if rest else ("Cancelled" if page == "Cancellation Confirmation" else "Logged In")
        records.append(dict(
            ts=ms(when), userId=user, sessionId=session, page=page, auth=auth, method="PUT",
            status=200, level=level, itemInSession=i, lastName="X", firstName="Y",
            artist=artist, song=("s" if artist else None), length=(200.0 if artist else None),
            **USERS[user]))
    schema = StructType(RAW_FIELDS)
    data = [tuple(r.get(f.name) for f in RAW_FIELDS) for r in records]
    return with_time(spark.createDataFrame(data, schema))


def d(month, day, hour=0, minute=0):
    return datetime(2018, month, day, hour, minute, tzinfo=UTC)


HAND_ROWS = [
    # user A: two sessions before T, upgrade in the second, churns within the horizon
    ("A", 1, d(10, 10, 10, 0), "NextSong", "free", "X"),
    ("A", 1, d(10, 10, 10, 4), "NextSong", "free", "Y"),
    ("A", 1, d(10, 10, 10, 5), "Thumbs Up", "free", None),
    ("A", 1, d(10, 10, 10, 10), "NextSong", "free", "X"),
    ("A", 1, d(10, 10, 10, 20), "Thumbs Down", "free", None),
    ("A", 2, d(10, 25, 12, 0), "NextSong", "free", "Z"),
    ("A", 2, d(10, 25, 12, 1), "Roll Advert", "free", None),
    ("A", 2, d(10, 25, 12, 2), "Submit Upgrade", "free", None),
    ("A", 2, d(10, 25, 12, 3), "Home", "paid", None),
    ("A", 2, d(10, 25, 12, 30), "NextSong", "paid", "Z"),
    # after T: invisible to the features
    ("A", 7, d(11, 5, 9, 0), "NextSong", "paid", "Q"),
    ("A", 7, d(11, 5, 9, 1), "Submit Downgrade", "paid", None),
    ("A", 7, d(11, 10, 9, 0), "Cancel", "free", None),
    ("A", 7, d(11, 10, 9, 0, ), "Cancellation Confirmation", "free", None),
    # user B shares sessionId 1 with A; cancels after T + horizon -> label 0
    ("B", 1, d(10, 28, 8, 0), "NextSong", "free", "X"),
    ("B", 1, d(10, 28, 8, 4), "NextSong", "free", "X"),
    ("B", 9, d(12, 5, 8, 0), "Cancel", "free", None),
    ("B", 9, d(12, 5, 8, 0), "Cancellation Confirmation", "free", None),
    # user C is gone before T -> excluded
    ("C", 3, d(10, 5, 9, 0), "NextSong", "paid", "X"),
    ("C", 3, d(10, 6, 9, 0), "Cancel", "paid", None),
    ("C", 3, d(10, 6, 9, 0), "Cancellation Confirmation", "paid", None),
    # user D only appears after T -> excluded
    ("D", 8, d(11, 3, 9, 0), "NextSong", "free", "X"),
    ("D", 8, d(12, 1, 9, 0), "NextSong", "free", "X"),
]


@pytest.fixture(scope="module")
def hand_events(spark):
    return make_events(spark, HAND_ROWS)


@pytest.fixture(scope="module")
def window_table(hand_events):
    from sparkify.features import LabelSpec, build_user_table

    table, spec = build_user_table(hand_events, LabelSpec(cutoff=T), artists=True)
    return {r["userId"]: r.asDict() for r in table.collect()}, spec


def test_artist_features_are_opt_in(hand_events, window_table):
    """By default the table has every feature but the two artist ones, with the same values."""
    from sparkify.features import ARTIST_FEATURES, FEATURE_NAMES, LabelSpec, build_user_table, feature_names

    table, _ = build_user_table(hand_events, LabelSpec(cutoff=T))
    assert table.columns == ["userId", "as_of_ms", *feature_names(), "churn"]
    assert set(FEATURE_NAMES) - set(table.columns) == set(ARTIST_FEATURES)
    with_artists = window_table[0]
    for r in table.collect():
        assert r.asDict() == {k: v for k, v in with_artists[r["userId"]].items() if k not in ARTIST_FEATURES}


def test_window_population_and_labels(window_table):
    rows, spec = window_table
    assert spec.dates == (ms(T),) and spec.mode == "window"
    assert set(rows) == {"A", "B"}          # C gone before T, D not yet active
    assert rows["A"]["as_of_ms"] == ms(T)
    assert rows["A"]["churn"] == 1           # Cancellation Confirmation on Nov 10, inside (T, T+30d]
    assert rows["B"]["churn"] == 0           # cancels Dec 5, after the horizon


def test_window_rates_are_per_day_of_the_fixed_window(window_table):
    """A's session of Oct 10 lies before the 14-day window [Oct 18, Nov 1): only the
    session of Oct 25 counts, and rates are per day of the window (A is older than it)."""
    a = window_table[0]["A"]
    assert a["songs_per_day"] == pytest.approx(2 / 14)
    assert a["events_per_day"] == pytest.approx(5 / 14)
    assert a["adverts_per_day"] == pytest.approx(1 / 14)
    assert a["thumbs_up_per_day"] == 0.0 and a["errors_per_day"] == 0.0
    assert a["sessions_per_day"] == pytest.approx(1 / 14)
    assert a["active_day_share"] == pytest.approx(1 / 14)
    assert a["songs_per_session"] == pytest.approx(2.0)
    assert a["mean_session_minutes"] == pytest.approx(30.0)
    assert a["thumbs_down_share"] == 0.0
    assert a["adverts_per_song"] == pytest.approx(0.5)
    assert a["paid_song_share"] == pytest.approx(0.5)
    assert a["level_changes"] == 1           # the Submit Downgrade after T is not counted
    assert a["distinct_artists"] == 1 and a["artist_diversity"] == pytest.approx(0.5)
    assert a["window_coverage"] == 1.0


def test_window_recent_and_time_features(window_table):
    a = window_table[0]["A"]
    assert a["songs_per_day_recent"] == pytest.approx(2 / 7)        # Oct 25 is in [Oct 25, Nov 1)
    assert a["sessions_per_day_recent"] == pytest.approx(1 / 7)
    assert a["songs_trend"] == pytest.approx((2 / 7 + 1) / (0 / 7 + 1))
    assert a["days_since_last_event"] == pytest.approx((T - d(10, 25, 12, 30)) / timedelta(days=1))
    assert a["days_since_registration"] == pytest.approx(61.0)


def test_user_younger_than_the_window(window_table, hand_events):
    """B registered Oct 20: its rates are over the 12 days it existed, and coverage says so;
    D (registered Nov 2, scored Nov 5) is younger than the recent window: neutral trend."""
    from sparkify.features import build_scoring_table

    b = window_table[0]["B"]
    assert b["songs_per_day"] == pytest.approx(2 / 12)
    assert b["window_coverage"] == pytest.approx(12 / 14)
    assert b["songs_per_day_recent"] == pytest.approx(2 / 7)
    assert b["songs_trend"] == pytest.approx((2 / 7 + 1) / (0 / 5 + 1))
    assert b["days_since_registration"] == pytest.approx(12.0)
    assert b["mean_session_minutes"] == pytest.approx(4.0)
    rows = {r["userId"]: r.asDict() for r in build_scoring_table(hand_events, as_of=d(11, 5)).collect()}
    dd = rows["D"]
    assert dd["window_coverage"] == pytest.approx(3 / 14)
    assert dd["songs_per_day"] == pytest.approx(1 / 3)
    assert dd["songs_per_day_recent"] == pytest.approx(1 / 3)
    assert dd["songs_trend"] == 1.0


def test_active_day_share_counts_calendar_days(spark):
    """E registered on Oct 30 at 18:00 and played that evening and on Oct 31: scored at
    midnight Nov 1 it existed 1.25 days but on 2 calendar days, and was active on both
    (a share, never above 1); its rates stay per day it existed."""
    from sparkify.features import build_scoring_table

    events = make_events(spark, [("E", 5, d(10, 30, 20, 0), "NextSong", "free", "X"),
                                 ("E", 6, d(10, 31, 10, 0), "NextSong", "free", "X")])
    e = build_scoring_table(events, as_of=T).first().asDict()
    assert e["active_day_share"] == 1.0
    assert e["songs_per_day"] == pytest.approx(2 / 1.25)
    assert e["window_coverage"] == pytest.approx(1.25 / 14)


def test_a_longer_window(hand_events):
    """``long_days=28``: A's window [Oct 4, Nov 1) now holds the session of Oct 10 too; B
    (registered Oct 20) covers 12 of its 28 days; the recent window stays 7 days; the first
    snapshot date moves to the first midnight with 28 days of log before it; the scoring
    rows are the training rows."""
    from sparkify.features import FEATURES_BY_NAME, LabelSpec, build_scoring_table, build_user_table

    table, spec = build_user_table(hand_events, LabelSpec(cutoff=T, long_days=28), artists=True)
    rows = {r["userId"]: r.asDict() for r in table.collect()}
    assert spec.to_dict()["long_days"] == 28
    a, b = rows["A"], rows["B"]
    assert a["songs_per_day"] == pytest.approx(5 / 28) and a["sessions_per_day"] == pytest.approx(2 / 28)
    assert a["thumbs_down_share"] == pytest.approx(0.5) and a["window_coverage"] == 1.0
    assert a["songs_per_day_recent"] == pytest.approx(2 / 7)
    assert a["songs_trend"] == pytest.approx((2 / 7 + 1) / (3 / 21 + 1))
    assert a["distinct_artists"] == 3
    assert b["songs_per_day"] == pytest.approx(2 / 12) and b["window_coverage"] == pytest.approx(12 / 28)
    score = build_scoring_table(hand_events, as_of=T, artists=True, long_days=28)
    assert {r["userId"]: tuple(r) for r in score.collect()} == \
        {r["userId"]: tuple(r) for r in table.select(*score.columns).collect()}
    # the log starts Oct 5: 28 days of log before a date first on Nov 3, so Nov 5 alone fits
    _, weekly = build_user_table(hand_events, LabelSpec(step_days=7, long_days=28))
    assert weekly.dates == (ms(d(11, 5)),)
    assert FEATURES_BY_NAME["songs_per_day"].describe(28) == "Songs played per day over the last 28 days."
    assert "(at most 28)" in FEATURES_BY_NAME["days_since_last_event"].describe(28)
    with pytest.raises(ValueError, match="feature window"):
        build_user_table(hand_events, LabelSpec(cutoff=T, long_days=7))


def test_window_categoricals(window_table):
    a, b = window_table[0]["A"], window_table[0]["B"]
    assert a["level"] == "paid"              # upgraded before T; the downgrade after T is unseen
    assert (a["gender"], a["os"], a["browser"], a["region"]) == ("F", "Windows", "Chrome", "Northeast")
    assert (b["gender"], b["os"], b["browser"], b["region"]) == ("M", "iPhone", "Mobile Safari", "South")
    assert b["level"] == "free"


def test_snapshot_dates_and_labels(hand_events):
    """Weekly dates back from the latest whose horizon fits (Dec 5 08:00 - 30 days -> Nov 5)
    to the first with a full 14-day window of log (Oct 6 + 14 days = Oct 20); one row per
    user active in each date's window and not gone before it."""
    from sparkify.features import LabelSpec, build_user_table

    table, spec = build_user_table(hand_events, LabelSpec(step_days=7))
    assert spec.dates == tuple(ms(x) for x in (d(10, 22), d(10, 29), d(11, 5)))
    got = {(r["userId"], r["as_of_ms"]): r["churn"] for r in table.select("userId", "as_of_ms", "churn").collect()}
    assert got == {("A", ms(d(10, 22))): 1, ("A", ms(d(10, 29))): 1, ("B", ms(d(10, 29))): 0,
                   ("A", ms(d(11, 5))): 1, ("B", ms(d(11, 5))): 0, ("D", ms(d(11, 5))): 0}
    last, _ = build_user_table(hand_events, LabelSpec(step_days=7, last_date=d(10, 29)))
    assert {r["as_of_ms"] for r in last.select("as_of_ms").collect()} == {ms(d(10, 22)), ms(d(10, 29))}
    with pytest.raises(ValueError, match="too short"):
        build_user_table(hand_events, LabelSpec(horizon_days=60))


def test_horizon_option(hand_events):
    from sparkify.features import LabelSpec, build_user_table

    table, _ = build_user_table(hand_events, LabelSpec(cutoff=T, horizon_days=40))
    labels = {r["userId"]: r["churn"] for r in table.select("userId", "churn").collect()}
    assert labels == {"A": 1, "B": 1}       # Dec 5 is within 40 days of Nov 1
    table, _ = build_user_table(hand_events, LabelSpec(cutoff=T, horizon_days=5))
    labels = {r["userId"]: r["churn"] for r in table.select("userId", "churn").collect()}
    assert labels == {"A": 0, "B": 0}       # Nov 10 is after Nov 6


def test_ever_mode(hand_events):
    from sparkify.features import TIME_TO_END_FEATURES, LabelSpec, build_user_table

    table, spec = build_user_table(hand_events, LabelSpec(mode="ever"))
    rows = {r["userId"]: r.asDict() for r in table.collect()}
    assert {u: r["churn"] for u, r in rows.items()} == {"A": 1, "B": 1, "C": 1, "D": 0}
    # each user is observed at the midnight after its last non-cancellation event
    assert rows["A"]["as_of_ms"] == ms(d(11, 6)) and rows["C"]["as_of_ms"] == ms(d(10, 6))
    assert rows["C"]["events_per_day"] == pytest.approx(1 / 14)   # Cancel pages unseen
    assert rows["A"]["level"] == "paid"      # level at the last non-cancel event (Submit Downgrade row)
    # tenure at the log's last non-cancellation event (Dec 1 09:00) for everyone
    assert rows["A"]["days_since_registration"] == pytest.approx((d(12, 1, 9) - d(9, 1)) / timedelta(days=1))
    for name in TIME_TO_END_FEATURES:
        assert len({r[name] for r in rows.values()}) == 1, name


@pytest.mark.parametrize("artists", [False, True])
def test_scoring_table_matches_training_features(hand_events, artists):
    from sparkify.features import LabelSpec, build_scoring_table, build_user_table, feature_names

    names = feature_names(artists)
    train, _ = build_user_table(hand_events, LabelSpec(cutoff=T), artists=artists)
    score = build_scoring_table(hand_events, as_of=T, artists=artists)
    assert score.columns == ["userId", "as_of_ms", *names]
    want = {r["userId"]: tuple(r) for r in train.select("userId", "as_of_ms", *names).collect()}
    got = {r["userId"]: tuple(r) for r in score.collect()}
    assert got == want
    # default as_of = the midnight after the log's end: A, B and C have cancelled by then,
    # and D's last event (Dec 1) is in the window
    default = build_scoring_table(hand_events).collect()
    assert {r["userId"] for r in default} == {"D"} and default[0]["as_of_ms"] == ms(d(12, 6))


def test_bad_label_spec(hand_events):
    from sparkify.features import LabelSpec, build_user_table

    with pytest.raises(ValueError, match="mode"):
        build_user_table(hand_events, LabelSpec(mode="sometimes"))
    with pytest.raises(ValueError, match="horizon"):
        build_user_table(hand_events, LabelSpec(horizon_days=0))
    with pytest.raises(ValueError, match="step_days"):
        build_user_table(hand_events, LabelSpec(step_days=0))
    with pytest.raises(ValueError, match="midnight"):
        build_user_table(hand_events, LabelSpec(last_date=d(10, 29, 12)))


def test_feature_catalogue():
    from sparkify.features import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, model_features

    names = [f.name for f in FEATURES]
    assert len(FEATURES) >= 25 and len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
    assert all(f.kind in ("numeric", "categorical") and f.description for f in FEATURES)
    assert set(NUMERIC_FEATURES) | set(CATEGORICAL_FEATURES) == set(names)
    assert not set(NUMERIC_FEATURES) & set(CATEGORICAL_FEATURES)
    assert set(CATEGORICAL_FEATURES) == {"level", "gender", "os", "browser", "region"}
    assert all(f.categories for f in FEATURES if f.kind == "categorical")
    ever = {f.name for f in model_features("ever")}
    assert "days_since_last_event" not in ever and "songs_per_day" in ever
    # each feature's value is one SQL expression of the catalogue
    assert all(f.sql for f in FEATURES)
    from sparkify.features import ARTIST_FEATURES, uses_artists

    assert not {f.name for f in model_features()} & set(ARTIST_FEATURES)
    assert set(ARTIST_FEATURES) <= {f.name for f in model_features("ever", artists=True)}
    assert len(model_features(artists=True)) == len(FEATURES)
    assert uses_artists([f.name for f in model_features(artists=True)])
    assert not uses_artists([f.name for f in model_features()])


def known_user_agents() -> list[str]:
    with open(SIMULATOR_DATA_DIR / "user_agents.tsv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["user_agent"] for r in rows]


def test_user_agent_parser_covers_the_85_known_strings(spark):
    from sparkify.attributes import browser_expr, os_expr, parse_user_agent

    uas = known_user_agents()
    assert len(uas) == 85
    parsed = [parse_user_agent(ua) for ua in uas]
    assert {o for o, _ in parsed} == {"Windows", "Mac", "Linux", "iPhone", "iPad"}
    assert {b for _, b in parsed} == {"Chrome", "Firefox", "Safari", "IE", "Chromium", "Mobile Safari"}
    assert parse_user_agent("Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; WOW64; Trident/6.0)") \
        == ("Windows", "IE")
    assert parse_user_agent(None) == ("Unknown", "Unknown")
    df = spark.createDataFrame([(ua,) for ua in uas + [None, "curl/8.0"]], "ua string")
    got = [(r[0], r[1]) for r in df.select(os_expr("ua"), browser_expr("ua")).collect()]
    # Spark expressions agree with the Python parser, also for a missing and an unknown agent
    assert got == parsed + [("Unknown", "Unknown"), ("Other", "Other")]
    assert parse_user_agent("curl/8.0") == ("Other", "Other")


def test_location_region(spark):
    from sparkify.attributes import location_region, location_state, region_expr

    cases = {
        "Bakersfield, CA": "West",
        "Boston-Cambridge-Newton, MA-NH": "Northeast",
        "New York-Newark-Jersey City, NY-NJ-PA": "Northeast",
        "Washington-Arlington-Alexandria, DC-VA-MD-WV": "South",
        "Chicago-Naperville-Elgin, IL-IN-WI": "Midwest",
        "Nowhere": "Unknown",
    }
    assert location_state("Boston-Cambridge-Newton, MA-NH") == "NH"
    assert {loc: location_region(loc) for loc in cases} == cases
    assert location_region(None) == "Unknown"
    df = spark.createDataFrame([(k,) for k in cases], "loc string")
    got = {r[0]: r[1] for r in df.select("loc", region_expr("loc")).collect()}
    assert got == cases
    # every CBSA of the simulator maps to a region
    with open(SIMULATOR_DATA_DIR / "locations.csv", newline="", encoding="utf-8") as fh:
        locations = [r["location"] for r in csv.DictReader(fh)]
    assert all(location_region(loc) != "Unknown" for loc in locations)


# ------------------------------------------------------------------ simulated small log
@pytest.fixture(scope="module")
def small_loaded(spark, small_log):
    from sparkify.dataset import load_events

    loaded = load_events(spark, small_log)
    yield loaded
    loaded.unpersist()


def test_small_log_table(small_loaded):
    from pyspark.sql import functions as F

    from sparkify.features import FEATURE_NAMES, NUMERIC_FEATURES, LabelSpec, build_user_table

    table, spec = build_user_table(small_loaded.events, LabelSpec(), artists=True)
    table = table.cache()
    n = table.count()
    assert len(spec.dates) >= 2 and all(t % 86_400_000 == 0 for t in spec.dates)
    assert n > 100
    assert table.select("userId", "as_of_ms").distinct().count() == n
    assert table.columns == ["userId", "as_of_ms", *FEATURE_NAMES, "churn"]
    nulls = table.select(*[F.sum(F.col(c).isNull().cast("int")).alias(c) for c in table.columns]).first()
    assert all(v == 0 for v in nulls), {k: v for k, v in nulls.asDict().items() if v}
    nans = table.select(*[F.sum(F.isnan(c).cast("int")).alias(c) for c in NUMERIC_FEATURES]).first()
    assert all(v == 0 for v in nans)
    churners = table.filter("churn = 1").count()
    assert 0 < churners < n
    table.unpersist()


def test_small_log_labels_match_truth(spark, small_log, small_loaded):
    """Window labels agree with the simulator's ground truth (churn time in (t, t+h]) at
    every observation date."""
    from datetime import datetime

    import pyarrow.parquet as pq

    from sparkify.features import LabelSpec, build_user_table

    truth_path = small_log.with_name(f"{small_log.stem}_truth.parquet")
    # Plain Python values: no NumPy buffers shared with Arrow.
    truth = pq.read_table(truth_path, columns=["userId", "churn_ts"]).to_pylist()

    def as_ms(value):
        if value is None:
            return None
        return value.timestamp() * 1000 if isinstance(value, datetime) else float(value)

    churn_ms = {str(r["userId"]): as_ms(r["churn_ts"]) for r in truth}
    table, spec = build_user_table(small_loaded.events, LabelSpec())
    got = {(r["userId"], r["as_of_ms"]): int(r["churn"]) for r in table.select("userId", "as_of_ms", "churn").collect()}
    h = spec.horizon_days * 86_400_000
    expected = {(u, t): int(churn_ms.get(u) is not None and t < churn_ms[u] <= t + h) for u, t in got}
    mismatched = [k for k in got if expected[k] != got[k]]
    assert not mismatched, mismatched[:10]
    assert sum(got.values()) == sum(expected.values()) > 0
    # nobody already gone at a date is in that date's rows
    assert all(churn_ms.get(u) is None or churn_ms[u] > t for u, t in got)


def test_training_dates_must_have_their_whole_window_and_horizon_in_the_log():
    from sparkify.features import DAY_MS, LabelSpec, check_dates_fit

    start, end = 1538352000000, 1538352000000 + 61 * DAY_MS      # 2018-10-01 .. 2018-12-01
    fits = LabelSpec(cutoff=datetime(2018, 10, 31, tzinfo=UTC))
    check_dates_fit(replace_dates(fits, 1538352000000 + 30 * DAY_MS), start, end)
    with pytest.raises(ValueError, match="no full 30-day horizon .* the latest date that fits is 2018-11-01"):
        check_dates_fit(replace_dates(fits, 1538352000000 + 40 * DAY_MS), start, end)
    with pytest.raises(ValueError, match="no full 14-day feature window .* earliest date that fits is 2018-10-15"):
        check_dates_fit(replace_dates(fits, 1538352000000 + 10 * DAY_MS), start, end)
    with pytest.raises(ValueError, match="too short for a 14-day feature window and a 30-day horizon"):
        check_dates_fit(replace_dates(fits, 1538352000000 + 30 * DAY_MS), start, start + 40 * DAY_MS)
    check_dates_fit(replace_dates(LabelSpec(mode="ever"), 0), start, end)   # 'ever' labels: one date per user


def replace_dates(spec, t_ms):
    """``spec`` observed at the single time ``t_ms``."""
    from dataclasses import replace

    return replace(spec, dates=(t_ms,))
