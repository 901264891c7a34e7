"""The simulator: format, eventsim's rules, determinism, config validation, fidelity."""

from __future__ import annotations

import copy
import gzip
import json
from collections import defaultdict
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from sparkify.config import DEFAULT_EVENTSIM_CONFIG
from sparkify.simulator import ConfigError, simulate
from sparkify.simulator.eventsim_config import compile_model, load_config, parse_config
from sparkify.simulator.fidelity import KEY_ORDER, REAL_PAGES, check_row, compare, read_stats

USER_FIELDS = ("location", "userAgent", "lastName", "firstName", "registration", "gender")


def rows_of(path: Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        return [orjson.loads(line) for line in fh]


@pytest.fixture(scope="module")
def rows(small_log) -> list[dict]:
    return rows_of(small_log)


# ----------------------------------------------------------------------------- format
def test_real_sample_and_simulated_rows_share_key_order_and_types(real_sample, rows):
    real = [json.loads(line) for line in real_sample.read_text().splitlines()]
    for source in (real, rows):
        key_errors, type_errors = [], []
        for r in source:
            check_row(r, key_errors, type_errors)
        assert key_errors == [] and type_errors == []
    # the same kinds of rows carry exactly the same keys, in the same order
    def kinds(source):
        out = {}
        for r in source:
            out.setdefault((r["page"] == "NextSong", "firstName" in r), tuple(r))
        return out

    real_kinds, sim_kinds = kinds(real), kinds(rows)
    for kind, keys in real_kinds.items():
        assert sim_kinds[kind] == keys
    assert tuple(real_kinds[(True, True)]) == KEY_ORDER


def test_values_look_like_the_real_log(rows):
    quoted = sum(1 for r in rows if r.get("userAgent", "").startswith('"'))
    assert quoted > 0  # literal quotes kept
    for r in rows[:5000]:
        assert r["ts"] % 1000 == 0 and isinstance(r["userId"], str)
        assert r["page"] in REAL_PAGES
        if "firstName" in r:
            assert r["gender"] in ("M", "F") and r["registration"] % 1000 == 0
            assert ", " in r["location"]
    lengths = [r["length"] for r in rows if r["page"] == "NextSong"]
    mean = sum(lengths) / len(lengths)
    assert 235 < mean < 265
    assert min(lengths) > 0 and max(lengths) < 3100


def test_hidden_rows_keep_the_session_but_show_no_user(rows):
    hidden = [r for r in rows if r["auth"] in ("Logged Out", "Guest")]
    assert hidden
    for r in hidden:
        assert r["userId"] == ""
        assert not any(k in r for k in USER_FIELDS)
    shown = [r for r in rows if r["auth"] in ("Logged In", "Cancelled")]
    assert all(r["userId"] and all(k in r for k in USER_FIELDS) for r in shown)
    # a Logout is followed, in the same session, by hidden rows (same sessionId)
    logout_sessions = {r["sessionId"] for r in shown if r["page"] == "Logout"}
    assert logout_sessions & {r["sessionId"] for r in hidden}


def test_time_ordered_and_timing_rules(rows):
    ts = [r["ts"] for r in rows]
    assert ts == sorted(ts)
    by_session = defaultdict(list)
    for r in rows:
        if r["userId"]:
            by_session[(r["userId"], r["sessionId"])].append(r)
    songs = threes = 0
    for events in by_session.values():
        for prev, cur in zip(events, events[1:]):
            if cur["itemInSession"] != prev["itemInSession"] + 1:
                continue
            if prev["page"] == "NextSong" and cur["page"] == "NextSong":
                assert cur["ts"] - prev["ts"] == int(prev["length"]) * 1000
                songs += 1
            if cur["status"] == 307:
                assert cur["ts"] - prev["ts"] == 1000
                threes += 1
    assert songs > 1000 and threes > 100
    # warm-up: some sessions are already in progress when the window opens
    first = {}
    for r in rows:
        first.setdefault((r["userId"], r["sessionId"]), r["itemInSession"])
    assert sum(1 for v in first.values() if v > 0) >= 10


def test_churn_only_through_cancellation_and_nothing_after(rows, small_log):
    last = {}
    for r in rows:
        if r["userId"]:
            last[r["userId"]] = r
    churned = {r["userId"] for r in rows if r["page"] == "Cancellation Confirmation"}
    users = set(last)
    assert 0.12 <= len(churned) / len(users) <= 0.32
    for uid in churned:
        assert last[uid]["page"] == "Cancellation Confirmation" and last[uid]["auth"] == "Cancelled"
    for uid, r in last.items():
        if uid not in churned:
            assert r["auth"] != "Cancelled"
    cancels = [r for r in rows if r["page"] == "Cancel"]
    assert len(cancels) >= len(churned)
    truth = pq.read_table(small_log.with_name(small_log.stem + "_truth.parquet")).to_pandas()
    for col in ("userId", "cohort", "alpha", "beta", "initial_level", "initial_auth", "registration", "arrival_ts",
                "churned", "churn_ts", "n_events"):
        assert col in truth.columns
    assert set(truth["userId"]) == users
    assert set(truth.loc[truth["churned"], "userId"]) == churned
    counts = defaultdict(int)
    for r in rows:
        if r["userId"]:
            counts[r["userId"]] += 1
    assert dict(zip(truth["userId"], truth["n_events"])) == dict(counts)
    assert truth["cohort"].nunique() >= 3  # the default cohort mix


def test_cohorts_have_their_own_id_bases_and_session_counters(rows):
    ids = {int(r["userId"]) for r in rows if r["userId"]}
    bases = {i // 100_000 for i in ids}
    assert bases >= {0, 1, 2, 3}
    sessions_per_base = defaultdict(set)
    for r in rows:
        if r["userId"]:
            sessions_per_base[int(r["userId"]) // 100_000].add(r["sessionId"])
    # each cohort counts its own sessions from 1, so the counters overlap
    assert sessions_per_base[0] & sessions_per_base[1]


# ----------------------------------------------------------------------------- fidelity
def test_fidelity_of_a_small_log(small_log):
    st = read_stats(small_log)
    checks = {c.name: c for c in compare(st, users=200)}
    for name in ("method/status per page", "key order", "value types", "time-ordered rows", "users (requested)"):
        assert checks[name].ok, (name, checks[name].sim)
    ratios = [c for n, c in checks.items() if n.endswith("/ NextSong")]
    assert len(ratios) >= 17
    # 200 users is small: every frequent page within 15 %, the rarer (< 0.005) within 30 %;
    # pages seen mostly at the free level (Roll Advert, Upgrade) follow the run's free/paid
    # mix, which varies by ~8 % between seeds at this size: 25 %. (`benchmarks/simulate.py
    # fidelity` holds the mini/medium presets to 15 % on every page.)
    for c in ratios:
        tol = 0.15 if c.real >= 0.005 else 0.30
        if c.name.startswith(("Roll Advert", "Upgrade")):
            tol = max(tol, 0.25)
        assert abs(c.diff) <= tol, (c.name, c.real, c.sim)
    for auth in ("Logged In", "Logged Out"):
        assert checks[f"auth share {auth}"].ok
    # Per user (the calibration of ACTIVITY_SIGMA, END_SCALE, BETA_SCALE; docs/simulator.md):
    # the real mini log's churners have 0.64x the events and 0.67x the sessions of the users
    # who stay, 87.6 events per user-session. This log (seed 7): 0.81, 0.69, 87.0; ten seeds
    # of 200 users gave 0.69-0.82, 0.59-0.80, 84-96. eventsim's spread (sigma 1) gives
    # 0.98, 0.95, 93.2 on this seed (0.73-1.22, 0.76-1.12 over ten seeds), and the settings
    # before the calibration (sigma 1, END_SCALE 1.5, BETA_SCALE 0.63) 1.21, 1.20, 57.0.
    # "Below 1" alone would pass sigma 1 here: the bounds sit between the two spreads.
    events = checks["events per user, churned / staying"].sim
    sessions = checks["sessions per user, churned / staying"].sim
    per_session = checks["events per user-session"]
    assert 0.45 < events < 0.9, events
    assert 0.45 < sessions < 0.85, sessions
    assert per_session.ok and abs(per_session.sim / 87.6 - 1) <= 0.25, per_session.sim


# ----------------------------------------------------------------------------- outputs
def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a = simulate(out=tmp_path / "a.json", users=40, days=12, seed=11, workers=1, progress=False)
    b = simulate(out=tmp_path / "b.json", users=40, days=12, seed=11, workers=2, progress=False)
    c = simulate(out=tmp_path / "c.json", users=40, days=12, seed=12, workers=1, progress=False)
    assert a.events > 1000
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()
    assert pq.read_table(a.truth_path).equals(pq.read_table(b.truth_path))


def test_simulations_in_two_threads_give_the_serial_bytes(tmp_path):
    """simulate() from two threads at once (the test suite's background jobs do this)
    writes what each would alone."""
    import threading

    serial = [simulate(out=tmp_path / f"s{seed}.json", users=30, days=10, seed=seed, progress=False)
              for seed in (11, 12)]
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            for _ in range(3):
                name = f"t{seed}.json.gz" if seed == 12 else f"t{seed}.json"
                simulate(out=tmp_path / name, users=30, days=10, seed=seed, progress=False)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (11, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert (tmp_path / "t11.json").read_bytes() == serial[0].path.read_bytes()
    assert gzip.decompress((tmp_path / "t12.json.gz").read_bytes()) == serial[1].path.read_bytes()


def test_directory_parts_concatenate_to_the_single_file(tmp_path, monkeypatch):
    from sparkify.simulator import writer

    monkeypatch.setattr(writer, "CHUNK_EVENTS", 2_000)
    single = simulate(out=tmp_path / "one.json", users=30, days=10, seed=5, progress=False)
    parts = simulate(out=tmp_path / "dir", users=30, days=10, seed=5, workers=2, gzip=True,
                     hidden_user_id="1261737", progress=False)
    files = sorted(parts.path.glob("part-*.json.gz"))
    assert len(files) == len(parts.parts) >= 2
    assert (parts.path / "_truth.parquet").exists() and parts.truth_path == parts.path / "_truth.parquet"
    joined = b"".join(gzip.decompress(f.read_bytes()) for f in files)
    expected = single.path.read_bytes().replace(b'"userId":""', b'"userId":"1261737"')
    assert joined == expected
    assert b'"userId":"1261737"' in joined


def test_gzip_single_file_and_summary(tmp_path):
    s = simulate(out=tmp_path / "log.json.gz", users=20, days=7, seed=3, progress=False)
    assert s.path.name == "log.json.gz" and s.truth_path.name == "log_truth.parquet"
    data = rows_of(s.path)
    assert len(data) == s.events and s.bytes == s.path.stat().st_size
    assert s.users == len({r["userId"] for r in data if r["userId"]})


# ----------------------------------------------------------------------------- config
def _accordion() -> dict:
    return json.loads(DEFAULT_EVENTSIM_CONFIG.read_text())


def test_accordion_compiles_to_the_22_pages():
    cfg = load_config()
    m = compile_model(cfg)
    assert {s[0] for s in m.states} == set(REAL_PAGES)
    for page, _auth, _level, method, status in m.states:
        assert (method, status) == REAL_PAGES[page][:2]
    # Cancellation Confirmation has no way out: the session (and the user) ends there
    cc = [i for i, s in enumerate(m.states) if s[0] == "Cancellation Confirmation"]
    assert cc and all(m.cum[i] == [] and m.churn[i] for i in cc)


def test_config_errors_are_clear():
    raw = _accordion()
    bad = copy.deepcopy(raw)
    bad["transitions"].append({"source": bad["transitions"][0]["source"], "dest": bad["transitions"][0]["dest"],
                               "p": 0.9})
    with pytest.raises(ConfigError, match="sum to"):
        parse_config(bad)
    bad = copy.deepcopy(raw)
    bad["colour"] = 1
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config(bad)
    bad = copy.deepcopy(raw)
    bad["transitions"][0]["dest"]["auth"] = "Sleeping"
    with pytest.raises(ConfigError, match="unknown auth"):
        parse_config(bad)
    bad = copy.deepcopy(raw)
    del bad["beta"]
    with pytest.raises(ConfigError, match="beta"):
        parse_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/config.json")


def test_cli_exit_code_2_without_traceback(tmp_path, capsys):
    from sparkify.cli import main

    bad = _accordion()
    bad["transitions"][0]["p"] = 1.5
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(bad))
    assert main(["simulate", "--users", "5", "--days", "2", "--config", str(cfg), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["simulate", "--users", "5", "--days", "2", "--out", str(blocker / "sub" / "x.json")]) == 2
    assert "Traceback" not in capsys.readouterr().err

    ok = main(["simulate", "--users", "8", "--days", "3", "--seed", "1", "--quiet", "--out", str(tmp_path / "ok.json")])
    assert ok == 0 and (tmp_path / "ok.json").stat().st_size > 0
    assert "events" in capsys.readouterr().out


def test_custom_config_changes_behaviour(tmp_path):
    """A config that never cancels yields no churn: the simulator follows the file."""
    raw = _accordion()
    raw["transitions"] = [t for t in raw["transitions"] if t["dest"]["page"] != "Cancel"]
    path = tmp_path / "nocancel.json"
    path.write_text(json.dumps(raw))
    s = simulate(out=tmp_path / "n.json", users=40, days=20, seed=2, config=path, cohorts=(), progress=False)
    assert s.churned == 0 and s.events > 0
    assert b"Cancellation Confirmation" not in s.path.read_bytes()


def test_timing_helpers():
    from sparkify.simulator.engine import DAY, Timing

    t = Timing(session_gap=1800, damping=0.09375, weekend_damping=0.5, weekend_offset=180 * 60,
               weekend_scale=360 * 60)
    base = 1538352000  # Mon 2018-10-01 00:00 UTC
    shifts = [t.warp(base + h * 3600) - (base + h * 3600) for h in range(24)]
    assert max(abs(s) for s in shifts) <= 0.09375 * DAY
    assert shifts[9] > 0 and shifts[21] < 0  # pulled toward mid-afternoon
    wednesday_noon = base + 2 * DAY + 12 * 3600
    saturday_noon = base + 5 * DAY + 12 * 3600
    columbus_day_noon = base + 7 * DAY + 12 * 3600  # 2018-10-08
    assert t.weekend(wednesday_noon) == 0.0
    assert t.weekend(saturday_noon) == 0.5 and t.weekend(columbus_day_noon) == 0.5


def test_churn_is_partly_predictable_from_behaviour(rows, small_log):
    """The default cohort mix: high-Cancel cohorts also thumb down more, as real churners do."""
    truth = pq.read_table(small_log.with_name(small_log.stem + "_truth.parquet")).to_pandas()
    high_cancel = truth["cohort"].isin(["fickle", "restless"])
    assert truth.loc[high_cancel, "churned"].mean() > truth.loc[~high_cancel, "churned"].mean()
    churned = set(truth.loc[truth["churned"], "userId"])
    pages = {True: defaultdict(int), False: defaultdict(int)}
    for r in rows:
        if r["userId"]:
            pages[r["userId"] in churned][r["page"]] += 1
    down = {k: v["Thumbs Down"] / v["NextSong"] for k, v in pages.items()}
    assert down[True] > down[False]


def test_full_preset_uses_the_placeholder_and_user_count_follows_the_window(tmp_path):
    s = simulate(out=tmp_path / "f.json", preset="full", users=150, days=5, seed=4, progress=False)
    data = rows_of(s.path)
    hidden = [r for r in data if r["auth"] in ("Logged Out", "Guest")]
    assert hidden and all(r["userId"] == "1261737" for r in hidden)
    # users counts the distinct users in the log, whatever the window length
    assert abs(s.users / 150 - 1) <= 0.15
    assert min(r["ts"] for r in data) >= 1538352000000 and max(r["ts"] for r in data) < 1538352000000 + 5 * 86400000


def test_cohorts_file_is_validated(tmp_path, capsys):
    from sparkify.cli import main

    good = tmp_path / "c.json"
    good.write_text(json.dumps([{"name": "solo", "share": 1, "user_id_base": 700000, "page_scale": {"Cancel": 2}}]))
    assert main(["simulate", "--users", "6", "--days", "3", "--quiet", "--cohorts", str(good),
                 "--out", str(tmp_path / "c.jsonl.d")]) == 0
    assert "a directory of part files" in capsys.readouterr().out
    part = next((tmp_path / "c.jsonl.d").glob("part-*.json"))
    ids = {r["userId"] for r in rows_of(part) if r["userId"]}
    assert ids and all(700000 < int(i) < 800000 for i in ids)
    for bad in ([{"name": "x"}], [{"name": "x", "share": 1, "user_id_base": 0, "page_scale": {"Dance": 2}}]):
        good.write_text(json.dumps(bad))
        assert main(["simulate", "--users", "6", "--days", "3", "--cohorts", str(good),
                     "--out", str(tmp_path / "d.json")]) == 2
        assert "Traceback" not in capsys.readouterr().err


def test_per_user_figures_of_a_hand_built_log(tmp_path):
    """Churners' events and sessions per user against the staying users', and events per
    user-session, counted on rows with a userId shown (a logged-out row counts for none)."""
    def row(ts, uid, session, page="NextSong", auth="Logged In"):
        r = {"ts": ts, "userId": uid, "sessionId": session, "page": page, "auth": auth, "method": "PUT",
             "status": 200, "level": "paid", "itemInSession": 0}
        if uid:
            r.update(firstName="A", lastName="B", gender="F", registration=1, location="X", userAgent="Y")
        return r

    rows = [row(1, "1", 1), row(2, "1", 1), row(3, "1", 2, "Cancel"),
            row(4, "1", 2, "Cancellation Confirmation", "Cancelled"),             # churner: 4 events, 2 sessions
            row(5, "2", 3), row(6, "2", 4), row(7, "2", 5), row(8, "2", 5),
            row(9, "", 5, "Home", "Logged Out"),                                  # hidden: not counted
            row(10, "3", 3), row(11, "3", 3)]                                     # stayers: 4 and 2 events, 3 and 1 sessions
    log = tmp_path / "log.json"
    log.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    figures = read_stats(log).per_user()
    assert figures["events per user, churned / staying"] == 4 / 3
    assert figures["sessions per user, churned / staying"] == 2 / 2
    assert figures["events per user-session"] == 10 / 6
    checks = {c.name: c for c in compare(read_stats(log))}
    assert checks["events per user-session"].sim == 10 / 6 and not checks["events per user-session"].ok
