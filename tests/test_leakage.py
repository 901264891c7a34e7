"""No leakage, by construction and by test.

* window mode: every (user, observation date) row's features are identical whether or
  not the events after the latest date T are in the input;
* ever mode: a user's features are identical whether or not the user's Cancel and
  Cancellation Confirmation events (auth Cancelled) are in the input.

Each check also asserts that the removed events exist and concern users of the table, so
the comparison can fail (a leaky feature such as "events up to the last one" would).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

UTC = timezone.utc


def feature_rows(table) -> dict[tuple, tuple]:
    from sparkify.features import FEATURE_NAMES

    assert set(FEATURE_NAMES) <= set(table.columns)     # every feature, the artist ones included
    return {(r["userId"], r["as_of_ms"]): tuple(r[n] for n in FEATURE_NAMES) for r in table.collect()}


def assert_same_features(full: dict, cut: dict) -> None:
    assert full.keys() == cut.keys()
    diffs = [u for u in full if full[u] != cut[u]]
    assert not diffs, f"features changed for {len(diffs)} rows, e.g. {diffs[:5]}"


def check_window(events, cutoff=None):
    """Every (user, date) row is the same when the events after the latest date T are
    removed (one date with ``cutoff``, else the weekly snapshots)."""
    from sparkify.features import LabelSpec, build_user_table

    table, spec = build_user_table(events, LabelSpec(cutoff=cutoff, step_days=3), artists=True)
    t_ms = max(spec.dates)
    assert cutoff is not None or len(spec.dates) >= 2, "one snapshot date: vacuous test"
    before = events.filter(F.col("ts") < t_ms)
    after_users = {r[0] for r in events.filter(F.col("ts") >= t_ms).select("userId").distinct().collect()}
    full = feature_rows(table)
    assert full and after_users & {u for u, _ in full}, "no events after T for users of the table: vacuous test"
    labels = [r["churn"] for r in table.select("churn").collect()]
    assert 1 in labels, "no churner in the table: vacuous test"
    cut_table, cut_spec = build_user_table(before, spec, artists=True)
    assert cut_spec.dates == spec.dates
    assert_same_features(full, feature_rows(cut_table))


def check_ever(events):
    from sparkify.features import LabelSpec, build_user_table

    cancel = F.col("page").isin("Cancel", "Cancellation Confirmation") | (F.col("auth") == "Cancelled")
    assert events.filter(cancel).count() > 0, "no cancellation events: vacuous test"
    table, spec = build_user_table(events, LabelSpec(mode="ever"), artists=True)
    without = events.filter(~cancel)
    cut_table, cut_spec = build_user_table(without, LabelSpec(mode="ever"), artists=True)
    full = feature_rows(table)
    assert sum(r["churn"] for r in table.select("churn").collect()) > 0
    assert_same_features(full, feature_rows(cut_table))
    assert {r["churn"] for r in cut_table.select("churn").collect()} == {0}


@pytest.fixture(scope="module")
def hand_events(spark):
    from test_features import HAND_ROWS, make_events

    return make_events(spark, HAND_ROWS)


def test_window_no_leakage_hand_built(hand_events):
    check_window(hand_events, cutoff=datetime(2018, 11, 1, tzinfo=UTC))


def test_ever_no_leakage_hand_built(hand_events):
    check_ever(hand_events)


@pytest.fixture(scope="module")
def small_events(spark, compact_log):
    from sparkify.dataset import load_events

    loaded = load_events(spark, compact_log)
    yield loaded.events
    loaded.unpersist()


def test_window_no_leakage_simulated_log(small_events):
    check_window(small_events)


def test_ever_no_leakage_simulated_log(small_events):
    check_ever(small_events)


def test_window_no_leakage_one_pass(spark, compact_log, tmp_path):
    """The same proof on the raw-JSON path (``load_log``): the rows at every date are the
    same when the log file itself ends before the latest date T."""
    import json

    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, build_user_table

    lines = compact_log.read_text(encoding="utf-8").splitlines()
    with load_log(spark, compact_log, artists=True) as log:
        table, spec = build_user_table(log.days, LabelSpec(step_days=3))
        full = feature_rows(table)
        assert len(spec.dates) >= 2 and 1 in {r["churn"] for r in table.select("churn").collect()}
    t_ms = max(spec.dates)
    kept = [line for line in lines if json.loads(line)["ts"] < t_ms]
    after_users = {json.loads(line)["userId"] for line in lines if json.loads(line)["ts"] >= t_ms}
    assert len(kept) < len(lines) and after_users & {u for u, _ in full}, "nothing after T: vacuous test"
    cut = tmp_path / "before_T.json"
    cut.write_text("\n".join(kept) + "\n", encoding="utf-8")
    with load_log(spark, cut, artists=True) as cut_log:
        cut_table, cut_spec = build_user_table(cut_log.days, spec)
        assert cut_spec.dates == spec.dates
        assert_same_features(full, feature_rows(cut_table))
