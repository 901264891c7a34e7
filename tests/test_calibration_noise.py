"""The noise of calibration figures when rows of one user are not independent."""

import numpy as np

from sparkify.modeling.calibration import design_effect, probability_figures, reliability


def _users(n_users: int, rows_each: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    p_user = rng.uniform(0.02, 0.4, n_users)
    y_user = (rng.random(n_users) < p_user).astype(int)
    users = np.repeat(np.arange(n_users), rows_each)
    return users, np.repeat(y_user, rows_each), np.repeat(p_user, rows_each)


def test_design_effect_counts_copies_as_one_row():
    users, _, _ = _users(300, 5)
    assert abs(design_effect(users) - 5.0) < 1e-9              # each user's 5 rows
    assert abs(design_effect(np.arange(1500)) - 1.0) < 1e-9     # every row its own group
    assert design_effect(np.zeros(10)) == 10.0                  # one user's 10 rows are one row
    assert abs(design_effect(np.array([0] * 8 + [1, 2])) - 6.6) < 1e-9


def test_a_bin_of_few_users_who_all_stay_is_not_a_tight_interval():
    """60 rows of 4 users, none of whom churns, predicted 0.15: 4 users staying is no
    evidence against 15 % (as 60 independent rows would be)."""
    y, p = np.zeros(60, dtype=int), np.full(60, 0.15)
    users = np.repeat(np.arange(4), 15)
    (plain,) = reliability(y, p, 1)
    (grouped,) = reliability(y, p, 1, groups=users)
    assert not plain["within"] and grouped["within"] and grouped["effective_rows"] == 4.0
    assert probability_figures(y, p, bins=1, groups=users)["calibration_p"] > 0.05
    assert probability_figures(y, p, bins=1)["calibration_p"] < 0.01


def test_grouped_intervals_are_wider_and_singletons_change_nothing():
    users, y, p = _users(200, 8)
    plain = reliability(y, p, 5)
    grouped = reliability(y, p, 5, groups=users)
    singles = reliability(y, p, 5, groups=np.arange(len(y)))
    for a, b, c in zip(plain, grouped, singles):
        assert b["observed_hi"] - b["observed_lo"] > a["observed_hi"] - a["observed_lo"]
        assert b["effective_rows"] < a["rows"]
        assert abs(c["observed_lo"] - a["observed_lo"]) < 1e-12 and abs(c["observed_hi"] - a["observed_hi"]) < 1e-12


def test_expected_sd_by_user_reflects_shared_outcomes():
    users, y, p = _users(400, 10)
    plain = probability_figures(y, p)
    grouped = probability_figures(y, p, groups=users)
    # ten copies of one outcome: the count's sd is about sqrt(10) times the independent one
    assert 2.0 < grouped["expected_sd"] / plain["expected_sd"] < 4.5
    assert grouped["noise"] == "rows grouped by user" and plain["noise"] == "independent rows"
    assert abs(grouped["z"]) < abs(plain["z"]) or plain["z"] == 0.0
