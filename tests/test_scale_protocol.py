"""The benchmarks' in-turns protocol (benchmarks/bench/common.py, run by
``benchmarks/features.py scale`` and ``options``): the yardstick and ours run in turns,
and each keeps its median run (no Spark here: the stages are stand-ins)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


class _Sampler:
    def reset(self):
        pass

    def cpu_seconds(self):
        return 0.0

    def peak(self):
        return 0, 0


def test_stages_run_in_turns_and_keep_their_median_run(monkeypatch):
    from bench import common

    order, clock = [], iter([0, 3, 10, 12, 20, 21, 30, 35, 40, 44, 50, 51])
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))

    def stage(name):
        def run():
            order.append(name)
            return {"n": len(order)}
        return run

    bench = common.Bench(_Sampler())
    runs = bench.run_in_turns([("scan", stage("scan")), ("features_raw", stage("features_raw"))], 3)
    assert order == ["scan", "features_raw"] * 3
    assert [r.seconds for r in runs["scan"]] == [3, 1, 4]
    assert [r.seconds for r in runs["features_raw"]] == [2, 5, 1]
    assert bench.results["scan"].seconds == 3 and bench.results["features_raw"].seconds == 2
    assert bench.results["scan"].extra["runs"] == "3.0 / 1.0 / 4.0 s"
    assert common.pair_ratios(runs, "features_raw", "scan") == "0.67x, 5.00x, 0.25x"


def test_a_failed_run_is_never_the_median(monkeypatch):
    from bench import common

    clock = iter([0, 1, 10, 12, 20, 24])
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))
    outcomes = iter([None, RuntimeError("boom"), None])

    def flaky():
        error = next(outcomes)
        if error:
            raise error

    bench = common.Bench(_Sampler())
    runs = bench.run_in_turns([("scan", flaky)], 3)
    assert [r.status for r in runs["scan"]] == ["ok", "failed", "ok"]
    assert bench.results["scan"].status == "ok" and bench.results["scan"].seconds == 1


def test_rotated_rounds_start_at_a_new_stage_and_pair_runs_of_one_round(monkeypatch):
    from bench import common

    order = []
    clock = iter(range(0, 100, 1))
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))

    def stage(name):
        def run():
            order.append(name)
        return run

    rounds = []
    bench = common.Bench(_Sampler())
    runs = bench.run_in_turns([(n, stage(n)) for n in ("all", "-a", "-b")], 3, rotate=True,
                              after_round=lambda r: rounds.append(sum(map(len, r.values()))))
    assert order == ["all", "-a", "-b", "-a", "-b", "all", "-b", "all", "-a"]
    assert rounds == [3, 6, 9]
    assert all(len(r) == 3 for r in runs.values())
    assert common.pair_ratio_values(runs, "-a", "all") == [1.0, 1.0, 1.0]


def test_stop_on_failure_ends_the_rounds(monkeypatch):
    from bench import common

    clock = iter(range(0, 100, 1))
    monkeypatch.setattr(common.time, "perf_counter", lambda: next(clock))

    def boom():
        raise RuntimeError("boom")

    bench = common.Bench(_Sampler())
    runs = bench.run_in_turns([("all", lambda: None), ("-a", boom), ("-b", lambda: None)], 3,
                              stop_on_failure=True)
    assert [len(runs[n]) for n in ("all", "-a", "-b")] == [1, 1, 0]
    assert runs["-a"][0].status == "failed" and bench.results["all"].status == "ok"
