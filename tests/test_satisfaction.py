"""The satisfaction churn model: known drivers, a recorded hazard, a true probability (no JVM)."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import orjson
import pandas as pd
import pytest

from sparkify.modeling.drivers import first_raising_reason, importance_order
from sparkify.scorer.model import Reason
from sparkify.simulator import TRUTH_META_KEY, simulate
from sparkify.simulator.hazard import read_truth, true_churn_probability
from sparkify.simulator.satisfaction import (
    DAY,
    DRIVER_FEATURES,
    STATE_FIELDS,
    SatisfactionModel,
    UserMood,
    planted_drivers,
)

START = 1538352000  # 2018-10-01 00:00 UTC, the default window start


@pytest.fixture(scope="module")
def sat_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("sat") / "sat.json"
    summary = simulate(out, users=160, days=40, seed=3, churn_model="satisfaction", progress=False, workers=1)
    return summary, read_truth(summary.truth_path)


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, sat_log):
    summary, _ = sat_log
    again = simulate(tmp_path / "again.json", users=160, days=40, seed=3, churn_model="satisfaction",
                     progress=False, workers=2)
    assert again.path.read_bytes() == summary.path.read_bytes()
    assert again.truth_path.read_bytes() == summary.truth_path.read_bytes()


def test_cancelling_happens_only_through_the_hazard_visit(sat_log):
    summary, truth = sat_log
    previous, before_cancel, confirmed = {}, Counter(), set()
    for line in summary.path.read_bytes().splitlines():
        r = orjson.loads(line)
        if r["page"] == "Cancel":
            before_cancel[previous.get(r["userId"])] += 1
        if r["page"] == "Cancellation Confirmation":
            confirmed.add(r["userId"])
        previous[r["userId"]] = r["page"]
    assert confirmed == set(truth.loc[truth["churned"], "userId"]) and len(confirmed) >= 10
    assert set(before_cancel) == {"Settings"}  # the template's own Cancel edges are off
    # each churner's last decision (the last recorded hazard) came on the day it cancelled, or the
    # day before when a session was in progress at the time; none after
    for _, u in truth[truth["churned"]].iterrows():
        day = (int(u["churn_ts"]) // 1000 - START) // DAY
        decided = np.flatnonzero(~np.isnan(np.asarray(u["daily_hazard"], dtype=float)))
        assert day - 1 <= decided[-1] <= day


def test_the_truth_reproduces_each_daily_hazard_from_the_recorded_state(sat_log):
    _, truth = sat_log
    spec = json.loads(truth.attrs[TRUTH_META_KEY])
    assert spec["churn_model"] == "satisfaction"
    model = SatisfactionModel.from_dict(spec["satisfaction"])
    group_paid = {1: False, 2: False, 3: True, 4: True}  # (Logged In|Out, free|paid) groups of the template
    checked = 0
    for _, u in truth.head(40).iterrows():
        states = np.asarray(u["daily_state"]).reshape(-1, len(STATE_FIELDS))
        for day, h in enumerate(np.asarray(u["daily_hazard"], dtype=float)):
            if np.isnan(h):
                continue
            mood = UserMood.from_state(model, float(u["baseline"]), states[day])
            paid = group_paid[int(states[day][STATE_FIELDS.index("group")])]
            assert model.daily_hazard(mood.dissatisfaction(START + day * DAY), paid) == pytest.approx(h, rel=1e-6)
            checked += 1
    assert checked > 500


def test_planted_drivers_raise_the_hazard():
    m = SatisfactionModel()
    calm, fussy, blow = UserMood(m, 0.0), UserMood(m, 0.0), UserMood(m, 0.0)
    calm.update(START, [300, 1, 0, 0, 1, 0])
    fussy.update(START, [300, 12, 15, 0, 6, 0])  # more thumbs down, adverts and help per song
    blow.update(START, [300, 1, 0, 1, 1, 1])  # an error and a downgrade
    base = calm.dissatisfaction(START)
    assert m.daily_hazard(fussy.dissatisfaction(START), False) > 3 * m.daily_hazard(base, False)
    assert blow.dissatisfaction(START) == pytest.approx(base + m.shock_weights["errors"] + m.shock_weights["downgrades"])
    assert m.engagement(fussy.dissatisfaction(START)) < m.engagement(base)
    # shares, not counts: twice the listening (with the prior) and twice the drivers is the same
    busy = UserMood(m, 0.0)
    busy.update(START, [600 + m.prior_songs, 24, 30, 0, 12, 0])
    assert busy.dissatisfaction(START) == pytest.approx(fussy.dissatisfaction(START))
    # blows fade with the half-life
    later = START + int(m.half_life_days * DAY)
    assert blow.dissatisfaction(later) - calm.dissatisfaction(later) == pytest.approx(
        (blow.dissatisfaction(START) - base) / 2, rel=1e-6)
    drivers = {d["driver"]: d for d in planted_drivers({"satisfaction": m.to_dict()})}
    assert set(drivers) == set(DRIVER_FEATURES) and min(d["effect"] for d in drivers.values()) > 0
    assert drivers["level"]["effect"] == pytest.approx(math.log(m.hazard["paid"] / m.hazard["free"]) / m.hazard_slope)


def test_true_probability_matches_the_churners_that_followed(sat_log):
    _, truth = sat_log
    day, horizon = 12, 14
    as_of = START + day * DAY
    hz = np.stack(truth["daily_hazard"].to_numpy())
    alive = ~np.isnan(hz[:, day]) & (truth["churn_ts"].isna() | (truth["churn_ts"] > as_of * 1000)).to_numpy()
    rows = pd.DataFrame({"userId": truth.loc[alive, "userId"], "as_of_ms": as_of * 1000, "level": "free"})
    p = true_churn_probability(truth, rows, horizon, n_paths=8)
    churn_ts = truth.loc[alive, "churn_ts"]
    realized = int(((churn_ts > as_of * 1000) & (churn_ts <= (as_of + horizon * DAY) * 1000)).sum())
    expected, sd = p.sum(), math.sqrt((p * (1 - p)).sum())
    assert len(rows) > 100 and realized >= 5
    assert abs(realized - expected) < 3 * sd + 1
    # the users who did cancel had been given the higher probabilities
    y = ((churn_ts > as_of * 1000) & (churn_ts <= (as_of + horizon * DAY) * 1000)).to_numpy()
    assert p[y].mean() > 1.5 * p[~y].mean()
    # deterministic for a seed
    assert np.array_equal(p[:10], true_churn_probability(truth, rows.head(10), horizon, n_paths=8))


def test_unknown_churn_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown churn model 'memoryless'"):
        simulate(tmp_path / "x.json", users=5, days=2, churn_model="memoryless", progress=False)


def test_importances_fold_one_hot_columns_and_reasons_pick_the_first_raising():
    imps = [{"feature": "level = paid", "value": -0.9}, {"feature": "thumbs_down_per_day", "value": 0.5},
            {"feature": "level = free", "value": 0.95}, {"feature": "help_per_day", "value": 0.1}]
    assert importance_order(imps) == ["level", "thumbs_down_per_day", "help_per_day"]
    reasons = [Reason("songs_per_day", 1.0, -0.4, "lowers"), Reason("help_per_day", 0.2, 0.1, "raises")]
    assert first_raising_reason(reasons) == "help_per_day"
    assert first_raising_reason(reasons[:1]) is None


def test_driver_contributions_add_up_to_the_recorded_log_hazard(sat_log):
    from sparkify.simulator.satisfaction import driver_contributions

    _, truth = sat_log
    spec = json.loads(truth.attrs[TRUTH_META_KEY])
    model = SatisfactionModel.from_dict(spec["satisfaction"])
    day = 10
    hz = np.stack(truth["daily_hazard"].to_numpy()).astype(float)
    alive = ~np.isnan(hz[:, day]) & (hz[:, day] < model.max_hazard)
    rows = pd.DataFrame({"userId": truth.loc[alive, "userId"], "as_of_ms": (START + day * DAY) * 1000})
    parts = driver_contributions(truth, rows, spec)
    expected = (np.log(hz[alive, day] / model.hazard["free"])
                - model.hazard_slope * truth.loc[alive, "baseline"].to_numpy())
    assert len(rows) > 100
    assert np.allclose(parts.sum(axis=1).to_numpy(), expected, atol=1e-4)
    assert (parts >= 0).all().all() and (parts["thumbs_down"] > 0).mean() > 0.5


def test_training_on_a_satisfaction_log_keeps_the_ceiling_and_its_drivers(spark, sat_log, tmp_path, monkeypatch):
    """End to end on a ``--churn-model satisfaction`` log: training's ceiling stage (the true
    probability simulated forward, the hazard at t, the planted drivers) lands in
    metrics.json. The ceiling stage turns any exception into a progress note, so a break in
    the satisfaction branch would otherwise only drop ``metrics["ceiling"]`` silently.
    The cheapest plan that reaches it: sat_log (40 days, so a 14-day horizon, two weekly
    dates), logistic regression alone at the fast settings."""
    from sparkify.features import LabelSpec
    from sparkify.modeling import extras
    from sparkify.modeling.train import TrainConfig, train

    summary, _ = sat_log
    model_dir = tmp_path / "sat_model"
    # the threshold rows' true probabilities are simulated forward (~40 ms a row): a sample will do here
    monkeypatch.setattr(extras, "FORWARD_THRESHOLD_ROWS", 60)
    train(spark, summary.path, model_dir, TrainConfig.fast(models=("lr",), verbose=False,
                                                          label=LabelSpec(horizon_days=14, step_days=7)))
    metrics = json.loads((model_dir / "metrics.json").read_text())
    best, c = metrics["best"]["test"], metrics["ceiling"]
    assert c is not None, "the ceiling stage was skipped (see its progress note)"
    assert c["churn_model"] == "satisfaction"
    t = c["test"]
    assert t["rows"] == best["rows"] and t["churners"] == best["churners"] >= 2  # a few churner rows to rank
    assert 0 <= t["pr_auc"] <= 1 and t["pr_auc"] > 0
    assert t["expected_churners"] > 0
    assert math.isfinite(c["model_pr_auc_fraction"])
    assert c["model_pr_auc_fraction"] == pytest.approx(best["pr_auc"] / t["pr_auc"])
    hz = c["hazard_at_t"]
    assert 0 < hz["pr_auc"] <= 1 and hz["rows"] == t["rows"] and hz["churners"] == t["churners"]
    assert {d["driver"] for d in c["planted"]} == set(DRIVER_FEATURES)
    check = c["drivers"]  # the drivers check, run on the written model directory
    drivers = {d["driver"]: d for d in check["drivers"]}
    assert set(drivers) == set(DRIVER_FEATURES)
    for name, d in drivers.items():
        assert tuple(d["features"]) == DRIVER_FEATURES[name]
        # every driver's features are model inputs: each gets a rank among them
        assert isinstance(d["rank"], int) and d["rank"] >= 1, (name, d["rank"])
        assert isinstance(d["contribution_rank"], int) and d["contribution_rank"] >= 1, (name, d)
        assert d["true_importance"] >= 0
    assert len({d["rank"] for d in drivers.values()}) == len(drivers)  # disjoint features, distinct ranks
    assert 0 < len(check["top_features"]) <= check["top"] and check["reason_rows"] > 0
