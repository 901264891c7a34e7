"""Per-request cost of explaining one record (TreeSHAP for forests), in process.

    python benchmarks/explain.py --model /tmp/work/variants/rf [--calls 2000]

Prints p50/p99 of ``predict_records([record])`` with and without reasons and of the bare
``tree_shap`` call (one feature vector), over real customers of the model's features.parquet.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from serve import time_calls  # benchmarks/serve.py: p50/p99/mean of timed calls


def records_of(model_dir: Path, model, n: int = 200) -> list[dict]:
    names = [f["name"] for f in model.features]
    frame = pd.read_parquet(model_dir / "features.parquet")[names].dropna().head(n)
    kinds = {f["name"]: f.get("kind", "numeric") for f in model.features}
    return [{k: (float(v) if kinds[k] == "numeric" else str(v)) for k, v in row.items()}
            for row in frame.to_dict("records")]


def main(argv: list[str] | None = None) -> int:
    from sparkify.scorer import load_model
    from sparkify.scorer.shap import tree_shap

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = load_model(args.model)
    print(f"load {time.perf_counter() - t0:.2f} s ({model.model_type})")
    recs = records_of(args.model, model)
    one = [[r] for r in recs]
    print("predict_records           ", time_calls(lambda r: model.predict_records(r), one, args.calls))
    print("predict_records reasons   ", time_calls(lambda r: model.predict_records(r, reasons=True, top=5),
                                              one, args.calls))
    paths = getattr(model, "_paths", None)
    if paths is not None:
        forest = model.scorer.classifier.forest
        X = model.scorer.features(model._columns(recs)[0])
        print(f"leaves {paths.z.shape[0]}, slots {paths.z.shape[1]}, depth {paths.node.shape[1]}")
        print("tree_shap (one vector)    ", time_calls(lambda x: tree_shap(forest, paths, x), list(X), args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
