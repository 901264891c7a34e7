"""The JSON API (``/api/predict``, ``/api/health``, ``/api/model``) through Flask's test client."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from sparkify.webapp import create_app
from sparkify.webapp.validation import accepted_range, format_number


def valid_record(specs) -> dict:
    return {s.name: (s.default if s.numeric else s.categories[0]) for s in specs}


@pytest.fixture(scope="module")
def app(trained_model):
    return create_app(trained_model)


@pytest.fixture(scope="module")
def training_rows(trained_model, bundle) -> list[dict]:
    """Twenty real customers from the training table, as the API receives them."""
    names = [s.name for s in bundle.specs]
    frame = pd.read_parquet(trained_model / "features.parquet")[names].dropna().head(20)
    return [{s.name: (float(r[s.name]) if s.numeric else str(r[s.name])) for s in bundle.specs}
            for r in frame.to_dict("records")]


def post(client, body, **params):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/predict", data=data, content_type="application/json", query_string=params)


# --------------------------------------------------------------------------- health, model

def test_health(client, bundle):
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json
    assert body["status"] == "ok"
    assert body["model_type"] == bundle.model_type
    assert body["threshold"] == pytest.approx(bundle.model.threshold)
    assert body["features"] == len(bundle.specs)


def test_model_metadata_and_metrics(client, bundle, trained_model):
    body = client.get("/api/model").json
    assert [f["name"] for f in body["features"]] == [f["name"] for f in bundle.model.features]
    assert body["metrics"] == json.loads((trained_model / "metrics.json").read_text())
    assert body["threshold"] == pytest.approx(bundle.model.threshold)
    assert body["model_type"] == bundle.model.model_type
    for f in body["features"]:
        if f["kind"] == "numeric":
            assert f["accepted_min"] <= f["min"] <= f["median"] <= f["max"] <= f["accepted_max"]
        else:
            assert f["categories"]
    assert set(body["feature_importance"]) <= {f["name"] for f in body["features"]}


# --------------------------------------------------------------------------- predictions

def test_predict_one_matches_the_scorer(client, bundle, training_rows):
    record = training_rows[0]
    r = post(client, record)
    assert r.status_code == 200
    body = r.json
    expected = bundle.model.predict([record])
    assert body["probability"] == pytest.approx(float(expected["probability"][0]), abs=1e-12)
    assert body["decision"] == bool(expected["decision"][0])
    assert body["decision"] == (body["score"] > bundle.model.threshold)
    assert body["band"] == expected["band"][0]
    assert body["label"] == ("churn" if body["decision"] else "stay")
    assert 1 <= len(body["reasons"]) <= 5
    names = {s.name for s in bundle.specs}
    for reason in body["reasons"]:
        assert reason["feature"] in names and math.isfinite(reason["contribution"])
    explained = bundle.model.explain(record, top=5)
    assert [r["feature"] for r in body["reasons"]] == [r.feature for r in explained]


def test_predict_list_keeps_order_and_matches_a_batch_score(client, bundle, training_rows):
    r = post(client, training_rows)
    assert r.status_code == 200
    body = r.json
    assert isinstance(body, list) and len(body) == len(training_rows)
    expected = bundle.model.predict(training_rows)
    assert [b["probability"] for b in body] == pytest.approx(list(expected["probability"]), abs=1e-12)
    assert [b["decision"] for b in body] == [bool(d) for d in expected["decision"]]


def test_form_and_api_give_the_same_answer(client, bundle, training_rows):
    record = training_rows[1]
    api = post(client, record).json
    html = client.get("/go", query_string=record).data.decode()
    assert f"{100 * api['probability']:.1f}%" in html
    assert ("Likely to churn" in html) == api["decision"]


def test_reasons_options_and_user_id_echo(client, bundle, training_rows):
    record = dict(training_rows[2], userId="42")
    body = post(client, record, reasons="0").json
    assert "reasons" not in body and body["userId"] == "42"
    assert len(post(client, record, top="2").json["reasons"]) == 2
    for bad in ("0", "abc", "51", "-1", "²", "1e3", "99999999999999999999"):
        r = post(client, record, top=bad)
        assert r.status_code == 400 and "top" in r.json["fields"]


def test_unknown_category_is_accepted(client, bundle, training_rows):
    cats = [s for s in bundle.specs if not s.numeric]
    if not cats:
        pytest.skip("this model has no categorical feature")
    record = dict(training_rows[0])
    record[cats[0].name] = "<script>never-seen</script>"
    r = post(client, record)
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.json["unknown_categories"] == [cats[0].name]
    assert 0.0 <= r.json["probability"] <= 1.0


def test_numeric_strings_are_accepted(client, training_rows):
    record = {k: (str(v) if isinstance(v, float) else v) for k, v in training_rows[0].items()}
    assert post(client, record).json["probability"] == pytest.approx(post(client, training_rows[0]).json["probability"])


# --------------------------------------------------------------------------- bad input

def bad_values(bundle):
    num = [s for s in bundle.specs if s.numeric]
    nonneg = next(s for s in num if s.lo == 0)
    first = num[0]
    return [
        (first.name, "abc"), (first.name, None), (first.name, ""), (first.name, True),
        (first.name, [1]), (first.name, {"v": 1}), (nonneg.name, -1), (first.name, first.hi * 10),
        (first.name, 1e308), (first.name, 10**400), (first.name, "NaN"), (first.name, "Infinity"),
    ]


def test_bad_values_answer_400_with_the_field_names(client, bundle, training_rows):
    for name, value in bad_values(bundle):
        record = dict(training_rows[0])
        record[name] = value
        r = post(client, record)
        assert r.status_code == 400, (name, value)
        assert list(r.json["fields"]) == [name], (name, value)
        assert name in r.json["message"]


def test_nan_and_infinity_literals_answer_400(client, bundle, training_rows):
    """Python's JSON parser accepts NaN/Infinity literals: validation must refuse them."""
    name = next(s.name for s in bundle.specs if s.numeric)
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps({**training_rows[0], name: "SENTINEL"}).replace('"SENTINEL"', literal)
        r = post(client, text)
        assert r.status_code == 400 and list(r.json["fields"]) == [name], literal


def test_missing_fields_are_all_named(client, bundle, training_rows):
    r = post(client, {})
    assert r.status_code == 400
    assert set(r.json["fields"]) == {s.name for s in bundle.specs}
    categorical = [s for s in bundle.specs if not s.numeric]
    if categorical:
        record = dict(training_rows[0])
        record[categorical[0].name] = ["paid"]
        r = post(client, record)
        assert r.status_code == 400 and list(r.json["fields"]) == [categorical[0].name]


def test_one_bad_record_in_a_list_is_located(client, bundle, training_rows):
    name = next(s.name for s in bundle.specs if s.numeric)
    rows = [dict(r) for r in training_rows[:3]]
    rows[1][name] = "oops"
    r = post(client, rows)
    assert r.status_code == 400
    assert r.json["fields"] == [name]
    assert r.json["records"] == [{"index": 1, "fields": {name: "must be a number"}}]


@pytest.mark.parametrize("body", [
    "not json", "{", "", "[]", "42", '"text"', "null", "[1, 2]", '[{"a": 1}, 3]',
    "[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000,
    b"\xff\xfe\x00garbage",
])
def test_malformed_bodies_answer_400_never_500(client, body):
    r = post(client, body)
    assert r.status_code == 400
    assert r.mimetype == "application/json" and "message" in r.json


def test_size_limits(client, app, trained_model, training_rows):
    small = create_app(trained_model, config={"MAX_BATCH": 5}).test_client()
    assert post(small, training_rows[:5], reasons="0").status_code == 200
    r = post(small, training_rows[:6], reasons="0")
    assert r.status_code == 400 and "At most 5" in r.json["message"]
    api_limit = app.config["MAX_BATCH"] * app.config["API_BYTES_PER_CUSTOMER"]
    big = json.dumps({"padding": "x" * (api_limit + 10)})
    r = post(client, big)
    assert r.status_code == 413 and r.mimetype == "application/json" and "too large" in r.json["message"]


def test_wrong_method_and_unknown_endpoint_are_json(client):
    r = client.get("/api/predict")
    assert r.status_code == 405 and r.mimetype == "application/json"
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.json["error"] == "Not Found"


# --------------------------------------------------------------------------- QA: limits, flags, bounds

def median_customer(client) -> dict:
    """A customer built from /api/model's feature medians, as the README's example builds it."""
    features = client.get("/api/model").json["features"]
    return {f["name"]: f.get("median", f.get("default")) for f in features}


def test_a_full_batch_of_realistic_customers_fits_the_body_limit(client, app):
    limit = app.config["MAX_BATCH"]
    customer = median_customer(client)
    body = json.dumps([customer] * limit, indent=2)  # pretty-printed, as a person might send it
    assert len(body) > app.config["MAX_CONTENT_LENGTH"]  # more than the pages accept
    r = post(client, body, reasons="0")
    assert r.status_code == 200, r.json
    assert len(r.json) == limit and len({row["probability"] for row in r.json}) == 1
    # one more customer: the count limit speaks, not the byte limit
    r = post(client, [customer] * (limit + 1), reasons="0")
    assert r.status_code == 400 and r.mimetype == "application/json"
    assert r.json["message"] == f"At most {limit} customers per request."


def test_api_body_limit_follows_the_batch_limit(trained_model, training_rows):
    small = create_app(trained_model, config={"MAX_BATCH": 5})
    client = small.test_client()
    assert post(client, training_rows[:5], reasons="0").status_code == 200
    limit = 5 * small.config["API_BYTES_PER_CUSTOMER"]
    r = post(client, json.dumps({"padding": "x" * limit}))
    assert r.status_code == 413 and f"limit {limit // 1024} KiB" in r.json["message"]


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("Yes", True), (" yes ", True),
    ("0", False), ("false", False), ("False", False), ("NO", False),
])
def test_reasons_flag_accepts_clear_values(client, training_rows, value, expected):
    r = post(client, training_rows[0], reasons=value)
    assert r.status_code == 200 and ("reasons" in r.json) is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", "-1", "tru", "yes please", "nein"])
def test_reasons_flag_refuses_unclear_values(client, training_rows, value):
    r = post(client, training_rows[0], reasons=value)
    assert r.status_code == 400 and r.mimetype == "application/json"
    assert list(r.json["fields"]) == ["reasons"]
    assert "reasons" in r.json["message"] and "true" in r.json["message"]


def fraction_specs(bundle):
    found = [s for s in bundle.specs if s.numeric and s.unit == "fraction"]
    if not found:
        pytest.skip("this model has no fraction feature")
    return found


def test_fraction_features_accept_0_to_1_and_what_training_saw(client, bundle, training_rows):
    for spec in fraction_specs(bundle):
        top = max(1.0, spec.train_max or 0.0)              # a value the model was trained on is real
        for value in (5, 9.0, top + 0.001, -0.1, "2"):
            record = dict(training_rows[0], **{spec.name: value})
            r = post(client, record)
            assert r.status_code == 400, (spec.name, value)
            assert list(r.json["fields"]) == [spec.name] and spec.name in r.json["message"]
            assert f"from 0 to {format_number(top)}" in r.json["fields"][spec.name]
        for value in (0, 0.0, 0.5, 1, 1.0, top):
            record = dict(training_rows[0], **{spec.name: value})
            assert post(client, record, reasons="0").status_code == 200, (spec.name, value)


def test_fraction_bounds_widen_to_the_training_extremes():
    assert accepted_range(0.0, 0.8, "fraction") == (0.0, 1.0)
    assert accepted_range(0.0, 1.14, "fraction") == (0.0, 1.14)     # a model whose training rows passed 1


def test_model_metadata_states_the_fraction_bounds(client, bundle):
    specs = {s.name: s for s in fraction_specs(bundle)}
    for f in client.get("/api/model").json["features"]:
        if f["name"] in specs:
            assert (f["accepted_min"], f["accepted_max"]) == (0, max(1, specs[f["name"]].train_max or 0))


def test_negative_counts_and_rates_are_refused(client, bundle, training_rows):
    for spec in (s for s in bundle.specs if s.numeric and s.unit != "fraction"):
        record = dict(training_rows[0], **{spec.name: -1})
        r = post(client, record)
        assert r.status_code == 400 and list(r.json["fields"]) == [spec.name], spec.name


def test_nan_literal_in_a_categorical_field_answers_400(client, bundle, training_rows):
    cats = [s for s in bundle.specs if not s.numeric]
    if not cats:
        pytest.skip("this model has no categorical feature")
    for literal in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps({**training_rows[0], cats[0].name: "SENTINEL"}).replace('"SENTINEL"', literal)
        r = post(client, text)
        assert r.status_code == 400 and list(r.json["fields"]) == [cats[0].name], literal
