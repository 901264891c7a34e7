"""Parity of the NumPy scorer with Spark's own ``transform`` (JVM at test time only).

For each model family (LR, LinearSVC, RF, GBT), plus RF/GBT trained on StringIndexer output
without one-hot (categorical tree splits): 1,200 scored rows with unseen and missing
categories and a formerly constant column; probabilities (or margins) within 1e-9 and
identical predictions, under custom thresholds.
"""

from __future__ import annotations

import numpy as np
import pytest

from sparkify.scorer import PipelineScorer, load_model

import scorer_fixtures as fx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("scorer_models")


@pytest.mark.parametrize("name", fx.VARIANTS)
def test_transform_matches_spark(spark, base, name):
    fitted = fx.fitted(spark, base, name)
    rows = fx.scoring_frame()
    assert len(rows) >= 1000
    ours = PipelineScorer.load(fitted.pipeline_dir).transform(rows)
    theirs = fitted.spark
    assert np.array_equal(theirs["id"], rows["id"].to_numpy())
    assert ours["rawPrediction"].shape == theirs["rawPrediction"].shape
    np.testing.assert_allclose(ours["rawPrediction"], theirs["rawPrediction"], rtol=0, atol=1e-9)
    if "probability" in theirs:
        np.testing.assert_allclose(ours["probability"], theirs["probability"], rtol=0, atol=1e-9)
    else:
        assert "probability" not in ours
    assert np.array_equal(ours["prediction"], theirs["prediction"])
    # the scored rows really exercise both classes and the unusual inputs
    assert 0 < theirs["prediction"].sum() < len(rows)
    assert (rows["device"] == "smart fridge").any() and rows["device"].isna().any()


def test_custom_thresholds_change_predictions(spark, base):
    """The classifiers' own threshold params are honoured: the default rule would differ."""
    for name, default_rule in [
        ("lr", lambda o: o["probability"][:, 1] > 0.5),
        ("svc", lambda o: o["rawPrediction"][:, 1] > 0.0),
        ("rf", lambda o: np.argmax(o["rawPrediction"], axis=1) == 1),
        ("gbt", lambda o: o["rawPrediction"][:, 1] > 0.0),
    ]:
        theirs = fx.fitted(spark, base, name).spark
        assert (default_rule(theirs) != (theirs["prediction"] == 1)).any(), name


@pytest.mark.parametrize("name", ["rf_cat", "gbt_cat"])
def test_trees_use_categorical_splits(spark, base, name):
    """The *_cat models really split on categories (else their parity proves nothing)."""
    forest = PipelineScorer.load(fx.fitted(spark, base, name).pipeline_dir).classifier.forest
    assert forest.is_cat.sum() >= 3
    # at least one split keeps several categories on the left
    assert (forest.cat_table[1:].sum(axis=1) >= 2).any()


@pytest.mark.parametrize("name", fx.VARIANTS)
def test_model_dir_scores_match_spark(spark, base, name):
    """The facade's score/decision agree with Spark's numbers and model.json's threshold."""
    fitted = fx.fitted(spark, base, name)
    model = load_model(fitted.model_dir)
    rows = fx.scoring_frame()
    got = model.predict(rows)
    theirs = fitted.spark
    expected = theirs["rawPrediction"][:, 1] if name == "svc" else theirs["probability"][:, 1]
    np.testing.assert_allclose(got["score"].to_numpy(), expected, rtol=0, atol=1e-9)
    assert np.array_equal(got["decision"].to_numpy(), expected > model.threshold)
