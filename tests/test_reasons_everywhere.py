"""Reasons everywhere (issue 17, item 8): ``sparkify score`` keeps the feature rows it
scored beside the scores file, the user look-up and the at-risk list show the same exact
per-customer contributions as ``/go``, and the at-risk CSV download cannot run formulas.

The scores come from the real path (``score_users`` + ``write_scores`` with Spark) on the
session's trained model; feature names are always read from the model, never hard-coded.
"""

from __future__ import annotations

import csv
import html as htmllib
import io
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sparkify.modeling.predict import OUTPUT_COLUMNS, ROWS_SUFFIX, rows_path
from sparkify.webapp import create_app
from sparkify.webapp.pages import AT_RISK_REASONS, neutralise_formulas
from sparkify.webapp.validation import OTHER_CATEGORY

PAIR = re.compile(r'data-feature="([^"]*)" data-contribution="([^"]*)"')


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def model_features(trained_model) -> list[dict]:
    import json

    return json.loads((trained_model / "model.json").read_text())["features"]


@pytest.fixture(scope="module")
def scored(spark, small_log, trained_model, tmp_path_factory) -> Path:
    """``sparkify score``'s two files, written by the real code path."""
    from sparkify.modeling.predict import score_users, write_scores

    out = tmp_path_factory.mktemp("reasons") / "scores.csv"
    write_scores(score_users(spark, small_log, trained_model), out)
    return out


@pytest.fixture(scope="module")
def app(trained_model, scored):
    return create_app(trained_model, scores_path=scored)


def pairs(fragment: str) -> list[tuple[str, float]]:
    return [(htmllib.unescape(f), float(c)) for f, c in PAIR.findall(fragment)]


def section(html: str, element_id: str) -> str:
    """The text of the table with ``id=element_id`` (up to its closing tag)."""
    start = html.index(f'id="{element_id}"')
    return html[start: html.index("</table>", start)]


def go_query(bundle, values: dict) -> dict:
    """The form entry for stored feature values (numbers at full precision)."""
    query = {}
    for spec in bundle.specs:
        v = values[spec.name]
        if spec.numeric:
            query[spec.name] = repr(float(v))
        else:
            query[spec.name] = OTHER_CATEGORY if v is None else str(v)
    return query


def go_reasons(client, bundle, values: dict) -> list[tuple[str, float]] | None:
    """What ``/go`` shows for these feature values (None when the form refuses them)."""
    r = client.get("/go", query_string=go_query(bundle, values))
    if r.status_code != 200:
        return None
    return pairs(section(r.get_data(as_text=True), "reasons"))


def assert_same(got: list[tuple[str, float]], expected: list[tuple[str, float]]):
    assert [f for f, _ in got] == [f for f, _ in expected]
    assert [c for _, c in got] == pytest.approx([c for _, c in expected], rel=0, abs=1e-12)


def at_risk_reasons(html: str) -> dict[str, list[tuple[str, float]]]:
    """userId -> the (feature, contribution) pairs of its row on the at-risk page."""
    out = {}
    for chunk in html.split('<tr data-user-id="')[1:]:
        uid = htmllib.unescape(chunk[: chunk.index('"')])
        out[uid] = pairs(chunk[: chunk.index("</tr>")])
    return out


# --------------------------------------------------------------------------- write_scores

def test_write_scores_keeps_the_scored_feature_rows(scored, trained_model, model_features):
    from sparkify.scorer import load_model

    rows_file = scored.with_name("scores" + ROWS_SUFFIX)
    assert rows_path(scored) == rows_file and rows_file.exists()
    assert rows_path(scored.with_name("x.parquet")) == scored.with_name("x.rows.parquet")
    ranked = pd.read_csv(scored, dtype={"userId": str})
    assert list(ranked.columns) == OUTPUT_COLUMNS  # the ranked file is unchanged
    schema = pq.read_schema(rows_file)
    names = [f["name"] for f in model_features]
    assert schema.names == ["userId", *names]
    for f in model_features:
        expected = "double" if f["kind"] == "numeric" else "string"
        assert str(schema.field(f["name"]).type) == expected, f["name"]
    assert str(schema.field("userId").type) == "string"
    rows = pd.read_parquet(rows_file)
    assert list(rows.userId) == list(ranked.userId)  # same users, same (rank) order
    assert not any(p.name.endswith(".tmp") for p in scored.parent.iterdir())
    # They are the rows the model scored: the NumPy scorer gives the scores file's score.
    got = load_model(trained_model).predict(rows[names])
    assert got["score"].to_numpy() == pytest.approx(ranked["score"].to_numpy(), rel=0, abs=1e-9)


def test_write_scores_without_feature_columns_removes_a_stale_rows_file(spark, tmp_path):
    from sparkify.modeling.predict import write_scores

    out = tmp_path / "scores.parquet"
    stale = rows_path(out)
    stale.write_bytes(b"left by an earlier run")
    df = spark.createDataFrame(pd.DataFrame({
        "userId": ["b", "a"], "probability": [0.2, 0.9], "score": [0.2, 0.9], "decision": [0, 1],
        "rank": [2, 1], "top_features": ["x", "y"]}))
    written = write_scores(df, out)
    assert list(written.columns) == OUTPUT_COLUMNS
    assert not stale.exists()
    assert list(pd.read_parquet(out).userId) == ["a", "b"]


# --------------------------------------------------------------------------- pages

def test_user_lookup_shows_the_same_reasons_as_go(client, bundle, scored):
    rows = pd.read_parquet(rows_path(scored))
    compared = 0
    for values in rows.head(8).to_dict("records"):
        expected = go_reasons(client, bundle, values)
        if expected is None:  # beyond the form's accepted range
            continue
        r = client.get("/users", query_string={"userId": values["userId"]})
        assert r.status_code == 200
        page = r.get_data(as_text=True)
        assert "cannot be shown" not in page
        got = pairs(section(page, "reasons"))
        assert got and len(got) == len(expected)
        assert_same(got, expected)
        compared += 1
    assert compared >= 3


def test_at_risk_list_shows_the_top_reasons_of_go(client, bundle, scored):
    rows = pd.read_parquet(rows_path(scored)).set_index("userId")
    r = client.get("/at-risk", query_string={"all": "1"})
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "top reasons" in page and 'id="reasons-note"' not in page
    shown = at_risk_reasons(page)
    assert len(shown) == min(len(rows), client.application.config["AT_RISK_PAGE_SIZE"])
    compared = 0
    for uid, got in list(shown.items())[:10]:
        assert 1 <= len(got) <= AT_RISK_REASONS
        expected = go_reasons(client, bundle, {"userId": uid, **rows.loc[uid].to_dict()})
        if expected is None:
            continue
        assert_same(got, expected[:AT_RISK_REASONS])
        compared += 1
    assert compared >= 3


def test_at_risk_reasons_come_from_one_batched_call(app, client, monkeypatch):
    from sparkify.webapp import service

    calls = []
    real = service.predict

    def counting(bundle, records, **kwargs):
        calls.append(len(records))
        return real(bundle, records, **kwargs)

    monkeypatch.setattr(service, "predict", counting)
    assert client.get("/at-risk?all=1").status_code == 200
    assert calls == [min(app.config["AT_RISK_PAGE_SIZE"], len(app.extensions["sparkify_scores"].frame()))]


def _copy_scores(scored: Path, where: Path, rows: bool = True) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    out = where / scored.name
    shutil.copy(scored, out)
    if rows:
        shutil.copy(rows_path(scored), rows_path(out))
    return out


def test_missing_rows_file_is_a_clear_message(trained_model, scored, tmp_path):
    out = _copy_scores(scored, tmp_path, rows=False)
    client = create_app(trained_model, scores_path=out).test_client()
    uid = pd.read_csv(out, dtype={"userId": str}).userId[0]
    r = client.get("/users", query_string={"userId": uid})
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "Per-customer reasons cannot be shown" in page and "scores.rows.parquet" in page
    assert 'id="reasons"' not in page and 'id="top-features"' in page
    r = client.get("/at-risk?all=1")
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert 'id="reasons-note"' in page and "no feature rows file scores.rows.parquet" in page
    assert "furthest from typical" in page and "data-contribution" not in page
    # The rows file appears later: it is read then, and reasons are shown.
    shutil.copy(rows_path(scored), rows_path(out))
    page = client.get("/users", query_string={"userId": uid}).get_data(as_text=True)
    assert 'id="reasons"' in page


def test_corrupt_rows_file_is_a_clear_message_and_is_reread(trained_model, scored, tmp_path):
    out = _copy_scores(scored, tmp_path, rows=False)
    rows_path(out).write_bytes(b"PAR1 this is not parquet")
    client = create_app(trained_model, scores_path=out).test_client()
    uid = pd.read_csv(out, dtype={"userId": str}).userId[0]
    for url, query in (("/users", {"userId": uid}), ("/at-risk", {"all": "1"}), ("/at-risk", {})):
        r = client.get(url, query_string=query)
        assert r.status_code == 200, url
        assert "cannot read scores.rows.parquet" in r.get_data(as_text=True), url
    shutil.copy(rows_path(scored), rows_path(out))
    os.utime(rows_path(out), (1, 2_000_000_000))
    page = client.get("/users", query_string={"userId": uid}).get_data(as_text=True)
    assert 'id="reasons"' in page and "cannot read" not in page


def test_rows_of_another_model_or_run_show_no_reasons(trained_model, scored, model_features, tmp_path):
    # a feature the model needs is absent: written for another model
    out = _copy_scores(scored, tmp_path / "other-model")
    rows = pd.read_parquet(rows_path(out))
    rows.drop(columns=[model_features[0]["name"]]).to_parquet(rows_path(out), index=False)
    client = create_app(trained_model, scores_path=out).test_client()
    uid = rows.userId[0]
    r = client.get("/users", query_string={"userId": uid})
    assert r.status_code == 200 and "scored by another model" in r.get_data(as_text=True)
    r = client.get("/at-risk?all=1")
    assert r.status_code == 200 and "scored by another model" in r.get_data(as_text=True)
    # the scores file says another score than the model gives for the stored features
    out = _copy_scores(scored, tmp_path / "other-run")
    ranked = pd.read_csv(out, dtype={"userId": str})
    ranked.loc[0, "score"] = ranked.loc[0, "score"] + 0.25
    ranked.to_csv(out, index=False)
    client = create_app(trained_model, scores_path=out).test_client()
    r = client.get("/users", query_string={"userId": ranked.userId[0]})
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and "another model or another run" in page and 'id="reasons"' not in page
    r = client.get("/users", query_string={"userId": ranked.userId[1]})
    assert 'id="reasons"' in r.get_data(as_text=True)  # the other users still get theirs


# --------------------------------------------------------------------------- CSV download

DANGEROUS = ["=1+1", "+x", "-x", "@x", "\tx", "\rx"]
ORDINARY = ["alice", "42", "user 7", "x=1", "a-b"]


def test_at_risk_csv_neutralises_formulas(trained_model, tmp_path):
    users = DANGEROUS + ORDINARY
    n = len(users)
    scores = pd.DataFrame({
        "userId": users,
        "probability": [0.9 - 0.01 * i for i in range(n)],
        "score": [-1.25 - i for i in range(n)],  # a margin: negative numbers
        "decision": [True] * n,
        "rank": list(range(1, n + 1)),
        "note": ["=HYPERLINK(\"http://x\")"] + ["fine"] * (n - 1),
    })
    out = tmp_path / "scores.parquet"
    scores.to_parquet(out, index=False)
    client = create_app(trained_model, scores_path=out).test_client()
    r = client.get("/at-risk.csv")
    assert r.status_code == 200
    got = list(csv.DictReader(io.StringIO(r.get_data(as_text=True), newline="")))
    assert [row["userId"] for row in got] == ["'" + u for u in DANGEROUS] + ORDINARY
    assert [float(row["score"]) for row in got] == list(scores["score"])
    assert all(not row["score"].startswith("'") for row in got)
    assert [float(row["probability"]) for row in got] == pytest.approx(list(scores["probability"]))
    assert got[0]["note"] == "'=HYPERLINK(\"http://x\")" and got[1]["note"] == "fine"
    # The pages still show the userIds as they are (only the download is neutralised).
    assert client.get("/users", query_string={"userId": "=1+1"}).status_code == 200


def test_neutralise_formulas_changes_only_strings():
    frame = pd.DataFrame({"mixed": [-3, "-3", "=x", None, 2.5, "ok"], "num": [-1.0, 0.0, 1.0, -2.0, 3.0, 4.0],
                          "=col": ["a", "b", "c", "d", "e", "f"]})
    out = neutralise_formulas(frame)
    assert list(out["mixed"]) == [-3, "'-3", "'=x", None, 2.5, "ok"]
    assert out["num"].tolist() == frame["num"].tolist() and out["num"].dtype == frame["num"].dtype
    assert list(out.columns) == ["mixed", "num", "'=col"]
    assert frame["mixed"][2] == "=x"  # the input is not modified
