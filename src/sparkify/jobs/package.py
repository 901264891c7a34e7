"""Build the ``--py-files`` zip of the sparkify package for spark-submit.

``python -m sparkify.jobs.package --out dist/sparkify.zip`` writes

- ``dist/sparkify.zip``          the ``sparkify`` package (sources and package data,
  no ``__pycache__``), importable from the zip on the driver and the executors;
- ``dist/sparkify_submit.py``    the entry point spark-submit runs (a copy of
  ``sparkify/jobs/submit.py``), so the zip and this file are all a cluster needs
  besides Python with the dependencies (pyspark, pandas, numpy, pyarrow, orjson, tqdm).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import zipfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
ENTRY_NAME = "sparkify_submit.py"
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def package_files(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """In: the package directory. Out: its files to ship, sorted (no caches, no bytecode)."""
    files = []
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir)
        if not path.is_file() or _SKIP_DIRS.intersection(rel.parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        files.append(path)
    return files


def build_zip(out: str | Path, package_dir: Path = PACKAGE_DIR) -> tuple[Path, Path]:
    """Write the package zip to ``out`` and the entry point beside it.

    In: the zip path (its folder is created) and the package directory.
    Out: (zip path, entry-point path). The zip holds ``sparkify/...`` at its root, the
    layout Python's zipimport needs for ``import sparkify``.
    """
    out = Path(out)
    if out.suffix != ".zip":
        raise ValueError(f"--out must end in .zip, got {out}")
    if not (package_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"not a Python package: {package_dir}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in package_files(package_dir):
            arcname = Path(package_dir.name) / path.relative_to(package_dir)
            zf.write(path, arcname.as_posix())
    tmp.replace(out)
    entry = out.with_name(ENTRY_NAME)
    shutil.copyfile(package_dir / "jobs" / "submit.py", entry)
    return out, entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sparkify.jobs.package",
        description="Build the --py-files zip of sparkify and the spark-submit entry point beside it.",
    )
    parser.add_argument("--out", default="dist/sparkify.zip", help="zip to write (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        zip_path, entry = build_zip(args.out)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"sparkify package: error: {exc}", file=sys.stderr)
        return 2
    size_kb = zip_path.stat().st_size / 1024
    print(f"wrote {zip_path} ({size_kb:.0f} KiB) and {entry}")
    print(
        "submit with:\n"
        f"  spark-submit --master spark://HOST:7077 --py-files {zip_path} {entry} "
        "train EVENTS --model MODEL_DIR"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
