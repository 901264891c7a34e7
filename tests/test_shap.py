"""Exact TreeSHAP and linear contributions.

- Brute force: Shapley values of v(S) = E[f(x) | x_S] (path-dependent, cover-weighted),
  enumerated over all subsets, on a hand-built tiny forest (a feature repeated on a path,
  a categorical split, two weighted trees) and on a Spark-trained GBT with categorical splits.
- Local accuracy: base value + sum of contributions == model output within 1e-9, for the
  Spark-trained RF (probability) and GBT (margin) model directories.
- The per-request table path (``LeafPaths.fast``: per-node tests, packed go-left bits, one
  gather) equals the reference unwinding (``tree_shap_unwound``) within 1e-12 on random
  forests (repeated features, categorical splits, NaN and unknown categories, paths longer
  than 8 nodes, the fallback without the go-pattern map) and on the trained models.
- PackedForest.leaves for a request's few rows (all nodes tested at once) equals the
  level-by-level walk.
"""

from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pytest

from sparkify.scorer import load_model
from sparkify.scorer import shap as shap_mod
from sparkify.scorer import trees as trees_mod
from sparkify.scorer.pipeline import PipelineScorer
from sparkify.scorer.shap import build_leaf_paths, linear_contributions, tree_shap, tree_shap_unwound
from sparkify.scorer.trees import PackedForest

import scorer_fixtures as fx


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


def random_forest(seed: int, trees: int, depth: int, d: int, cat_features: tuple[int, ...] = (),
                  ncat: int = 4) -> tuple[PackedForest, np.ndarray]:
    """A random forest in PackedForest layout: splits on random features (so features repeat
    along paths), categorical splits on ``cat_features`` (random left sets), random covers,
    leaves at random depths up to ``depth``."""
    rng = np.random.default_rng(seed)
    feature, threshold, left, right, is_cat, cat_row, cat_rows, cover, pred = [], [], [], [], [], [], [], [], []
    roots = []

    def new_node() -> int:
        for arr, v in ((feature, -1), (threshold, np.nan), (left, 0), (right, 0), (is_cat, False),
                       (cat_row, 0), (cover, 0.0), (pred, 0.0)):
            arr.append(v)
        return len(feature) - 1

    def grow(node: int, level: int, n: float) -> None:
        cover[node] = n
        if level == depth or (level > 0 and rng.random() < 0.15):
            feature[node], left[node], right[node] = -1, node, node
            pred[node] = float(rng.normal())
            return
        f = int(rng.integers(d))
        feature[node] = f
        if f in cat_features:
            is_cat[node] = True
            cat_rows.append(rng.random(ncat) < 0.5)
            cat_row[node] = len(cat_rows)
        else:
            threshold[node] = float(rng.normal())
        frac = float(rng.uniform(0.05, 0.95))
        lft = new_node()
        rgt = new_node()
        left[node], right[node] = lft, rgt
        grow(lft, level + 1, n * frac)
        grow(rgt, level + 1, n * (1 - frac))

    for _ in range(trees):
        r = new_node()
        roots.append(r)
        grow(r, 0, 1000.0)
    cat_table = np.zeros((len(cat_rows) + 1, ncat), dtype=bool)
    for i, row in enumerate(cat_rows, start=1):
        cat_table[i] = row
    cover_a = np.array(cover)
    forest = PackedForest(
        feature=np.array(feature, dtype=np.int64), threshold=np.array(threshold),
        left=np.array(left, dtype=np.int64), right=np.array(right, dtype=np.int64),
        is_cat=np.array(is_cat), cat_row=np.array(cat_row, dtype=np.int64), cat_table=cat_table,
        stats=[np.array([c]) for c in cover_a], prediction=np.array(pred), cover=cover_a,
        roots=np.array(roots, dtype=np.int64), weights=np.ones(trees), depth=depth)
    return forest, np.array(pred) / trees


def random_points(rng, forest: PackedForest, d: int, n: int, cat_features=(), ncat: int = 4) -> np.ndarray:
    """Points near the thresholds (both sides), categorical values in and out of range,
    fractional categories and NaN."""
    X = rng.normal(size=(n, d))
    for f in cat_features:
        X[:, f] = rng.choice([0.0, 1.0, 2.0, 3.0, -1.0, float(ncat), 1.5], size=n)
    thr = forest.threshold[(forest.feature >= 0) & ~forest.is_cat]
    pick = rng.random((n, d)) < 0.2
    X[pick] = rng.choice(thr, size=int(pick.sum())) if len(thr) else 0.0
    X[rng.random((n, d)) < 0.05] = np.nan
    return X


@pytest.mark.parametrize("seed, trees, depth, d, cats", [
    (1, 100, 6, 12, (3, 7)),     # the serving case: 100 depth-6 trees, categorical splits
    (2, 30, 6, 3, (1,)),         # few features: many repeats on a path
    (3, 3, 10, 5, (0,)),         # paths longer than 8 nodes (two bytes of go bits)
    (4, 20, 4, 6, ()),           # no categorical split
])
def test_fast_path_equals_unwinding_on_random_forests(seed, trees, depth, d, cats):
    forest, value = random_forest(seed, trees, depth, d, cats)
    paths = build_leaf_paths(forest, value)
    assert paths.fast is not None and paths.fast.go_table is not None
    assert paths.fast.path_index.shape[0] < len(paths.value)   # sibling leaves share a row
    rng = np.random.default_rng(100 + seed)
    for x in random_points(rng, forest, d, 40, cats):
        fast = tree_shap(forest, paths, x)
        ref = tree_shap_unwound(forest, paths, x)
        np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)
        assert paths.expected_value + fast.sum() == pytest.approx(
            float(value[forest.leaves(x[None, :])[0]].sum()), abs=1e-12)


@pytest.mark.parametrize("seed, trees, depth, d, cats", [(1, 100, 6, 12, (3, 7)), (3, 3, 10, 5, (0,))])
def test_small_batch_leaves_equal_the_level_walk(monkeypatch, seed, trees, depth, d, cats):
    """PackedForest.leaves on a served request's few rows (every node tested once, then a walk
    over those bits) reaches the same leaves as the level-by-level walk of large batches
    (categorical splits, NaN, unknown and fractional categories included)."""
    forest, _ = random_forest(seed, trees, depth, d, cats)
    X = random_points(np.random.default_rng(seed), forest, d, 200, cats)
    assert len(X) > trees_mod.SMALL_BATCH
    walked = forest.leaves(X)
    small = np.vstack([forest.leaves(X[i:i + 3]) for i in range(0, len(X), 3)])
    np.testing.assert_array_equal(small, walked)
    monkeypatch.setattr(trees_mod, "SMALL_BATCH", len(X))
    np.testing.assert_array_equal(forest.leaves(X), walked)


def test_fast_path_without_go_pattern_map_equals_unwinding(monkeypatch):
    """Forests whose go-pattern map would be too large find the o pattern per request."""
    monkeypatch.setattr(shap_mod, "GO_TABLE_BYTES", 0)
    forest, value = random_forest(5, 40, 6, 8, (2,))
    paths = build_leaf_paths(forest, value)
    assert paths.fast is not None and paths.fast.go_table is None
    for x in random_points(np.random.default_rng(5), forest, 8, 40, (2,)):
        np.testing.assert_allclose(tree_shap(forest, paths, x), tree_shap_unwound(forest, paths, x),
                                   rtol=0, atol=1e-12)


def test_no_table_falls_back_to_unwinding(monkeypatch):
    monkeypatch.setattr(shap_mod, "TABLE_BYTES", 0)
    forest, value = tiny_forest()
    paths = build_leaf_paths(forest, value)
    assert paths.table is None and paths.fast is None
    x = np.array(TINY_POINTS[1])
    np.testing.assert_allclose(tree_shap(forest, paths, x), brute_force_shap(forest, value, x, 3),
                               rtol=0, atol=1e-12)


def test_fast_path_equals_unwinding_on_trained_models(trained_model, spark, base):
    """The served explanation path equals the reference on a model's own training rows:
    always on a Spark-fitted forest with categorical splits, and on the session's trained
    model (SPARKIFY_TEST_MODEL or the small log's) when it is a forest (which family wins
    on the small log varies)."""
    import pandas as pd

    directories = [fx.fitted(spark, base, "rf_cat").model_dir]
    if load_model(trained_model)._paths is not None:
        directories.append(trained_model)
    for directory in directories:
        model = load_model(directory)
        assert model._paths is not None, directory
        forest = model.scorer.classifier.forest
        names = [f["name"] for f in model.features]
        frame = pd.read_parquet(directory / "features.parquet")[names].dropna().head(100)
        X = model.scorer.features(model._columns(frame)[0])
        assert len(X) >= 50
        for x in X:
            np.testing.assert_allclose(tree_shap(forest, model._paths, x),
                                       tree_shap_unwound(forest, model._paths, x), rtol=0, atol=1e-12)


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
    forest = model.scorer.classifier.forest
    for x in model.scorer.transform(rows)["features"]:
        np.testing.assert_allclose(tree_shap(forest, model._paths, x),
                                   tree_shap_unwound(forest, model._paths, x), rtol=0, atol=1e-12)


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
