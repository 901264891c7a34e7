"""`sparkify report`: sections, self-containment, numbers that match the data and the model
directory (the training table's rows, users and churners; the in-time and out-of-time test
parts; the calibration and its reliability chart; the true ceiling; the backtest section,
present only with a backtest.json), the Spark aggregations on hand-made events, the
evaluation curves, and CLI errors."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from sparkify import report_curves as rc
from sparkify.modeling import evaluate as ev


# --------------------------------------------------------------------------- helpers
class _Refs(HTMLParser):
    """Collects every tag's external references and the element ids."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.ids: set[str] = set()
        self.scripts = 0
        self.styles = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "script":
            self.scripts += 1
        if tag == "style":
            self.styles += 1
        for key in ("src", "href", "data", "poster", "srcset"):
            if a.get(key):
                self.refs.append((tag, key, a[key]))


def _kpi(html: str, name: str) -> str:
    m = re.search(rf'data-kpi="{re.escape(name)}">([^<]*)<', html)
    assert m, f"KPI {name!r} not in the report"
    return m.group(1).strip()


def _visible(html: str) -> str:
    """The page's text without scripts and styles (what a reader sees, roughly)."""
    return re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)


def _table_cells(html: str, table_id: str, figure: str) -> list[str]:
    """The value cells of one figure row (``data-figure``) of a side-by-side table."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    assert table, f"table {table_id} not in the report"
    row = re.search(rf'<tr data-figure="{figure}">(.*?)</tr>', table.group(0), re.S)
    assert row, f"figure {figure} not in {table_id}"
    return [c.strip() for c in re.findall(r'<td class="num">([^<]*)</td>', row.group(1))]


def _counts(block) -> str:
    return f"{block['rows']:,} rows of {block['users']:,} users, {block['churners']:,} churner rows"


@pytest.fixture(scope="module")
def report_data(spark, small_log, trained_model):
    """The report's data for the small simulated log and the fast-trained model (the
    Spark aggregations run once for the module)."""
    from sparkify.report import collect_report_data

    return collect_report_data(spark, str(small_log), trained_model, weeks=4)


@pytest.fixture(scope="module")
def report(report_data, small_log, trained_model, tmp_path_factory):
    """The report written by the CLI (`sparkify report`), its aggregations taken from
    ``report_data`` so they run once."""
    from sparkify.cli import main
    from sparkify.report import command

    out = tmp_path_factory.mktemp("report") / "reports"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(command, "collect_report_data", lambda *a, **k: report_data)
        code = main(["report", str(small_log), "--model", str(trained_model), "--out", str(out)])
    assert code == 0
    path = out / "sparkify_report.html"
    return path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def backtested(small_log, trained_model, tmp_path_factory):
    """A copy of the trained model with a real ``backtest.json``: `sparkify backtest` at
    the model's latest observation date, the copy's model.json saying it was trained a
    week earlier (a backtest must be later than the model's dates)."""
    import shutil

    from sparkify.cli import main

    model = tmp_path_factory.mktemp("bt") / "classifier"
    shutil.copytree(trained_model, model)
    meta = json.loads((model / "model.json").read_text())
    as_of = meta["label"]["dates"][-1]
    meta["label"]["dates"] = meta["label"]["dates"][:-7]
    (model / "model.json").write_text(json.dumps(meta))
    assert main(["backtest", str(small_log), "--model", str(model), "--as-of", as_of]) == 0
    return model


@pytest.fixture(scope="module")
def backtest_report(report_data, backtested, small_log):
    """(html, data) of the report of the backtested model directory."""
    from dataclasses import replace

    from sparkify.report import model_section, render_report

    data = replace(report_data, **model_section(backtested, small_log))
    return render_report(data), data


# --------------------------------------------------------------------------- the report
def test_report_has_every_section_and_chart(report):
    path, html = report
    parser = _Refs()
    parser.feed(html)
    for section in ("data-quality", "training-table", "split-table", "exploration", "models", "model-table",
                    "period-table", "calibration", "ceiling", "quality-kpis"):
        assert section in parser.ids, section
    for heading in ("Data quality", "From the log to the training table", "Exploration: churners vs stayers",
                    "Models", "In time and out of time", "Calibration", "The true ceiling"):
        assert heading in html, heading
    # one Plotly div per chart: daily x2, distributions, categories, label, pages, weeks, comparison,
    # reliability (+ the ceiling's), roc, pr, confusion, gains, scores, importances
    charts = html.count('class="plotly-graph-div"')
    assert charts >= 15, charts
    for title in ("Behaviour in the weeks before cancellation", "Page mix", "ROC curve",
                  "Precision-recall curve", "Reliability of the calibrated probabilities",
                  "Cumulative gains and lift", "Confusion matrix", "Main features at each observation date",
                  "Churn rate by category"):
        assert title in html, title
    # every compared family is in the comparison table, plus the saved model
    assert html.count('data-kind="family"') >= 1
    assert 'data-kind="best"' in html
    assert not re.search(r"\{\{|\{%|%\}", _visible(html)), "unrendered template code"
    # no backtest.json in this model directory: no backtest section, no link to one
    assert "backtest" not in parser.ids and 'href="#backtest"' not in html


def test_report_is_self_contained(report):
    _, html = report
    parser = _Refs()
    parser.feed(html)
    external = [r for r in parser.refs if not r[2].startswith("#")]
    assert external == [], f"external references: {external[:5]}"
    assert html.count("* plotly.js v") == 1, "plotly.js must be inlined exactly once"
    assert "Bootstrap  v5" in html, "Bootstrap CSS must be inlined"
    assert parser.styles >= 1


def test_report_numbers_match_the_data(report, trained_model):
    _, html = report
    quality = json.loads((trained_model / "data_quality.json").read_text())
    metrics = json.loads((trained_model / "metrics.json").read_text())
    assert _kpi(html, "users") == f"{quality['users']:,}"
    assert _kpi(html, "churners") == f"{quality['churners']:,}"
    assert _kpi(html, "rows read") == f"{quality['rows_read']:,}"
    assert _kpi(html, "hidden rows") == f"{quality['hidden_rows']:,}"
    assert _kpi(html, "quarantined") == f"{quality['quarantined']:,}"
    best_row = re.search(r'data-kind="best">(.*?)</tr>', html, re.S).group(1)
    f1 = re.search(r'data-metric="f1">([^<]*)<', best_row).group(1)
    assert f1 == f"{metrics['best']['test']['f1']:.3f}"
    assert re.search(r'data-metric="rows">([^<]*)<', best_row).group(1).strip() == \
        f"{metrics['best']['test']['rows']:,} ({metrics['best']['test']['churners']:,})"
    for fam, fig in metrics["models"].items():
        assert fig["name"] in html, fam
    # the training table: rows of (user, date), users, churner rows, churning users
    d = metrics["data"]
    text = re.sub(r"\s+", " ", _visible(html))
    assert (f"The training table: {d['rows']:,} rows of {d['users']:,} users, {d['churner_rows']:,} "
            f"churner rows") in text
    assert f"of {d['churning_users']:,} users who churn" in text
    split = re.search(r'<table[^>]*id="split-table".*?</table>', html, re.S).group(0)
    for part, prefix in (("train", "train_"), ("test, in time", "test_in_time_"),
                         ("test, out of time", "test_out_of_time_"), ("total", "")):
        row = re.search(rf'<tr data-part="{re.escape(part)}"[^>]*>(.*?)</tr>', split, re.S).group(1)
        cells = re.findall(r'<td class="num">([^<]*)', row)
        assert cells[0].strip() == f"{d[prefix + 'rows']:,}", part
        assert cells[1].strip() == f"{d[prefix + 'users']:,}", part
        assert cells[2].strip().startswith(f"{d[prefix + 'churner_rows']:,} "), part
    # the test figures, in time and out of time side by side, each with its counts
    assert f"<strong id=\"test-counts\">{_counts(metrics['best']['test'])}</strong>" in html
    periods = metrics["best"]["periods"]
    assert set(periods) == {"in_time", "out_of_time"}
    blocks = [periods["in_time"], periods["out_of_time"], metrics["best"]["test"]]
    assert _table_cells(html, "period-table", "rows") == [f"{b['rows']:,}" for b in blocks]
    assert _table_cells(html, "period-table", "users") == [f"{b['users']:,}" for b in blocks]
    assert [c.split(" ")[0] for c in _table_cells(html, "period-table", "churners")] == \
        [f"{b['churners']:,}" for b in blocks]
    assert _table_cells(html, "period-table", "pr_auc") == [f"{b['pr_auc']:.3f}" for b in blocks]
    assert _table_cells(html, "period-table", "brier") == [f"{b['brier']:.4f}" for b in blocks]
    assert _table_cells(html, "period-table", "expected")[1].startswith(
        f"{periods['out_of_time']['expected_churners']:,.1f} vs {periods['out_of_time']['realized_churners']:,}")
    assert _table_cells(html, "period-table", "bins_within")[2] == \
        f"{metrics['best']['test']['bins_within']} of {metrics['best']['test']['bins']}"
    # the calibration: its method and the test rows' expected vs realized churners
    assert f'<strong id="calibration-method">{metrics["best"]["calibration"]["method"]}</strong>' in html
    assert f"{metrics['best']['test']['expected_churners']:,.1f}" in text
    # the true ceiling and the model as a fraction of it
    ceiling = metrics.get("ceiling")
    if ceiling:
        assert _kpi(html, "ceiling PR-AUC") == f"{ceiling['test']['pr_auc']:.3f}"
        assert _kpi(html, "fraction of ceiling") == f"{ceiling['model_pr_auc_fraction']:.2f}"
        low, high = ceiling["fraction_interval"]
        assert f"95 % interval {low:.2f}-{high:.2f}, users resampled" in html
        assert _table_cells(html, "ceiling-table", "rows") == [f"{metrics['best']['test']['rows']:,}"] * 2


def test_reliability_chart_draws_the_stored_bins_with_wilson_bars(report_data, trained_model):
    """The reliability chart is the test rows' curve of metrics.json: mean prediction
    against the observed rate, the Wilson interval as asymmetric error bars, and the
    diagonal."""
    from sparkify.report import build_figures

    metrics = json.loads((trained_model / "metrics.json").read_text())
    bins = metrics["best"]["test"]["reliability"]
    fig = build_figures(report_data)["reliability"]
    diagonal, test = fig.data[0], fig.data[1]
    assert diagonal.name == "perfect calibration" and list(diagonal.x) == list(diagonal.y)
    assert test.name.startswith(f"test, all rows ({_counts(metrics['best']['test'])}")
    assert list(test.x) == pytest.approx([b["predicted"] for b in bins])
    assert list(test.y) == pytest.approx([b["observed"] for b in bins])
    assert list(test.error_y.array) == pytest.approx([b["observed_hi"] - b["observed"] for b in bins])
    assert list(test.error_y.arrayminus) == pytest.approx([b["observed"] - b["observed_lo"] for b in bins])
    assert [c[0] for c in test.customdata] == [b["rows"] for b in bins]
    # the out-of-time part, when drawn, carries its own counts
    oot = metrics["best"]["periods"]["out_of_time"]
    names = [t.name for t in fig.data]
    assert any(n.startswith(f"test, out of time ({_counts(oot)}") for n in names), names


def test_backtest_section_only_when_backtest_json_exists(report, backtest_report, backtested):
    _, plain = report
    html, data = backtest_report
    bt = json.loads((backtested / "backtest.json").read_text())
    f = bt["figures"]
    parser = _Refs()
    parser.feed(html)
    assert "backtest" in parser.ids and 'href="#backtest"' in html
    assert 'id="backtest"' not in plain and "sparkify backtest</code> applied" not in plain
    text = re.sub(r"\s+", " ", _visible(html))
    assert f"Backtest at {bt['as_of'][:10]}" in text
    assert f'<strong id="backtest-counts">{_counts(f)}</strong>' in html
    assert _kpi(html, "backtest PR-AUC") == f"{f['pr_auc']:.3f}"
    assert _kpi(html, "backtest vs test") == f"{bt['pr_auc_vs_test']:.2f}"
    low, high = bt["pr_auc_vs_test_interval"]
    assert f"95 % interval {low:.2f}-{high:.2f}, users resampled" in html
    assert _table_cells(html, "backtest-table", "rows") == [f"{f['rows']:,}", f"{bt['model_test']['rows']:,}"]
    assert _table_cells(html, "backtest-table", "bins_within")[0] == f"{f['bins_within']} of {f['bins']}"
    # at the model's latest date: the report says the figures are optimistic, and why
    assert "latest observation date" in text and "optimistic" in text
    # its reliability curve, with its counts
    assert "Reliability of the backtest's probabilities" in html
    assert html.count('class="plotly-graph-div"') == plain.count('class="plotly-graph-div"') + 1
    from sparkify.report import build_figures

    curve = build_figures(data)["backtest_reliability"]
    assert curve.data[1].name.startswith(f"backtest at {bt['as_of'][:10]} ({_counts(f)})")
    assert list(curve.data[1].y) == pytest.approx([b["observed"] for b in f["reliability"]])


def test_report_of_a_model_without_periods_calibration_or_ceiling(report_data):
    """A model directory from before snapshots and calibration (one date, no periods, no
    calibration, no ceiling) still renders, saying what it lacks."""
    from dataclasses import replace

    from sparkify.report import render_report

    metrics = json.loads(json.dumps(report_data.metrics))
    for key in ("periods", "calibration"):
        metrics["best"].pop(key, None)
    for key in ("reliability", "brier", "expected_churners"):
        metrics["best"]["test"].pop(key, None)
    metrics["ceiling"] = None
    html = render_report(replace(report_data, metrics=metrics, backtest=None, truth=None))
    assert "records no calibration" in html
    assert "no calibrated probabilities" in html
    assert "so no ceiling" in html
    assert not re.search(r"\{\{|\{%|%\}", _visible(html))


def test_scorer_scores_reproduce_the_saved_figures(trained_model):
    """The test-set curves come from the NumPy scorer: at the saved threshold they give
    exactly the confusion matrix `sparkify train` measured with Spark, and apart by period
    the same rows, users, churners and PR-AUC as metrics.json's periods."""
    from sparkify.report import evaluate_saved_model, read_model_artifacts

    model_json, metrics, _, features = read_model_artifacts(trained_model)
    notes: list[str] = []
    evals = {e.name: e for e in evaluate_saved_model(trained_model, model_json, features, notes)}
    test = evals["test, all rows"]
    assert "NumPy scorer" in test.source, notes
    decided = (test.scores > model_json["threshold"]).astype(int)
    assert ev.confusion(test.labels, decided) == metrics["best"]["test"]["confusion"]
    assert ev.average_precision(test.labels, test.scores) == pytest.approx(metrics["best"]["test"]["pr_auc"], abs=1e-6)
    assert test.probabilities is not None
    assert test.probabilities.sum() == pytest.approx(metrics["best"]["test"]["expected_churners"], rel=1e-6)
    for period, name in (("in_time", "test, in time"), ("out_of_time", "test, out of time")):
        block, e = metrics["best"]["periods"][period], evals[name]
        assert e.counts == {k: block[k] for k in ("rows", "users", "churners")}
        assert ev.average_precision(e.labels, e.scores) == pytest.approx(block["pr_auc"], abs=1e-6)
        assert e.label.startswith(f"{name} ({block['rows']:,} rows, {block['users']:,} users")
    train = evals["out-of-fold (train)"]
    assert train.counts["rows"] == metrics["data"]["train_rows"]


def test_split_table_adds_up(trained_model):
    from sparkify.report import read_model_artifacts, split_table

    _, metrics, _, features = read_model_artifacts(trained_model)
    parts = {r["name"]: r for r in split_table(features, metrics)}
    d = metrics["data"]
    assert parts["total"]["rows"] == d["rows"] == sum(r["rows"] for n, r in parts.items() if n != "total")
    assert parts["total"]["churner_users"] == d["churning_users"] and parts["total"]["churners"] == d["churner_rows"]
    assert parts["train"]["rows"] == d["train_rows"] and parts["train"]["users"] == d["train_users"]
    assert parts["test, out of time"]["dates"] == 1
    assert parts["test, in time"]["users"] == d["test_in_time_users"]
    # the unused part: the training users' rows at the out-of-time date
    assert parts["unused: train users, latest date"]["dates"] == 1
    assert parts["unused: train users, latest date"]["users"] <= d["train_users"]
    # from metrics.json alone (no features.parquet), the same counts
    alone = {r["name"]: r for r in split_table(None, metrics)}
    assert alone["train"]["rows"] == d["train_rows"] and alone["total"]["churners"] == d["churner_rows"]


# --------------------------------------------------------------------------- Spark aggregations
def test_aggregations_add_up_to_the_quality_summary(spark, small_log):
    from sparkify import report_data as rd
    from sparkify.dataset import load_events

    with load_events(spark, str(small_log)) as loaded:
        groups = rd.user_groups(loaded.events)
        sizes = rd.group_sizes(groups)
        daily = rd.daily_activity(loaded.events, groups)
        pages_all = rd.page_mix(loaded.events, groups, exclude_cancel=False)
        q = loaded.quality
    assert sizes == {"users": q.users, "churners": q.churners, "stayers": q.users - q.churners}
    assert daily["events"].sum() == q.user_rows
    assert pages_all["events"].sum() == q.user_rows
    assert pages_all.groupby("churn")["share"].sum().round(9).tolist() == [1.0, 1.0]
    # every churner visits the confirmation page exactly once
    confirm = pages_all[(pages_all.page == "Cancellation Confirmation")]
    assert confirm["churn"].tolist() == [1] and int(confirm["users"].iloc[0]) == q.churners


DAY = 86_400_000
T0 = 1_538_352_000_000  # 2018-10-01 00:00 UTC


def _events(spark, rows):
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType([StructField("userId", StringType()), StructField("ts", LongType()),
                         StructField("page", StringType()), StructField("auth", StringType())])
    return spark.createDataFrame(rows, schema)


def test_weeks_before_churn_counts_by_hand(spark):
    """One churner cancelling on day 30 and one stayer: the churner is counted in the weeks
    before their cancellation, the stayer in the same calendar weeks (the only churn date)."""
    from sparkify import report_data as rd

    cancel = T0 + 30 * DAY
    rows = [("c", T0, "Home", "Logged In")]                       # first event: day 0
    rows += [("c", cancel - 2 * DAY - i * 1000, "NextSong", "Logged In") for i in range(10)]   # week 1, day 28
    rows += [("c", cancel - 3 * DAY, "NextSong", "Logged In"),                                  # week 1, day 27
             ("c", cancel - 3 * DAY + 5, "Thumbs Down", "Logged In")]
    rows += [("c", cancel - 9 * DAY - i * 1000, "NextSong", "Logged In") for i in range(4)]    # week 2
    rows += [("c", cancel - 1000, "Cancel", "Logged In"),
             ("c", cancel, "Cancellation Confirmation", "Cancelled")]
    rows += [("s", T0 + 5 * DAY, "NextSong", "Logged In")]                                    # week 4 before cancel
    rows += [("s", cancel - 1 * DAY - i * 1000, "NextSong", "Logged In") for i in range(3)]    # week 1
    rows += [("s", cancel + 5 * DAY, "NextSong", "Logged In")]                                 # after ref: ignored
    ev_df = _events(spark, rows)
    groups = rd.user_groups(ev_df)
    weekly = rd.weeks_before_churn(ev_df, groups, weeks=3).set_index(["churn", "week"])
    c1 = weekly.loc[(1, 1)]
    assert (c1["users"], c1["active_users"], c1["active_days"], c1["songs"], c1["thumbs_down"]) == (1, 1, 2, 11, 1)
    assert c1["songs_per_active_day"] == pytest.approx(5.5)
    assert c1["thumbs_down_per_100_songs"] == pytest.approx(100 / 11)
    c2 = weekly.loc[(1, 2)]
    assert (c2["active_days"], c2["songs"]) == (1, 4)
    s1 = weekly.loc[(0, 1)]
    assert (s1["users"], s1["active_users"], s1["songs"]) == (1, 1, 3)
    # the stayer's first event (day 5) is after week 4 starts but before week 3 starts (day 9)
    assert weekly.loc[(0, 3)]["users"] == 1 and weekly.loc[(0, 3)]["songs"] == 0
    assert set(weekly.index) == {(g, w) for g in (0, 1) for w in (1, 2, 3)}


def test_weeks_before_churn_without_churners_is_empty(spark):
    from sparkify import report_data as rd

    ev_df = _events(spark, [("a", T0, "NextSong", "Logged In")])
    assert rd.weeks_before_churn(ev_df, rd.user_groups(ev_df), weeks=2).empty


# --------------------------------------------------------------------------- curves
def _random_scores(n=300, seed=3):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    s = np.round(rng.normal(size=n) + 1.2 * y, 1)   # rounded: ties
    return y, s


def test_roc_area_equals_rank_auc():
    y, s = _random_scores()
    fpr, tpr = rc.roc_points(y, s)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(ev.roc_auc(y, s), abs=1e-12)


def test_pr_step_area_equals_average_precision():
    y, s = _random_scores()
    recall, precision = rc.pr_points(y, s)
    area = float(np.sum(np.diff(recall) * precision[1:]))
    assert area == pytest.approx(ev.average_precision(y, s), abs=1e-12)


def test_calibration_bins_and_gains():
    y, s = _random_scores()
    p = 1 / (1 + np.exp(-s))
    bins = rc.calibration_bins(y, p, bins=5)
    assert bins["users"].sum() == len(y) and len(bins) == 5
    assert (np.diff(bins["mean_predicted"]) >= 0).all()
    assert (bins["users"] * bins["observed_rate"]).sum() == pytest.approx(y.sum())
    gains = rc.gains_table(y, s)
    assert gains.iloc[-1][["contacted", "captured"]].tolist() == [1.0, 1.0]
    assert gains.iloc[-1]["lift"] == pytest.approx(1.0)
    top = gains[gains.contacted <= 0.1].iloc[-1]
    assert top["lift"] > 1.5  # the scores carry signal
    with pytest.raises(ValueError, match="0 or 1"):
        rc.gains_table([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rc.calibration_bins([0, 1], [0.5, 1.5])


def test_comparison_rows_from_metrics():
    from sparkify.report import comparison_rows

    counts = {"rows": 120, "users": 30, "churners": 12}
    metrics = {
        "models": {"rf": {"name": "RandomForestClassifier", "train_seconds": 3.5, "threshold": 0.4,
                          "test": {"f1": 0.5, "precision": 0.4, "recall": 0.6, "pr_auc": 0.45,
                                   "roc_auc": 0.7, "accuracy": 0.8, "weighted_f1": 0.79, **counts}}},
        "best": {"family": "rf", "name": "RandomForestClassifier", "selected_from": "tuning",
                 "threshold": 0.41, "test": {"f1": 0.55, **counts}},
        "baseline": {"pr_auc": 0.1, "roc_auc": 0.5, "f1_flag_all": 0.18},
        "ceiling": {"test": {"pr_auc": 0.6, "f1": 0.58, **counts}, "threshold": 0.2,
                    "model_pr_auc_fraction": 0.75},
    }
    rows = comparison_rows(metrics)
    assert [r["kind"] for r in rows] == ["family", "best", "ceiling", "baseline"]
    assert rows[0]["chosen"] and rows[0]["weighted_f1"] == 0.79 and rows[0]["train_seconds"] == 3.5
    assert rows[1]["name"] == "RandomForestClassifier (saved, tuned)" and rows[1]["precision"] is None
    assert rows[2]["name"].startswith("True ceiling") and rows[2]["pr_auc"] == 0.6 and rows[2]["threshold"] == 0.2
    assert rows[3]["pr_auc"] == 0.1 and rows[3]["f1"] == 0.18
    assert all((r["rows"], r["users"], r["churners"]) == (120, 30, 12) for r in rows)
    metrics["ceiling"] = None
    assert [r["kind"] for r in comparison_rows(metrics)] == ["family", "best", "baseline"]


def test_figure_cells_and_dates():
    from sparkify.report import counts_text, figure_cell, figure_table, period_dates

    b = {"rows": 200, "users": 50, "churners": 20, "pr_auc": 0.41234, "brier": 0.081234,
         "top10": {"precision": 0.4, "lift": 4.0, "users": 20}, "confusion": {"tp": 5, "fp": 7, "fn": 15, "tn": 173},
         "expected_churners": 18.25, "realized_churners": 20, "z": 0.4, "bins_within": 9, "bins": 10,
         "calibration_p": 0.4321}
    assert counts_text(b) == "200 rows of 50 users, 20 churner rows"
    assert counts_text({}) == ""
    assert figure_cell(b, "churners") == "20 (10.0%)"
    assert figure_cell(b, "pr_auc") == "0.412" and figure_cell(b, "brier") == "0.0812"
    assert figure_cell(b, "top10") == "0.400 (4.00×)"
    assert figure_cell(b, "flagged") == "12 (5 churners)"
    assert figure_cell(b, "expected") == "18.2 vs 20 (z +0.4)"
    assert figure_cell(b, "bins_within") == "9 of 10" and figure_cell(b, "calibration_p") == "0.43"
    assert figure_cell(None, "rows") == "–" and figure_cell({"rows": 3}, "roc_auc") == "–"
    table = figure_table([("a", b), ("b", None)], {"a": "2018-10-31"})
    assert table[0]["key"] == "dates" and table[0]["cells"] == ["2018-10-31", "–"]
    assert "roc_auc" not in [r["key"] for r in table]          # absent everywhere: left out
    dates = period_dates({"dates": ["2018-10-16T00:00:00Z", "2018-10-17T00:00:00Z", "2018-10-18T00:00:00Z"]})
    assert dates == {"in_time": "2 dates, 2018-10-16 to 2018-10-17", "out_of_time": "2018-10-18",
                     "all": "3 dates, 2018-10-16 to 2018-10-18"}
    assert period_dates({"dates": ["2018-10-16T00:00:00Z"]})["out_of_time"] == "–"


def test_class_weighted_reads_the_tuned_weight_column():
    from sparkify.report import class_weighted

    weights = {"0": 0.55, "1": 5.2}
    assert not class_weighted({"best": {"params": {"weightCol": "unit_weight"}}, "class_weights": weights})
    assert class_weighted({"best": {"params": {"weightCol": "weight"}}, "class_weights": weights})
    assert class_weighted({"best": {"params": {}}, "class_weights": weights})      # the comparison point
    assert not class_weighted({"best": {"params": {}}, "class_weights": {"0": 1.0, "1": 1.0}})
    # the class-weight choice of --thorough decides when it was made
    choice = {"out_of_fold_pr_auc": {"weighted": 0.2, "unweighted": 0.3}, "kept": False}
    assert not class_weighted({"best": {"params": {}, "class_weights": choice}, "class_weights": weights})
    choice = {**choice, "kept": True}
    assert class_weighted({"best": {"params": {"weightCol": "weight"}, "class_weights": choice},
                           "class_weights": weights})


def test_backtest_relation_to_the_model_dates():
    from sparkify.report import backtest_relation

    label = {"dates": ["2018-10-16T00:00:00Z", "2018-10-31T00:00:00Z"]}
    later = backtest_relation({"as_of": "2018-11-30T00:00:00Z", "label_overlap_days": 0}, label)
    overlapping = backtest_relation({"as_of": "2018-11-07T00:00:00Z", "label_overlap_days": 24}, label)
    latest = backtest_relation({"as_of": "2018-10-31T00:00:00Z"}, label)   # older backtest.json files
    assert "never saw" in later and "optimistic" not in later
    assert "24 days into this label period" in overlapping and "optimistic" in overlapping
    assert "not after the model's latest observation date" in latest and "optimistic" in latest


def test_chart_bins_merge_small_bins_only():
    """The out-of-time part holds one row per user: its ten stored bins of a few rows each
    are redrawn as fewer, larger bins from the rows' probabilities; a large part keeps
    the stored bins."""
    from sparkify.modeling.calibration import probability_figures
    from sparkify.report import MIN_BIN_ROWS, ModelEvaluation, chart_bins

    rng = np.random.default_rng(5)
    p = rng.uniform(0, 0.4, 40)
    y = (rng.random(40) < p).astype(int)
    small = probability_figures(y, p)
    ev_small = ModelEvaluation("test, out of time", y, p, p, "test")
    bins = chart_bins(small, ev_small)
    assert len(bins) == 40 // MIN_BIN_ROWS and sum(b["rows"] for b in bins) == 40
    assert sum(b["rows"] * b["observed"] for b in bins) == pytest.approx(y.sum())
    assert chart_bins(small, None) == small["reliability"]        # no rows at hand: the stored bins
    p = rng.uniform(0, 0.4, 600)
    y = (rng.random(600) < p).astype(int)
    large = probability_figures(y, p)
    assert chart_bins(large, ModelEvaluation("t", y, p, p, "test")) == large["reliability"]


def test_reliability_curve_and_row_counts_in_plots():
    from sparkify import plots
    from sparkify.modeling.calibration import reliability

    rng = np.random.default_rng(2)
    p = rng.uniform(0, 0.3, 500)
    y = (rng.random(500) < p).astype(int)
    bins = reliability(y, p, 5)
    fig = plots.reliability_curve({"model": bins, "as a frame": pd.DataFrame(bins)})
    assert [t.name for t in fig.data] == ["perfect calibration", "model", "as a frame"]
    assert list(fig.data[1].error_y.array) == pytest.approx([b["observed_hi"] - b["observed"] for b in bins])
    top = fig.layout.xaxis.range[1]
    assert fig.layout.yaxis.range[1] == top and top >= max(b["predicted"] for b in bins)
    assert top < 1          # small probabilities stay readable
    assert plots.reliability_curve({"none": []}).layout.annotations[0].text == "no calibrated probabilities"
    # a table of (user, date) rows counts rows, and says of how many users
    table = pd.DataFrame({"userId": ["a", "a", "b", "c"], "churn": [1, 0, 0, 0]})
    assert plots.churn_rate(table).layout.title.text == "Churn rate: 25.0% of 4 rows of 3 users"
    assert plots.churn_rate(table.drop_duplicates("userId")).layout.title.text == "Churn rate: 33.3% of 3 users"
    cats = plots.churn_rate_by_category(table.assign(level=["paid", "paid", "free", "free"]), ["level"])
    assert any("rows" in t for t in cats.data[0].text)


# --------------------------------------------------------------------------- CLI errors
def test_cli_errors_exit_2_with_a_message(tmp_path, capsys, small_log, trained_model):
    from sparkify.cli import main

    assert main(["report", str(small_log), "--model", str(tmp_path / "nope")]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.json"), "--model", str(trained_model),
                 "--out", str(tmp_path / "r")]) == 2
    assert "no event log" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["report", str(small_log), "--model", str(trained_model),
                 "--out", str(tmp_path / "file" / "sub")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["report", str(small_log), "--model", str(trained_model), "--weeks", "0"]) == 2
    assert "--weeks" in capsys.readouterr().err


# --------------------------------------------------------------------------- in a browser
@pytest.mark.browser
def test_report_renders_offline_in_chromium(report):
    """Opened from disk in headless Chromium: no script error, no network request, and
    every chart drawn by plotly.js (an SVG inside each figure)."""
    from conftest import chromium_path

    executable = chromium_path()
    if not executable:
        pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    path, html = report
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            requests: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.on("request", lambda req: requests.append(req.url)
                    if not req.url.startswith(("file:", "data:", "blob:", "about:")) else None)
            page.goto(path.as_uri())
            page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length > 0",
                                   timeout=60_000)
            drawn = page.evaluate(
                "Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".filter(d => d.querySelector('.main-svg')).length")
        finally:
            browser.close()
    assert problems == []
    assert requests == []
    assert drawn == html.count('class="plotly-graph-div"')


def test_planted_drivers_reach_the_report_and_the_model_card(report_data, trained_model):
    """On a satisfaction log, training adds the planted drivers to the ceiling: checked
    here with the real check on the trained model (its importances and the NumPy scorer's
    reasons), then rendered in the report's ceiling section and the model card."""
    from dataclasses import replace

    from sparkify.modeling.drivers import driver_check
    from sparkify.modeling.model_card import render_model_card
    from sparkify.report import read_model_artifacts, render_report
    from sparkify.simulator.satisfaction import SatisfactionModel, planted_drivers

    model_json, metrics, quality, features = read_model_artifacts(trained_model)
    planted = [{**d, "true_importance": imp} for d, imp in
               zip(planted_drivers({"satisfaction": SatisfactionModel().to_dict()}), (0.8, 0.7, 0.5, 0.3, 0.2, 0.1))]
    check = driver_check(trained_model, features, metrics["best"]["importances"], planted)
    assert check["leading"] == 3 and [d["driver"] for d in check["drivers"]][:3] == [
        "thumbs_down", "adverts_free", "errors"]
    assert check["reason_rows"] >= 20 and 0.0 <= check["reason_driver_share"] <= 1.0
    ranked = [d["rank"] for d in check["drivers"] if d["rank"] is not None]
    assert ranked and all(1 <= r for r in ranked)
    assert check["leading_in_top"] == sum(d["in_top"] for d in check["drivers"] if d["leading"])
    # the rank by mean |contribution| over the test rows: the top feature's driver ranks first
    top = check["contribution_top_features"]
    assert len(top) == len(set(top)) == check["top"]
    for d in check["drivers"]:
        assert d["contribution_rank"] is None or d["contribution_rank"] >= 1
        if top[0] in d["features"]:
            assert d["contribution_rank"] == 1

    ceiling = {**(report_data.metrics.get("ceiling") or {}), "churn_model": "satisfaction", "planted": planted,
               "drivers": check, "hazard_at_t": {"pr_auc": 0.3, "model_pr_auc_fraction": 0.9, "rows": 1, "users": 1,
                                                 "churners": 1, "what": "x: the hazard at t"}}
    html = render_report(replace(report_data, metrics={**report_data.metrics, "ceiling": ceiling}))
    section = html[html.index('id="planted-drivers"'):]
    assert f"{check['leading_in_top']} of the {check['leading']}" in _visible(section[:3000])
    assert "thumbs_down_share" in section and "(leading)" in section
    card = render_model_card(model_json, {**metrics, "ceiling": {**metrics["ceiling"], **ceiling}}, quality or {})
    assert "Planted drivers (satisfaction log)" in card and "| thumbs_down (leading) | +30 |" in card
    row = next(line for line in card.splitlines() if line.startswith("| thumbs_down (leading)"))
    assert row.count("|") == 8                     # seven cells: the header's seven columns
    assert "The known daily hazard at t alone" in card
