"""Batch scoring with a saved model: ranking, decisions, who is scored, output files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sparkify.modeling.predict import OUTPUT_COLUMNS


@pytest.fixture(scope="module")
def loaded(spark, small_log):
    from sparkify.dataset import load_events

    loaded = load_events(spark, small_log)
    yield loaded
    loaded.unpersist()


@pytest.fixture(scope="module")
def scores(spark, loaded, trained_model) -> pd.DataFrame:
    from sparkify.modeling.predict import score_users

    return score_users(spark, loaded.events, trained_model).toPandas()


def test_scores_rank_every_active_user(scores: pd.DataFrame, trained_model: Path):
    model = json.loads((trained_model / "model.json").read_text())
    assert list(scores.columns) == OUTPUT_COLUMNS
    assert scores.userId.is_unique
    assert sorted(scores["rank"]) == list(range(1, len(scores) + 1))
    ordered = scores.sort_values("rank")
    assert ordered.score.is_monotonic_decreasing
    assert ordered.probability.is_monotonic_decreasing  # calibration is monotone too
    assert ((scores.probability >= 0) & (scores.probability <= 1)).all()
    assert (scores.decision == (scores.score > model["threshold"]).astype(int)).all()
    assert scores.top_features.str.len().gt(0).all()


def test_users_who_already_cancelled_are_not_scored(loaded, scores: pd.DataFrame):
    from pyspark.sql import functions as F

    ev = loaded.events
    churned = {r[0] for r in ev.filter(F.col("page") == "Cancellation Confirmation").select("userId").distinct().collect()}
    everyone = {r[0] for r in ev.select("userId").distinct().collect()}
    assert churned  # small_log has churners
    assert set(scores.userId) == everyone - churned


def test_scoring_as_of_the_cutoff_scores_the_training_population(spark, loaded, trained_model: Path):
    from sparkify.modeling.predict import score_users

    model = json.loads((trained_model / "model.json").read_text())
    feats = pd.read_parquet(trained_model / "features.parquet")
    at_cutoff = score_users(spark, loaded.events, trained_model, as_of=model["label"]["cutoff"]).toPandas()
    # same users as the labelled table: active before T, not gone before T
    assert set(at_cutoff.userId) == set(feats.userId)


def test_write_scores_csv_and_parquet(spark, tmp_path: Path):
    from sparkify.modeling.predict import write_scores

    df = spark.createDataFrame(pd.DataFrame({
        "userId": ["b", "a"], "probability": [0.2, 0.9], "score": [0.2, 0.9], "decision": [0, 1],
        "rank": [2, 1], "top_features": ["x", "y"]}))
    written = write_scores(df, tmp_path / "out" / "scores.csv")
    back = pd.read_csv(tmp_path / "out" / "scores.csv", dtype={"userId": str})
    assert list(back.userId) == ["a", "b"] and len(written) == 2  # ranked order
    write_scores(df, tmp_path / "scores.parquet")
    assert list(pd.read_parquet(tmp_path / "scores.parquet")["rank"]) == [1, 2]
    with pytest.raises(ValueError, match=".csv or .parquet"):
        write_scores(df, tmp_path / "scores.txt")


def test_missing_model_is_a_clear_error(spark, tmp_path: Path):
    from sparkify.modeling.predict import score_users

    with pytest.raises(FileNotFoundError, match="no model at"):
        score_users(spark, tmp_path / "log.json", tmp_path / "nowhere")


def test_a_model_with_the_artist_features_is_scored_with_them(spark, loaded, small_log, tmp_path):
    """The opt-in artist features end to end: ``--artist-features`` reaches the config, the
    model lists the features, and scoring builds them (the default model has neither)."""
    import argparse

    from sparkify.features import ARTIST_FEATURES
    from sparkify.modeling.cli import configure_train, train_config_from_args
    from sparkify.modeling.predict import score_users
    from sparkify.modeling.train import TrainConfig, train

    parser = argparse.ArgumentParser()
    configure_train(parser)
    plain = train_config_from_args(parser.parse_args(["log.json", "--model", "m"]))
    opted = train_config_from_args(parser.parse_args(["log.json", "--model", "m", "--artist-features"]))
    assert not plain.artist_features and opted.artist_features

    model_dir = tmp_path / "artists"
    train(spark, small_log, model_dir, TrainConfig.fast(models=("lr",), ceiling=False, verbose=False,
                                                        artist_features=True))
    listed = [f["name"] for f in json.loads((model_dir / "model.json").read_text())["features"]]
    assert set(ARTIST_FEATURES) <= set(listed)
    assert set(ARTIST_FEATURES) <= set(pd.read_parquet(model_dir / "features.parquet").columns)
    scored = score_users(spark, loaded.events, model_dir).toPandas()
    assert len(scored) > 0 and scored.probability.between(0, 1).all()
