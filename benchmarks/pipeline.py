"""Time every stage of the churn pipeline on one log and print a table.

Stages: load (parse + clean), features (user table, split, cache), the families'
cross-validation side by side, tuning, evaluation, label comparison, ceiling, seed spread
(the last three with --thorough, the ceiling on simulated logs), artifact writing, and
scoring every active user from the log already loaded (``sparkify train --scores``).

Usage:
    .venv/bin/python benchmarks/pipeline.py LOG [--quick | --thorough] [--models rf,gbt,lr,svc] [--folds 3]
    .venv/bin/python benchmarks/pipeline.py --preset mini|medium|full [--seed 42]

With ``--preset`` the log is simulated once into a cache directory
($SPARKIFY_BENCH_DIR, default /tmp/sparkify-bench/<preset>-seed<seed>/, shared with
benchmarks/scale.py) and reused afterwards. The model goes to a temporary directory
unless ``--model DIR`` is given. ``--json FILE`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_BENCH_DIR = Path(os.environ.get("SPARKIFY_BENCH_DIR", "/tmp/sparkify-bench"))


def preset_log(preset: str, seed: int, bench_dir: Path = DEFAULT_BENCH_DIR) -> Path:
    """The cached simulated log of a preset (simulated on first use)."""
    from sparkify.simulator import PRESETS, simulate

    if preset not in PRESETS:
        raise SystemExit(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    path = bench_dir / f"{preset}-seed{seed}" / "sparkify_event_data.json"
    truth = path.with_name("sparkify_event_data_truth.parquet")
    if path.exists() and truth.exists():
        print(f"reusing {path}")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"simulating the {preset} preset into {path} ...", flush=True)
    t0 = time.perf_counter()
    summary = simulate(out=path, preset=preset, seed=seed, progress=True)
    print(f"simulated {summary.events:,} events, {summary.users:,} users in {time.perf_counter() - t0:.1f}s")
    return path


def table(rows: list[tuple[str, float]], total: float) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'stage'.ljust(width)}  {'seconds':>9}  {'share':>6}"]
    for name, sec in rows:
        lines.append(f"{name.ljust(width)}  {sec:9.1f}  {100 * sec / total:5.1f}%")
    lines.append(f"{'total'.ljust(width)}  {total:9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", nargs="?", help="event log (file, directory, glob or ingest Parquet)")
    parser.add_argument("--preset", choices=("mini", "medium", "full"), help="simulate/reuse a preset log")
    parser.add_argument("--seed", type=int, default=42, help="simulation seed for --preset (default 42)")
    parser.add_argument("--model", help="model directory (default: a temporary one, deleted afterwards)")
    plan = parser.add_mutually_exclusive_group()
    plan.add_argument("--quick", action="store_true", help="TrainConfig.fast() grids")
    plan.add_argument("--thorough", action="store_true", help="TrainConfig.thorough(): `sparkify train --thorough`")
    parser.add_argument("--models", default="rf,gbt,lr,svc")
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--master", default=None)
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if bool(args.log) == bool(args.preset):
        parser.error("give a LOG or --preset (one of them)")

    from sparkify.modeling.train import TrainConfig, train
    from sparkify.spark import get_spark

    log = preset_log(args.preset, args.seed) if args.preset else Path(args.log)
    overrides = {"models": tuple(args.models.split(","))}
    if args.folds:
        overrides["folds"] = args.folds
    config = (TrainConfig.fast if args.quick else TrainConfig.thorough if args.thorough else TrainConfig)(**overrides)
    tmp = None
    model_dir = Path(args.model) if args.model else Path(tempfile.mkdtemp(prefix="sparkify-bench-")) / "classifier"
    if not args.model:
        tmp = model_dir.parent
    t_session = time.perf_counter()
    spark = get_spark(app_name="sparkify-bench-pipeline", master=args.master)
    session_s = time.perf_counter() - t_session
    try:
        result = train(spark, log, model_dir, config, scores_out=model_dir / "scores.csv")
        import pandas as pd

        written = pd.read_csv(model_dir / "scores.csv", usecols=["userId"])
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    timings = dict(result.timings)
    train_total = timings.pop("total", sum(timings.values()))
    rows = [("spark session", session_s), *timings.items()]
    total = session_s + train_total + timings.get("scoring", 0.0)
    m = result.metrics
    print()
    print(f"log: {log}")
    d = m["data"]
    dates = m["label"].get("dates") or []
    print(f"{len(dates)} observation date(s); labelled {d['rows']:,} rows of {d['users']:,} users "
          f"({d['churner_rows']:,} churner rows of {d['churning_users']:,} churning users); test {d['test_rows']:,} rows of "
          f"{d['test_users']:,} users ({d['test_churners']:,} churner rows); scored {len(written):,} active users; "
          f"cores {spark.sparkContext.defaultParallelism}")
    print(table(rows, total))
    best = m["best"]
    t = best["test"]
    print(f"\nbest {best['name']} {best['params']}: test churn F1 {t['f1']:.3f}, PR-AUC {t['pr_auc']:.3f}, "
          f"ROC-AUC {t['roc_auc']:.3f}, top-10 % lift {t['top10']['lift']:.2f}, Brier {t['brier']:.4f}, "
          f"expected/realized churners {t['expected_churners']:.1f}/{t['realized_churners']}, reliability bins "
          f"within noise {t['bins_within']}/{t['bins']} ({t['rows']:,} rows, {t['churners']:,} churner rows)")
    for period, b in best.get("periods", {}).items():
        print(f"  {period:<12} {b['rows']:,} rows of {b['users']:,} users, {b['churners']:,} churner rows: "
              f"PR-AUC {b['pr_auc']:.3f}, expected/realized {b['expected_churners']:.1f}/{b['realized_churners']}")
    for fig in m["models"].values():
        ft = fig["test"]
        print(f"  {fig['name']:<24} F1 {ft['f1']:.3f}  PR-AUC {ft['pr_auc']:.3f}  CV {fig['train_seconds']:.1f}s")
    if m.get("ceiling"):
        c = m["ceiling"]
        print(f"true ceiling on the same rows: F1 {c['test']['f1']:.3f}, PR-AUC {c['test']['pr_auc']:.3f}; "
              f"model PR-AUC / ceiling PR-AUC = {c['model_pr_auc_fraction']:.2f}")
    if m.get("label_comparison"):
        lc = m["label_comparison"]
        print(f"'ever' label: F1 {lc['ever']['f1']:.3f}, weighted F1 {lc['ever']['weighted_f1']:.3f}")
    if m.get("seed_spread"):
        s = m["seed_spread"]["f1"]
        print(f"F1 over {s['n']} splits: {s['mean']:.3f} +/- {s['sd']:.3f} [{s['min']:.3f}, {s['max']:.3f}]")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"log": str(log), "stages": dict(rows), "total": total,
                                                   "metrics": {k: m[k] for k in ("data", "best", "models")}},
                                                  indent=2, default=str))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
