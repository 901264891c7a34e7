"""No leakage, by construction and by test.

* window mode: a user's features are identical whether or not the events after the
  cutoff T are in the input;
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


def feature_rows(table) -> dict[str, tuple]:
    from sparkify.features import FEATURE_NAMES

    assert set(FEATURE_NAMES) <= set(table.columns)     # every feature, the artist ones included
    return {r["userId"]: tuple(r[n] for n in FEATURE_NAMES) for r in table.collect()}


def assert_same_features(full: dict, cut: dict) -> None:
    assert full.keys() == cut.keys()
    diffs = [u for u in full if full[u] != cut[u]]
    assert not diffs, f"features changed for {len(diffs)} users, e.g. {diffs[:5]}"


def check_window(events, cutoff=None):
    from sparkify.features import LabelSpec, build_user_table

    table, spec = build_user_table(events, LabelSpec(cutoff=cutoff), artists=True)
    t_ms = int(spec.cutoff.timestamp() * 1000)
    before = events.filter(F.col("ts") < t_ms)
    after_users = {r[0] for r in events.filter(F.col("ts") >= t_ms).select("userId").distinct().collect()}
    full = feature_rows(table)
    assert full and after_users & full.keys(), "no events after T for users of the table: vacuous test"
    labels = {r["userId"]: r["churn"] for r in table.select("userId", "churn").collect()}
    assert 1 in labels.values(), "no churner in the table: vacuous test"
    cut_table, cut_spec = build_user_table(before, spec, artists=True)
    assert cut_spec.cutoff == spec.cutoff
    assert_same_features(full, feature_rows(cut_table))
    # the same holds with an observation window
    spec_w = type(spec)(mode="window", cutoff=spec.cutoff, observation_days=14)
    full_w, _ = build_user_table(events, spec_w, artists=True)
    cut_w, _ = build_user_table(before, spec_w, artists=True)
    assert_same_features(feature_rows(full_w), feature_rows(cut_w))


def check_ever(events):
    from sparkify.features import LabelSpec, build_user_table

    cancel = F.col("page").isin("Cancel", "Cancellation Confirmation") | (F.col("auth") == "Cancelled")
    assert events.filter(cancel).count() > 0, "no cancellation events: vacuous test"
    table, spec = build_user_table(events, LabelSpec(mode="ever"), artists=True)
    without = events.filter(~cancel)
    # default (None) cutoff on purpose: its resolution must not depend on the cancellations
    cut_table, cut_spec = build_user_table(without, LabelSpec(mode="ever"), artists=True)
    assert cut_spec.cutoff == spec.cutoff
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
def small_events(spark, small_log):
    from sparkify.dataset import load_events

    loaded = load_events(spark, small_log)
    yield loaded.events
    loaded.unpersist()


def test_window_no_leakage_small_log(small_events):
    check_window(small_events)


def test_ever_no_leakage_small_log(small_events):
    check_ever(small_events)
