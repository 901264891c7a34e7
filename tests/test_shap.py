"""Exact TreeSHAP and linear contributions.

- Brute force: Shapley values of v(S) = E[f(x) | x_S] (path-dependent, cover-weighted),
  enumerated over all subsets, on a hand-built tiny forest (a feature repeated on a path,
  a categorical split, two weighted trees) and on a Spark-trained GBT with categorical splits.
- Local accuracy: base value + sum of contributions == model output within 1e-9, for the
  Spark-trained RF (probability) and GBT (margin) model directories.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pytest

import scorer_fixtures as fx
from sparkify.scorer import load_model
from sparkify.scorer.pipeline import PipelineScorer
from sparkify.scorer.shap import build_leaf_paths, linear_contributions, tree_shap
from sparkify.scorer.trees import PackedForest


def tiny_forest() -> tuple[PackedForest, np.ndarray]:
    """Tree 0 (weight 1): f0 <= 0.5 ? (f2 in {0, 2} ? (f0 <= -1 ? 1 : 3) : -2) : (f1 <= 2 ? 0.5 : 4)
    Tree 1 (weight 0.5): f1 <= 0 ? 2 : -1. Covers are uneven on purpose."""
    feature = np.array([0, 2, 0, -1, -1, -1, 1, -1, -1, 1, -1, -1])
    threshold = np.array([0.5, np.nan, -1.0, np.nan, np.nan, np.nan, 2.0, np.nan, np.nan, 0.0, np.nan, np.nan])
    left = np.array([1, 2, 3, 3, 4, 5, 7, 7, 8, 10, 10, 11])
    right = np.array([6, 5, 4, 3, 4, 5, 8, 7, 8, 11, 10, 11])
    is_cat = np.zeros(12, dtype=bool)
    is_cat[1] = True
    cat_row = np.zeros(12, dtype=np.int64)
    cat_row[1] = 1
    cat_table = np.zeros((2, 4), dtype=bool)
    cat_table[1, [0, 2]] = True
    prediction = np.array([0, 0, 0, 1.0, 3.0, -2.0, 0, 0.5, 4.0, 0, 2.0, -1.0])
    cover = np.array([100, 60, 35, 10, 25, 25, 40, 30, 10, 100, 70, 30], dtype=float)
    forest = PackedForest(feature=feature, threshold=threshold, left=left, right=right, is_cat=is_cat,
                          cat_row=cat_row, cat_table=cat_table, stats=[np.array([c]) for c in cover],
                          prediction=prediction, cover=cover, roots=np.array([0, 9]),
                          weights=np.array([1.0, 0.5]), depth=3)
    value = prediction * np.array([1.0] * 9 + [0.5] * 3)
    return forest, value


def cond_expectation(forest: PackedForest, value: np.ndarray, x: np.ndarray, S: set[int]) -> float:
    """v(S): sum over trees of E[f | x_S], features outside S averaged by child cover."""

    def walk(node: int) -> float:
        f = forest.feature[node]
        if f < 0:
            return float(value[node])
        lft, rgt = forest.left[node], forest.right[node]
        if f in S:
            go = forest.go_left(np.array([node]), np.array([x[f]], dtype=float))[0]
            return walk(lft if go else rgt)
        cl, cr = forest.cover[lft], forest.cover[rgt]
        return (cl * walk(lft) + cr * walk(rgt)) / (cl + cr)

    return sum(walk(int(r)) for r in forest.roots)


def brute_force_shap(forest, value, x, d) -> np.ndarray:
    players = list(range(d))
    phi = np.zeros(d)
    for i in players:
        others = [p for p in players if p != i]
        for k in range(d):
            w = factorial(k) * factorial(d - k - 1) / factorial(d)
            for S in combinations(others, k):
                S = set(S)
                phi[i] += w * (cond_expectation(forest, value, x, S | {i}) - cond_expectation(forest, value, x, S))
    return phi


TINY_POINTS = [
    [-2.0, -1.0, 0.0], [-0.5, 1.0, 2.0], [0.0, 3.0, 1.0], [1.0, 1.0, 3.0],
    [0.7, 5.0, 0.0], [-1.0, 0.0, 2.5], [np.nan, 0.5, 2.0], [0.2, -3.0, 7.0],
]


@pytest.mark.parametrize("x", TINY_POINTS)
def test_tiny_forest_matches_brute_force(x):
    forest, value = tiny_forest()
    x = np.array(x)
    paths = build_leaf_paths(forest, value)
    phi = tree_shap(forest, paths, x)
    expected = brute_force_shap(forest, value, x, 3)
    np.testing.assert_allclose(phi, expected, rtol=0, atol=1e-12)
    assert paths.expected_value == pytest.approx(cond_expectation(forest, value, x, set()), abs=1e-12)
    output = cond_expectation(forest, value, x, {0, 1, 2})
    assert paths.expected_value + phi.sum() == pytest.approx(output, abs=1e-12)


def test_tiny_forest_repeated_feature_is_not_double_counted():
    """f0 appears twice on a path: the leaf reached only via both f0 tests gets one slot."""
    forest, value = tiny_forest()
    paths = build_leaf_paths(forest, value)
    assert paths.slot_feature.shape[1] == 2          # at most 2 distinct features per path
    phi = tree_shap(forest, paths, np.array([-2.0, 1.0, 0.0]))
    assert phi[0] != 0 and phi[2] != 0


def test_linear_contributions_sum_to_margin_difference():
    w = np.array([0.5, -2.0, 0.0, 1.25])
    x = np.array([1.0, 0.5, 9.0, -1.0])
    mean = np.array([0.2, 0.1, 3.0, 0.0])
    c = linear_contributions(w, x, mean)
    assert c.sum() == pytest.approx(w @ x - w @ mean, abs=1e-15)
    assert c[2] == 0.0


# ------------------------------------------------------------------ Spark-trained models


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("scorer_models_shap")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rf", "gbt", "rf_cat", "gbt_cat"])
def test_local_accuracy_on_spark_models(spark, base, name):
    model = load_model(fx.fitted(spark, base, name).model_dir)
    rows = fx.scoring_frame().head(60)
    scores = model.predict(rows)["score"].to_numpy()
    for i, rec in enumerate(rows.to_dict(orient="records")):
        exp = model.contributions(rec)
        assert exp.base_value + sum(exp.contributions.values()) == pytest.approx(exp.output, abs=1e-9)
        if name.startswith("rf"):
            assert exp.output == pytest.approx(scores[i], abs=1e-12)       # probability
        else:
            assert exp.output == pytest.approx(np.log(scores[i] / (1 - scores[i])) / 2, abs=1e-9)  # margin
        assert set(exp.contributions) == set(fx.NUMERIC + fx.CATEGORICAL)


@pytest.mark.slow
def test_spark_gbt_with_categorical_splits_matches_brute_force(spark, base):
    scorer = PipelineScorer.load(fx.fitted(spark, base, "gbt_cat").pipeline_dir)
    clf = scorer.classifier
    forest = clf.forest
    sizes = np.diff(np.append(forest.roots, len(forest.feature)))
    value = forest.prediction * np.repeat(forest.weights, sizes)
    paths = build_leaf_paths(forest, value)
    rows = fx.scoring_frame().head(3)
    X = scorer.transform(rows)["features"]
    for x in X:
        phi = tree_shap(forest, paths, x)
        np.testing.assert_allclose(phi, brute_force_shap(forest, value, x, X.shape[1]), rtol=0, atol=1e-10)


@pytest.mark.slow
def test_linear_explanations_on_spark_lr(spark, base):
    fitted = fx.fitted(spark, base, "lr")
    model = load_model(fitted.model_dir)
    rec = fx.scoring_frame().iloc[0].to_dict()
    exp = model.contributions(rec)
    assert exp.scale == "log-odds"
    p = model.predict(rec)["score"].iloc[0]
    assert exp.output == pytest.approx(np.log(p / (1 - p)), abs=1e-9)
    assert exp.base_value + sum(exp.contributions.values()) == pytest.approx(exp.output, abs=1e-9)
    # the baseline is the mean of the scaled training rows of features.parquet
    import pandas as pd

    train = pd.read_parquet(fitted.model_dir / "features.parquet")
    train = train[train["split"] == "train"]
    X = model.scorer.transform(train)["features"]
    np.testing.assert_allclose(model.background_mean(), X.mean(axis=0), atol=1e-12)
    # one-hot slots are summed back to the raw feature
    w, _ = model.scorer.classifier.linear_terms()
    x = model.scorer.features(model.scorer.coerce({k: [rec[k]] for k in model.scorer.raw_inputs}))[0]
    dev = [i for i, s in enumerate(model.scorer.feature_slots) if s.source == "device"]
    assert len(dev) > 1
    manual = sum(w[i] * (x[i] - X.mean(axis=0)[i]) for i in dev)
    assert exp.contributions["device"] == pytest.approx(manual, abs=1e-12)
    reasons = model.explain(rec, top=3)
    assert len(reasons) == 3
    mags = [abs(r.contribution) for r in reasons]
    assert mags == sorted(mags, reverse=True)
    for r in reasons:
        assert r.direction == ("raises" if r.contribution > 0 else "lowers")
        assert r.value == rec[r.feature]
