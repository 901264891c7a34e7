"""The family choice (:func:`sparkify.modeling.selection.selection_table`) on out-of-fold
scores made up in NumPy: no JVM."""

from __future__ import annotations

import numpy as np
import pytest

from sparkify.modeling import evaluate as ev
from sparkify.modeling.selection import (
    CVOutcome,
    Scored,
    choice_note,
    f1_standard_error,
    fraction_of_ceiling,
    fraction_text,
    pr_auc_gain,
    pr_auc_ratio_interval,
    selection_table,
)


def outcome(family: str, users: np.ndarray, labels: np.ndarray, scores: np.ndarray,
            as_of: np.ndarray | None = None) -> CVOutcome:
    """Out-of-fold scores of one row per (user, date); dates by position unless given."""
    as_of = np.arange(len(users), dtype=np.int64) if as_of is None else as_of
    oof = Scored(users, as_of, labels, scores, folds=np.zeros(len(users), dtype=int))
    return CVOutcome(family, None, {}, 1, [0.0], oof, 1.0)


def population(n_users: int = 300, rows_per_user: int = 5, churn: float = 0.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users).astype(str), rows_per_user)
    labels = (rng.random(len(users)) < churn).astype(int)
    return rng, users, labels


def test_a_clear_f1_leader_is_chosen_even_with_a_lower_pr_auc():
    rng, users, labels = population()
    # "rf" separates the classes well; "lr" ranks a few churners first, then nothing
    good = labels * 1.5 + rng.normal(0, 0.5, len(labels))
    top_only = np.where((labels == 1) & (np.arange(len(labels)) % 10 == 0), 10.0, rng.normal(0, 1, len(labels)))
    outcomes = {"rf": outcome("rf", users, labels, good), "lr": outcome("lr", users, labels, top_only)}
    t = selection_table(outcomes)
    assert t["families"]["rf"]["f1"] - t["families"]["lr"]["f1"] > 3 * t["standard_error"]
    assert t["leader"] == t["chosen"] == "rf"
    assert not t["families"]["lr"]["tied"] and t["families"]["rf"]["tied"]


def test_f1_within_the_noise_ties_and_pr_auc_decides():
    rng, users, labels = population()
    base = labels * 0.8 + rng.normal(0, 1, len(labels))
    # the same scores but the first churners pushed to the very top: a better ranking at
    # the head (PR-AUC) and about the same F1 at the best threshold
    head = base.copy()
    first = np.flatnonzero(labels == 1)[:8]
    head[first] = 100.0
    outcomes = {"gbt": outcome("gbt", users, labels, base), "svc": outcome("svc", users, labels, head)}
    t = selection_table(outcomes)
    f1 = {f: v["f1"] for f, v in t["families"].items()}
    pr = {f: v["pr_auc"] for f, v in t["families"].items()}
    assert abs(f1["gbt"] - f1["svc"]) < t["standard_error"] and pr["svc"] > pr["gbt"]
    assert t["chosen"] == "svc" and all(v["tied"] for v in t["families"].values())
    assert "the best PR-AUC decides" in choice_note(t) and "LinearSVC" in choice_note(t)
    # the out-of-fold figures say what they rest on
    assert (t["rows"], t["users"], t["churners"]) == (len(users), 300, int(labels.sum()))
    assert f"on {len(users):,} rows of 300 users, {int(labels.sum()):,} churner rows" in choice_note(t)


def test_the_f1_standard_error_resamples_users_and_shrinks_with_more_of_them():
    rng, users, labels = population(n_users=100)
    scores = labels + rng.normal(0, 1, len(labels))
    small = f1_standard_error(outcome("lr", users, labels, scores))
    rng, users, labels = population(n_users=1600)
    scores = labels + rng.normal(0, 1, len(labels))
    large = f1_standard_error(outcome("lr", users, labels, scores))
    assert 0 < large < small / 2  # sqrt(16) = 4 times fewer users' noise, within sampling error
    # a user's rows move together: rows that repeat their user's label and score carry the
    # information of one row each, and the resampling by user says so
    rng = np.random.default_rng(3)
    user_labels = (rng.random(320) < 0.2).astype(int)
    user_scores = user_labels + rng.normal(0, 1, 320)
    rows_labels, rows_scores = np.repeat(user_labels, 25), np.repeat(user_scores, 25)
    by_user = f1_standard_error(outcome("lr", np.repeat(np.arange(320), 25).astype(str), rows_labels, rows_scores))
    by_row = f1_standard_error(outcome("lr", np.arange(8000).astype(str), rows_labels, rows_scores))
    assert by_user > 3 * by_row  # about sqrt(25) = 5
    assert f1_standard_error(outcome("lr", users, labels, scores), seed=1) == pytest.approx(large, rel=0.3)
    assert ev.best_threshold(labels, scores)[1] > 0


def test_the_class_weight_gain_is_paired_by_user_and_read_with_its_noise():
    rng, users, labels = population(n_users=200)
    base = labels * 0.8 + rng.normal(0, 1, len(labels))
    same = outcome("rf", users, labels, base).oof
    gain, se = pr_auc_gain(same, same)
    assert gain == 0 and se == 0  # the same scores: no gain, and no noise in a paired difference
    # the other model in another row order: matched by user and date, not by position
    shuffled = rng.permutation(len(labels))
    clear = labels * 2.0 + rng.normal(0, 1, len(labels))
    clearer = outcome("rf", users[shuffled], labels[shuffled], clear[shuffled], np.arange(len(labels))[shuffled]).oof
    gain, se = pr_auc_gain(same, clearer)
    assert gain == pytest.approx(ev.average_precision(labels[shuffled], clearer.scores) - ev.average_precision(labels, base))
    assert gain > 3 * se > 0
    nudged = outcome("rf", users, labels, base + rng.normal(0, 0.05, len(labels))).oof  # a hair apart
    gain, se = pr_auc_gain(same, nudged)
    assert abs(gain) < 3 * se
    with pytest.raises(ValueError, match="different rows"):
        pr_auc_gain(same, outcome("rf", users[:-5], labels[:-5], base[:-5]).oof)


def test_the_fraction_of_the_ceiling_carries_an_interval_from_resampling_users():
    rng, users, labels = population(n_users=300)
    truth = labels * 1.5 + rng.normal(0, 1, len(labels))
    model = truth + rng.normal(0, 1.5, len(labels))           # the truth blurred: a weaker ranking
    f = fraction_of_ceiling(users, labels, model, truth)
    assert f["model_pr_auc_fraction"] == pytest.approx(ev.average_precision(labels, model)
                                                       / ev.average_precision(labels, truth))
    low, high = f["fraction_interval"]
    assert low < f["model_pr_auc_fraction"] < high < 1       # clearly below the truth, and it says so
    same = fraction_of_ceiling(users, labels, truth, truth)
    assert same["model_pr_auc_fraction"] == 1 and same["fraction_interval"] == [1.0, 1.0]
    # a user's rows move together: the same information copied onto more rows per user
    # does not narrow the interval
    wide = fraction_of_ceiling(np.repeat(users, 4), np.repeat(labels, 4), np.repeat(model, 4), np.repeat(truth, 4))
    assert (wide["fraction_interval"][1] - wide["fraction_interval"][0]) > 0.7 * (high - low)
    assert "95 % interval" in fraction_text(f) and fraction_text({"model_pr_auc_fraction": 0.5}) == "0.50"
    assert np.isnan(fraction_of_ceiling(users, np.zeros_like(labels), model, truth)["model_pr_auc_fraction"])


def test_a_ratio_of_pr_aucs_on_two_sets_of_users_reads_with_its_noise():
    rng, users, labels = population(n_users=300)
    scores = labels * 1.2 + rng.normal(0, 1, len(labels))
    later_rng, later_users, later_labels = population(n_users=300, seed=1)
    weaker = later_labels * 0.6 + later_rng.normal(0, 1, len(later_labels))
    ratio = ev.average_precision(later_labels, weaker) / ev.average_precision(labels, scores)
    low, high = pr_auc_ratio_interval((later_users, later_labels, weaker), (users, labels, scores))
    assert low < ratio < high < 1                     # clearly weaker later, and the interval says so
    small = pr_auc_ratio_interval((later_users[:200], later_labels[:200], weaker[:200]), (users, labels, scores))
    assert small[1] - small[0] > high - low           # fewer users, wider
    assert ev.interval_text([low, high]) == f" (95 % interval {low:.2f}-{high:.2f}, users resampled)"
    assert ev.interval_text([float("nan"), 1.0]) == "" and ev.interval_text(None) == ""


def test_users_on_both_sides_of_a_ratio_move_together():
    """The backtest scores the model's own test users again later: resampled together, a
    user's noise cancels in the ratio, so the interval of a ratio of the same rows is a
    point and that of two sets sharing their users is narrower than of two disjoint sets."""
    rng, users, labels = population(n_users=300)
    scores = labels * 1.2 + rng.normal(0, 1, len(labels))
    assert pr_auc_ratio_interval((users, labels, scores), (users, labels, scores)) == [1.0, 1.0]
    later = scores + rng.normal(0, 0.3, len(labels))              # the same users, a little later
    shared = pr_auc_ratio_interval((users, labels, later), (users, labels, scores))
    apart = pr_auc_ratio_interval((np.char.add("x", users), labels, later), (users, labels, scores))
    assert shared[1] - shared[0] < 0.5 * (apart[1] - apart[0])
