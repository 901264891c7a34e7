"""Benchmark the true churn hazard (sparkify.simulator.hazard): speed and calibration.

Usage::

    .venv/bin/python benchmarks/hazard.py                        # 3,000 users, 61 days, t = days 14/28/42
    .venv/bin/python benchmarks/hazard.py --users 10000 --horizon 30 --as-of 7,30
    .venv/bin/python benchmarks/hazard.py --log /tmp/x.json      # an existing simulated log (+ its truth)

Simulates a log (default cohorts), takes every user subscribed at each observation
midnight t (``--as-of``: days after the window start) who has a visible event before t,
with their level (and Logged In/Out auth) at t from the log, computes
P(churn in (t, t + horizon]) and prints, per date and in total: rows, predicted
churners (sum of probabilities), realized churners (from the truth table), the z-score
(realized - predicted) / sqrt(sum p(1-p)), the AUC, and the speed (rows/s; the one-off
per-cohort table build is timed apart). The temporary log is deleted unless --keep.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DAY = 86_400


def auc(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return float("nan")
    r = pd.Series(p).rank().to_numpy()
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def main(argv: list[str] | None = None) -> int:
    from sparkify.simulator import simulate
    from sparkify.simulator.hazard import _tables, read_truth, run_model, true_churn_probability, visible_rows_before

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=float, default=61)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--as-of", default="14,28,42", help="observation midnights, days after the window start")
    ap.add_argument("--horizon", type=float, default=14.0, help="days")
    ap.add_argument("--paths", type=int, default=400, help="Monte Carlo paths per row")
    ap.add_argument("--log", type=Path, default=None, help="use this simulated log (X.json) instead of simulating")
    ap.add_argument("--keep", action="store_true", help="keep the simulated log")
    args = ap.parse_args(argv)

    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    tmp = None
    if args.log is None:
        tmp = Path(tempfile.mkdtemp(prefix="sparkify-hazard-bench-"))
        log = tmp / "log.json"
        t = time.perf_counter()
        s = simulate(out=log, users=args.users, days=args.days, seed=args.seed, progress=sys.stderr.isatty())
        print(f"simulated {s.users:,} users, {s.events:,} events in {time.perf_counter() - t:.1f} s: {log}")
        truth_path = s.truth_path
    else:
        log = args.log
        truth_path = log.with_name(log.name.removesuffix(".json") + "_truth.parquet")
    try:
        truth = read_truth(truth_path)
        spec = json.loads(truth.attrs["sparkify.simulator"]) if "sparkify.simulator" in truth.attrs else None
        start = spec["start"] if spec else 1538352000
        end = spec["end"] if spec else start + int(args.days * DAY)
        days = [float(d) for d in args.as_of.split(",")]
        cutoffs = [(start + int(d * DAY)) * 1000 for d in days if start + (d + args.horizon) * DAY <= end]
        if not cutoffs:
            raise SystemExit("no observation date leaves a whole horizon inside the window")
        t = time.perf_counter()
        events = visible_rows_before(log, max(cutoffs))
        # the users' own rows (a full-preset log puts a placeholder userId on logged-out rows)
        events = events[events["auth"].isin(["Logged In", "Cancelled"]) & events["userId"].isin(truth["userId"])]
        print(f"read {len(events):,} visible events before the last date in {time.perf_counter() - t:.1f} s")
        churn_ts = truth.set_index("userId")["churn_ts"]
        frames, labels = [], []
        for t_ms in cutoffs:
            last = events[events["ts"] < t_ms].groupby("userId", sort=False).tail(1).set_index("userId")
            last = last[last["auth"] != "Cancelled"]
            rows = pd.DataFrame({"userId": last.index.astype(str), "as_of_ms": t_ms, "level": last["level"].to_numpy(),
                                 "auth": np.where(last["page"].to_numpy() == "Logout", "Logged Out", "Logged In")})
            ct = churn_ts.loc[rows["userId"]].to_numpy()
            frames.append(rows)
            labels.append((ct > t_ms) & (ct <= t_ms + args.horizon * DAY * 1000))
        rows = pd.concat(frames, ignore_index=True)
        y = np.concatenate(labels)

        t = time.perf_counter()
        run = run_model(truth)
        for ci in range(len(run.models)):
            _tables(run, ci)
        t_tables = time.perf_counter() - t
        t = time.perf_counter()
        p = true_churn_probability(truth, rows, args.horizon, n_paths=args.paths, seed=args.seed)
        t_run = time.perf_counter() - t
        print(f"per-cohort tables ({len(run.models)} cohorts): {t_tables:.1f} s (once per run spec)")
        print(f"{len(rows):,} rows x {args.paths} paths, horizon {args.horizon:g} d: {t_run:.1f} s, "
              f"{len(rows) / t_run:,.0f} rows/s")
        print(f"{'as of':<12}{'rows':>8}{'predicted':>11}{'realized':>10}{'z':>7}{'AUC':>7}")
        for t_ms in cutoffs + [None]:
            sel = np.ones(len(rows), bool) if t_ms is None else rows["as_of_ms"].to_numpy() == t_ms
            pp, yy = p[sel], y[sel]
            z = (yy.sum() - pp.sum()) / math.sqrt(max((pp * (1 - pp)).sum(), 1e-12))
            name = "total" if t_ms is None else pd.Timestamp(t_ms, unit="ms").strftime("%Y-%m-%d")
            print(f"{name:<12}{int(sel.sum()):>8}{pp.sum():>11.1f}{int(yy.sum()):>10}{z:>+7.2f}{auc(yy, pp):>7.3f}")
        print("(dates overlap when the horizon is longer than their spacing: their z-scores are not independent)")
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
