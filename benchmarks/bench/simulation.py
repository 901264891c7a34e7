"""The simulator measured (``python benchmarks/simulate.py speed|fidelity|hazard``).

* :func:`run_speed`: events/s and MB/s written, one line per run (preset/users, workers,
  events, MB, seconds, events/s, MB/s, and the CPU seconds of this process and its
  simulator processes: the machine may be shared). The output goes to a temporary
  directory (part files for the full preset), deleted afterwards unless ``--keep``.
* :func:`run_fidelity`: a simulated log against the real Sparkify facts
  (``sparkify.simulator.fidelity``): page count per NextSong for every page at >= 0.001 per
  NextSong in the real mini log, on rows with a userId and on all rows; method/status per
  page; auth shares; churn; users/events against the preset; key order and types: real
  value, simulated value, difference, ok. Exits 1 when any check is out of bounds. Then,
  reported and not checked, the real full log's churn by last level and by registration
  month and the shares of users who start free and end paid, beside the simulated ones.
* :func:`run_hazard`: the true churn hazard (``sparkify.simulator.hazard``), speed and
  calibration. Simulates a log (default cohorts), takes every user subscribed at each
  observation midnight t (``--as-of``: days after the window start) who has a visible
  event before t, with their level (and Logged In/Out auth) at t from the log, computes
  P(churn in (t, t + horizon]) and prints, per date and in total: rows, predicted churners
  (sum of probabilities), realized churners (from the truth table), the z-score
  (realized - predicted) / sqrt(sum p(1-p)), the AUC, and the speed (rows/s; the one-off
  per-cohort table build is timed apart). The temporary log is deleted unless ``--keep``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time

from .common import cpu_seconds, machine_line, markdown_table, scratch_dir

DAY = 86_400


# ------------------------------------------------------------------ speed
def run_speed(args) -> int:
    """``simulate.py speed``: one simulation per ``--workers`` value, timed."""
    from sparkify.simulator import simulate

    print(machine_line())
    head = markdown_table(["run", "workers", "events", "MB", "seconds", "events/s", "MB/s", "cpu s"], [])
    print("\n".join(head), flush=True)
    with scratch_dir("sparkify-sim-bench-", keep=args.keep and args.out is None) as tmp:
        for w in args.workers:
            if args.out is not None:
                out = args.out
            elif args.preset == "full" and args.users is None:
                out = tmp / f"run-{w}"
            else:
                out = tmp / f"run-{w}.json"
            cpu0, t0 = cpu_seconds(reaped=True), time.perf_counter()
            s = simulate(out=out, preset=args.preset, users=args.users, days=args.days, seed=args.seed,
                         workers=w, gzip=args.gzip, progress=sys.stderr.isatty())
            secs = time.perf_counter() - t0
            mb = s.bytes / 1e6
            name = f"{args.preset}" + (f"/{args.users}u" if args.users else "")
            print(f"| {name} | {w or 'auto'} | {s.events:,} | {mb:,.0f} | {secs:.1f} | {s.events / secs:,.0f} | "
                  f"{mb / secs:.1f} | {cpu_seconds(reaped=True) - cpu0:.1f} |", flush=True)
            if not args.keep:
                if s.path.is_dir():
                    shutil.rmtree(s.path)
                else:
                    s.path.unlink()
                    s.truth_path.unlink()
    return 0


# ------------------------------------------------------------------ fidelity
def run_fidelity(args) -> int:
    """``simulate.py fidelity``: the fidelity table of a simulated (or given) log."""
    from sparkify.simulator import simulate
    from sparkify.simulator.fidelity import compare, format_table, read_stats

    with scratch_dir("sparkify-fidelity-") as tmp:
        path = args.log
        if path is None:
            s = simulate(out=tmp / f"{args.preset}.json", preset=args.preset, seed=args.seed,
                         progress=sys.stderr.isatty())
            path = s.path
            print(f"simulated {args.preset} (seed {args.seed}): {s.events:,} events, {s.users} users, "
                  f"{s.churned} churned, {s.bytes / 1e6:,.0f} MB in {s.seconds:.1f} s")
        elif not path.exists():
            print(f"fidelity: error: no such log: {path}", file=sys.stderr)
            return 2
        checks = compare(read_stats(path), preset=args.preset)
    print(format_table(checks))
    checks = [c for c in checks if c.checked]  # the reported figures are never a failure
    failed = [c.name for c in checks if not c.ok]
    print(f"\n{len(checks) - len(failed)}/{len(checks)} checks within bounds"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


# ------------------------------------------------------------------ hazard
def auc(y, p) -> float:
    import numpy as np
    import pandas as pd

    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return float("nan")
    r = pd.Series(p).rank().to_numpy()
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def run_hazard(args) -> int:
    """``simulate.py hazard``: true churn probabilities at several dates against what happened."""
    import numpy as np
    import pandas as pd

    from sparkify.simulator import simulate
    from sparkify.simulator.hazard import (
        cohort_tables,
        read_truth,
        run_model,
        true_churn_probability,
        visible_rows_before,
    )

    print(machine_line())
    with scratch_dir("sparkify-hazard-bench-", keep=args.keep and args.log is None) as tmp:
        if args.log is None:
            log = tmp / "log.json"
            t = time.perf_counter()
            s = simulate(out=log, users=args.users, days=args.days, seed=args.seed, progress=sys.stderr.isatty())
            print(f"simulated {s.users:,} users, {s.events:,} events in {time.perf_counter() - t:.1f} s: {log}")
            truth_path = s.truth_path
        else:
            log = args.log
            truth_path = log.with_name(log.name.removesuffix(".json") + "_truth.parquet")
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
            cohort_tables(run, ci)
        t_tables = time.perf_counter() - t
        t = time.perf_counter()
        p = true_churn_probability(truth, rows, args.horizon, n_paths=args.paths, seed=args.seed)
        t_run = time.perf_counter() - t
        print(f"per-cohort tables ({len(run.models)} cohorts): {t_tables:.1f} s (once per run spec)")
        print(f"{len(rows):,} rows x {args.paths} paths, horizon {args.horizon:g} d: {t_run:.1f} s, "
              f"{len(rows) / t_run:,.0f} rows/s")
        table = []
        for t_ms in cutoffs + [None]:
            sel = np.ones(len(rows), bool) if t_ms is None else rows["as_of_ms"].to_numpy() == t_ms
            pp, yy = p[sel], y[sel]
            z = (yy.sum() - pp.sum()) / math.sqrt(max((pp * (1 - pp)).sum(), 1e-12))
            name = "total" if t_ms is None else pd.Timestamp(t_ms, unit="ms").strftime("%Y-%m-%d")
            table.append([name, int(sel.sum()), f"{pp.sum():.1f}", int(yy.sum()), f"{z:+.2f}", f"{auc(yy, pp):.3f}"])
        print("\n".join(markdown_table(["as of", "rows", "predicted", "realized", "z", "AUC"], table)))
        print("(dates overlap when the horizon is longer than their spacing: their z-scores are not independent)")
    return 0


