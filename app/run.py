"""The seed's command: ``python app/run.py`` serves the trained model at http://127.0.0.1:8001.

Same as ``sparkify serve --model model/classifier``; extra options pass through
(e.g. ``python app/run.py --port 8080 --scores model/classifier/scores.csv``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from sparkify._bootstrap import ensure_dependencies  # noqa: E402

ensure_dependencies(ROOT, ("flask", "numpy", "pyarrow"))
from sparkify.cli import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--model" not in args:
        args = ["--model", str(ROOT / "model" / "classifier"), *args]
    sys.exit(main(["serve", *args]))
