"""Damaged compressed input: named in one paragraph (exit 2) by every command that reads a
log; ``--skip-corrupt-files`` uses the readable files and lists the skipped ones."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pytest

from sparkify.cli import main
from sparkify.inputs import CorruptInputError, compressed_file_problem

LINES_PER_PART = 6000


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def lines(small_log) -> list[bytes]:
    with open(small_log, "rb") as f:
        return [next(f) for _ in range(3 * LINES_PER_PART)]


@pytest.fixture(scope="module")
def parts(lines, tmp_path_factory) -> Path:
    """A directory of three gzip part files, the middle one cut at 60 kB."""
    d = tmp_path_factory.mktemp("parts") / "log"
    d.mkdir()
    for i in range(3):
        data = gzip.compress(b"".join(lines[i * LINES_PER_PART:(i + 1) * LINES_PER_PART]))
        if i == 1:
            assert len(data) > 120_000
            data = data[:60_000]
        (d / f"part-{i:05d}.json.gz").write_bytes(data)
    (d / "_SUCCESS").write_bytes(b"")   # ignored, as Spark ignores it
    return d


@pytest.fixture(scope="module")
def damaged_file(parts) -> Path:
    return parts / "part-00001.json.gz"


@pytest.fixture(scope="module")
def fake_model(tmp_path_factory) -> Path:
    """Enough of a model directory for score, backtest and report to reach the log."""
    d = tmp_path_factory.mktemp("fake") / "model"
    d.mkdir()
    (d / "model.json").write_text(json.dumps({"features": []}))
    (d / "metrics.json").write_text("{}")
    (d / "pipeline" / "metadata").mkdir(parents=True)     # the commands check it is there before reading
    return d


# --------------------------------------------------------------------------- the check itself
def test_compressed_file_problem_tells_good_from_damaged(lines, tmp_path):
    text = b"".join(lines[:2000])
    good = tmp_path / "good.json.gz"
    good.write_bytes(gzip.compress(text))
    assert compressed_file_problem(good) is None
    two = tmp_path / "two_members.json.gz"
    two.write_bytes(gzip.compress(text) + gzip.compress(text))
    assert compressed_file_problem(two) is None
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(gzip.compress(text)[:20_000])
    assert compressed_file_problem(cut).startswith("truncated")
    flipped = bytearray(gzip.compress(text))
    flipped[len(flipped) // 2] ^= 0xFF
    bad = tmp_path / "flipped.json.gz"
    bad.write_bytes(bytes(flipped))
    assert compressed_file_problem(bad).startswith("corrupt")
    plain = tmp_path / "plain.json.gz"
    plain.write_bytes(text[:1000])
    assert compressed_file_problem(plain).startswith("not gzip")
    b = tmp_path / "log.json.bz2"
    b.write_bytes(bz2.compress(text))
    assert compressed_file_problem(b) is None
    b.write_bytes(bz2.compress(text)[:5000])
    assert compressed_file_problem(b).startswith("truncated")
    plain_json = tmp_path / "log.json"
    plain_json.write_bytes(text[:1000])
    assert compressed_file_problem(plain_json) is None   # not compressed: nothing to check


# --------------------------------------------------------------------------- loaders
def test_a_damaged_part_stops_the_load_naming_it(spark, parts, damaged_file):
    from sparkify.dataset import load_events

    with pytest.raises(CorruptInputError) as err:
        load_events(spark, str(parts), skip_corrupt_files=False)
    message = str(err.value)
    assert str(damaged_file) in message and "truncated" in message and "--skip-corrupt-files" in message
    assert err.value.damaged == [(str(damaged_file), err.value.damaged[0][1])]
    assert "\n" not in message


def test_skip_corrupt_files_loads_the_readable_parts(spark, parts, damaged_file):
    from sparkify.dataset import load_log

    with load_log(spark, str(parts), skip_corrupt_files=True) as loaded:
        q = loaded.quality
        assert q.rows_read == 2 * LINES_PER_PART
        assert [f["path"] for f in q.skipped_files] == [str(damaged_file)]
        assert q.skipped_files[0]["problem"].startswith("truncated")
        assert str(damaged_file) in q.summary() and "skipped files" in q.summary()
        assert q.to_dict()["skipped_files"] == q.skipped_files
        # the session-day rows carry the readable parts' attributes (read from the same files)
        assert loaded.days.df.count() > 0


def test_a_damaged_file_the_check_misses_is_skipped_after_sparks_read(spark, parts, damaged_file, monkeypatch):
    """A file whose damage the check before the read does not see (a codec it does not
    check, a remote file) is left out when Spark fails on it, and named the same way."""
    import sparkify.dataset as dataset
    import sparkify.rawlog as rawlog

    monkeypatch.setattr(rawlog, "compressed_file_problem", lambda path: None)
    with dataset.load_events(spark, str(parts), skip_corrupt_files=True) as loaded:
        assert loaded.quality.rows_read == 2 * LINES_PER_PART
        assert [f["path"] for f in loaded.quality.skipped_files] == [str(damaged_file)]
        assert "truncated" in loaded.quality.skipped_files[0]["problem"]


# --------------------------------------------------------------------------- commands
@pytest.mark.parametrize("command", ["ingest", "train", "score", "backtest", "report"])
def test_every_command_names_the_damaged_file(capsys, spark, parts, damaged_file, fake_model, tmp_path, command):
    args = {
        "ingest": ["--out", str(tmp_path / "clean")],
        "train": ["--model", str(tmp_path / "model"), "--quick"],
        "score": ["--model", str(fake_model), "--out", str(tmp_path / "s.csv")],
        "backtest": ["--model", str(fake_model), "--as-of", "2018-11-01"],
        "report": ["--model", str(fake_model), "--out", str(tmp_path / "r.html")],
    }[command]
    code, _, err = run(capsys, command, str(parts), *args)
    assert code == 2, err
    assert err.startswith(f"sparkify {command}: error: cannot read the event log {parts}: {damaged_file} is truncated")
    assert err.count("\n") == 1 and "Traceback" not in err and "FAILED_READ_FILE" not in err


def test_ingest_skip_corrupt_files_lists_the_skipped_file(capsys, spark, parts, damaged_file, tmp_path):
    out = tmp_path / "clean"
    code, stdout, err = run(capsys, "ingest", str(parts), "--out", str(out), "--skip-corrupt-files")
    assert code == 0, err
    assert "skipped files" in stdout and f"{damaged_file}: truncated" in stdout
    saved = json.loads((out / "_data_quality.json").read_text())
    assert [f["path"] for f in saved["skipped_files"]] == [str(damaged_file)]
    assert saved["rows_read"] == 2 * LINES_PER_PART


def test_a_single_damaged_file_gives_a_clear_error(capsys, spark, lines, tmp_path):
    cut = tmp_path / "log.json.gz"
    cut.write_bytes(gzip.compress(b"".join(lines[:LINES_PER_PART]))[:60_000])
    code, _, err = run(capsys, "ingest", str(cut), "--out", str(tmp_path / "clean"))
    assert code == 2
    assert err.startswith(f"sparkify ingest: error: cannot read the event log: {cut} is truncated")
    assert "--skip-corrupt-files" not in err and "Traceback" not in err
    # with the flag there is nothing left to read: said, not an empty result
    code, _, err = run(capsys, "ingest", str(cut), "--out", str(tmp_path / "clean"), "--skip-corrupt-files")
    assert code == 2 and f"no readable file is left in {cut}: {cut} is truncated" in err
