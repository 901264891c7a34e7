"""Out-of-time backtest: train at one date, apply at a later one, compare with what happened.

The issue's yardstick: a 92-day simulated log (1,500 users), a model whose latest
observation date is 2018-11-01 (its labels reach 2018-12-01), applied at 2018-12-01 and
judged on the cancellations of 2018-12-01 .. 2018-12-31. Prints the model's own test
figures, the backtest's, expected vs realized churners and the PR-AUC ratio, each with its
row and churner counts.

Usage:
    .venv/bin/python benchmarks/backtest.py [--users 1500] [--days 92] [--seed 42]
        [--last-date 2018-11-01] [--as-of 2018-12-01] [--quick] [--out DIR]

The log is simulated once into DIR (default /tmp/sparkify-bench/backtest-<users>u-<days>d-seed<seed>/)
and reused; the model is written to DIR/model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--days", type=int, default=92)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--last-date", default="2018-11-01")
    parser.add_argument("--as-of", default="2018-12-01")
    parser.add_argument("--quick", action="store_true", help="TrainConfig.fast(): tiny grids (a smoke run)")
    parser.add_argument("--reuse-model", action="store_true", help="backtest the model already in DIR/model")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from sparkify.dataset import load_log
    from sparkify.features import LabelSpec, parse_time
    from sparkify.modeling.backtest import backtest, summary, write_backtest
    from sparkify.modeling.train import TrainConfig, train, truth_path_for
    from sparkify.simulator import simulate
    from sparkify.spark import get_spark

    out = args.out or Path(f"/tmp/sparkify-bench/backtest-{args.users}u-{args.days}d-seed{args.seed}")
    log = out / "sparkify_event_data.json"
    if not log.exists():
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        s = simulate(out=log, users=args.users, days=args.days, seed=args.seed, progress=False)
        print(f"simulated {s.events:,} events of {s.users:,} users in {time.perf_counter() - t0:.1f}s -> {log}")
    spark = get_spark()
    label = LabelSpec(last_date=parse_time(args.last_date))
    config = (TrainConfig.fast if args.quick else TrainConfig)(label=label)
    t0 = time.perf_counter()
    if args.reuse_model and (out / "model" / "metrics.json").exists():
        from types import SimpleNamespace

        result = SimpleNamespace(metrics=json.loads((out / "model" / "metrics.json").read_text()))
        train_s = float(result.metrics["timings"]["total"])
    else:
        result = train(spark, log, out / "model", config)
        train_s = time.perf_counter() - t0
    with load_log(spark, log) as loaded:
        t1 = time.perf_counter()
        bt = backtest(spark, loaded.days, out / "model", parse_time(args.as_of), truth=truth_path_for(str(log)))
        bt_s = time.perf_counter() - t1
    write_backtest(out / "model", bt)
    m = result.metrics
    t = m["best"]["test"]
    oot = m["best"]["periods"].get("out_of_time", {})
    f = bt["figures"]
    print()
    print(f"model: {m['best']['name']}, dates {m['label']['dates'][0][:10]} .. {m['label']['dates'][-1][:10]} "
          f"({len(m['label']['dates'])}), trained in {train_s:.0f}s")
    print(f"own test (held-out users): {t['rows']:,} rows of {t['users']:,} users, {t['churners']:,} churner rows: "
          f"PR-AUC {t['pr_auc']:.3f}, expected/realized {t['expected_churners']:.1f}/{t['realized_churners']}")
    if oot:
        print(f"  out-of-time part ({m['label']['dates'][-1][:10]}): {oot['rows']:,} rows, {oot['churners']:,} "
              f"churners: PR-AUC {oot['pr_auc']:.3f}, expected/realized {oot['expected_churners']:.1f}/"
              f"{oot['realized_churners']}")
    print(summary(bt))
    print(f"expected/realized at {args.as_of}: {f['expected_churners'] / max(f['realized_churners'], 1):.2f} "
          f"(target 0.8-1.25); backtest PR-AUC / own test PR-AUC: {bt['pr_auc_vs_test']:.2f} (target >= 0.85); "
          f"backtest took {bt_s:.0f}s")
    own_ceiling, later_ceiling = (m.get("ceiling") or {}).get("test"), (bt.get("ceiling") or {}).get("test")
    truth_ratio = None
    if own_ceiling and later_ceiling and own_ceiling["pr_auc"]:
        truth_ratio = later_ceiling["pr_auc"] / own_ceiling["pr_auc"]
        print(f"true ceiling: PR-AUC {own_ceiling['pr_auc']:.3f} on the own test rows, {later_ceiling['pr_auc']:.3f} "
              f"at {args.as_of}: the truth's own ratio {truth_ratio:.2f}; the model's share of the ceiling "
              f"{t['pr_auc'] / own_ceiling['pr_auc']:.2f} -> {f['pr_auc'] / later_ceiling['pr_auc']:.2f}")
    (out / "backtest_figures.json").write_text(json.dumps(
        {"train_seconds": train_s, "test": {k: t[k] for k in ("rows", "users", "churners", "pr_auc",
                                                             "expected_churners", "realized_churners")},
         "backtest": {k: f[k] for k in ("rows", "churners", "pr_auc", "expected_churners", "realized_churners",
                                        "brier", "bins_within", "bins")},
         "pr_auc_vs_test": bt["pr_auc_vs_test"], "ceiling_pr_auc_vs_test": truth_ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
