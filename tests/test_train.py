"""Training: metrics arithmetic, splits, threshold choice, the model directory, atomic write.

The end-to-end checks share the session's ``trained_model`` (small_log, TrainConfig.fast()).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparkify.modeling import artifacts
from sparkify.modeling import evaluate as ev

FAMILY_NAMES = {"RandomForestClassifier", "GBTClassifier", "LogisticRegression", "LinearSVC"}
UNIT_KEYS = ("f1", "precision", "recall", "pr_auc", "roc_auc", "accuracy", "weighted_f1")


# --------------------------------------------------------------------------- metrics (NumPy)
def brute_force_best_f1(y, s) -> float:
    """Max churn-class F1 over every rule 'score >= level' (independent of evaluate.py)."""
    y = np.asarray(y)
    best = 0.0
    for level in np.unique(s):
        p = np.asarray(s) >= level
        tp = np.sum(p & (y == 1))
        fp = np.sum(p & (y == 0))
        fn = np.sum(~p & (y == 1))
        best = max(best, 2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return best


def test_average_precision_and_roc_auc_on_a_worked_example():
    y = [0, 0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9]
    # ranks: 0.9(+) 0.8(+) {0.4,0.4}(-,-) 0.35(+) 0.1(-): AP = 1/3*1 + 1/3*1 + 1/3*3/5
    assert ev.average_precision(y, s) == pytest.approx(1 / 3 + 1 / 3 + 0.2)
    # 7 of 9 positive/negative pairs ordered correctly
    assert ev.roc_auc(y, s) == pytest.approx(7 / 9)
    # a tie between a positive and a negative counts half
    assert ev.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert ev.average_precision([0, 0], [0.1, 0.2]) == 0.0


def test_best_threshold_maximises_f1_and_separates_scores():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(y * 0.8, 1.0), 2)  # many ties
    t, f1 = ev.best_threshold(y, s)
    assert f1 == pytest.approx(brute_force_best_f1(y, s))
    assert ev.classification_metrics(y, s > t)["f1"] == pytest.approx(f1)
    assert not np.any(s == t)  # the threshold lies strictly between scores


def test_classification_metrics_from_counts():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    m = ev.classification_metrics(y, p)
    assert m["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 4}
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(6 / 8)
    f1_neg = 2 * 4 / (2 * 4 + 1 + 1)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 5 * f1_neg) / 8)
    top = ev.top_fraction(y, [0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.1, 0.0], 0.25)
    assert top["rows"] == top["users"] == 2 and top["churners"] == 2 and top["precision"] == 1.0 and top["lift"] == pytest.approx(8 / 3)


def test_platt_calibration_is_monotone_and_fits_a_known_slope():
    rng = np.random.default_rng(0)
    m = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-1.5 * m + 0.5))).astype(int)
    cal = ev.fit_platt(y, m)
    assert cal.a == pytest.approx(-1.5, abs=0.15)
    assert cal.b == pytest.approx(0.5, abs=0.15)
    p = cal(np.array([-3.0, 0.0, 3.0]))
    assert p[0] < p[1] < p[2]


def test_bad_metric_input_is_a_clear_error():
    with pytest.raises(ValueError, match="differ in length"):
        ev.roc_auc([0, 1], [0.1])
    with pytest.raises(ValueError, match="0 or 1"):
        ev.average_precision([0, 2], [0.1, 0.2])


# --------------------------------------------------------------------------- calibration (NumPy)
def test_isotonic_fit_is_the_pool_adjacent_violators_solution():
    from sparkify.modeling.calibration import fit_isotonic

    cal = fit_isotonic([0, 1, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    # blocks: {0.1}: 0, {0.2, 0.3, 0.4}: 1/3, {0.5, 0.6}: 1
    assert cal.x == pytest.approx([0.1, 0.3, 0.55]) and cal.y == pytest.approx([0.0, 1 / 3, 1.0])
    assert cal(np.array([0.0, 0.3, 0.425, 0.9])) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    rng = np.random.default_rng(1)
    s = rng.random(2000)
    y = (rng.random(2000) < s ** 3).astype(int)
    fitted = fit_isotonic(y, s)
    assert np.all(np.diff(fitted.y) > 0)                  # strictly increasing knots
    assert fitted(s).sum() == pytest.approx(y.sum(), rel=0.01)   # about the mean (steps joined linearly)


def test_calibration_choice_and_figures():
    from sparkify.modeling.calibration import Calibration, choose_calibration, probability_figures

    rng = np.random.default_rng(2)
    n = 6000
    folds = rng.integers(0, 3, n)
    # a model pushed towards 0.5 (as class weights do): true p = 0.1 * score ** 4
    s = rng.random(n)
    y = (rng.random(n) < 0.4 * s ** 4).astype(int)
    cal, losses = choose_calibration(y, s, folds, "logit")
    assert set(losses) == {"platt", "isotonic", "uncalibrated"}
    assert losses[cal.method] == min(losses["platt"], losses["isotonic"]) < losses["uncalibrated"]
    fig = probability_figures(y, cal(s))
    assert fig["expected_churners"] == pytest.approx(y.sum(), rel=0.05)
    assert fig["bins_within"] >= 8 and fig["rows"] == n and fig["churners"] == y.sum()
    s_new = rng.random(n)                                  # rows the map never saw
    fresh = probability_figures((rng.random(n) < 0.4 * s_new ** 4).astype(int), cal(s_new))
    assert 4 <= fresh["calibration_df"] <= 10 and fresh["calibration_p"] > 0.01
    raw = probability_figures(y, s)                       # uncalibrated: far from the diagonal
    assert raw["expected_churners"] > 3 * y.sum() and raw["bins_within"] <= 2
    assert raw["calibration_p"] < 1e-9
    assert Calibration.from_dict(cal.to_dict()) == cal
    assert Calibration.from_dict({"a": -1.0, "b": 0.5}).method == "platt"      # older model.json
    with pytest.raises(ValueError, match="method"):
        Calibration.from_dict({"method": "magic"})


def test_calibration_test_against_the_diagonal():
    from sparkify.modeling.calibration import chi2_sf, probability_figures

    # textbook 5 % critical values, odd and even degrees of freedom
    for x, df in ((3.841, 1), (5.991, 2), (11.070, 5), (18.307, 10), (19.675, 11)):
        assert chi2_sf(x, df) == pytest.approx(0.05, abs=2e-4)
    assert chi2_sf(0.0, 3) == 1.0 and chi2_sf(1e4, 10) == 0.0
    # outcomes drawn from the predictions themselves: p-values spread evenly, about 5 % below 0.05
    rng = np.random.default_rng(5)
    p_values = []
    for _ in range(300):
        p = rng.beta(1, 6, 800)
        p_values.append(probability_figures((rng.random(800) < p).astype(int), p)["calibration_p"])
    assert 0.01 <= np.mean(np.array(p_values) < 0.05) <= 0.10
    assert 0.4 <= np.median(p_values) <= 0.6
    # a map 30 % too high on the same rows: the test sees it
    p = rng.beta(1, 6, 4000)
    assert probability_figures((rng.random(4000) < p).astype(int), np.minimum(1, 1.3 * p))["calibration_p"] < 0.01
    # bins that expect under 5 churners are pooled: one churner among rows predicted 0 is no proof
    p = np.r_[np.zeros(400), np.full(3600, 0.1)]
    y = (rng.random(4000) < p).astype(int)
    y[0] = 1
    fig = probability_figures(y, p)
    assert fig["calibration_df"] < fig["bins"] and fig["calibration_p"] > 0.01
    assert chi2_sf(float("inf"), 4) == 0.0 and np.isnan(chi2_sf(float("nan"), 4))


def test_calibration_sql_equals_numpy(spark):
    from sparkify.modeling.calibration import Calibration, fit_isotonic

    rng = np.random.default_rng(4)
    s = rng.random(500)
    y = (rng.random(500) < s).astype(int)
    cals = [fit_isotonic(y, s), Calibration("platt", "logit", a=-1.3, b=0.7), Calibration("platt", "margin", a=-2.0, b=0.1)]
    probe = [0.0, 1e-9, 0.05, 0.31, 0.5, 0.77, 0.999, 1.0] + list(s[:50])
    df = spark.createDataFrame([(float(v),) for v in probe], "s double")
    for cal in cals:
        got = [r[0] for r in df.selectExpr(f"{cal.sql('s')} AS p").collect()]
        assert got == pytest.approx(cal(np.array(probe)), rel=1e-9, abs=1e-12), cal.method


# --------------------------------------------------------------------------- split (Spark, tiny)
def test_split_groups_users_and_holds_the_latest_date_out(spark):
    from sparkify.modeling.train import add_class_weights, assign_split

    dates = [1000, 2000, 3000]
    rows = [(str(i), t, 1.0 if (i < 20 and t == 3000) else 0.0) for i in range(100) for t in dates]
    df = spark.createDataFrame(pd.DataFrame(rows, columns=["userId", "as_of_ms", "churn"]))
    a = assign_split(df, 42, 0.2, 3, (3000,)).toPandas().sort_values(["userId", "as_of_ms"]).reset_index(drop=True)
    b = (assign_split(df.repartition(3), 42, 0.2, 3, (3000,)).toPandas()
         .sort_values(["userId", "as_of_ms"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(a, b)  # independent of partitioning
    per_user = a.groupby("userId").agg(splits=("split", lambda x: set(x) - {"unused"}), churns=("churn", "max"),
                                       folds=("fold", "nunique"))
    assert (per_user.splits.map(len) == 1).all()          # no user on both sides
    assert (per_user.folds == 1).all()                    # nor in two folds
    test_users = per_user[per_user.splits == {"test"}]
    assert len(test_users) == 20 and test_users.churns.sum() == 4   # 20 % of each class of users
    assert set(a[a.split == "unused"].as_of_ms) == {3000}            # train users' latest date: unused
    assert not (a[a.split == "train"].as_of_ms == 3000).any()
    assert set(a[a.split == "test"].period) == {"in_time", "out_of_time"}
    assert set(a[a.as_of_ms == 3000].period) == {"out_of_time"}
    train = a[a.split == "train"]
    assert set(train.fold) == {0, 1, 2} and (a[a.split == "test"].fold == -1).all()
    c = assign_split(df, 7, 0.2, 3, (3000,)).toPandas().sort_values(["userId", "as_of_ms"]).reset_index(drop=True)
    assert not (c.split == a.split).all()  # another seed, another split
    weighted, w = add_class_weights(assign_split(df, 42, 0.2, 3))
    wp = weighted.toPandas()
    tr = wp[wp.split == "train"]
    assert tr[tr.churn == 1].weight.sum() == pytest.approx(tr[tr.churn == 0].weight.sum())


# --------------------------------------------------------------------------- the model directory
def test_model_directory_holds_every_artifact(trained_model: Path):
    for name in artifacts.REQUIRED:
        assert (trained_model / name).exists(), name
    assert (trained_model / "pipeline" / "metadata").is_dir()
    leftovers = [p.name for p in trained_model.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []
    card = (trained_model / "MODEL_CARD.md").read_text()
    assert "Label design" in card and "honest" in card
    test = json.loads((trained_model / "metrics.json").read_text())["best"]["test"]
    assert 0.0 <= test["calibration_p"] <= 1.0 and 1 <= test["calibration_df"] <= test["bins"]
    assert f"chi-square test over the bins: p {test['calibration_p']:.2f}" in card
    top = test["top10"]                               # the top-decile figures say what they rest on
    assert top["churners"] == round(top["precision"] * top["rows"])
    assert f"Top 10 % of scores ({top['rows']:,} rows, {top['churners']:,} churner rows)" in card
    model_json = json.loads((trained_model / "model.json").read_text())
    for f in model_json["features"]:                  # the card lists the inputs as model.json has them
        assert f"| `{f['name']}` | {f['kind']} | {f.get('unit') or ''} | {f['description']} |" in card
    assert "## Backtest" not in card                  # none run yet


def test_model_json_contract(trained_model: Path):
    from sparkify.features import model_features

    m = json.loads((trained_model / "model.json").read_text())
    assert m["format"] == 1 and m["model_type"] in FAMILY_NAMES
    assert m["score_kind"] == ("margin" if m["model_type"] == "LinearSVC" else "probability")
    assert m["calibration"]["method"] in ("platt", "isotonic")
    assert isinstance(m["threshold"], float)
    assert m["label"]["mode"] == "window" and len(m["label"]["dates"]) >= 2
    assert all(d.endswith("T00:00:00Z") for d in m["label"]["dates"])
    assert [f["name"] for f in m["features"]] == [f.name for f in model_features("window")]
    for f in m["features"]:
        if f["kind"] == "numeric":
            assert f["min"] <= f["p01"] <= f["median"] <= f["p99"] <= f["max"], f
            assert f["unit"] and f["description"]
        else:
            assert f["categories"] and f["default"] in f["categories"], f


def test_metrics_are_in_range_and_consistent(trained_model: Path):
    m = json.loads((trained_model / "metrics.json").read_text())
    assert set(m["models"]) == {"rf", "gbt", "lr", "svc"}
    for fig in [*m["models"].values(), m["best"]]:
        t = fig["test"]
        for k in UNIT_KEYS:
            assert 0.0 <= t[k] <= 1.0, (fig["name"], k, t[k])
        c = t["confusion"]
        assert c["tp"] + c["fp"] + c["fn"] + c["tn"] == t["rows"] == m["data"]["test_rows"]
        assert c["tp"] + c["fn"] == t["churners"] == m["data"]["test_churners"]
        assert t["users"] == m["data"]["test_users"] < t["rows"]
        assert t["f1"] == pytest.approx(ev.f1_from_counts(c["tp"], c["fp"], c["fn"]))
        assert t["accuracy"] == pytest.approx((c["tp"] + c["tn"]) / t["rows"])
        assert fig["train_seconds"] > 0
    best = m["best"]
    assert best["name"] == m["models"][best["family"]]["name"]
    assert best["test"]["top10"]["users"] >= 1
    names = [r["feature"] for r in best["importances"]]
    assert names and not any(n.startswith("slot_") for n in names)
    assert any(" = " in n for n in names)  # one-hot slots named "<column> = <category>"
    assert m["data"]["users"] == m["data"]["train_users"] + m["data"]["test_users"]
    # calibrated probabilities, and the parts of the test set each with their counts
    b = best["test"]
    assert 0 <= b["brier"] <= 1 and b["expected_churners"] > 0 and len(b["reliability"]) == b["bins"]
    periods = best["periods"]
    assert set(periods) == {"in_time", "out_of_time"}
    assert sum(p["rows"] for p in periods.values()) == b["rows"]
    assert periods["out_of_time"]["rows"] == m["data"]["test_out_of_time_rows"] == periods["out_of_time"]["users"]
    assert best["calibration"]["method"] in best["calibration"]["cross_fitted_log_loss"]
    c = m["ceiling"]                          # small_log has its truth
    assert c is not None and c["test"]["rows"] == b["rows"] and 0 <= c["test"]["pr_auc"] <= 1
    assert c["model_pr_auc_fraction"] == pytest.approx(b["pr_auc"] / c["test"]["pr_auc"])
    low, high = c["fraction_interval"]
    assert low <= c["model_pr_auc_fraction"] <= high and high - low > 0.01   # the noise of a 40-user test set
    for stage in ("load", "features", "tuning", "evaluation", "total"):
        assert stage in m["timings"]


def test_threshold_is_the_f1_maximising_one_on_out_of_fold_scores(trained_model: Path):
    model = json.loads((trained_model / "model.json").read_text())
    feats = pd.read_parquet(trained_model / "features.parquet")
    train = feats[feats.split == "train"]
    assert train.score.notna().all()  # every training user has an out-of-fold score
    y, s = train.churn.to_numpy(), train.score.to_numpy()
    t = model["threshold"]
    f1_at_t = ev.classification_metrics(y, s > t)["f1"]
    assert f1_at_t == pytest.approx(brute_force_best_f1(y, s))


def test_saved_test_scores_reproduce_the_reported_test_metrics(trained_model: Path):
    model = json.loads((trained_model / "model.json").read_text())
    metrics = json.loads((trained_model / "metrics.json").read_text())
    feats = pd.read_parquet(trained_model / "features.parquet")
    test = feats[feats.split == "test"]
    y, s = test.churn.to_numpy(), test.score.to_numpy()
    assert ev.classification_metrics(y, s > model["threshold"])["f1"] == pytest.approx(metrics["best"]["test"]["f1"])
    assert ev.average_precision(y, s) == pytest.approx(metrics["best"]["test"]["pr_auc"])
    assert model_probability_matches(model, s, metrics["best"]["test"]["expected_churners"])
    # the split is stratified by user: the shares of users who churn in both parts are close
    users = feats[feats.split != "unused"].groupby(["split", "userId"]).churn.max().groupby("split").mean()
    assert abs(users["train"] - users["test"]) < 0.05
    assert not set(feats[feats.split == "train"].userId) & set(feats[feats.split == "test"].userId)


def model_probability_matches(model: dict, scores, expected: float) -> bool:
    from sparkify.modeling.calibration import Calibration

    return Calibration.from_dict(model["calibration"])(scores).sum() == pytest.approx(expected)


def test_model_beats_a_constant_predictor(trained_model: Path):
    """Out-of-fold scores of all training users (fixed seeds): more stable than the small test set."""
    feats = pd.read_parquet(trained_model / "features.parquet")
    train = feats[feats.split == "train"]
    y, s = train.churn.to_numpy(), train.score.to_numpy()
    assert ev.average_precision(y, s) > 1.5 * y.mean()
    assert ev.roc_auc(y, s) > 0.6


def test_saved_pipeline_uses_only_the_scorers_stage_types(spark, trained_model: Path):
    from pyspark.ml import PipelineModel

    allowed = {"StringIndexerModel", "OneHotEncoderModel", "VectorAssembler", "StandardScalerModel",
               "MinMaxScalerModel", "LogisticRegressionModel", "LinearSVCModel",
               "RandomForestClassificationModel", "GBTClassificationModel"}
    model = PipelineModel.load(str(trained_model / "pipeline"))
    kinds = [type(s).__name__ for s in model.stages]
    assert set(kinds) <= allowed, kinds
    indexer = model.stages[0]
    assert indexer.getHandleInvalid() == "keep"
    # the saved rows are the pipeline's input as they are (no column clashes with its outputs)
    feats = spark.read.parquet(str(trained_model / "features.parquet"))
    assert model.transform(feats).count() == feats.count() > 0


# --------------------------------------------------------------------------- atomic write
def test_training_partitions_follow_the_rows():
    from sparkify.modeling.train import ROWS_PER_TRAINING_PARTITION as R
    from sparkify.modeling.train import training_partitions

    assert training_partitions(0, 2) == 1 and training_partitions(R - 1, 8) == 1
    assert training_partitions(3 * R, 8) == 3 and training_partitions(50 * R, 2) == 2


def test_staging_dir_swaps_in_on_success_and_leaves_target_alone_on_crash(tmp_path: Path):
    target = tmp_path / "classifier"
    target.mkdir()
    (target / "model.json").write_text("old")
    with pytest.raises(RuntimeError):
        with artifacts.staging_dir(target) as staging:
            (staging / "model.json").write_text("half-written")
            raise RuntimeError("crash mid-write")
    assert (target / "model.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]
    with artifacts.staging_dir(target) as staging:
        (staging / "model.json").write_text("new")
    assert (target / "model.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]


def test_train_crashing_mid_write_keeps_the_previous_model(spark, compact_log, trained_model, tmp_path, monkeypatch):
    from sparkify.modeling.train import TrainConfig, train

    target = tmp_path / "classifier"
    shutil.copytree(trained_model, target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    real_write_json = artifacts.write_json

    def write_some_then_crash(directory, **kw):
        real_write_json(Path(directory) / artifacts.MODEL_JSON, {"half": True})
        raise OSError("disk full")

    monkeypatch.setattr(artifacts, "write_all", write_some_then_crash)
    with pytest.raises(OSError, match="disk full"):
        train(spark, compact_log, target, TrainConfig.fast(models=("lr",), ceiling=False, verbose=False))
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier"]


def test_train_rejects_bad_input_before_any_work(spark, small_log, tmp_path):
    from sparkify.modeling.train import TrainConfig, train

    with pytest.raises(FileNotFoundError, match="not found"):
        train(spark, tmp_path / "missing.json", tmp_path / "m", TrainConfig.fast())
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(models=("rf", "xgboost")).validate()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((PermissionError, ValueError)):
        train(spark, small_log, blocker / "m", TrainConfig.fast())
