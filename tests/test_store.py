"""The incremental store (`sparkify ingest --store`): batches, idempotence, repeated events,
a failed batch, reads of one window, and the same rows and scores as the raw log."""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from sparkify import store as st
from sparkify.cli import main
from sparkify.dataset import load_log
from sparkify.features import LabelSpec, build_scoring_table, build_user_table
from sparkify.modeling.predict import score_users, write_scores
from sparkify.session_days import DAY_MS

MALFORMED = "{not json\n"


@pytest.fixture(scope="module")
def day_files(compact_log, tmp_path_factory) -> Path:
    """``compact_log`` cut into one file per UTC day (``day-YYYY-MM-DD.json``); the 15th
    day's file is cut in two at noon (``...-a``, ``...-b``) so that sessions cross files
    within a day, and one file carries a malformed line."""
    out = tmp_path_factory.mktemp("days")
    by_day: dict[int, list[str]] = defaultdict(list)
    with open(compact_log) as f:
        for line in f:
            by_day[json.loads(line)["ts"] // DAY_MS].append(line)
    for k, (day, lines) in enumerate(sorted(by_day.items())):
        name = f"day-{datetime.fromtimestamp(day * 86_400, tz=timezone.utc):%Y-%m-%d}"
        if k == 14:
            noon = day * DAY_MS + DAY_MS // 2
            (out / f"{name}-a.json").write_text("".join(ln for ln in lines if json.loads(ln)["ts"] < noon))
            (out / f"{name}-b.json").write_text("".join(ln for ln in lines if json.loads(ln)["ts"] >= noon))
        else:
            (out / f"{name}.json").write_text("".join(lines) + (MALFORMED if k == 3 else ""))
    return out


def _land(day_files: Path, landing: Path, names: list[str]) -> None:
    landing.mkdir(exist_ok=True)
    for name in names:
        shutil.copy2(day_files / name, landing / name)


@pytest.fixture(scope="module")
def store(spark, day_files, tmp_path_factory) -> Path:
    """A store built as a daily routine would: the first 20 files as one batch, then each
    later file as it lands in the landing directory (the half-day files apart)."""
    root = tmp_path_factory.mktemp("store")
    landing, store = root / "landing", root / "store"
    names = sorted(p.name for p in day_files.iterdir())
    _land(day_files, landing, names[:20])
    st.ingest_into_store(spark, landing, store)
    for name in names[20:24]:
        _land(day_files, landing, [name])
        result = st.ingest_into_store(spark, landing, store)
        assert result.new_files == 1 and result.known_files == len(list(landing.iterdir())) - 1
    _land(day_files, landing, names[24:])
    st.ingest_into_store(spark, landing, store)
    return store


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.fixture(scope="module")
def raw(spark, day_files):
    """The raw log (the directory of day files) loaded once, as ``load_log`` gives it."""
    with load_log(spark, str(day_files)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def raw_scores(spark, raw, trained_model, tmp_path_factory) -> Path:
    """The raw log's at-risk list (``sparkify score``'s CSV) with the shared model."""
    out = tmp_path_factory.mktemp("raw") / "scores.csv"
    write_scores(score_users(spark, raw.days, trained_model), out)
    return out


def _pdf(df, keys) -> pd.DataFrame:
    return df.toPandas().sort_values(keys).reset_index(drop=True)


def test_store_gives_the_raw_logs_rows_value_for_value(spark, store, raw):
    manifest = st.read_manifest(spark, str(store))
    assert manifest.version == 6 and [len(b.sources) for b in manifest.batches] == [20, 1, 1, 1, 1, 38]
    with load_log(spark, str(store)) as stored:
        assert stored.from_store
        assert {**stored.quality.to_dict(), "source": ""} == {**raw.quality.to_dict(), "source": ""}
        assert stored.quality.quarantined == 1 and stored.quality.user_rows > 35_000
        for spec in (LabelSpec(), LabelSpec(mode="ever")):
            keys = ["userId", "as_of_ms"]
            expected = _pdf(build_user_table(raw.days, spec)[0], keys)
            assert_same(_pdf(build_user_table(stored.days, spec)[0], keys), expected)
        assert len(expected) > 0


def test_training_sees_the_same_rows_in_the_same_order_from_the_store(spark, store, day_files):
    """What the models sample from (rows per partition, in order) does not depend on
    where the rows came from, so ``train --store`` fits the raw log's models."""
    from pyspark.sql import functions as F

    from sparkify.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, feature_names
    from sparkify.modeling.split import user_base

    numeric = [n for n in NUMERIC_FEATURES if n in feature_names()]

    def laid_out(path, shuffle_partitions):
        before = spark.conf.get("spark.sql.shuffle.partitions")
        spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
        try:
            with load_log(spark, path) as loaded:
                base, _, _ = user_base(loaded, LabelSpec(), numeric, CATEGORICAL_FEATURES, 3)
                rows = base.select(F.spark_partition_id().alias("_p"), "*").collect()
                base.unpersist()
                return rows
        finally:
            spark.conf.set("spark.sql.shuffle.partitions", before)

    from_store = laid_out(str(store), 2)
    assert from_store == laid_out(str(day_files), 5) and len({r["_p"] for r in from_store}) == 3


def test_a_window_read_scores_as_the_raw_log_does(spark, store, raw, trained_model, raw_scores, tmp_path):
    end = st.read_manifest(spark, str(store)).end_ms()
    t = (end // DAY_MS + 1) * DAY_MS
    with st.load_store(spark, store, window_end_ms=t) as window:
        assert window.days.df.count() < load_log(spark, str(store)).days.df.count() / 3
        table = _pdf(build_scoring_table(window.days), ["userId"])
        assert_same(table, _pdf(build_scoring_table(raw.days), ["userId"]))
        assert len(table) > 10
        write_scores(score_users(spark, window.days, trained_model), tmp_path / "window.csv")
    assert (tmp_path / "window.csv").read_bytes() == raw_scores.read_bytes()
    # an earlier midnight reads that window only, and still matches
    earlier = t - 20 * DAY_MS
    when = datetime.fromtimestamp(earlier / 1000, tz=timezone.utc)
    with st.load_store(spark, store, window_end_ms=earlier) as window:
        assert_same(_pdf(build_scoring_table(window.days, when), ["userId"]),
                                      _pdf(build_scoring_table(raw.days, when), ["userId"]))
        # rows read for a 14-day window cannot serve a model with a longer one
        with pytest.raises(ValueError, match="21-day window"):
            build_scoring_table(window.days, when, long_days=21)
    # a model's own window (train --window-days 21) is read as such, and matches the raw log
    with st.load_store(spark, store, window_end_ms=t, long_days=21) as window:
        got = _pdf(build_scoring_table(window.days, long_days=21), ["userId"])
        assert_same(got, _pdf(build_scoring_table(raw.days, long_days=21), ["userId"]))
        assert len(got) > len(table)


def test_ingesting_the_same_files_again_changes_nothing(spark, store, day_files):
    before = st.read_manifest(spark, str(store))
    result = st.ingest_into_store(spark, store.parent / "landing", store)
    assert result.batch is None and result.new_files == 0 and result.version == before.version
    assert "nothing new" in result.summary()
    assert st.read_manifest(spark, str(store)) == before


def test_a_batch_that_repeats_stored_events_is_refused(spark, store, day_files, tmp_path):
    before = st.read_manifest(spark, str(store))
    copy = tmp_path / "resent.json"
    shutil.copy(day_files / sorted(p.name for p in day_files.iterdir())[30], copy)
    with pytest.raises(ValueError, match="repeat events the store .* holds.*Nothing was written"):
        st.ingest_into_store(spark, copy, store)
    assert st.read_manifest(spark, str(store)) == before
    assert not list((store / st.ROWS_DIR).glob(f"batch=b{before.version + 1:05d}-*"))


def test_a_batch_that_fails_half_way_leaves_the_store_as_it_was(spark, day_files, tmp_path, monkeypatch):
    store, names = tmp_path / "store", sorted(p.name for p in day_files.iterdir())
    _land(day_files, tmp_path / "a", names[:10])
    st.ingest_into_store(spark, tmp_path / "a", store)
    before = st.read_manifest(spark, str(store))

    def fail(*args, **kwargs):
        raise OSError("disk full")

    _land(day_files, tmp_path / "b", names[10:14])
    monkeypatch.setattr(st, "_commit", fail)
    with pytest.raises(OSError):
        st.ingest_into_store(spark, tmp_path / "b", store)
    leftover, = (store / st.ROWS_DIR).glob("batch=b00002-*")     # written, not committed
    assert st.read_manifest(spark, str(store)) == before
    with st.load_store(spark, store) as loaded:
        assert loaded.quality.user_rows == before.batches[0].quality["user_rows"]
    monkeypatch.undo()
    result = st.ingest_into_store(spark, tmp_path / "b", store)   # run again
    assert result.batch.id.startswith("b00002-") and result.new_files == 4 and leftover.exists()
    st.ingest_into_store(spark, tmp_path / "b", store)            # once version 2 is in, a later
    assert not leftover.exists()                                  # ingest removes the leftover
    with load_log(spark, str(tmp_path / "*" / "*.json")) as raw, st.load_store(spark, store) as loaded:
        assert loaded.quality.user_rows == raw.quality.user_rows
        assert loaded.days.df.count() == raw.days.df.count()


def test_store_reads_refuse_what_they_cannot_do_exactly(spark, store, tmp_path):
    noon = (st.read_manifest(spark, str(store)).end_ms() // DAY_MS - 3) * DAY_MS + DAY_MS // 2
    with pytest.raises(ValueError, match="cuts its rows at midnights UTC"):
        st.load_store(spark, store, splits=(noon,))
    with pytest.raises(ValueError, match="no artist sets"):
        st.load_store(spark, store, artists=True)
    with pytest.raises(ValueError, match="holds no batch yet"):
        st.load_store(spark, tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a Sparkify store"):
        st.ingest_into_store(spark, store.parent / "landing", tmp_path / "other")


def test_cli_ingest_and_score_through_a_store(spark, capsys, store, day_files, trained_model, raw_scores, tmp_path):
    new_store = tmp_path / "store"
    assert main(["ingest", str(day_files), "--store", str(new_store)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"batch b00001-[0-9a-f]{8}: 62 new file\(s\)", out) and "quarantined" in out
    assert main(["ingest", str(day_files), "--store", str(new_store)]) == 0
    assert "nothing new" in capsys.readouterr().out
    by_store = tmp_path / "store.csv"
    assert main(["score", "--store", str(new_store), "--model", str(trained_model), "--out", str(by_store)]) == 0
    assert by_store.read_bytes() == raw_scores.read_bytes() and len(pd.read_csv(by_store)) > 10
    capsys.readouterr()
    assert main(["score", str(day_files), "--store", str(new_store), "--model", str(trained_model)]) == 2
    assert "one of them" in capsys.readouterr().err


def test_a_store_that_keeps_events_gives_the_raw_logs_events(spark, store, day_files, tmp_path):
    from sparkify.dataset import load_events

    names = sorted(p.name for p in day_files.iterdir())
    kept = tmp_path / "kept"
    _land(day_files, tmp_path / "landing", names[:30])
    st.ingest_into_store(spark, tmp_path / "landing", kept, keep_events=True)
    _land(day_files, tmp_path / "landing", names[30:])
    st.ingest_into_store(spark, tmp_path / "landing", kept, keep_events=True)
    with pytest.raises(ValueError, match="built with the events: ingest with --keep-events"):
        st.ingest_into_store(spark, tmp_path / "landing", kept)
    columns = ["userId", "sessionId", "itemInSession", "ts", "page"]
    with load_events(spark, str(kept)) as stored, load_events(spark, str(day_files)) as raw:
        assert {**stored.quality.to_dict(), "source": ""} == {**raw.quality.to_dict(), "source": ""}
        a, b = stored.events.toPandas(), raw.events.toPandas()
        assert_same(a.sort_values(columns).reset_index(drop=True)[b.columns],
                    b.sort_values(columns).reset_index(drop=True))
    with pytest.raises(ValueError, match="keeps session-day rows, not events"):
        load_events(spark, str(store))


def test_watch_takes_files_as_they_land_and_a_restart_neither_loses_nor_repeats(spark, day_files, trained_model,
                                                                               raw_scores, tmp_path):
    from sparkify.watch import CHECKPOINT_DIR, start_watch

    landing, store, out = tmp_path / "landing", tmp_path / "store", tmp_path / "scores.csv"
    names = sorted(p.name for p in day_files.iterdir())
    _land(day_files, landing, names[:10])

    def watch():  # rescoring at most once an hour: after a watch's first batch only
        return start_watch(spark, landing, store, model_dir=trained_model, scores_out=out, every_s=3600, poll_s=0.5)

    query, state = watch()
    try:
        query.processAllAvailable()
        _land(day_files, landing, names[10:20])        # dropped in while it runs
        query.processAllAvailable()
    finally:
        query.stop()
    assert [b[:6] for b in state.batches] == ["b00001", "b00002"] and len(state.scored) == 1 and out.exists()
    # a stop between the store's commit and the stream's: the stream runs its last micro-batch again
    commits = store / CHECKPOINT_DIR / "commits"
    last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    for name in (str(last), f".{last}.crc"):
        (commits / name).unlink(missing_ok=True)
    _land(day_files, landing, names[20:])
    query, state = watch()
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    manifest = st.read_manifest(spark, str(store))
    taken = [Path(s["path"]).name for b in manifest.batches for s in b.sources]
    assert sorted(taken) == names and [b[:6] for b in state.batches] == ["b00003"]
    assert len(state.scored) == 1 and out.read_bytes() == raw_scores.read_bytes()   # all files: the raw log's list


def test_a_rescoring_with_no_active_user_keeps_the_list_in_use(spark, store, trained_model, tmp_path, monkeypatch):
    """An empty list would replace the one the web app serves: refresh_scores refuses it
    and writes nothing (here the scoring is made to find nobody)."""
    import sparkify.modeling.predict as predict
    from sparkify.watch import refresh_scores

    out = tmp_path / "scores.csv"
    assert refresh_scores(spark, str(store), trained_model, out) > 0
    before = out.read_bytes()
    real = predict.score_users
    monkeypatch.setattr(predict, "score_users", lambda *a, **k: real(*a, **k).limit(0))
    with pytest.raises(predict.NoActiveUsers):
        refresh_scores(spark, str(store), trained_model, out)
    assert out.read_bytes() == before


def test_a_damaged_file_left_out_is_not_held_and_is_tried_again(spark, day_files, tmp_path):
    import gzip

    from sparkify.inputs import CorruptInputError

    landing, store = tmp_path / "landing", tmp_path / "store"
    landing.mkdir()
    names = sorted(p.name for p in day_files.iterdir())
    for name in names[:2]:
        (landing / f"{name}.gz").write_bytes(gzip.compress((day_files / name).read_bytes()))
    damaged = landing / f"{names[2]}.gz"
    damaged.write_bytes(gzip.compress((day_files / names[2]).read_bytes())[:5_000])
    result = st.ingest_into_store(spark, landing, store, skip_corrupt_files=True)
    assert result.new_files == 2 and [f["path"] for f in result.batch.quality["skipped_files"]] == [str(damaged)]
    assert "skipped files" in result.summary()
    with pytest.raises(CorruptInputError, match=names[2]):     # not held: tried again, still damaged
        st.ingest_into_store(spark, landing, store, skip_corrupt_files=True)
    assert st.read_manifest(spark, str(store)).version == 1


def test_an_ingest_that_loses_the_race_to_another_adds_nothing(spark, day_files, tmp_path, monkeypatch):
    store, names = tmp_path / "store", sorted(p.name for p in day_files.iterdir())
    _land(day_files, tmp_path / "a", names[:5])
    st.ingest_into_store(spark, tmp_path / "a", store)
    first = st.read_manifest(spark, str(store))
    commit = st._commit

    def another_ingest_commits_first(spark_, store_, manifest):
        rival = st.Manifest(version=manifest.version, artists=False, batches=first.batches)
        commit(spark_, store_, rival)
        commit(spark_, store_, manifest)

    _land(day_files, tmp_path / "b", names[5:8])
    monkeypatch.setattr(st, "_commit", another_ingest_commits_first)
    with pytest.raises(RuntimeError, match="another ingest committed version 2"):
        st.ingest_into_store(spark, tmp_path / "b", store)
    assert st.read_manifest(spark, str(store)).batches == first.batches
    with st.load_store(spark, store) as loaded:
        assert loaded.quality.user_rows == first.batches[0].quality["user_rows"]
