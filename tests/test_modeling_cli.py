"""`sparkify ingest | train | score | backtest` and `data/process_data.py`: exit codes, messages, outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from sparkify.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_missing_log_exits_2_with_a_message(capsys, tmp_path):
    code, _, err = run(capsys, "train", str(tmp_path / "nope.json"), "--model", str(tmp_path / "m"))
    assert code == 2 and "event log not found" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_train_unwritable_model_dir_exits_2(capsys, tmp_path, real_sample):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, _, err = run(capsys, "train", str(real_sample), "--model", str(blocker / "model"))
    assert code == 2 and "cannot write the model directory" in err


@pytest.mark.parametrize("option, value, message", [
    ("--models", "rf,xgboost", "unknown model"),
    ("--cutoff", "yesterday", "cannot read time"),
    ("--folds", "1", "at least 2"),
    ("--horizon-days", "0", "horizon_days"),
    ("--step-days", "0", "step_days"),
    ("--last-date", "2018-11-01T12:00:00Z", "midnight"),
    ("--cutoff", "2018-10-01", "too short for a 14-day feature window and a 30-day horizon"),
])
def test_train_bad_options_exit_2(capsys, tmp_path, real_sample, option, value, message):
    code, _, err = run(capsys, "train", str(real_sample), "--model", str(tmp_path / "m"), option, value)
    assert code == 2 and message in err


def test_train_refuses_a_date_whose_labels_the_log_cannot_hold(capsys, tmp_path, compact_log):
    code, _, err = run(capsys, "train", str(compact_log), "--model", str(tmp_path / "m"), "--cutoff", "2018-11-20")
    assert code == 2 and "no full 30-day horizon of log after it" in err and "latest date that fits" in err
    assert not (tmp_path / "m").exists()


def test_train_plans_from_the_command_line(capsys, tmp_path, real_sample):
    import argparse

    from sparkify.modeling.cli import configure_train, train_config_from_args

    parser = argparse.ArgumentParser()
    configure_train(parser)
    parse = lambda *extra: train_config_from_args(parser.parse_args(["log.json", "--model", "m", *extra]))  # noqa: E731
    default, thorough, quick = parse(), parse("--thorough"), parse("--quick")
    assert not default.tune and not default.label_comparison and default.seed_spread == 0 and default.ceiling
    assert thorough.tune and thorough.label_comparison and thorough.seed_spread > 0
    assert not default.class_weights and thorough.class_weights
    assert quick.folds == 2 and not quick.label_comparison
    with pytest.raises(SystemExit):
        parse("--quick", "--thorough")
    capsys.readouterr()
    code, _, err = run(capsys, "train", str(real_sample), "--model", str(tmp_path / "m"), "--scores",
                       str(tmp_path / "s.txt"))
    assert code == 2 and ".csv or .parquet" in err and not (tmp_path / "m").exists()


def test_score_errors_exit_2(capsys, tmp_path, real_sample, trained_model):
    code, _, err = run(capsys, "score", str(real_sample), "--model", str(tmp_path / "none"))
    assert code == 2 and "no model at" in err
    code, _, err = run(capsys, "score", str(real_sample), "--model", str(trained_model), "--out", str(tmp_path / "x.txt"))
    assert code == 2 and ".csv or .parquet" in err
    code, _, err = run(capsys, "score", str(tmp_path / "nope.json"), "--model", str(trained_model))
    assert code == 2 and "event log not found" in err
    code, _, err = run(capsys, "score", str(real_sample), "--model", str(trained_model), "--as-of", "soon")
    assert code == 2 and "cannot read time" in err


def test_score_command_writes_a_ranked_list(capsys, spark, small_log, trained_model, tmp_path):
    out = tmp_path / "at_risk.parquet"
    code, stdout, err = run(capsys, "score", str(small_log), "--model", str(trained_model), "--out", str(out))
    assert code == 0, err
    assert "active users scored" in stdout
    df = pd.read_parquet(out)
    assert list(df["rank"]) == list(range(1, len(df) + 1))
    assert len(df) > 100 and df.decision.isin([0, 1]).all()


def test_score_sets_malformed_lines_aside_and_writes_nothing_when_nobody_is_active(capsys, compact_log,
                                                                                   trained_model, tmp_path):
    log = tmp_path / "log.json"
    log.write_text(compact_log.read_text() + '{"ts": "abc", "userId": "5"}\n\x00\x01 binary\n{"page": \n')
    out = tmp_path / "at_risk.csv"
    code, stdout, err = run(capsys, "score", str(log), "--model", str(trained_model), "--out", str(out))
    assert code == 0, err
    quarantine = tmp_path / "at_risk.quarantine"
    assert f"3 malformed lines quarantined -> {quarantine}" in stdout
    assert sum(len(f.read_text().splitlines()) for f in quarantine.glob("part-*")) == 3
    before = out.read_bytes()
    code, _, err = run(capsys, "score", str(log), "--model", str(trained_model), "--out", str(out),
                       "--as-of", "2019-06-01")            # months after the log's end
    assert code == 2 and "no user is subscribed and active" in err and "the log runs from" in err
    assert out.read_bytes() == before                      # the list the web app reads is left as it was
    assert quarantine.is_dir()                             # and the lines set aside with it
    code, stdout, err = run(capsys, "score", str(compact_log), "--model", str(trained_model), "--out", str(out))
    assert code == 0 and "quarantined" not in stdout, err
    assert not quarantine.exists()                         # a clean log's list has no quarantine beside it


def test_a_damaged_model_is_named_before_any_work(capsys, trained_model, small_log, tmp_path):
    import shutil

    bad_json, no_pipeline = tmp_path / "bad_json", tmp_path / "no_pipeline"
    for d in (bad_json, no_pipeline):
        shutil.copytree(trained_model, d)
    (bad_json / "model.json").write_text("{not json")
    shutil.rmtree(no_pipeline / "pipeline")
    for command in ("score", "backtest"):
        extra = ["--as-of", "2018-12-01"] if command == "backtest" else []
        code, _, err = run(capsys, command, str(small_log), "--model", str(bad_json), *extra)
        assert code == 2 and f"damaged model at {bad_json}: model.json cannot be read" in err
        code, _, err = run(capsys, command, str(small_log), "--model", str(no_pipeline), *extra)
        assert code == 2 and "pipeline/) is missing" in err and "Traceback" not in err


def test_backtest_command(capsys, small_log, trained_model, tmp_path):
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    code, _, err = run(capsys, "backtest", str(small_log), "--model", str(tmp_path / "none"), "--as-of", "2018-11-01")
    assert code == 2 and "no model at" in err
    code, _, err = run(capsys, "backtest", str(small_log), "--model", str(model), "--as-of", "2018-11-20")
    assert code == 2 and "needs the whole horizon" in err and "Traceback" not in err
    meta = json.loads((model / "model.json").read_text())
    as_of = meta["label"]["dates"][-1]
    code, _, err = run(capsys, "backtest", str(small_log), "--model", str(model), "--as-of", as_of)
    assert code == 2 and "not after the model's last observation date" in err
    # the same model, said to be trained a week earlier, can be applied at that date
    meta["label"]["dates"] = meta["label"]["dates"][:-7]
    (model / "model.json").write_text(json.dumps(meta))
    code, stdout, err = run(capsys, "backtest", str(small_log), "--model", str(model), "--as-of", as_of)
    assert code == 0, err
    assert "expected" in stdout and "churners" in stdout and "PR-AUC" in stdout
    result = json.loads((model / "backtest.json").read_text())
    f = result["figures"]
    assert result["as_of"] == as_of and f["rows"] > 50 and 0 < f["churners"] < f["rows"]
    assert f["realized_churners"] == f["churners"] and 0 <= f["pr_auc"] <= 1
    assert (model / "backtests" / f"backtest_{as_of[:10]}.json").exists()
    assert result["label_overlap_days"] == 23         # 30-day horizon, 7 days after the last date
    assert result["ceiling"]["test"]["rows"] == f["rows"]   # small_log is simulated: its truth is beside it
    low, high = result["pr_auc_vs_test_interval"]          # the ratio to the model's own test, with its noise
    assert 0 <= low < high and "95 % interval" in stdout
    card = (model / "MODEL_CARD.md").read_text()          # the card shows the latest backtest
    assert f"Applied at {as_of[:10]}" in card and f"{f['rows']:,} users, {f['churners']:,} churners" in card
    assert "reach 23 days into this label period, so these figures are optimistic" in card
    assert "Top inputs" not in card or card.index("## Backtest") > card.index("Top inputs")  # not under the backtest


def test_ingest_command_writes_parquet_the_loader_reads(capsys, spark, real_sample, tmp_path):
    from sparkify.dataset import load_events

    out = tmp_path / "clean"
    code, stdout, err = run(capsys, "ingest", str(real_sample), "--out", str(out))
    assert code == 0, err
    assert "user rows" in stdout
    with load_events(spark, out) as loaded:
        assert loaded.events.count() == loaded.quality.user_rows > 0


def test_process_data_wrapper_usage_and_delegation(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("process_data", ROOT / "data" / "process_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) == 2
    assert "usage" in capsys.readouterr().err
    seen = {}

    def fake_main(argv):
        seen["argv"] = argv
        return 0

    import sparkify.cli

    monkeypatch.setattr(sparkify.cli, "main", fake_main)
    assert module.main(["data/log.json", "model/classifier", "--quick"]) == 0
    assert seen["argv"] == ["train", "data/log.json", "--model", "model/classifier", "--quick"]
