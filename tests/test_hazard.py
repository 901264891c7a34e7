"""The true churn hazard of simulated users (sparkify.simulator.hazard): exact session
outcomes, the vectorised session-start rule, the run spec beside the truth, and
calibration against what actually happened in a simulated log."""

from __future__ import annotations

import json
import math
from bisect import bisect_right

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sparkify.simulator import simulate
from sparkify.simulator.engine import DAY, Timing, UserBlock, next_session_start, simulate_block
from sparkify.simulator.eventsim_config import compile_model, load_config
from sparkify.simulator.hazard import (
    META_KEY,
    _Calendar,
    mean_session_durations,
    read_truth,
    run_model,
    session_outcomes,
    true_churn_probability,
    visible_rows_before,
)
from sparkify.simulator.presets import DEFAULT_COHORTS, Cohort
from sparkify.simulator.songs import build_catalogue

OCT1 = 1538352000  # 2018-10-01 00:00 UTC
LOG_DAYS = 30
AS_OF_DAYS = (6, 16)  # observation midnights (days after the window start)
HORIZON = 14.0  # days: (6, 20] and (16, 30] both end inside the window


# ----------------------------------------------------------------------------- helpers
def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties averaged)."""
    y = np.asarray(y, dtype=bool)
    ranks = pd.Series(p).rank().to_numpy()
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def observation_rows(events: pd.DataFrame, truth: pd.DataFrame, t_ms: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Users subscribed at t whose last visible event came before t, their level and auth
    at t (Logged Out after a Logout), and whether they churned in (t, t + HORIZON]."""
    before = events[events["ts"] < t_ms]
    last = before.groupby("userId", sort=False).tail(1).set_index("userId")
    last = last[last["auth"] != "Cancelled"]
    rows = pd.DataFrame({
        "userId": last.index.astype(str), "as_of_ms": t_ms, "level": last["level"].to_numpy(),
        "auth": np.where(last["page"].to_numpy() == "Logout", "Logged Out", "Logged In"),
    })
    churn = truth.set_index("userId").loc[rows["userId"], "churn_ts"].to_numpy()
    assert not (churn <= t_ms).any()  # NaN (no churn) compares False
    y = (churn > t_ms) & (churn <= t_ms + HORIZON * DAY * 1000)
    return rows, y


def timing_of(cfg) -> Timing:
    """The engine's session timing for a config (as simulate() builds it)."""
    return Timing(session_gap=int(cfg.session_gap), damping=cfg.damping, weekend_damping=cfg.weekend_damping,
                  weekend_offset=cfg.weekend_damping_offset * 60, weekend_scale=cfg.weekend_damping_scale * 60)


def z_score(p: np.ndarray, y: np.ndarray) -> float:
    return float((y.sum() - p.sum()) / math.sqrt((p * (1 - p)).sum()))


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory):
    """1,200 users over 30 days, the default cohort mix; rows at two midnights."""
    out = tmp_path_factory.mktemp("hazard") / "x.json"
    summary = simulate(out=out, users=1200, days=LOG_DAYS, seed=2024, progress=False)
    truth = pq.read_table(summary.truth_path).to_pandas()
    t_list = [(OCT1 + d * DAY) * 1000 for d in AS_OF_DAYS]
    events = visible_rows_before(out, max(t_list))
    obs = [observation_rows(events, truth, t) for t in t_list]
    rows = pd.concat([r for r, _ in obs], ignore_index=True)
    y = np.concatenate([y for _, y in obs])
    return summary, truth, rows, y


# ----------------------------------------------------------------------------- one session
def _walk(m, group: int, rng) -> int:
    """One session by the engine's rule (first edge whose cumulative p exceeds u, else the
    end); returns the end group, or len(m.groups) when it churns."""
    s = m.start_dest[group][bisect_right(m.start_cum[group], rng.random())]
    while True:
        j = bisect_right(m.cum[s], rng.random())
        if j >= len(m.dest[s]):
            return len(m.groups) if m.churn[s] else m.group[s]
        s = m.dest[s][j]


def test_session_outcomes_match_a_brute_force_walk_of_the_page_chain():
    cfg = load_config()
    fickle = next(c for c in DEFAULT_COHORTS if c.name == "fickle")
    m = compile_model(cfg, fickle.page_scale, fickle.end_scale)
    out = session_outcomes(m)
    k = len(m.groups)
    assert out.shape == (k, k + 1) and np.allclose(out.sum(axis=1), 1.0) and (out >= 0).all()
    assert out[m.group_id("Guest", "free"), k] < out[m.group_id("Logged In", "free"), k]  # register first
    g = m.group_id("Logged In", "paid")
    rng = np.random.default_rng(1)
    n = 30_000
    counts = np.bincount([_walk(m, g, rng) for _ in range(n)], minlength=k + 1)
    se = np.sqrt(out[g] * (1 - out[g]) / n)
    assert (np.abs(counts / n - out[g]) <= 4.5 * se + 1e-9).all(), (counts / n, out[g])
    assert counts[k] > 200  # the churn outcome is really exercised


def test_mean_session_lengths_match_the_engine():
    """Mean first-to-last-event time of non-churning sessions, by start group, from the
    engine itself (alpha 90 s) vs the hazard's table."""
    cfg = load_config()
    core = DEFAULT_COHORTS[0]
    m = compile_model(cfg, core.page_scale, core.end_scale)
    cat = build_catalogue()
    n_users = 96
    start, end = OCT1, OCT1 + 30 * DAY
    groups = np.array([m.group_id("Logged In", "free"), m.group_id("Logged In", "paid")] * (n_users // 2))
    block = UserBlock(index=np.arange(n_users), cohort=np.zeros(n_users, np.int16), alpha=np.full(n_users, 90.0),
                      beta=np.full(n_users, 3600.0), t0=np.full(n_users, start, np.int64), group=groups, seed=3)
    res = simulate_block(block, [m], start, end, timing_of(cfg), cat.cum, cat.length_s)
    ev = pd.DataFrame({"ts": res.ts, "state": res.code & 0xFF, "session": res.session})
    per = ev.groupby("session").agg(t0=("ts", "min"), t1=("ts", "max"), first=("state", "first"),
                                    last=("state", "last"))
    users = res.sess_user
    # drop each user's first session (it may have begun in the warm-up) and last one (cut by the end)
    first_of_user = np.r_[True, users[1:] != users[:-1]]
    last_of_user = np.r_[users[1:] != users[:-1], True]
    keep = ~first_of_user & ~last_of_user
    per = per[keep[per.index.to_numpy()]]
    per = per[~np.asarray(m.churn)[per["last"].to_numpy()]]
    per["group"] = np.asarray(m.group)[per["first"].to_numpy()]
    per["dur"] = per["t1"] - per["t0"]
    table = mean_session_durations(m, alphas=np.array([90.0]))[:, 0]
    for g in (m.group_id("Logged In", "free"), m.group_id("Logged In", "paid")):
        d = per.loc[per["group"] == g, "dur"].to_numpy()
        assert len(d) > 700
        se = d.std() / math.sqrt(len(d)) * math.sqrt(2)  # the table is a Monte Carlo estimate too
        assert abs(d.mean() - table[g]) < 4 * se, (m.groups[g], d.mean(), table[g])


# ----------------------------------------------------------------------------- between sessions
def test_vectorised_session_start_rule_matches_the_engine():
    timing = timing_of(load_config())
    lo, hi = OCT1, OCT1 + 75 * DAY  # covers weekends, Columbus/Veterans Day and Thanksgiving
    cal = _Calendar(timing, lo, hi)
    rng = np.random.default_rng(5)
    ts = rng.integers(lo, hi, 20_000)
    assert (cal.warp(ts) == np.array([timing.warp(int(t)) for t in ts])).all()
    assert np.allclose(cal.weekend(ts), [timing.weekend(int(t)) for t in ts], atol=1e-12)
    # the distribution of the next start from a Friday evening, beta one day
    last = OCT1 + 4 * DAY + 20 * 3600
    beta, n = 86_400.0, 20_000
    r1 = np.random.default_rng(7)
    ref = np.array([next_session_start(last, beta, timing, r1.random, r1.standard_exponential) for _ in range(n)])
    vec = cal.next_start(np.full(n, last, np.int64), np.full(n, beta), np.full(n, hi, np.int64),
                         np.random.default_rng(8))
    assert abs(ref.mean() - vec.mean()) < 4 * ref.std() * math.sqrt(2 / n)
    weekend = lambda t: ((t // DAY + 3) % 7 >= 5).mean()  # noqa: E731
    assert abs(weekend(ref) - weekend(vec)) < 4 * math.sqrt(0.25 * 2 / n)
    assert (vec >= last).all()  # eventsim only retries a candidate that moved backwards


# ----------------------------------------------------------------------------- the run spec
def test_truth_carries_the_run_spec_and_old_tables_fall_back_to_the_defaults(sim_log, tmp_path):
    summary, truth, rows, _ = sim_log
    spec = json.loads(truth.attrs[META_KEY])
    assert [c["name"] for c in spec["cohorts"]] == [c.name for c in DEFAULT_COHORTS]
    assert spec["config"]["transitions"] and spec["start"] == OCT1 and spec["end"] == OCT1 + LOG_DAYS * DAY
    run = run_model(truth)
    cfg = load_config()
    for c, m in zip(DEFAULT_COHORTS, run.models):
        assert m.cum == compile_model(cfg, c.page_scale, c.end_scale).cum
    # a table written before the spec existed: same answer from the defaults (by cohort name)
    bare = pq.read_table(summary.truth_path).replace_schema_metadata(None).to_pandas()
    assert META_KEY not in bare.attrs
    sub = rows.iloc[:300]
    assert np.array_equal(true_churn_probability(bare, sub, 7, n_paths=50),
                          true_churn_probability(truth, sub, 7, n_paths=50))
    assert read_truth(summary.truth_path).attrs[META_KEY] == truth.attrs[META_KEY]
    # a run with its own cohort: the spec rebuilds it (pass spec= the truth path after a merge)
    s2 = simulate(out=tmp_path / "one.json", users=20, days=3, seed=1, progress=False, cohorts=(
        Cohort("solo", 1.0, 0, {"Cancel": 9.0}, end_scale=1.2),))
    merged = pq.read_table(s2.truth_path).to_pandas().merge(pd.DataFrame({"userId": ["1"]}), how="inner")
    solo = run_model(merged, spec=s2.truth_path)
    assert solo.cohorts[0].name == "solo" and solo.cohorts[0].page_scale == {"Cancel": 9.0}
    assert solo.models[0].cum == compile_model(cfg, {"Cancel": 9.0}, 1.2).cum


# ----------------------------------------------------------------------------- calibration
def test_predicted_churners_match_the_realized_ones(sim_log):
    """Sum of P(churn in (t, t+14d]) over the users subscribed at two midnights vs how many
    did churn: within 3 standard errors overall and at each level; churners ranked high."""
    _, truth, rows, y = sim_log
    p = true_churn_probability(truth, rows, HORIZON, n_paths=400, seed=0)
    assert p.shape == (len(rows),) and ((p >= 0) & (p <= 1)).all()
    z = z_score(p, y)
    print(f"\nhazard calibration: {len(rows)} rows, predicted {p.sum():.1f} churners, realized {int(y.sum())}, "
          f"z = {z:+.2f}, AUC = {auc(y, p):.3f}")
    assert len(rows) > 1800 and y.sum() > 100
    assert abs(z) < 3
    for level in ("free", "paid"):
        sel = rows["level"].to_numpy() == level
        print(f"  {level}: {int(sel.sum())} rows, predicted {p[sel].sum():.1f}, realized {int(y[sel].sum())}, "
              f"z = {z_score(p[sel], y[sel]):+.2f}")
        assert abs(z_score(p[sel], y[sel])) < 3, level
    assert auc(y, p) > 0.7
    # without the auth column (drawn from its stationary share): about the same
    p2 = true_churn_probability(truth, rows.drop(columns="auth"), HORIZON, n_paths=400, seed=0)
    assert abs(z_score(p2, y)) < 3 and abs(p2.sum() - p.sum()) < 0.03 * p.sum()


def test_deterministic_monotone_and_validated(sim_log):
    _, truth, rows, _ = sim_log
    sub = rows.iloc[:400].reset_index(drop=True)
    a = true_churn_probability(truth, sub, 10, n_paths=200, seed=3)
    assert np.array_equal(a, true_churn_probability(truth, sub, 10, n_paths=200, seed=3))
    b = true_churn_probability(truth, sub, 10, n_paths=200, seed=4)
    assert not np.array_equal(a, b) and abs(a.sum() - b.sum()) < 0.05 * a.sum()
    short = true_churn_probability(truth, sub, 2, n_paths=200, seed=3)
    long = true_churn_probability(truth, sub, 30, n_paths=200, seed=3)
    assert short.sum() < a.sum() < long.sum()
    paid = true_churn_probability(truth, sub.assign(level="paid", auth="Logged In"), 10, n_paths=200)
    free = true_churn_probability(truth, sub.assign(level="free", auth="Logged In"), 10, n_paths=200)
    assert paid.sum() > free.sum()  # the Accordion template cancels more from paid pages
    assert len(true_churn_probability(truth, sub.iloc[:0], 10)) == 0
    # an unknown auth (null) is drawn from the stationary shares, as without the column
    assert np.array_equal(true_churn_probability(truth, sub.assign(auth=None), 10, n_paths=50),
                          true_churn_probability(truth, sub.drop(columns="auth"), 10, n_paths=50))
    with pytest.raises(ValueError, match="not in the truth"):
        true_churn_probability(truth, sub.assign(userId="nobody"), 10)
    with pytest.raises(ValueError, match="level"):
        true_churn_probability(truth, sub.drop(columns="auth").assign(level="gold"), 10)
    with pytest.raises(ValueError, match="auth"):
        true_churn_probability(truth, sub.assign(auth="Cancelled"), 10)
    with pytest.raises(ValueError, match="lacks"):
        true_churn_probability(truth, sub.drop(columns="level"), 10)
    with pytest.raises(ValueError, match="horizon"):
        true_churn_probability(truth, sub, 0)
    with pytest.raises(TypeError, match="unknown option"):
        true_churn_probability(truth, sub, 1, bogus=1)
