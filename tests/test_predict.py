"""Batch scoring with a saved model: ranking, decisions, who is scored, output files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    assert list(scores.columns)[:len(OUTPUT_COLUMNS)] == OUTPUT_COLUMNS
    assert scores.userId.is_unique
    assert sorted(scores["rank"]) == list(range(1, len(scores) + 1))
    ordered = scores.sort_values("rank")
    assert ordered.score.is_monotonic_decreasing
    assert ordered.probability.is_monotonic_decreasing  # calibration is monotone too
    assert ((scores.probability >= 0) & (scores.probability <= 1)).all()
    assert (scores.decision == (scores.score > model["threshold"]).astype(int)).all()
    assert scores.top_features.str.len().gt(0).all()


def test_scored_users_are_subscribed_and_active_in_the_window(loaded, scores: pd.DataFrame):
    """Default as-of: the midnight after the log's last event; scored: every user with an
    event in the 14-day window before it who has not cancelled."""
    from pyspark.sql import functions as F

    from sparkify.features import DAY_MS, LONG_DAYS

    ev = loaded.events
    end = ev.agg(F.max("ts")).first()[0]
    as_of = (end // DAY_MS + 1) * DAY_MS
    churned = {r[0] for r in ev.filter(F.col("page") == "Cancellation Confirmation").select("userId").distinct().collect()}
    recent = {r[0] for r in ev.filter(F.col("ts") >= as_of - LONG_DAYS * DAY_MS).select("userId").distinct().collect()}
    assert churned & recent  # small_log has churners in the window: the exclusion is tested
    assert set(scores.userId) == recent - churned


def test_scoring_rows_equal_training_rows_from_raw_json(spark, small_log, trained_model: Path):
    """One path for training and scoring: scored from the raw JSON at the latest training
    date t, every user's feature values equal that user's training row at t, value for value."""
    from sparkify.modeling.predict import score_users

    model = json.loads((trained_model / "model.json").read_text())
    names = [f["name"] for f in model["features"]]
    feats = pd.read_parquet(trained_model / "features.parquet")
    t = feats.as_of_ms.max()
    want = feats[feats.as_of_ms == t].set_index("userId")[names].sort_index()
    as_of = model["label"]["dates"][-1]
    got = score_users(spark, str(small_log), trained_model, as_of=as_of).toPandas().set_index("userId")[names]
    got = got.sort_index()
    assert list(got.index) == list(want.index) and len(got) > 20
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0)


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


def test_a_model_with_the_artist_features_is_scored_with_them(spark, compact_log, tmp_path):
    """The opt-in artist features and a feature window of its own end to end:
    ``--artist-features`` and ``--window-days`` reach the config, the model lists the
    features and keeps the window, and scoring builds the same rows (the default model has
    neither). The model is also tuned over its grid with the class-weight choice
    (``--thorough``'s steps), and metrics.json says what they chose."""
    import argparse

    from sparkify.dataset import load_events
    from sparkify.features import ARTIST_FEATURES, LONG_DAYS, LabelSpec
    from sparkify.modeling.cli import configure_train, train_config_from_args
    from sparkify.modeling.predict import score_users
    from sparkify.modeling.train import TrainConfig, train

    parser = argparse.ArgumentParser()
    configure_train(parser)
    plain = train_config_from_args(parser.parse_args(["log.json", "--model", "m"]))
    opted = train_config_from_args(parser.parse_args(["log.json", "--model", "m", "--artist-features",
                                                      "--window-days", "21"]))
    assert not plain.artist_features and opted.artist_features
    assert plain.label.long_days == LONG_DAYS != 21 and opted.label.long_days == 21
    with pytest.raises(ValueError, match="feature window"):
        train_config_from_args(parser.parse_args(["log.json", "--model", "m", "--window-days", "5"]))

    model_dir = tmp_path / "artists"
    damaged = tmp_path / "compact_with_bad_lines.json"     # two malformed lines: set aside, not lost
    damaged.write_text(compact_log.read_text() + '{"ts": "not a time", "userId": "9"}\n{truncated\n')
    train(spark, damaged, model_dir, TrainConfig.fast(models=("lr",), ceiling=False, verbose=False,
                                                          artist_features=True, tune=True, class_weights=True,
                                                          label=LabelSpec(long_days=21)),
          scores_out=model_dir / "scores.csv")
    quality = json.loads((model_dir / "data_quality.json").read_text())
    assert quality["quarantined"] == 2 and quality["quarantine_path"] == str(model_dir / "quarantine")
    kept = [line for f in (model_dir / "quarantine").glob("part-*") for line in f.read_text().splitlines()]
    assert len(kept) == 2 and any("not a time" in line for line in kept)
    model = json.loads((model_dir / "model.json").read_text())
    assert model["label"]["long_days"] == 21
    songs = next(f for f in model["features"] if f["name"] == "songs_per_day")
    assert songs["description"] == "Songs played per day over the last 21 days."
    # scored at the latest training date, every row is that user's training row (21-day window)
    feats = pd.read_parquet(model_dir / "features.parquet")
    names = [f["name"] for f in model["features"]]
    t = feats.as_of_ms.max()
    want = feats[feats.as_of_ms == t].set_index("userId")[names].sort_index()
    got = score_users(spark, str(compact_log), model_dir, as_of=model["label"]["dates"][-1]).toPandas()
    got = got.set_index("userId")[names].sort_index()
    assert list(got.index) == list(want.index) and len(got) > 5
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["cv"]["tuning_grid"] and metrics["best"]["selected_from"] in ("tuning", "comparison")
    weighting = metrics["best"]["class_weights"]
    pr = weighting["out_of_fold_pr_auc"]
    assert set(pr) == {"weighted", "unweighted"} and all(0 < v <= 1 for v in pr.values())
    assert weighting["gain"] == pytest.approx(pr["weighted"] - pr["unweighted"])
    assert weighting["standard_error"] >= 0 and weighting["kept"] == (weighting["gain"] > weighting["standard_error"])
    # the comparison is unweighted in every plan; the saved model carries the weights only when kept
    assert "weightCol" not in metrics["models"]["lr"]["params"]
    assert (metrics["best"]["params"].get("weightCol") == "weight") == weighting["kept"]
    listed = [f["name"] for f in json.loads((model_dir / "model.json").read_text())["features"]]
    assert set(ARTIST_FEATURES) <= set(listed)
    assert set(ARTIST_FEATURES) <= set(pd.read_parquet(model_dir / "features.parquet").columns)
    with load_events(spark, compact_log) as loaded:
        scored = score_users(spark, loaded.events, model_dir).toPandas()
    assert len(scored) > 0 and scored.probability.between(0, 1).all()
    # train's own scores (--scores, from the log it loaded) are the ones `score` gives
    in_train = pd.read_csv(model_dir / "scores.csv", dtype={"userId": str}).set_index("userId")
    assert set(in_train.index) == set(scored.userId)
    merged = scored.set_index("userId").join(in_train, rsuffix="_train")
    assert np.allclose(merged["probability"], merged["probability_train"], atol=1e-9)
    assert (merged["rank"] == merged["rank_train"]).all()
