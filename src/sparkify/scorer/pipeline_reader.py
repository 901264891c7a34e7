"""Read a saved Spark ML ``PipelineModel`` from disk without Spark.

Layout (see /work/shared/reference/spark-saved-model.md): ``<dir>/metadata/part-*`` is one
JSON line (class, uid, paramMap, defaultParamMap, ...), ``<dir>/data/*.parquet`` the
stage's fitted values, and for a pipeline ``<dir>/stages/<i>_<uid>/`` one folder per stage.

Functions here take paths and return plain Python / NumPy values; they raise
``ModelLoadError`` with the offending path on anything missing or malformed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparkify.scorer.errors import ModelLoadError


@dataclass
class StageFiles:
    """One saved stage: its folder, metadata JSON and merged params."""

    path: Path
    metadata: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def class_name(self) -> str:
        return str(self.metadata.get("class", ""))

    @property
    def short_class(self) -> str:
        return self.class_name.rsplit(".", 1)[-1]

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", self.path.name))

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def is_set(self, name: str) -> bool:
        """True when the param was explicitly set (Spark's ``isSet``), not only defaulted."""
        return name in self.metadata.get("paramMap", {})

    def data(self, sub: str = "data"):
        """The stage's Parquet data (a ``pyarrow.Table``)."""
        return read_parquet_dir(self.path / sub)


def read_metadata(path: Path) -> dict[str, Any]:
    """In: a saved ML object folder. Out: the JSON dict of ``<path>/metadata/part-*``."""
    mdir = Path(path) / "metadata"
    if not mdir.is_dir():
        raise ModelLoadError(f"{mdir} is missing: not a saved Spark ML object")
    parts = sorted(p for p in mdir.glob("part-*") if p.is_file())
    if not parts:
        raise ModelLoadError(f"{mdir} holds no part-* metadata file")
    try:
        text = parts[0].read_text(encoding="utf-8").strip()
        meta = json.loads(text.splitlines()[0]) if text else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, IndexError) as exc:
        raise ModelLoadError(f"{parts[0]} is not valid metadata JSON: {exc}") from exc
    if not isinstance(meta, dict) or "class" not in meta:
        raise ModelLoadError(f"{parts[0]} is not Spark ML metadata (no 'class')")
    return meta


def merged_params(meta: dict[str, Any]) -> dict[str, Any]:
    """Spark's param resolution: explicitly set params override the defaults."""
    params = dict(meta.get("defaultParamMap") or {})
    params.update(meta.get("paramMap") or {})
    return params


def read_parquet_dir(path: Path):
    """In: a folder of Parquet part files (Spark output). Out: one ``pyarrow.Table``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"{path} is missing")
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith((".", "_")))
    if not files:
        raise ModelLoadError(f"{path} holds no Parquet file")
    try:
        tables = [pq.read_table(f) for f in files]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    except (OSError, pa.ArrowException) as exc:
        raise ModelLoadError(f"{path}: cannot read Parquet data: {exc}") from exc


def read_stage(path: Path) -> StageFiles:
    """In: one stage folder. Out: its ``StageFiles`` (metadata and merged params)."""
    meta = read_metadata(path)
    return StageFiles(path=Path(path), metadata=meta, params=merged_params(meta))


def read_pipeline(path: Path) -> tuple[dict[str, Any], list[StageFiles]]:
    """In: a saved ``PipelineModel`` folder. Out: (pipeline metadata, stages in order)."""
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(f"pipeline folder {path} is missing")
    meta = read_metadata(path)
    if meta.get("class") != "org.apache.spark.ml.PipelineModel":
        raise ModelLoadError(f"{path} holds a {meta.get('class')}, not a Spark PipelineModel")
    uids = (meta.get("paramMap") or {}).get("stageUids")
    if not isinstance(uids, list) or not uids:
        raise ModelLoadError(f"{path}/metadata lists no stageUids")
    stages_dir = path / "stages"
    if not stages_dir.is_dir():
        raise ModelLoadError(f"{stages_dir} is missing")
    by_uid: dict[str, Path] = {}
    for d in stages_dir.iterdir():
        if d.is_dir() and "_" in d.name:
            idx, _, uid = d.name.partition("_")
            if idx.isdigit():
                by_uid[uid] = d
    stages = []
    for uid in uids:
        if uid not in by_uid:
            raise ModelLoadError(f"{stages_dir} has no folder for stage {uid}")
        stages.append(read_stage(by_uid[uid]))
    return meta, stages


def decode_vector(struct: dict[str, Any] | None) -> np.ndarray:
    """Spark ``VectorUDT`` struct ``{type 0 sparse / 1 dense, size, indices, values}`` -> dense array."""
    if struct is None:
        raise ModelLoadError("a saved vector is null")
    values = np.asarray(struct.get("values") or [], dtype=np.float64)
    if struct.get("type") == 1:
        return values
    size = struct.get("size")
    if size is None:
        raise ModelLoadError("a saved sparse vector has no size")
    out = np.zeros(int(size), dtype=np.float64)
    out[np.asarray(struct.get("indices") or [], dtype=np.int64)] = values
    return out


def decode_matrix(struct: dict[str, Any] | None) -> np.ndarray:
    """Spark ``MatrixUDT`` struct -> dense (numRows, numCols) array.

    Dense values are column-major unless ``isTransposed`` (then row-major). Sparse is CSC
    (``colPtrs``, ``rowIndices``), or CSR when ``isTransposed``.
    """
    if struct is None:
        raise ModelLoadError("a saved matrix is null")
    rows, cols = int(struct["numRows"]), int(struct["numCols"])
    values = np.asarray(struct.get("values") or [], dtype=np.float64)
    transposed = bool(struct.get("isTransposed"))
    if struct.get("type") == 1:
        if transposed:
            return values.reshape(rows, cols)
        return values.reshape(cols, rows).T.copy()
    ptrs = np.asarray(struct.get("colPtrs") or [], dtype=np.int64)
    idx = np.asarray(struct.get("rowIndices") or [], dtype=np.int64)
    out = np.zeros((rows, cols), dtype=np.float64)
    major = rows if transposed else cols
    for m in range(major):
        for k in range(ptrs[m], ptrs[m + 1]):
            if transposed:
                out[m, idx[k]] = values[k]
            else:
                out[idx[k], m] = values[k]
    return out


def first_row(table, path: Path) -> dict[str, Any]:
    """The single row of a stage's data table as a dict (model stages save one row)."""
    if table.num_rows < 1:
        raise ModelLoadError(f"{path}: stage data is empty")
    return table.slice(0, 1).to_pylist()[0]
