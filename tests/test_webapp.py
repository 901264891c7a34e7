"""The web app's pages through Flask's test client, on a model trained by the pipeline.

Covers every page route, the form's validation (missing, non-numeric, negative,
absurd, NaN/inf, HTML payloads), unknown categories, size limits, error pages,
user look-up, the at-risk list and its CSV, start-up errors, and that the app
process never imports pyspark.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from sparkify.webapp import MODEL_NAMES, AppStartupError, create_app
from sparkify.webapp.validation import OTHER_CATEGORY

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- fixtures

def valid_record(specs) -> dict:
    """A valid customer: training medians and the first known category."""
    return {s.name: (s.default if s.numeric else s.categories[0]) for s in specs}


def write_scores(model, model_dir: Path, out: Path) -> pd.DataFrame:
    """Score the training users' feature rows like ``sparkify score`` does (userId,
    probability, decision, band, rank and the feature values) and write a CSV."""
    features = pd.read_parquet(model_dir / "features.parquet")
    if "as_of_ms" in features:      # one row per user, at its latest observation date
        features = features.sort_values("as_of_ms").groupby("userId").tail(1)
    names = [f["name"] for f in model.features]
    rows = features.dropna(subset=names).reset_index(drop=True)
    scored = model.predict(rows[names])
    table = pd.DataFrame({
        "userId": rows["userId"].astype(str) if "userId" in rows else [f"u{i}" for i in range(len(rows))],
        "probability": scored["probability"].to_numpy(),
        "decision": scored["decision"].astype(bool).to_numpy(),
        "band": scored["band"].to_numpy(),
    })
    table = pd.concat([table, rows[names]], axis=1)
    table = table.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(3, "rank", range(1, len(table) + 1))
    # A userId carrying an HTML payload: pages must show it as text.
    table.loc[len(table) - 1, "userId"] = "<b>bold</b>"
    table.to_csv(out, index=False)
    return table


@pytest.fixture(scope="module")
def model_dir(trained_model) -> Path:
    return trained_model


@pytest.fixture(scope="module")
def scores(model_dir, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    from sparkify.scorer import load_model

    out = tmp_path_factory.mktemp("scores") / "scores.csv"
    return out, write_scores(load_model(model_dir), model_dir, out)


@pytest.fixture(scope="module")
def app(model_dir, scores):
    return create_app(model_dir, scores_path=scores[0])


def numeric_specs(bundle):
    return [s for s in bundle.specs if s.numeric]


def categorical_specs(bundle):
    return [s for s in bundle.specs if not s.numeric]


class Assets(HTMLParser):
    """Collects script/link/img URLs and form fields of a page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.inputs: dict[str, dict] = {}
        self.selects: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])
        if tag == "img" and a.get("src"):
            self.urls.append(a["src"])
        if tag == "input" and a.get("name"):
            self.inputs[a["name"]] = a
        if tag == "select":
            self._select = a.get("name")
            self.selects[self._select] = []
        if tag == "option" and self._select:
            self.selects[self._select].append(a.get("value"))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def parse(html: bytes | str) -> Assets:
    parser = Assets()
    parser.feed(html.decode() if isinstance(html, bytes) else html)
    return parser


def field_error(html: str, name: str) -> str | None:
    """The message shown beside field ``name`` (None when there is none)."""
    m = re.search(rf'<div class="invalid-feedback" id="e-{re.escape(name)}">(.*?)</div>', html, re.S)
    return m.group(1).strip() if m else None


# --------------------------------------------------------------------------- dashboard

def test_dashboard_form_fields_follow_the_feature_list(client, bundle):
    r = client.get("/")
    assert r.status_code == 200
    page = parse(r.data)
    for spec in numeric_specs(bundle):
        field = page.inputs[spec.name]
        assert field["type"] == "number"
        assert float(field["value"]) == pytest.approx(spec.default, rel=1e-2, abs=1e-3)
        assert float(field["min"]) == spec.lo and float(field["max"]) == spec.hi
        assert spec.lo <= spec.train_min and spec.hi >= spec.train_max
    for spec in categorical_specs(bundle):
        options = page.selects[spec.name]
        assert options[:-1] == list(spec.categories) and options[-1] == OTHER_CATEGORY
    html = r.data.decode()
    for spec in bundle.specs:
        if spec.unit:
            assert f"({spec.unit})" in html


def test_dashboard_shows_charts_and_model_table(client, bundle):
    html = client.get("/").data.decode()
    assert html.count('class="plotly-graph-div"') >= 5
    assert 'id="model-table"' in html
    for name in bundle.metrics_table.index:
        assert f"<td>{MODEL_NAMES.get(name, name)}" in html
    assert bundle.model_type in html


def shown_counts(html: str, marker: str) -> dict[str, int | None]:
    """The rows / users / churner rows an element of the page states (its data-rows,
    data-users and data-churner-rows attributes), found by ``marker`` (e.g. an id)."""
    m = re.search(rf'<[^>]*{marker}[^>]*>', html)
    assert m, f"no element with {marker}"
    out = {}
    for key in ("rows", "users", "churner-rows"):
        value = re.search(rf'data-{key}="(\d*)"', m.group(0)).group(1)
        out[key.replace("-", "_")] = int(value) if value else None
    return out


def split_counts_of(features: pd.DataFrame, split: str | None = None) -> dict[str, int]:
    """Rows, distinct users and churner rows of features.parquet (one split or all)."""
    rows = features if split is None else features[features["split"] == split]
    return {"rows": len(rows), "users": int(rows["userId"].nunique()), "churner_rows": int(rows["churn"].sum())}


def test_dashboard_counts_come_from_metrics_json(client, model_dir):
    """The training KPI gives the training part's rows, distinct users and churner rows
    (metrics.json's data section; not the length of features.parquet, which holds every
    (user, date) row of every split), and the model table says which rows its test and
    validation figures rest on."""
    import json

    metrics = json.loads((model_dir / "metrics.json").read_text())
    data, best = metrics["data"], metrics["best"]
    features = pd.read_parquet(model_dir / "features.parquet")
    html = client.get("/").data.decode()

    train = shown_counts(html, 'id="kpi-training"')
    assert train == {"rows": data["train_rows"], "users": data["train_users"],
                     "churner_rows": data["train_churner_rows"]}
    assert train == split_counts_of(features, "train")  # recounted independently
    assert train["users"] < len(features)  # users, not (user, date) rows of all splits
    assert "Training rows (user x date)" in html
    assert f'Users <strong id="kpi-train-users">{data["train_users"]:,}</strong>' in html
    assert f'Churner rows <strong id="kpi-train-churner-rows">{data["train_churner_rows"]:,}</strong>' in html
    assert f'id="kpi-train-rows">{data["train_rows"]:,}</div>' in html

    everything = shown_counts(html, 'id="kpi-churn-rate"')
    assert everything == {"rows": data["rows"], "users": data["users"], "churner_rows": data["churner_rows"]}
    assert everything == split_counts_of(features)
    assert f"{100 * data['churner_rows'] / data['rows']:.1f}%" in html

    test = shown_counts(html, 'data-basis="test"')
    assert test == {"rows": best["test"]["rows"], "users": best["test"]["users"],
                    "churner_rows": best["test"].get("churner_rows", best["test"]["churners"])}
    assert test == split_counts_of(features, "test")
    assert f"Test figures rest on {test['rows']:,} rows (user x date) of {test['users']:,} users, " \
           f"{test['churner_rows']:,} churner rows" in html
    validation = shown_counts(html, 'data-basis="validation"')
    assert validation == {"rows": best["validation"]["rows"], "users": best["validation"]["users"],
                          "churner_rows": best["validation"].get("churner_rows", best["validation"]["churners"])}
    assert validation == train  # out-of-fold figures on the training rows


def _dashboard_with_metrics(bundle, model_dir: Path, where: Path, metrics) -> str:
    """The dashboard of ``bundle``'s model beside another metrics.json (dict; None: no file)."""
    import json
    import shutil

    where.mkdir()
    for name in ("features.parquet", "activity.parquet", "data_quality.json"):
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, where / name)
    if metrics is not None:
        (where / "metrics.json").write_text(json.dumps(metrics))
    app = create_app(where, scores_path=where / "absent.csv", config={"SPARKIFY_MODEL": bundle.model})
    r = app.test_client().get("/")
    assert r.status_code == 200
    return r.data.decode()


def test_dashboard_counts_with_old_or_partial_metrics(bundle, model_dir, tmp_path):
    """Model directories from before the counts (or with odd values) still render: a
    count that is missing shows as a dash, never a 500."""
    import copy
    import json

    metrics = json.loads((model_dir / "metrics.json").read_text())
    features = pd.read_parquet(model_dir / "features.parquet")

    # no data section, no counts beside the models' figures: dashes; the churn rate is
    # recounted from features.parquet and says so
    old = copy.deepcopy(metrics)
    old.pop("data", None)
    for entry in [*old["models"].values(), old["best"]]:
        for part in ("test", "validation"):
            for key in ("rows", "users", "churners"):
                entry.get(part, {}).pop(key, None)
    html = _dashboard_with_metrics(bundle, model_dir, tmp_path / "old", old)
    assert shown_counts(html, 'id="kpi-training"') == {"rows": None, "users": None, "churner_rows": None}
    assert 'id="kpi-train-users">–<' in html
    assert shown_counts(html, 'id="kpi-churn-rate"') == split_counts_of(features)
    assert 'data-basis=' not in html and 'id="model-table"' in html

    # the first format: one row per user, users and churners but no rows
    first = copy.deepcopy(old)
    first["data"] = {"train_users": 150, "train_churners": 30, "users": 200, "churners": 40}
    html = _dashboard_with_metrics(bundle, model_dir, tmp_path / "first", first)
    assert shown_counts(html, 'id="kpi-training"') == {"rows": None, "users": 150, "churner_rows": 30}

    # values that are no counts
    odd = copy.deepcopy(metrics)
    odd["data"] = {"train_rows": "many", "train_users": -3, "train_churner_rows": 1.5, "rows": 0,
                   "churner_rows": None, "users": True}
    odd["best"]["test"]["rows"] = "x"
    html = _dashboard_with_metrics(bundle, model_dir, tmp_path / "odd", odd)
    assert shown_counts(html, 'id="kpi-training"') == {"rows": None, "users": None, "churner_rows": None}

    # models whose test figures rest on different rows: a column per model
    mixed = copy.deepcopy(metrics)
    first_key = next(iter(mixed["models"]))
    mixed["models"][first_key]["test"].update(rows=11, users=7, churners=3)
    html = _dashboard_with_metrics(bundle, model_dir, tmp_path / "mixed", mixed)
    cells = re.findall(r'<td[^>]*data-basis="test"[^>]*>', html)
    assert len(cells) == len(mixed["models"])
    assert 'data-rows="11" data-users="7" data-churner-rows="3"' in cells[0]

    # no metrics.json at all, or not an object
    html = _dashboard_with_metrics(bundle, model_dir, tmp_path / "none", None)
    assert "No model metrics" in html and 'id="kpi-train-rows">–<' in html
    html = _dashboard_with_metrics(bundle, model_dir, tmp_path / "list", [1, 2])
    assert 'id="kpi-train-rows">–<' in html


PAGES = ["/", "/users", "/at-risk", "/at-risk?all=1", "/api", "/no-such-page"]


@pytest.mark.parametrize("url", PAGES)
def test_no_cdn_every_asset_is_served_locally(client, bundle, url):
    html = client.get(url).data
    urls = parse(html).urls
    assert any("bootstrap" in u and u.endswith(".css") for u in urls)
    for u in urls:
        assert not re.match(r"^(https?:)?//", u), f"external asset {u} on {url}"
        assert client.get(u).status_code == 200, u
    assert not re.search(rb"<(script|link)[^>]+(src|href)=\"(https?:)?//", html)


def test_go_page_assets_and_plotly_served_from_the_package(client, bundle):
    r = client.get("/go", query_string=valid_record(bundle.specs))
    for u in parse(r.data).urls:
        assert not re.match(r"^(https?:)?//", u)
    js = client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and js.mimetype == "text/javascript"
    assert b"plotly" in js.data[:2000].lower() and len(js.data) > 1_000_000
    assert "Content-Security-Policy" in r.headers and "default-src 'self'" in r.headers["Content-Security-Policy"]


# --------------------------------------------------------------------------- result page

@pytest.mark.parametrize("method", ["get", "post"])
def test_go_shows_probability_decision_band_and_reasons(client, bundle, method):
    record = valid_record(bundle.specs)
    if method == "get":
        r = client.get("/go", query_string=record)
    else:
        r = client.post("/go", data=record)
    assert r.status_code == 200
    html = r.data.decode()
    expected = bundle.model.predict([record])
    p = float(expected["probability"][0])
    assert f"{100 * p:.1f}%" in html
    decision = bool(expected["decision"][0])
    assert ("Likely to churn" in html) == decision and ("Likely to stay" in html) != decision
    assert f"{expected['band'][0]} risk" in html
    reasons = bundle.model.explain(record, top=5)
    assert reasons
    for reason in reasons:
        assert reason.feature.replace("_", " ") in html
    for spec in bundle.specs:  # the values entered are shown back
        assert spec.label in html


def test_go_without_values_redirects_to_the_form(client):
    r = client.get("/go")
    assert r.status_code == 302 and r.headers["Location"].endswith("/")


def test_edit_link_prefills_the_form(client, bundle):
    record = valid_record(bundle.specs)
    spec = numeric_specs(bundle)[0]
    record[spec.name] = spec.train_max
    html = client.get("/go", query_string=record).data.decode()
    link = re.search(r'href="(/\?[^"#]+)#customer">Edit these values', html).group(1)
    page = parse(client.get(link.replace("&amp;", "&")).data)
    assert float(page.inputs[spec.name]["value"]) == pytest.approx(spec.train_max)


# --------------------------------------------------------------------------- bad input

def bad_cases(bundle):
    num = numeric_specs(bundle)
    nonneg = next(s for s in num if s.lo == 0)
    first = num[0]
    fraction = next(s for s in num if s.unit == "fraction")
    return {
        "missing": (first.name, None, "required"),
        "empty": (first.name, "", "required"),
        "blank": (first.name, "   ", "required"),
        "text": (first.name, "abc", "must be a number"),
        "negative": (nonneg.name, "-5", "must not be negative"),
        "absurd": (first.name, str(first.hi * 2 + 1), "implausibly large"),
        "huge": (first.name, "1e308", "implausibly large"),
        "nan": (first.name, "nan", "finite"),
        "inf": (first.name, "inf", "finite"),
        "minus_inf": (first.name, "-Infinity", "finite"),
        "long": (first.name, "9" * 500, "must be a number"),
        "fraction": (fraction.name, "5", "must be from 0 to "),
        "negative_fraction": (fraction.name, "-0.5", "must be from 0 to "),
    }


CASES = ["missing", "empty", "blank", "text", "negative", "absurd", "huge", "nan", "inf", "minus_inf", "long",
         "fraction", "negative_fraction"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["get", "post"])
def test_bad_value_rerenders_form_with_message_beside_field(client, bundle, case, method):
    name, value, message = bad_cases(bundle)[case]
    record = {k: str(v) for k, v in valid_record(bundle.specs).items()}
    if value is None:
        del record[name]
    else:
        record[name] = value
    r = client.get("/go", query_string=record) if method == "get" else client.post("/go", data=record)
    assert r.status_code == 400
    html = r.data.decode()
    assert 'id="customer-form"' in html and 'id="form-errors"' in html
    error = field_error(html, name)
    assert error is not None and message in error
    # the other fields keep what was entered and carry no message
    for spec in bundle.specs:
        if spec.name != name:
            assert field_error(html, spec.name) is None


def test_every_field_missing_lists_every_field(client, bundle):
    r = client.post("/go", data={"unrelated": "1"})
    assert r.status_code == 400
    html = r.data.decode()
    for spec in bundle.specs:
        assert field_error(html, spec.name) == "required"


def test_missing_categorical_is_an_error(client, bundle):
    if not categorical_specs(bundle):
        pytest.skip("this model has no categorical feature")
    spec = categorical_specs(bundle)[0]
    record = valid_record(bundle.specs)
    record[spec.name] = ""
    r = client.get("/go", query_string=record)
    assert r.status_code == 400 and field_error(r.data.decode(), spec.name) == "required"


PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_html_payload_in_numeric_field_shows_as_text(client, bundle):
    name = numeric_specs(bundle)[0].name
    record = valid_record(bundle.specs)
    record[name] = PAYLOAD
    r = client.get("/go", query_string=record)
    assert r.status_code == 400
    html = r.data.decode()
    assert PAYLOAD not in html and "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)" in html or "&lt;script&gt;alert(&quot;x&quot;)" in html


def test_unknown_category_is_accepted_and_html_in_it_escaped(client, bundle):
    if not categorical_specs(bundle):
        pytest.skip("this model has no categorical feature")
    spec = categorical_specs(bundle)[0]
    record = valid_record(bundle.specs)
    record[spec.name] = PAYLOAD
    r = client.get("/go", query_string=record)
    assert r.status_code == 200
    html = r.data.decode()
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'title="not seen in training">new<' in html
    # the same customer through the "other / unknown" entry of the select
    record[spec.name] = OTHER_CATEGORY
    r = client.get("/go", query_string=record)
    assert r.status_code == 200 and "other (not seen in training)" in r.data.decode()


def test_value_outside_training_range_is_flagged(client, bundle):
    spec = numeric_specs(bundle)[0]
    record = valid_record(bundle.specs)
    record[spec.name] = spec.train_max * 2 + 1
    r = client.get("/go", query_string=record)
    assert r.status_code == 200 and "outside training range" in r.data.decode()


def test_request_too_large_is_a_clean_413_page(client, bundle):
    record = valid_record(bundle.specs)
    record["padding"] = "x" * (2 * 1024 * 1024)
    r = client.post("/go", data=record)
    assert r.status_code == 413
    html = r.data.decode()
    assert "too large" in html and 'id="error"' in html and "Traceback" not in html


def test_error_pages(client):
    r = client.get("/no-such-page")
    assert r.status_code == 404 and 'id="error"' in r.data.decode()
    r = client.delete("/go")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    assert 'id="error"' in r.data.decode()


def test_unexpected_error_is_a_500_page_without_traceback(model_dir, scores):
    app = create_app(model_dir, scores_path=scores[0])

    def boom():
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/boom", "boom", boom)
    app.add_url_rule("/api/boom", "api_boom", boom)
    client = app.test_client()
    r = client.get("/boom")
    assert r.status_code == 500
    html = r.data.decode()
    assert "secret internal detail" not in html and "Traceback" not in html and 'id="error"' in html
    r = client.get("/api/boom")
    assert r.status_code == 500 and r.json["error"] == "Internal Server Error"
    assert "secret" not in r.get_data(as_text=True)


# --------------------------------------------------------------------------- users and at-risk list

def test_user_lookup_found(client, bundle, scores):
    table = scores[1]
    row = table.iloc[0]
    r = client.get("/users", query_string={"userId": row["userId"]})
    assert r.status_code == 200
    html = r.data.decode()
    assert f"{100 * row['probability']:.1f}%" in html
    assert "rank 1" in html
    assert 'id="reasons"' in html  # the scores row carries the features: reasons are shown
    assert "Open in the what-if form" in html


def test_user_lookup_labels_top_features_as_distance_from_typical(model_dir, scores, tmp_path):
    """The scores row's top_features (inputs furthest from the median) must not read like the
    model's reasons shown beside it."""
    table = scores[1].copy()
    table["top_features"] = "songs_per_day, help_per_day"
    path = tmp_path / "scores.csv"
    table.to_csv(path, index=False)
    client = create_app(model_dir, scores_path=path).test_client()
    user_id = table.iloc[0]["userId"]
    html = client.get("/users", query_string={"userId": user_id}).data.decode()
    assert 'id="reasons"' in html  # the real reasons are on the page
    row_labels = re.findall(r'<th class="fw-normal text-muted ps-3">(.*?)</th>', html, re.S)
    assert "top_features" not in row_labels
    label = next(t for t in row_labels if "furthest from the typical customer" in t)
    assert "not the model" in label
    # without the feature values (no reasons), the hint keeps the same clear label
    features = [s.name for s in client.application.extensions["sparkify"].specs]
    bare = tmp_path / "scores_without_features.csv"
    table.drop(columns=features).to_csv(bare, index=False)
    client = create_app(model_dir, scores_path=bare).test_client()
    html = client.get("/users", query_string={"userId": user_id}).data.decode()
    assert 'id="no-reasons"' in html and 'id="top-features"' in html
    hint = re.search(r'<span class="text-muted">(.*?)</span>\s*<strong id="top-features">', html, re.S).group(1)
    assert "furthest from the typical customer" in hint and "not the model" in hint


def test_user_lookup_escapes_and_not_found(client, scores):
    r = client.get("/users", query_string={"userId": "<b>bold</b>"})
    assert r.status_code == 200
    assert "&lt;b&gt;bold&lt;/b&gt;" in r.data.decode() and "<b>bold</b>" not in r.data.decode()
    r = client.get("/users", query_string={"userId": "<i>nobody</i>"})
    assert r.status_code == 404
    html = r.data.decode()
    assert "No user with this userId" in html and "<i>nobody</i>" not in html
    r = client.get("/users", query_string={"userId": "x" * 5000})
    assert r.status_code == 400
    r = client.get("/users")
    assert r.status_code == 200 and 'id="lookup-form"' in r.data.decode()


def test_at_risk_list_is_ranked_and_flagged_only(client, scores, app):
    table = scores[1]
    flagged = table[table["decision"]]
    r = client.get("/at-risk")
    assert r.status_code == 200
    html = r.data.decode()
    size = app.config["AT_RISK_PAGE_SIZE"]
    shown = re.findall(r'<a href="/users\?userId=([^"]+)">', html)
    expected = [str(u) for u in flagged["userId"].head(size)]
    from urllib.parse import unquote_plus
    assert [unquote_plus(u) for u in shown] == expected
    assert f"{len(flagged):,} user" in html


def test_at_risk_pagination_and_bad_page_numbers(client, scores, app):
    table = scores[1]
    size = app.config["AT_RISK_PAGE_SIZE"]
    for page in ("abc", "-3", "0", "999999"):
        assert client.get("/at-risk", query_string={"page": page, "all": "1"}).status_code == 200
    if len(table) > size:
        html = client.get("/at-risk", query_string={"page": 2, "all": "1"}).data.decode()
        assert "page 2 of" in html


def test_at_risk_csv_download(client, scores):
    table = scores[1]
    r = client.get("/at-risk.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    flagged = table[table["decision"]]
    assert [row["userId"] for row in rows] == [str(u) for u in flagged["userId"]]
    assert [int(row["rank"]) for row in rows] == sorted(int(row["rank"]) for row in rows)
    everything = list(csv.DictReader(io.StringIO(client.get("/at-risk.csv?all=1").get_data(as_text=True))))
    assert len(everything) == len(table)


def test_scores_are_reread_when_the_file_changes(model_dir, scores, tmp_path):
    path = tmp_path / "scores.csv"
    scores[1].head(3).to_csv(path, index=False)
    app = create_app(model_dir, scores_path=path)
    client = app.test_client()
    assert client.get("/users?userId=new-user").status_code == 404
    extra = scores[1].head(1).assign(userId="new-user")
    pd.concat([scores[1].head(3), extra]).to_csv(path, index=False)
    os.utime(path, (1, 2_000_000_000))
    assert client.get("/users?userId=new-user").status_code == 200


def test_without_scores_pages_say_how_to_get_them(model_dir, tmp_path):
    app = create_app(model_dir, scores_path=tmp_path / "absent.csv")
    client = app.test_client()
    r = client.get("/at-risk")
    assert r.status_code == 200 and "sparkify score" in r.data.decode()
    assert client.get("/at-risk.csv").status_code == 404
    r = client.get("/users?userId=1")
    assert r.status_code == 404 and "No scores are loaded" in r.data.decode()
    # a corrupt scores file is reported, not a crash
    bad = tmp_path / "bad.csv"
    bad.write_text("no,user,column\n1,2,3\n")
    r = create_app(model_dir, scores_path=bad).test_client().get("/at-risk")
    assert r.status_code == 200 and "no userId column" in r.data.decode()


# --------------------------------------------------------------------------- start-up

def test_missing_model_directory_stops_start_up(tmp_path):
    with pytest.raises(AppStartupError, match="no model directory"):
        create_app(tmp_path / "nope")
    with pytest.raises(AppStartupError, match="no model.json"):
        create_app(tmp_path)


def test_corrupt_model_directory_stops_start_up(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.json").write_text("{not json")
    with pytest.raises(AppStartupError, match="cannot load the model"):
        create_app(broken)


def run_cli(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "app" / "run.py"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_seed_command_exits_2_with_a_message_on_a_bad_model_dir(model_dir, tmp_path):
    r = run_cli("--model", str(tmp_path / "missing"), "--port", "0")
    assert r.returncode == 2
    assert "no model directory" in r.stderr and "sparkify train" in r.stderr
    assert "Traceback" not in r.stderr
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    shutil.rmtree(broken / "pipeline", ignore_errors=True)
    (broken / "model.json").write_text('{"format": 1}')
    r = run_cli("--model", str(broken), "--port", "0")
    assert r.returncode == 2 and "cannot load the model" in r.stderr and "Traceback" not in r.stderr


def _start_server(*args: str) -> tuple[subprocess.Popen, str, str]:
    """Start ``app/run.py`` on a free port; return the process, its base URL and the line
    it prints once listening."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "app" / "run.py"), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if found:
            return proc, found.group(1), line
    proc.wait(timeout=10)
    raise AssertionError(f"server exited with {proc.returncode} before listening")


@pytest.mark.parametrize("workers, server", [("2", "granian, 2 processes"), ("1", "waitress, 1 process")])
def test_served_over_http_by_worker_processes_and_stopped_cleanly(model_dir, workers, server):
    """The real server: the same answers as the test client from each worker; SIGTERM stops
    every process with exit code 0."""
    import json
    import signal
    import urllib.error
    import urllib.request

    import psutil

    from sparkify.webapp.server import granian_available

    if workers != "1" and not granian_available():
        pytest.skip("granian's worker processes run on POSIX only")
    proc, base, banner = _start_server("--model", str(model_dir), "--workers", workers, "--threads", "2")
    assert server in banner
    try:
        import time

        expected_children = int(workers) if workers != "1" else 0
        deadline = time.time() + 30  # the workers start just after the banner
        while len(children := psutil.Process(proc.pid).children(recursive=True)) < expected_children \
                and time.time() < deadline:
            time.sleep(0.1)
        assert len(children) == expected_children
        app = create_app(model_dir)
        bundle = app.extensions["sparkify"]
        rec = {s.name: (s.default if s.numeric else s.categories[0]) for s in bundle.specs}
        expected = app.test_client().post("/api/predict", json=rec).get_json()
        for _ in range(6):  # spread over the workers
            req = urllib.request.Request(base + "api/predict", data=json.dumps(rec).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                got = json.loads(r.read())
            assert got == expected
        bad = urllib.request.Request(base + "api/predict", data=b"{not json",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=30)
        assert err.value.code == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children)


def test_serve_refuses_a_busy_port_with_a_message(model_dir):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("--model", str(model_dir), "--port", str(port))
    assert r.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


def test_app_process_imports_no_pyspark_and_needs_no_java(model_dir, scores):
    """Serve real requests in a fresh interpreter with no Java reachable."""
    code = textwrap.dedent(f"""
        import sys, json
        from sparkify.webapp import create_app
        app = create_app({str(model_dir)!r}, scores_path={str(scores[0])!r})
        c = app.test_client()
        b = app.extensions["sparkify"]
        rec = {{s.name: (s.default if s.numeric else s.categories[0]) for s in b.specs}}
        codes = [c.get("/").status_code, c.get("/go", query_string=rec).status_code,
                 c.post("/api/predict", json=rec).status_code, c.get("/at-risk").status_code]
        print(json.dumps({{"codes": codes, "pyspark": [m for m in sys.modules if m.startswith(("pyspark", "py4j"))]}}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SPARK_HOME", "PYSPARK_PYTHON")}
    env["PATH"] = os.path.dirname(sys.executable)  # no java on the path
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["codes"] == [200, 200, 200, 200]
    assert out["pyspark"] == []


# --------------------------------------------------------------------------- charts

def test_plots_read_the_model_directory_tables(model_dir):
    import json

    from sparkify import plots

    metrics = json.loads((model_dir / "metrics.json").read_text())
    frame = plots.metrics_frame(metrics)
    names = {m.get("name", k) for k, m in metrics["models"].items()} if isinstance(metrics["models"], dict) \
        else {m.get("name") for m in metrics["models"]}
    assert set(frame.index) == names
    columns = plots.summary_columns(frame)
    assert columns and all(frame[c].notna().any() for c in columns)
    if "test_f1" in frame:
        assert columns[0] == "test_f1"
    bars = plots.model_comparison(frame)
    assert {t.name for t in bars.data} and len(bars.data[0].x) == len(frame)

    activity = pd.read_parquet(model_dir / "activity.parquet")
    fig = plots.activity_over_time(activity)
    assert {t.name for t in fig.data} == {"stayed", "churned"}
    assert all(t.line.color in (plots.STAY_COLOR, plots.CHURN_COLOR) for t in fig.data)

    features = pd.read_parquet(model_dir / "features.parquet")
    rate = features["churn"].mean()
    assert f"{rate:.1%}" in plots.churn_rate(features).layout.title.text
    box = plots.group_comparison(features, ["n_songs", "songs_per_day"] if "n_songs" in features
                                 else list(features.select_dtypes("number").columns[:2]))
    assert len(box.data) == 4
    with pytest.raises(ValueError):
        plots.group_comparison(features, ["x"], kind="pie")
    assert plots.empty_figure("nothing").layout.annotations[0].text == "nothing"


def test_no_input_produces_a_500(client, bundle):
    """Seeded fuzzing of every route with hostile values: always an answer below 500."""
    import json
    import random

    rng = random.Random(4)
    nasty = ["", " ", "0", "-0", "1e309", "-1e309", "nan", "NaN", "inf", "1_000", "0x1f", "１２",
             "²", "٣", "\x00", "' OR 1=1 --", "{{7*7}}", "${7*7}", PAYLOAD, "a" * 5000,
             "9" * 400, "-5", "3.14", "paid", OTHER_CATEGORY, "../../etc/passwd", "%s%s%n"]
    names = [s.name for s in bundle.specs] + ["userId", "page", "all", "top", "reasons", "x"]
    for _ in range(60):
        params = {rng.choice(names): rng.choice(nasty) for _ in range(rng.randint(0, 8))}
        full = {s.name: rng.choice(nasty + [str(s.default)]) for s in bundle.specs}
        for method, url, kwargs in (
            ("get", "/go", {"query_string": full}),
            ("post", "/go", {"data": full}),
            ("get", "/users", {"query_string": params}),
            ("get", "/at-risk", {"query_string": params}),
            ("get", "/at-risk.csv", {"query_string": params}),
            ("get", "/", {"query_string": params}),
            ("post", "/api/predict", {"data": json.dumps(rng.choice([full, [full, params], params, nasty,
                                                                     {**full, bundle.specs[-1].name: "\ud800"}])),
                                      "content_type": "application/json", "query_string": params}),
        ):
            r = getattr(client, method)(url, **kwargs)
            assert r.status_code < 500, (method, url, kwargs, r.status_code)
    # bytes that are not UTF-8 in the query string and the body
    name = bundle.specs[0].name
    for url in (f"/go?{name}=%FF%FE", "/users?userId=%ED%A0%80", "/at-risk?page=%C0"):
        assert client.get(url).status_code < 500, url
    assert client.post("/go", data=b"%s=%%FF\xff" % name.encode(),
                       content_type="application/x-www-form-urlencoded").status_code < 500


@pytest.mark.parametrize("raw", [
    0, 1, 2.5, -1, -0.5, 10**6, 1e300, 2**53, 2**53 + 1, 10**400, True, False,
    float("nan"), float("inf"), float("-inf"), "3", " 4.5 ", "", "abc", None, [1], {"a": 1},
])
def test_numeric_fast_path_agrees_with_the_full_parse(bundle, raw):
    """JSON numbers take a shortcut in validate_record; it must accept and reject exactly
    what the full parse does, with the same value or message."""
    from sparkify.webapp.validation import _parse_numeric, validate_record

    spec = next(s for s in bundle.specs if s.numeric and s.lo == 0 and s.hi is not None)
    record, errors = validate_record([spec], {spec.name: raw})
    value, error = _parse_numeric(spec, raw)
    assert errors.get(spec.name) == error
    assert record.get(spec.name) == value
    if value is not None:
        assert type(record[spec.name]) is float


def test_training_records_come_from_the_training_rows_only():
    """The "training customers score X% on average" line and the importance chart rest on
    the training part's rows, not on held-out (test) or unused rows."""
    from sparkify.webapp.state import training_records

    specs = [type("Spec", (), {"name": "x", "numeric": True})()]
    features = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "split": ["train", "test", "unused", "train"]})
    assert sorted(r["x"] for r in training_records(features, specs, 10)) == [1.0, 4.0]
    assert len(training_records(features.drop(columns="split"), specs, 10)) == 4   # no split column: all rows
    assert len(training_records(features, specs, 1)) == 1
