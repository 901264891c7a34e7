"""Training: the pipeline's stages, a first `make run`, the out-of-time backtest, the artist ablation.

    .venv/bin/python benchmarks/train.py pipeline --preset full
    .venv/bin/python benchmarks/train.py first-run --runs 3 --thorough
    .venv/bin/python benchmarks/train.py backtest --seeds 42,43,44,45,46
    .venv/bin/python benchmarks/train.py drivers --seeds 42,43,44,45
    .venv/bin/python benchmarks/train.py latent --model MODEL_DIR
    .venv/bin/python benchmarks/train.py ablation --log MODEL_DIR/features.parquet

Subcommands (``--help`` on each; the code is in ``bench/training.py``):

* ``pipeline``: ``sparkify train`` on one log (``--preset``/``--users``, simulated once into
  the cache $SPARKIFY_BENCH_DIR, default /tmp/sparkify-bench, or ``--log``), every stage
  timed (session, load, features, the families' CV, tuning, evaluation, ceiling,
  artifacts, scoring) with the model's test figures;
* ``first-run``: what ``make run`` does on the mini preset, step by step in fresh
  processes, until the app answers; ``--thorough`` compares the default model with
  ``--thorough`` on the same held-out users (paired bootstrap);
* ``backtest``: a model trained at ``--last-date`` on a 92-day log of 1,500 users, applied
  at ``--as-of`` and judged on what followed (PR-AUC ratio, expected/realized churners);
* ``drivers``: the satisfaction bench: ``sparkify train`` on a ``--churn-model satisfaction``
  log (2,000 users by default), the model's PR-AUC as a fraction of the true ceiling (the
  probability simulated forward from each test row's known state; target >= 0.8), and
  the planted drivers' ranks among the model's inputs and the at-risk customers' reasons;
* ``latent``: on a saved model's own rows, a logistic regression on its inputs and on its
  inputs plus each user's latent traits (the simulator's cohort, activity rates and, for
  ``satisfaction`` logs, temperament and baseline), beside the saved model, each as a
  fraction of the true ceiling: how much of the gap is what no log shows;
* ``ablation``: held-out PR-AUC and F1 with and without the opt-in artist features, the
  same splits and parameters, per family and seed (``--log``: a log or a features.parquet
  written with ``--artist-features``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import training
from bench.common import BENCH_DIR, add_log_args, run_subcommand


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("pipeline", help="every stage of `sparkify train` on one log")
    add_log_args(pl, log_help="an existing log (file, directory, glob or ingest Parquet)")
    pl.add_argument("--model", help="model directory (default: a temporary one, deleted afterwards)")
    plan = pl.add_mutually_exclusive_group()
    plan.add_argument("--quick", action="store_true", help="TrainConfig.fast() grids")
    plan.add_argument("--thorough", action="store_true", help="TrainConfig.thorough(): `sparkify train --thorough`")
    pl.add_argument("--models", default="rf,gbt,lr,svc")
    pl.add_argument("--folds", type=int, default=None)
    pl.add_argument("--master", default=None)
    pl.add_argument("--json", help="also write the figures to this JSON file")
    pl.add_argument("--window-days", type=int, default=None, help="feature window (default: sparkify train's)")
    pl.set_defaults(run=training.run_pipeline)

    f = sub.add_parser("first-run", help="from `make run` to a served app, each step timed")
    f.add_argument("--runs", type=int, default=3)
    f.add_argument("--seed", type=int, default=42, help="log seed of the first run (+1 for each next run)")
    f.add_argument("--thorough", action="store_true", help="also train --thorough on the first log and compare")
    f.add_argument("--out", type=Path, default=BENCH_DIR / "first-run")
    f.set_defaults(run=training.run_first_run)

    b = sub.add_parser("backtest", help="train at one date, apply at a later one, compare with what happened")
    b.add_argument("--users", type=int, default=1500)
    b.add_argument("--days", type=int, default=92)
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--seeds", default=None, help="several log seeds, e.g. 42,43,44: one run each, then side by side")
    b.add_argument("--last-date", default="2018-11-01")
    b.add_argument("--as-of", default="2018-12-01")
    b.add_argument("--quick", action="store_true", help="TrainConfig.fast(): tiny grids (a smoke run)")
    b.add_argument("--window-days", type=int, default=None, help="feature window (default: sparkify train's)")
    b.add_argument("--reuse-model", action="store_true", help="backtest the model already in OUT/model")
    b.add_argument("--bench-dir", type=Path, default=BENCH_DIR, help="the log cache (default: %(default)s)")
    b.add_argument("--out", type=Path, default=None,
                   help="model and figures (default: backtest/ beside the cached log)")
    b.set_defaults(run=training.run_backtest)

    d = sub.add_parser("drivers", help="the satisfaction bench: the model against the known hazard and drivers")
    d.add_argument("--users", type=int, default=2000, help="users of the satisfaction log (default: %(default)s)")
    d.add_argument("--preset", choices=["mini", "medium"], default=None, help="a preset's size instead of --users")
    d.add_argument("--seed", type=int, default=42)
    d.add_argument("--seeds", default=None, help="several log seeds, e.g. 42,43,44: one run each, then side by side")
    d.add_argument("--bench-dir", type=Path, default=BENCH_DIR, help="the log cache (default: %(default)s)")
    d.add_argument("--window-days", type=int, default=None, help="feature window (default: sparkify train's)")
    d.add_argument("--step-days", type=int, default=None,
                   help="days between observation dates (default: sparkify train's, weekly on this log)")
    d.add_argument("--out", type=Path, default=None, help="model directory (default: drivers/model beside the log)")
    d.set_defaults(run=training.run_drivers)

    lt = sub.add_parser("latent", help="a saved model, a linear model with the users' latent traits, the ceiling")
    lt.add_argument("--model", required=True, help="a model directory trained on a simulated log")
    lt.add_argument("--truth", default=None, help="the log's _truth.parquet (default: the one metrics.json names)")
    lt.set_defaults(run=training.run_latent)

    a = sub.add_parser("ablation", help="what the opt-in artist features add to the models")
    add_log_args(a, log_help="an event log, or a features.parquet with the artist features")
    a.add_argument("--models", default="lr,gbt,rf", help="families (default lr,gbt,rf)")
    a.add_argument("--seeds", default="1,2,3", help="split seeds (default 1,2,3)")
    a.set_defaults(run=training.run_ablation)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
