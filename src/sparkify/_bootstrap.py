"""Let the seed's scripts (``data/process_data.py``, ``app/run.py``) run with any ``python``.

When the interpreter running them lacks the project's dependencies but the repository's
``.venv`` has them, re-run the same command with ``.venv/bin/python``. Standard library only.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path


def ensure_dependencies(root: Path, modules: tuple[str, ...]) -> None:
    """Re-exec under ``root/.venv/bin/python`` if any of ``modules`` cannot be imported here.

    Returns normally when everything is importable. Exits with a message (code 2) when the
    modules are missing and no virtual environment exists to switch to.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    venv_python = root / ".venv" / "bin" / "python"
    in_venv = Path(sys.prefix).resolve() == (root / ".venv").resolve()
    if venv_python.exists() and not in_venv:
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.stderr.write(
        f"error: missing Python packages: {', '.join(missing)}.\n"
        f"Run `make setup` in {root} (creates .venv), then run this again.\n")
    raise SystemExit(2)
