"""From `make run` to a served app: the time of each step, and the default model against --thorough.

A first run on a set-up machine does what `make run` does on the mini preset, each step a
fresh process as `make` runs it:

1. ``make setup`` (already set up: a check of .venv and Java);
2. ``sparkify simulate --preset mini`` (no log given);
3. ``sparkify train LOG --model DIR --scores DIR/scores.csv`` (the quick default plan);
4. ``sparkify serve --model DIR`` until ``/api/health`` answers 200.

The clock runs from the start of step 1 to the first 200. ``--runs N`` repeats it (a new
log seed each run; the server is stopped after each).

``--thorough`` then trains ``--thorough`` on the first run's log and prints both model
cards' family choice and test figures, with the difference in test PR-AUC and its 95 %
interval from a paired bootstrap over the held-out users (both models hold out the same
users: the split depends on the user ids and the seed only).

Usage:
    .venv/bin/python benchmarks/first_run.py [--runs 3] [--seed 42] [--thorough] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SPARKIFY = ROOT / ".venv" / "bin" / "sparkify"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(step: str, argv: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(map(str, argv))}\n")
        fh.flush()
        code = subprocess.call([str(a) for a in argv], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"first_run: {step} failed (exit {code}); see {log}")
    return time.perf_counter() - t0


def _serve_until_healthy(model: Path, log: Path, timeout: float = 120.0) -> tuple[float, subprocess.Popen]:
    port = _free_port()
    t0 = time.perf_counter()
    fh = log.open("a")
    proc = subprocess.Popen([str(SPARKIFY), "serve", "--model", str(model), "--port", str(port)], cwd=ROOT,
                            stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/health"
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"first_run: the server exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0, proc
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    sys.exit(f"first_run: no answer from {url} within {timeout:.0f}s; see {log}")


def first_run(out: Path, seed: int) -> dict:
    """One timed first run into ``out``; returns the step times (s) and the model directory."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    log, events, model = out / "console.log", out / "mini_sparkify_event_data.json", out / "classifier"
    t0 = time.perf_counter()
    steps = {"setup": _run("setup", ["make", "-s", "setup"], log),
             "simulate": _run("simulate", [SPARKIFY, "simulate", "--preset", "mini", "--seed", seed, "--out", events],
                              log),
             "train + score": _run("train", [SPARKIFY, "train", events, "--model", model, "--scores",
                                             model / "scores.csv"], log)}
    steps["serve (to the first 200)"], proc = _serve_until_healthy(model, log)
    total = time.perf_counter() - t0
    proc.terminate()
    proc.wait(timeout=30)
    timings = json.loads((model / "metrics.json").read_text()).get("timings", {})
    return {"steps": steps, "total": total, "train_stages": timings, "model": model, "events": events}


def _test_rows(model: Path) -> pd.DataFrame:
    f = pd.read_parquet(model / "features.parquet", columns=["userId", "as_of_ms", "churn", "split", "score"])
    return f[f["split"] == "test"].set_index(["userId", "as_of_ms"]).sort_index()


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    from sparkify.modeling.evaluate import average_precision as ap

    return ap(y, s)


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, draws: int = 1000, seed: int = 0) -> dict:
    """Test PR-AUC of ``b`` minus ``a`` on their common test rows, with a 95 % interval from
    resampling users (a user's rows together)."""
    common = a.join(b[["score"]], rsuffix="_b", how="inner")
    users = common.index.get_level_values("userId").to_numpy()
    ids, inverse = np.unique(users, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    y, sa, sb = common["churn"].to_numpy().astype(int), common["score"].to_numpy(), common["score_b"].to_numpy()
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(draws):
        idx = np.concatenate([rows_of[i] for i in rng.integers(0, len(ids), len(ids))])
        if y[idx].sum() == 0:
            continue
        diffs.append(average_precision(y[idx], sb[idx]) - average_precision(y[idx], sa[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"rows": len(y), "users": len(ids), "churner_rows": int(y.sum()),
            "difference": average_precision(y, sb) - average_precision(y, sa), "lo": float(lo), "hi": float(hi)}


def _card(model: Path) -> str:
    m = json.loads((model / "metrics.json").read_text())
    b, t = m["best"], m["best"]["test"]
    return (f"{b['name']} {b['params']}: test {t['rows']:,} rows of {t['users']:,} users, {t['churners']:,} churner "
            f"rows: PR-AUC {t['pr_auc']:.3f}, F1 {t['f1']:.3f}, expected/realized {t['expected_churners']:.1f}/"
            f"{t['realized_churners']}, reliability bins within the noise {t['bins_within']}/{t['bins']}; "
            f"train {m['timings']['total']:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42, help="log seed of the first run (+1 for each next run)")
    parser.add_argument("--thorough", action="store_true", help="also train --thorough on the first log and compare")
    parser.add_argument("--out", type=Path, default=Path("/tmp/sparkify-bench/first-run"))
    args = parser.parse_args(argv)
    if not SPARKIFY.exists():
        sys.exit("first_run: run `make setup` first (.venv/bin/sparkify is missing)")

    cores = os.cpu_count()
    print(f"first run of `make run` on the mini preset ({cores} cores)")
    runs = []
    for i in range(args.runs):
        r = first_run(args.out / f"run{i + 1}", args.seed + i)
        runs.append(r)
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in r["steps"].items())
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["train_stages"].items() if k != "total")
        print(f"run {i + 1} (log seed {args.seed + i}): served after {r['total']:.1f}s: {steps}\n"
              f"  train stages (s): {stages}")
    totals = [r["total"] for r in runs]
    print(f"served after: median {np.median(totals):.1f}s, min {min(totals):.1f}s, max {max(totals):.1f}s "
          f"over {len(totals)} runs")
    print(f"  default model (run 1): {_card(runs[0]['model'])}")
    if args.thorough:
        thorough = args.out / "thorough"
        log = args.out / "thorough.log"
        log.unlink(missing_ok=True)
        _run("thorough train", [SPARKIFY, "train", runs[0]["events"], "--model", thorough, "--thorough"], log)
        print(f"  --thorough model (same log): {_card(thorough)}")
        d = paired_difference(_test_rows(runs[0]["model"]), _test_rows(thorough))
        print(f"  test PR-AUC, thorough minus default: {d['difference']:+.3f} (95 % interval {d['lo']:+.3f} .. "
              f"{d['hi']:+.3f}, users resampled; {d['rows']:,} rows of {d['users']:,} users, "
              f"{d['churner_rows']:,} churner rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
