"""Loading and cleaning: explicit schema, the real format, quarantine, duplicates, hidden
rows, input forms (file, gzip, directory, glob, Parquet from ingest), clear errors."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

UTC = timezone.utc


def real_lines(real_sample: Path) -> list[str]:
    return real_sample.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def real_loaded(spark, real_sample):
    from sparkify.dataset import load_events

    loaded = load_events(spark, real_sample)
    yield loaded
    loaded.unpersist()


def test_schema_is_explicit():
    from pyspark.sql.types import DoubleType, LongType, StringType

    from sparkify.rawlog import CORRUPT_COLUMN, EVENT_SCHEMA, RAW_COLUMNS

    names = EVENT_SCHEMA.fieldNames()
    assert names[-1] == CORRUPT_COLUMN and names[:-1] == RAW_COLUMNS
    types = {f.name: f.dataType for f in EVENT_SCHEMA.fields}
    assert types["ts"] == LongType() and types["userId"] == StringType()
    assert types["registration"] == LongType() and types["length"] == DoubleType()
    assert types["sessionId"] == LongType()


def test_real_sample_counts(real_loaded, real_sample):
    from sparkify.config import USER_AUTHS

    records = [json.loads(line) for line in real_lines(real_sample)]
    user = [r for r in records if r["auth"] in USER_AUTHS]
    q = real_loaded.quality
    assert q.rows_read == len(records) == 100
    assert q.quarantined == 0 and q.duplicates == 0
    assert q.user_rows == len(user) == real_loaded.events.count()
    assert q.hidden_rows == len(records) - len(user)
    assert q.users == len({r["userId"] for r in user})
    assert q.first_ts == datetime(2018, 10, 1, 0, 1, 57, tzinfo=UTC)
    assert q.last_ts == datetime.fromtimestamp(max(r["ts"] for r in user) / 1000, tz=UTC)
    assert q.to_dict()["first_ts"] == "2018-10-01T00:01:57Z"


def test_real_format_values(real_loaded, real_sample):
    from sparkify.rawlog import EVENT_COLUMNS

    events = real_loaded.events
    assert events.columns == EVENT_COLUMNS
    first = events.orderBy("ts").first()
    assert first["userId"] == "30" and first["sessionId"] == 29 and first["length"] == 277.89016
    # timestamps are UTC instants
    assert first["time"].replace(tzinfo=UTC) == datetime(2018, 10, 1, 0, 1, 57, tzinfo=UTC)
    # literal quotes inside userAgent survive
    uas = {r[0] for r in events.select("userAgent").distinct().collect()}
    assert any(ua.startswith('"Mozilla') and ua.endswith('"') for ua in uas)
    # missing keys become nulls (non-song rows have no artist)
    non_song = events.filter("page != 'NextSong'").select("artist", "length").collect()
    assert non_song and all(r == (None, None) for r in non_song)
    # personal names and redundant fields are not carried
    assert not {"firstName", "lastName", "method", "status", "song"} & set(events.columns)


def test_malformed_lines_quarantined(spark, real_sample, tmp_path):
    from sparkify.dataset import load_events

    bad = [
        '{"ts":"yesterday","userId":"30","sessionId":29,"page":"NextSong","auth":"Logged In"}',
        'this is not json',
        '{"ts":1538352117000,"userId":"30","sessionId":29,"page":"NextSo',
        '{"ts":1538352118000,"sessionId":29,"page":"Home","auth":"Logged In","level":"paid"}',
    ]
    lines = real_lines(real_sample)
    path = write_lines(tmp_path / "with_bad.json", lines[:50] + bad + lines[50:])
    quarantine = tmp_path / "quarantine"
    loaded = load_events(spark, path, quarantine_path=quarantine)
    try:
        q = loaded.quality
        assert q.rows_read == 104
        assert q.quarantined == 4
        assert q.user_rows + q.hidden_rows + q.duplicates + q.quarantined == q.rows_read
        assert loaded.events.count() == q.user_rows
        written = [json.loads(line) for f in sorted(quarantine.glob("part-*")) for line in f.read_text().splitlines()]
        assert len(written) == 4
        texts = {w["line"] for w in written}
        assert set(bad[:3]) <= texts                  # exact line text kept
        assert any('"ts":1538352118000' in t and '"userId"' not in t for t in texts)
        assert all(w["reason"] for w in written)
        assert q.quarantine_path == str(quarantine) and len(q.quarantine_sample) == 4
        assert "quarantined" in q.summary()
    finally:
        loaded.unpersist()


def test_duplicates_removed(spark, real_sample, tmp_path):
    from sparkify.dataset import load_events

    lines = real_lines(real_sample)
    user_lines = [line for line in lines if '"auth":"Logged In"' in line]
    path = write_lines(tmp_path / "dups.json", lines + user_lines[:3] + user_lines[:1])
    with load_events(spark, path) as loaded:
        q = loaded.quality
        assert q.duplicates == 4
        assert q.user_rows == len(user_lines)
        assert loaded.events.count() == loaded.events.distinct().count() == len(user_lines)


def test_hidden_rows_excluded_including_placeholder(spark, real_sample, tmp_path):
    from sparkify.dataset import load_events

    lines = real_lines(real_sample)
    hidden = [
        '{"ts":1538352200000,"userId":"1261737","sessionId":8,"page":"Home","auth":"Logged Out",'
        '"method":"GET","status":200,"level":"free","itemInSession":83}',
        '{"ts":1538352201000,"userId":"1261737","sessionId":8,"page":"Login","auth":"Logged Out",'
        '"method":"PUT","status":307,"level":"free","itemInSession":84}',
        '{"ts":1538352202000,"userId":"","sessionId":300,"page":"Register","auth":"Guest",'
        '"method":"GET","status":200,"level":"free","itemInSession":0}',
    ]
    with load_events(spark, real_sample) as base:
        base_q = base.quality
    path = write_lines(tmp_path / "hidden.json", lines + hidden)
    with load_events(spark, path) as loaded:
        q = loaded.quality
        assert q.hidden_rows == base_q.hidden_rows + 3
        assert q.users == base_q.users and q.user_rows == base_q.user_rows
        auths = {r[0] for r in loaded.events.select("auth").distinct().collect()}
        assert auths <= {"Logged In", "Cancelled"}
        assert loaded.events.filter("userId = '1261737' or userId = ''").count() == 0


def test_input_forms_gzip_directory_glob(spark, real_sample, tmp_path):
    from sparkify.dataset import load_events

    data = real_sample.read_bytes()
    folder = tmp_path / "parts"
    folder.mkdir()
    with gzip.open(folder / "part-0.json.gz", "wb") as fh:
        fh.write(data)
    shutil.copy(real_sample, folder / "part-1.json")
    for source, factor in ((folder / "part-0.json.gz", 1), (folder, 2), (str(folder / "part-*"), 2)):
        with load_events(spark, source) as loaded:
            # the two parts are identical, so the second one is all duplicates
            assert loaded.quality.rows_read == 100 * factor
            assert loaded.quality.user_rows == loaded.events.count()
            assert loaded.quality.duplicates == (factor - 1) * loaded.quality.user_rows


def test_json_directory_with_ground_truth_beside_is_read_as_json(spark, real_sample, tmp_path):
    """The simulator writes _truth.parquet into a log directory: it must not make the
    directory look like Parquet (Spark itself skips names starting with "_")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sparkify.dataset import load_events

    folder = tmp_path / "log"
    folder.mkdir()
    shutil.copy(real_sample, folder / "part-00000.json")
    pq.write_table(pa.table({"userId": ["30"], "churned": [False]}), folder / "_truth.parquet")
    with load_events(spark, folder) as loaded:
        assert loaded.quality.rows_read == 100
        assert loaded.events.count() == loaded.quality.user_rows > 0


def test_ingest_round_trip(spark, real_sample, tmp_path):
    from sparkify.dataset import QUALITY_FILE, ingest, load_events

    lines = real_lines(real_sample) + ["garbage line"]
    raw = write_lines(tmp_path / "raw.json", lines)
    out = tmp_path / "clean"
    quality = ingest(spark, raw, out)
    assert quality.quarantined == 1 and quality.rows_read == 101
    assert (out / QUALITY_FILE).exists() and list(out.glob("*.parquet"))
    assert json.loads((out / QUALITY_FILE).read_text())["quarantined"] == 1
    assert (out / "_quarantine").is_dir()
    with load_events(spark, raw) as direct:
        want = sorted(repr(tuple(r)) for r in direct.events.collect())
    again = load_events(spark, out)
    assert again.quality.to_dict() == quality.to_dict()
    assert again.events.columns == direct.events.columns
    assert sorted(repr(tuple(r)) for r in again.events.collect()) == want
    assert spark.read.parquet(str(out)).count() == len(want)   # plain Parquet readers work too


def test_clear_errors(spark, tmp_path):
    from sparkify.dataset import load_events

    with pytest.raises(FileNotFoundError, match="no event log"):
        load_events(spark, tmp_path / "missing.json")
    csv = write_lines(tmp_path / "events.csv", ["ts,userId,page", "1,2,NextSong"])
    with pytest.raises(ValueError, match="no valid user events"):
        load_events(spark, csv)


def test_quality_round_trip():
    from sparkify.dataset import DataQuality

    q = DataQuality(rows_read=10, quarantined=1, hidden_rows=2, duplicates=1, user_rows=6, users=2,
                    churners=1, first_ts=datetime(2018, 10, 1, tzinfo=UTC),
                    last_ts=datetime(2018, 12, 1, tzinfo=UTC))
    d = q.to_dict()
    assert d["churn_rate"] == 0.5 and d["last_ts"] == "2018-12-01T00:00:00Z"
    assert DataQuality.from_dict(json.loads(json.dumps(d))) == q


def test_small_log_loads_like_the_real_format(spark, small_log, real_loaded):
    from pyspark.sql import functions as F

    from sparkify.config import CHURN_PAGE
    from sparkify.dataset import load_events

    with load_events(spark, small_log) as loaded:
        q = loaded.quality
        ev = loaded.events
        assert ev.schema == real_loaded.events.schema
        assert q.quarantined == 0 and q.user_rows > 10_000
        assert q.rows_read == q.user_rows + q.hidden_rows + q.duplicates
        assert q.users == ev.select("userId").distinct().count()
        assert q.churners == ev.filter(F.col("page") == CHURN_PAGE).select("userId").distinct().count()
        assert 0 < q.churners < q.users
        assert ev.filter("userId = '' or userId is null").count() == 0
