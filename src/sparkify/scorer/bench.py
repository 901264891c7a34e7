"""In-process latency of the NumPy scorer on model directories (prints figures).

    python -m sparkify.scorer.bench MODEL_DIR [MODEL_DIR ...] [--repeat 2000] [--batch 10000]

Per model: load time; one-row ``predict`` (dict in, DataFrame out), ``predict_records``
(dict in, JSON-ready dicts out) and ``explain`` p50/p99; batch scoring of many rows
(lock-step over all trees) in microseconds per row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _typical(model) -> dict:
    rec = {}
    for f in model.features:
        if f.get("kind") == "categorical":
            cats = f.get("categories") or [None]
            rec[f["name"]] = f.get("default", cats[0])
        else:
            rec[f["name"]] = float(f.get("median", 0.0) or 0.0)
    return rec


def _varied(model, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        rec = {}
        for f in model.features:
            if f.get("kind") == "categorical":
                cats = list(f.get("categories") or [None]) + ["unseen"]
                rec[f["name"]] = cats[rng.integers(len(cats))]
            else:
                lo, hi = float(f.get("p01", f.get("min", 0.0)) or 0.0), float(f.get("p99", f.get("max", 1.0)) or 1.0)
                rec[f["name"]] = float(rng.uniform(lo, hi if hi > lo else lo + 1))
        out.append(rec)
    return out


def _timeit(fn, args_list, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and thread-CPU microseconds of ``repeat`` calls (CPU time shows the cost
    on an idle core when the machine is shared)."""
    wall = np.empty(repeat)
    cpu = np.empty(repeat)
    k = len(args_list)
    for _ in range(min(50, repeat)):  # warm-up
        fn(args_list[_ % k])
    for i in range(repeat):
        a = args_list[i % k]
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn(a)
        wall[i] = time.perf_counter() - t0
        cpu[i] = time.thread_time() - c0
    return wall * 1e6, cpu * 1e6


def _fmt(name: str, times: tuple[np.ndarray, np.ndarray]) -> str:
    wall, cpu = times
    return (f"  {name:<26} wall p50 {np.percentile(wall, 50):8.1f} us  p99 {np.percentile(wall, 99):9.1f} us"
            f"   cpu p50 {np.percentile(cpu, 50):8.1f} us  p99 {np.percentile(cpu, 99):8.1f} us")


def bench(model_dir: Path, repeat: int, batch: int) -> None:
    import pandas as pd

    from sparkify.scorer import load_model

    t0 = time.perf_counter()
    model = load_model(model_dir)
    load_s = time.perf_counter() - t0
    clf = model.scorer.classifier
    trees = getattr(getattr(clf, "forest", None), "num_trees", None)
    depth = getattr(getattr(clf, "forest", None), "depth", None)
    desc = model.model_type + (f" ({trees} trees, depth {depth})" if trees else "")
    print(f"{model_dir}: {desc}, {len(model.scorer.feature_slots)} features, loaded in {load_s * 1000:.0f} ms")
    recs = _varied(model, 200)
    print(_fmt("predict(one dict)", _timeit(model.predict, recs, repeat)))
    print(_fmt("predict_records(one dict)", _timeit(model.predict_records, recs, repeat)))
    cols = [model.scorer.coerce({k: [r[k]] for k in model.scorer.raw_inputs}) for r in recs]
    print(_fmt("PipelineScorer, one row", _timeit(model.scorer.transform_columns, cols, repeat)))
    print(_fmt("explain(one dict, top=5)", _timeit(model.explain, recs, max(50, repeat // 10))))
    rows = pd.DataFrame(_varied(model, batch, seed=1))
    c0 = time.thread_time()
    t0 = time.perf_counter()
    model.predict(rows)
    dt = time.perf_counter() - t0
    dc = time.thread_time() - c0
    print(f"  batch predict {batch} rows: wall {dt * 1000:.1f} ms ({dt / batch * 1e6:.2f} us/row), "
          f"cpu {dc * 1000:.1f} ms ({dc / batch * 1e6:.2f} us/row)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparkify.scorer.bench", description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=2000, help="timed one-row calls (default 2000)")
    parser.add_argument("--batch", type=int, default=10000, help="rows in the batch test (default 10000)")
    args = parser.parse_args(argv)
    from sparkify.scorer import ModelLoadError

    for d in args.model_dirs:
        try:
            bench(d, args.repeat, args.batch)
        except ModelLoadError as exc:
            print(f"{d}: cannot load: {exc}", file=sys.stderr)
            return 2
    import os

    print(f"(pyspark imported: {'pyspark' in sys.modules}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
