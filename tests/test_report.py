"""`sparkify report`: sections, self-containment, numbers that match the data, the Spark
aggregations on hand-made events, the evaluation curves, and CLI errors."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

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


@pytest.fixture(scope="module")
def report(spark, small_log, trained_model, tmp_path_factory):
    """The report of the small simulated log and the fast-trained model, written by the CLI."""
    from sparkify.cli import main

    out = tmp_path_factory.mktemp("report") / "reports"
    code = main(["report", str(small_log), "--model", str(trained_model), "--out", str(out)])
    assert code == 0
    path = out / "sparkify_report.html"
    return path, path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the report
def test_report_has_every_section_and_chart(report):
    path, html = report
    parser = _Refs()
    parser.feed(html)
    for section in ("data-quality", "exploration", "models", "ceiling", "model-table", "quality-kpis"):
        assert section in parser.ids, section
    for heading in ("Data quality", "Exploration: churners vs stayers", "Models", "The ceiling"):
        assert heading in html
    # one Plotly div per chart: daily x2, distributions, categories, churn rate, pages, weeks,
    # comparison, roc, pr, confusion, calibration, gains, scores, importances
    charts = html.count('class="plotly-graph-div"')
    assert charts >= 14, charts
    for title in ("Behaviour in the weeks before cancellation", "Page mix", "ROC curve",
                  "Precision-recall curve", "Calibration (reliability)", "Cumulative gains and lift",
                  "Confusion matrix", "Main features: churners vs stayers", "Churn rate by category"):
        assert title in html, title
    # every compared family is in the comparison table, plus the saved model
    assert html.count('data-kind="family"') >= 1
    assert 'data-kind="best"' in html
    visible = re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)
    assert not re.search(r"\{\{|\{%|%\}", visible), "unrendered template code"


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
    for fam, fig in metrics["models"].items():
        assert fig["name"] in html, fam
    if metrics.get("ceiling"):
        assert f"{metrics['ceiling']['test']['f1']:.3f}" in html


def test_scorer_scores_reproduce_the_saved_confusion(trained_model):
    """The test-set curves come from the NumPy scorer: at the saved threshold they give
    exactly the confusion matrix `sparkify train` measured with Spark."""
    from sparkify.report import evaluate_saved_model, read_model_artifacts

    model_json, metrics, _, features = read_model_artifacts(trained_model)
    notes: list[str] = []
    evals = evaluate_saved_model(trained_model, model_json, features, notes)
    test = next(e for e in evals if e.name.startswith("test"))
    assert "NumPy scorer" in test.source, notes
    decided = (test.scores > model_json["threshold"]).astype(int)
    assert ev.confusion(test.labels, decided) == metrics["best"]["test"]["confusion"]
    assert ev.average_precision(test.labels, test.scores) == pytest.approx(metrics["best"]["test"]["pr_auc"], abs=1e-6)


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

    metrics = {
        "models": {"rf": {"name": "RandomForestClassifier", "train_seconds": 3.5, "threshold": 0.4,
                          "test": {"f1": 0.5, "precision": 0.4, "recall": 0.6, "pr_auc": 0.45,
                                   "roc_auc": 0.7, "accuracy": 0.8, "weighted_f1": 0.79}}},
        "best": {"family": "rf", "name": "RandomForestClassifier", "selected_from": "tuning",
                 "threshold": 0.41, "test": {"f1": 0.55}},
        "baseline": {"pr_auc": 0.2, "roc_auc": 0.5, "f1_flag_all": 0.33},
        "ceiling": None,
    }
    rows = comparison_rows(metrics)
    assert [r["kind"] for r in rows] == ["family", "best", "baseline"]
    assert rows[0]["chosen"] and rows[0]["weighted_f1"] == 0.79 and rows[0]["train_seconds"] == 3.5
    assert rows[1]["name"] == "RandomForestClassifier (saved, tuned)" and rows[1]["precision"] is None
    assert rows[2]["pr_auc"] == 0.2 and rows[2]["f1"] == 0.33


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
