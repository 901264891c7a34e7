"""Train the churn model (the seed's entry point): a thin wrapper of `sparkify train`.

Usage:
    python data/process_data.py data/mini_sparkify_event_data.json model/classifier [train options]

Same job and options as ``sparkify train EVENTS --model DIR``: load and clean the log,
build leakage-free per-user features, compare and tune four Spark ML models, and write
the model directory atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = ("usage: python data/process_data.py EVENTS MODEL_DIR [sparkify train options]\n"
         "example: python data/process_data.py data/mini_sparkify_event_data.json model/classifier")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] in ("-h", "--help") or argv[1].startswith("-"):
        print(USAGE, file=sys.stderr if len(argv) < 2 else sys.stdout)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "src"))
    from sparkify._bootstrap import ensure_dependencies

    ensure_dependencies(root, ("pyspark", "numpy"))
    from sparkify.cli import main as sparkify_main

    events, model_dir, rest = argv[0], argv[1], argv[2:]
    return sparkify_main(["train", events, "--model", model_dir, *rest])


if __name__ == "__main__":
    sys.exit(main())
