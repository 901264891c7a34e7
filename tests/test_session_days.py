"""The one-pass loader (``load_log``) and the session-day rows it builds: the same quality
counts and the same user tables as the event path (``load_events`` + events), for the
weekly snapshots, 'ever' labels, a mid-day cutoff, daily snapshots up to a last date; duplicates,
malformed lines and the activity chart."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

UTC = timezone.utc
BAD_LINES = [
    '{"ts":"yesterday","userId":"30","sessionId":29,"page":"NextSong","auth":"Logged In"}',
    "this is not json",
    "this is not json",        # the same bad line twice: both kept
]


def _rows(table) -> dict[tuple, dict]:
    collected = table.collect()
    rows = {(r["userId"], r["as_of_ms"]): r.asDict() for r in collected}
    assert len(rows) == len(collected), "one row per (user, observation date)"
    return rows


def assert_same_tables(expected, actual) -> None:
    exp, act = _rows(expected), _rows(actual)
    assert set(exp) == set(act) and exp
    for user, row in exp.items():
        for col, value in row.items():
            if isinstance(value, float):
                assert act[user][col] == pytest.approx(value, rel=1e-12, abs=1e-12), (user, col)
            else:
                assert act[user][col] == value, (user, col)


@pytest.fixture(scope="module")
def messy_log(compact_log, tmp_path_factory) -> Path:
    """The small simulated log with malformed lines inside it (one of them twice)."""
    lines = compact_log.read_text(encoding="utf-8").splitlines()
    out = tmp_path_factory.mktemp("messy") / "messy.json"
    middle = len(lines) // 2
    out.write_text("\n".join(lines[:middle] + BAD_LINES + lines[middle:]) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def both(spark, messy_log, tmp_path_factory):
    """(events path, one-pass path) of the messy log, each with its quarantine written."""
    from sparkify.dataset import load_events, load_log

    qdir = tmp_path_factory.mktemp("quarantine")
    events = load_events(spark, messy_log, quarantine_path=qdir / "events")
    log = load_log(spark, messy_log, quarantine_path=qdir / "log")
    yield events, log, qdir
    events.unpersist()
    log.unpersist()


def test_quality_equals_the_event_path(both):
    events, log, _ = both
    a, b = events.quality.to_dict(), log.quality.to_dict()
    for key in ("quarantine_path", "quarantine_sample"):
        a.pop(key), b.pop(key)
    assert a == b
    assert log.quality.quarantined == 3 and log.quality.duplicates == 0
    assert not log.rebuilt_from_events  # the one pass vouched for every row
    assert log.quality.hidden_rows > 0 and log.quality.churners > 0


def test_quarantine_keeps_every_bad_line(both):
    _, log, qdir = both
    written = [json.loads(line) for f in sorted((qdir / "log").glob("part-*"))
               for line in f.read_text().splitlines()]
    assert sorted(w["line"] for w in written) == sorted(BAD_LINES)
    assert all(w["reason"] for w in written)
    assert set(log.quality.quarantine_sample) == set(BAD_LINES)


def test_log_end_comes_with_the_quality_job_and_equals_the_events(spark, both, compact_log, tmp_path):
    """The pass's quality job also gives the log's end in both modes (no further job); it
    equals the end found from the events, also when the last events are cancellations."""
    from sparkify.dataset import load_log
    from sparkify.features import SessionDays, log_end_ms

    events, log, _ = both
    assert set(log.days._end_ms) == {"window", "ever"}
    for mode in ("window", "ever"):
        assert log.days._end_ms[mode] == log_end_ms(events.events, mode)
        assert SessionDays(df=log.days.df).log_end_ms(mode) == log.days._end_ms[mode]
    # the log's last event a cancellation: the modes' ends differ
    lines = compact_log.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    last = max(r["ts"] for r in rows)
    user = next(r["userId"] for r in rows if r["userId"])
    tail = {"ts": last + 60_000, "userId": user, "sessionId": 9999, "page": "Cancellation Confirmation",
            "auth": "Cancelled", "level": "free", "itemInSession": 0, "method": "GET", "status": 200}
    path = tmp_path / "cancel_last.json"
    path.write_text("\n".join(lines + [json.dumps(tail)]) + "\n", encoding="utf-8")
    with load_log(spark, path) as cancelled:
        ends = cancelled.days._end_ms
        assert ends["window"] == last + 60_000 and ends["ever"] < ends["window"]
        assert ends["ever"] == SessionDays(df=cancelled.days.df).log_end_ms("ever")


@pytest.mark.parametrize("spec_kwargs", [
    {},                                                          # weekly snapshots (midnights)
    {"mode": "ever"},
    {"cutoff": datetime(2018, 11, 10, 13, 30, tzinfo=UTC)},      # mid-day: a split point
    {"step_days": 2, "last_date": datetime(2018, 10, 31, tzinfo=UTC)},
], ids=["window", "ever", "midday-cutoff", "snapshots"])
def test_user_table_equals_the_event_path(spark, both, messy_log, spec_kwargs):
    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, build_user_table, spec_boundaries

    events, log, _ = both
    spec = LabelSpec(**spec_kwargs)
    expected, exp_spec = build_user_table(events.events, spec)
    if spec.cutoff is not None and spec.cutoff.hour:
        # a cutoff inside a day needs its own split point, given before the pass
        with pytest.raises(ValueError, match="cannot be cut exactly"):
            build_user_table(log.days, spec)
        with load_log(spark, messy_log, splits=spec_boundaries(spec)) as split_log:
            actual, act_spec = build_user_table(split_log.days, spec)
            assert_same_tables(expected, actual)
    else:
        actual, act_spec = build_user_table(log.days, spec)
        assert_same_tables(expected, actual)
    assert act_spec == exp_spec


def test_every_input_form_gives_the_event_paths_rows(spark, compact_log, tmp_path):
    """load_log on a .json.gz file, a directory of parts (gzip and plain) and a glob: the
    same quality counts and user table as load_events on the same input."""
    import gzip

    from sparkify.dataset import load_events, load_log
    from sparkify.features import LabelSpec, build_user_table

    lines = compact_log.read_text(encoding="utf-8").splitlines(keepends=True)
    folder = tmp_path / "parts"
    folder.mkdir()
    with gzip.open(folder / "part-0.json.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(lines[: len(lines) // 2])
    (folder / "part-1.json").write_text("".join(lines[len(lines) // 2:]), encoding="utf-8")
    for source in (folder / "part-0.json.gz", folder, str(folder / "part-*")):
        with load_events(spark, source) as events, load_log(spark, source) as log:
            assert log.quality.to_dict() == events.quality.to_dict(), source
            assert not log.rebuilt_from_events
            spec = LabelSpec(horizon_days=7)    # the gzip part alone is half the log
            assert_same_tables(build_user_table(events.events, spec)[0], build_user_table(log.days, spec)[0])
    assert log.quality.rows_read == len(lines)


def test_days_for_rebuilds_when_a_cut_falls_inside_a_day(both):
    """A cutoff inside a day, not given to the pass as a split point: days_for rebuilds the
    rows with that split point and the table stays exact."""
    from sparkify.features import LabelSpec, build_user_table

    events, log, _ = both
    spec = LabelSpec(cutoff=datetime(2018, 11, 10, 13, 30, tzinfo=UTC))
    expected, _ = build_user_table(events.events, spec)
    days = log.days_for(spec)
    assert days is not log.days and days.splits
    actual, _ = build_user_table(days, spec)
    assert_same_tables(expected, actual)
    assert log.days_for(LabelSpec()) is log.days


def test_artist_sets_equal_the_event_path(spark, both, messy_log):
    """The opt-in artist features: the one pass with artist sets gives the table the event
    path gives; rows loaded without them refuse to make it."""
    from sparkify.dataset import load_log
    from sparkify.features import ARTIST_FEATURES, LabelSpec, build_user_table

    events, log, _ = both
    assert not log.days.artists and "p_artists" not in log.days.df.columns
    with pytest.raises(ValueError, match="artists=True"):
        build_user_table(log.days, LabelSpec(), artists=True)
    expected, _ = build_user_table(events.events, LabelSpec(), artists=True)
    with load_log(spark, messy_log, artists=True) as with_artists:
        assert with_artists.days.artists
        actual, _ = build_user_table(with_artists.days, LabelSpec())
        assert set(ARTIST_FEATURES) <= set(actual.columns)
        assert actual.filter("distinct_artists > 0").count() > 0
        assert_same_tables(expected, actual)


def test_attributes_come_from_the_latest_event(spark, compact_log, tmp_path):
    """A user who moved and changed device gets the new region, OS and browser at every
    observation date after the change, on both paths."""
    from sparkify.dataset import load_events, load_log
    from sparkify.features import LabelSpec, build_user_table

    events = [json.loads(line) for line in compact_log.read_text(encoding="utf-8").splitlines()]
    counts: dict[str, int] = {}
    for e in events:
        if e.get("auth") == "Logged In" and e.get("userId"):
            counts[e["userId"]] = counts.get(e["userId"], 0) + 1
    mover = max(counts, key=counts.get)
    seen = 0
    for e in events:
        if e.get("userId") == mover and e.get("auth") == "Logged In":
            seen += 1
            if seen > 1:   # every event after the first: a new city and a new phone
                e["location"] = "Boston, MA"
                e["userAgent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) Mobile/11D257"
    path = tmp_path / "moved.json"
    path.write_text("\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n", encoding="utf-8")
    with load_events(spark, path) as clean, load_log(spark, path) as log:
        expected, _ = build_user_table(clean.events, LabelSpec())
        actual, _ = build_user_table(log.days, LabelSpec())
        assert_same_tables(expected, actual)
        rows = [r for (user, _), r in _rows(actual).items() if user == mover]
        assert len(rows) >= 2       # one per observation date, each from its own latest event
        assert all((r["region"], r["os"], r["browser"]) == ("Northeast", "iPhone", "Mobile Safari") for r in rows)


def test_duplicates_are_counted_once(spark, compact_log, tmp_path):
    from sparkify.dataset import load_events, load_log
    from sparkify.features import LabelSpec, build_user_table

    lines = compact_log.read_text(encoding="utf-8").splitlines()
    songs = [line for line in lines if '"page":"NextSong"' in line]
    path = tmp_path / "dups.json"
    path.write_text("\n".join(lines + songs[:5] + songs[:1]) + "\n", encoding="utf-8")
    with load_events(spark, compact_log) as clean, load_log(spark, path, artists=True) as log:
        assert log.quality.duplicates == 6 and log.rebuilt_from_events and log.days.artists
        assert log.quality.user_rows == clean.quality.user_rows
        expected, _ = build_user_table(clean.events, LabelSpec(), artists=True)
        actual, _ = build_user_table(log.days, LabelSpec())
        assert_same_tables(expected, actual)


def test_parquet_input_gives_the_same_rows(spark, both, tmp_path):
    from sparkify.dataset import ingest, load_log
    from sparkify.features import LabelSpec, build_user_table

    events, log, _ = both
    out = tmp_path / "events.parquet"
    ingest(spark, log.source, out)
    with load_log(spark, out) as from_parquet:
        assert from_parquet.quality.user_rows == log.quality.user_rows
        expected, _ = build_user_table(log.days, LabelSpec())
        actual, _ = build_user_table(from_parquet.days, LabelSpec())
        assert_same_tables(expected, actual)


def test_activity_table_from_session_days(both):
    """Daily active users, events and songs per group, checked against the events."""
    from pyspark.sql import functions as F

    from sparkify.features import LabelSpec, build_user_table
    from sparkify.modeling.artifacts import activity_table

    events, log, _ = both
    table, _ = build_user_table(log.days, LabelSpec(cutoff=datetime(2018, 11, 1, tzinfo=UTC)))
    labels = table.select("userId", "churn")
    got = activity_table(log.days.df, labels)
    ev = events.events.join(labels, "userId").withColumn("date", F.to_date("time"))
    want = (ev.groupBy("date", "churn")
            .agg(F.count_distinct("userId").alias("active_users"), F.count(F.lit(1)).alias("events"),
                 F.sum(F.when(F.col("page") == "NextSong", 1).otherwise(0)).alias("songs"))
            .collect())
    want_map = {(str(r["date"]), "churner" if r["churn"] else "stayer"):
                (r["active_users"], r["events"], r["songs"]) for r in want}
    got_map = {(str(r.date.date() if hasattr(r.date, "date") else r.date), r.group):
               (r.active_users, r.events, r.songs) for r in got.itertuples()}
    assert got_map == want_map and len(got_map) > 60


def test_missing_file_and_empty_log(spark, tmp_path):
    from sparkify.dataset import load_log

    with pytest.raises(FileNotFoundError):
        load_log(spark, tmp_path / "nope.json")
    path = tmp_path / "junk.json"
    path.write_text("not json\nstill not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no valid user events"):
        load_log(spark, path)


def _shift_items(line: str, shift: int) -> str:
    event = json.loads(line)
    event["itemInSession"] += shift
    return json.dumps(event)


def test_a_repeated_item_that_is_no_duplicate_falls_back_and_counts_none(spark, compact_log, tmp_path):
    """Two different events with one item number: the pass cannot vouch for them, so the
    rows are rebuilt from exactly de-duplicated events, which find no duplicate."""
    from sparkify.dataset import load_events, load_log
    from sparkify.features import LabelSpec, build_user_table

    lines = compact_log.read_text(encoding="utf-8").splitlines()
    first = json.loads(next(line for line in lines if '"page":"NextSong"' in line))
    twin = dict(first, ts=first["ts"] + 1, song="Another song")   # same session, same item
    path = tmp_path / "twin.json"
    path.write_text("\n".join(lines + [json.dumps(twin)]) + "\n", encoding="utf-8")
    with load_events(spark, path) as clean, load_log(spark, path) as log:
        assert log.rebuilt_from_events
        assert log.quality.duplicates == 0 and log.quality.user_rows == clean.quality.user_rows
        assert log.quality.user_rows == len(lines) - clean.quality.hidden_rows - clean.quality.quarantined + 1
        expected, _ = build_user_table(clean.events, LabelSpec())
        actual, _ = build_user_table(log.days, LabelSpec())
        assert_same_tables(expected, actual)


def test_items_spanning_the_bitmap_window_fall_back(spark, compact_log, tmp_path):
    """Item numbers further apart than the bitmap covers (k and k + ITEM_WINDOW would share
    a bit): checked exactly on the event path instead; with no wrap, no fallback."""
    from sparkify.dataset import load_log
    from sparkify.session_days import ITEM_WINDOW

    lines = compact_log.read_text(encoding="utf-8").splitlines()
    with load_log(spark, compact_log) as plain:
        assert not plain.rebuilt_from_events and plain.quality.duplicates == 0
    # a session whose first item is a logged-in user's: shifting its later items makes them span the window
    index = next(i for i, line in enumerate(lines) if '"itemInSession":0,' in line and '"auth":"Logged In"' in line)
    session = json.loads(lines[index])["sessionId"], json.loads(lines[index])["userId"]

    def in_session(event: dict) -> bool:
        return (event.get("sessionId"), event.get("userId")) == session and event["itemInSession"] >= 1

    shifted = [_shift_items(line, ITEM_WINDOW) if in_session(json.loads(line)) else line for line in lines]
    path = tmp_path / "wide.json"
    path.write_text("\n".join(shifted) + "\n", encoding="utf-8")
    with load_log(spark, path) as log:
        assert log.rebuilt_from_events
        assert log.quality.duplicates == 0 and log.quality.user_rows == plain.quality.user_rows


def test_unread_fields_never_make_a_line_bad_and_a_line_missing_a_field_is_kept_whole(spark, compact_log, tmp_path):
    """The one pass parses only the fields Sparkify reads. A wrong type in another field
    (status, song, ...) is accepted on both paths; a line missing userId is quarantined
    with every field it has, exactly as the event path writes it."""
    from sparkify.dataset import load_events, load_log

    lines = compact_log.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if '"page":"NextSong"' in line)
    odd = dict(json.loads(lines[index]), status="two hundred", song={"title": ["a", 1]})
    lines[index] = json.dumps(odd)
    missing = dict(json.loads(lines[index + 1]), song="Kept Song", firstName="Kept")
    del missing["userId"]
    path = tmp_path / "fields.json"
    path.write_text("\n".join(lines + [json.dumps(missing)]) + "\n", encoding="utf-8")
    with load_events(spark, path, quarantine_path=tmp_path / "q-events") as events, \
            load_log(spark, path, quarantine_path=tmp_path / "q-log") as log:
        a, b = events.quality.to_dict(), log.quality.to_dict()
        for key in ("quarantine_path",):
            a.pop(key), b.pop(key)
        assert a == b and log.quality.quarantined == 1 and not log.rebuilt_from_events

        def written(folder):
            return [json.loads(line) for f in sorted(folder.glob("part-*")) for line in f.read_text().splitlines()]

        from_log, from_events = written(tmp_path / "q-log"), written(tmp_path / "q-events")
        assert from_log == from_events and len(from_log) == 1
        kept = json.loads(from_log[0]["line"])
        assert kept["song"] == "Kept Song" and kept["firstName"] == "Kept" and "userId" not in kept


def test_pass_schema_reads_the_artist_only_on_request():
    from sparkify.rawlog import CORRUPT_COLUMN, PASS_SCHEMA, pass_schema

    assert "artist" not in pass_schema().names and CORRUPT_COLUMN in pass_schema().names
    assert pass_schema(artists=True) == PASS_SCHEMA
    assert pass_schema(artists=True, corrupt=False).names == [n for n in PASS_SCHEMA.names if n != CORRUPT_COLUMN]
    assert len(pass_schema(corrupt=False).names) == len(PASS_SCHEMA.names) - 2
