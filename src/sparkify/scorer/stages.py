"""Feature stages of a saved Spark pipeline, re-implemented in NumPy with Spark's semantics.

Every stage reads columns from, and adds columns to, a dict ``name -> numpy array``
(scalars as shape ``(n,)``, vectors as ``(n, k)`` float64). Each also describes its output
columns (``ColumnInfo``) so that every slot of the final feature vector can be traced back
to the raw input column it came from (used to sum explanations back to raw features).

Supported: StringIndexerModel, OneHotEncoderModel, VectorAssembler, StandardScalerModel,
MinMaxScalerModel. Semantics mirror Spark 3.x/4.x ``transform`` (see
/work/shared/reference/spark-saved-model.md); the parity tests guard them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sparkify.scorer.errors import ModelLoadError, ScoringInputError
from sparkify.scorer.pipeline_reader import StageFiles, decode_vector, first_row

UNKNOWN_LABEL = "__unknown"


@dataclass(frozen=True)
class Slot:
    """One slot of a feature vector: the raw input column it comes from and a label."""

    source: str
    label: str


@dataclass
class ColumnInfo:
    """What a column holds: raw ``numeric``/``string`` input, category ``index`` or ``vector``."""

    kind: str
    source: str | None = None
    slots: list[Slot] = field(default_factory=list)
    categories: list[str] | None = None

    @property
    def size(self) -> int:
        return len(self.slots) if self.kind == "vector" else 1


# ----------------------------------------------------------------------------- coercion

def is_missing(value) -> bool:
    """None, NaN, pandas NA/NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (np.floating,)):
        return bool(np.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")


def java_double_str(v: float) -> str:
    """``String.valueOf(double)`` as Spark's cast to string prints it (1.0, 1.0E7, 1.0E-4)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0.0"
    if 1e-3 <= abs(v) < 1e7:
        text = repr(float(v))
        return text if "." in text else text + ".0"
    mant, _, exp = np.format_float_scientific(v, unique=True, trim="0").partition("e")
    return f"{mant}E{int(exp)}"


def to_spark_string(value) -> str | None:
    """A raw value as Spark would see it in a string column (numbers cast like Spark)."""
    if is_missing(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return java_double_str(float(value))
    return str(value)


def coerce_numeric(name: str, values) -> np.ndarray:
    """In: a raw column (list/array of numbers, None for missing). Out: float64 array (NaN
    for missing). Raises ``ScoringInputError`` naming the column on a non-numeric value."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False).reshape(-1)
    out = np.empty(arr.shape[0] if arr.ndim else 1, dtype=np.float64)
    for i, v in enumerate(arr.reshape(-1)):
        if is_missing(v):
            out[i] = np.nan
        elif isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating)):
            out[i] = float(v)
        else:
            raise ScoringInputError(f"{name}: {str(v)[:40]!r} is not a number", [name])
    return out


# ----------------------------------------------------------------------------- stages

class Stage:
    """Base class: ``inputs``/``outputs`` column names, ``transform``, ``describe``."""

    #: kind each input needs when it is a raw column: "string" or "numeric"
    input_kind = "numeric"

    def __init__(self, files: StageFiles):
        self.files = files
        self.uid = files.uid
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def _io(self, single_in="inputCol", multi_in="inputCols", single_out="outputCol",
            multi_out="outputCols") -> None:
        p = self.files
        if p.param(multi_in) is not None:
            self.inputs = list(p.param(multi_in))
            self.outputs = list(p.param(multi_out) or [])
        elif p.param(single_in) is not None:
            self.inputs = [p.param(single_in)]
            self.outputs = [p.param(single_out)]
        if not self.inputs or len(self.inputs) != len(self.outputs) or None in self.outputs:
            raise ModelLoadError(f"{p.path}: cannot tell the stage's input and output columns")

    def transform(self, cols: dict[str, np.ndarray]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, info: dict[str, ColumnInfo]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _info(self, info: dict[str, ColumnInfo], name: str) -> ColumnInfo:
        if name not in info:
            info[name] = ColumnInfo(kind=self.input_kind, source=name)
        return info[name]


class StringIndexer(Stage):
    """``StringIndexerModel``: label -> its index in ``labelsArray``; unseen labels and
    nulls -> ``len(labels)`` under handleInvalid='keep', an error otherwise ('skip' drops
    rows in Spark, which a row-by-row scorer cannot mirror: it is reported as an error)."""

    input_kind = "string"

    def __init__(self, files: StageFiles):
        super().__init__(files)
        self._io()
        self.handle_invalid = files.param("handleInvalid", "error")
        row = first_row(files.data(), files.path)
        if row.get("labelsArray") is not None:
            labels = [list(x) for x in row["labelsArray"]]
        elif row.get("labels") is not None:
            labels = [list(row["labels"])]
        else:
            raise ModelLoadError(f"{files.path}: StringIndexer data has no labels")
        if len(labels) != len(self.inputs):
            raise ModelLoadError(f"{files.path}: {len(labels)} label lists for {len(self.inputs)} columns")
        self.labels = labels
        self.maps = [{lab: float(i) for i, lab in enumerate(labs)} for labs in labels]

    def transform(self, cols):
        keep = self.handle_invalid == "keep"
        for src, dst, mapping, labels in zip(self.inputs, self.outputs, self.maps, self.labels):
            values = cols[src]
            out = np.empty(len(values), dtype=np.float64)
            unknown = float(len(labels))
            get = mapping.get
            for i, v in enumerate(values):
                key = v if type(v) is str else to_spark_string(v)
                idx = get(key) if key is not None else None
                if idx is None:
                    if not keep:
                        what = "a missing value" if key is None else f"unseen label {key[:40]!r}"
                        raise ScoringInputError(
                            f"{src}: {what} (the model's StringIndexer uses handleInvalid="
                            f"'{self.handle_invalid}')", [src])
                    idx = unknown
                out[i] = idx
            cols[dst] = out

    def describe(self, info):
        for src, dst, labels in zip(self.inputs, self.outputs, self.labels):
            base = self._info(info, src)
            cats = list(labels) + ([UNKNOWN_LABEL] if self.handle_invalid == "keep" else [])
            info[dst] = ColumnInfo(kind="index", source=base.source or src, categories=cats)


class OneHotEncoder(Stage):
    """``OneHotEncoderModel``: index -> one-hot vector of size categorySize (+1 if
    handleInvalid='keep', -1 if dropLast); the dropped / invalid slot is all zeros."""

    def __init__(self, files: StageFiles):
        super().__init__(files)
        self._io()
        self.drop_last = bool(files.param("dropLast", True))
        self.handle_invalid = files.param("handleInvalid", "error")
        row = first_row(files.data(), files.path)
        sizes = row.get("categorySizes")
        if sizes is None:
            raise ModelLoadError(f"{files.path}: OneHotEncoder data has no categorySizes")
        self.category_sizes = [int(s) for s in sizes]
        if len(self.category_sizes) != len(self.inputs):
            raise ModelLoadError(f"{files.path}: categorySizes does not match inputCols")
        keep = self.handle_invalid == "keep"
        if not self.drop_last and keep:
            self.sizes = [s + 1 for s in self.category_sizes]
        elif self.drop_last and not keep:
            self.sizes = [s - 1 for s in self.category_sizes]
        else:
            self.sizes = list(self.category_sizes)

    def transform(self, cols):
        keep = self.handle_invalid == "keep"
        for src, dst, orig, size in zip(self.inputs, self.outputs, self.category_sizes, self.sizes):
            label = np.asarray(cols[src], dtype=np.float64)
            valid = (label >= 0) & (label < orig)
            if not valid.all():
                if not keep:
                    bad = label[~valid][0]
                    raise ScoringInputError(
                        f"{src}: category index {bad} outside the {orig} categories seen in training",
                        [src])
            idx = np.where(valid, np.trunc(np.where(valid, label, 0)), orig).astype(np.int64)
            out = np.zeros((len(label), size), dtype=np.float64)
            hit = idx < size
            out[np.nonzero(hit)[0], idx[hit]] = 1.0
            cols[dst] = out

    def describe(self, info):
        for src, dst, orig, size in zip(self.inputs, self.outputs, self.category_sizes, self.sizes):
            base = self._info(info, src)
            source = base.source or src
            cats = list(base.categories or [])
            labels = []
            for j in range(size):
                name = cats[j] if j < len(cats) else (UNKNOWN_LABEL if j >= orig else str(j))
                labels.append(Slot(source=source, label=f"{source}={name}"))
            info[dst] = ColumnInfo(kind="vector", source=source, slots=labels)


class VectorAssembler(Stage):
    """``VectorAssembler``: concatenates numeric columns and vectors. A null/NaN value is
    an error under handleInvalid='error' (Spark's default) and kept as NaN under 'keep'."""

    def __init__(self, files: StageFiles):
        super().__init__(files)
        self.inputs = list(files.param("inputCols") or [])
        out = files.param("outputCol")
        if not self.inputs or not out:
            raise ModelLoadError(f"{files.path}: VectorAssembler has no inputCols/outputCol")
        self.outputs = [out]
        self.handle_invalid = files.param("handleInvalid", "error")

    def transform(self, cols):
        parts = []
        for name in self.inputs:
            arr = cols[name]
            if arr.ndim == 1:
                if arr.dtype != np.float64:
                    arr = coerce_numeric(name, arr)
                    cols[name] = arr
                arr = arr[:, None]
            parts.append(arr)
        out = np.hstack(parts) if len(parts) > 1 else np.array(parts[0], dtype=np.float64)
        if self.handle_invalid != "keep":
            bad = np.isnan(out)
            if bad.any():
                fields = [name for name, part in zip(self.inputs, parts) if np.isnan(part).any()]
                raise ScoringInputError(
                    f"missing or NaN value in {', '.join(fields)} (the model's VectorAssembler "
                    f"uses handleInvalid='{self.handle_invalid}')", fields)
        cols[self.outputs[0]] = out

    def describe(self, info):
        slots: list[Slot] = []
        for name in self.inputs:
            base = self._info(info, name)
            if base.kind == "vector":
                slots.extend(base.slots)
            else:
                src = base.source or name
                slots.append(Slot(source=src, label=src))
        info[self.outputs[0]] = ColumnInfo(kind="vector", slots=slots)


class StandardScaler(Stage):
    """``StandardScalerModel``: ``(x - mean if withMean) * (1/std if withStd)``, with a
    factor 0 where std == 0 (exactly Spark's arithmetic)."""

    def __init__(self, files: StageFiles):
        super().__init__(files)
        self.inputs = [files.param("inputCol")]
        self.outputs = [files.param("outputCol")]
        if None in self.inputs or None in self.outputs:
            raise ModelLoadError(f"{files.path}: StandardScaler has no inputCol/outputCol")
        self.with_mean = bool(files.param("withMean", False))
        self.with_std = bool(files.param("withStd", True))
        row = first_row(files.data(), files.path)
        self.mean = decode_vector(row.get("mean"))
        self.std = decode_vector(row.get("std"))
        with np.errstate(divide="ignore"):
            self.scale = np.where(self.std == 0, 0.0, 1.0 / self.std)

    def transform(self, cols):
        x = cols[self.inputs[0]]
        if x.shape[1] != self.std.shape[0]:
            raise ScoringInputError(f"{self.inputs[0]}: {x.shape[1]} features, the scaler expects {self.std.shape[0]}")
        if self.with_mean:
            x = x - self.mean
        if self.with_std:
            x = x * self.scale
        cols[self.outputs[0]] = x

    def describe(self, info):
        base = self._info(info, self.inputs[0])
        info[self.outputs[0]] = ColumnInfo(kind="vector", slots=list(base.slots))


class MinMaxScaler(Stage):
    """``MinMaxScalerModel``: ``(x - E_min) * (max - min) / (E_max - E_min) + min``; a constant
    column (E_max == E_min) gives ``(max + min) / 2``; NaN stays NaN."""

    def __init__(self, files: StageFiles):
        super().__init__(files)
        self.inputs = [files.param("inputCol")]
        self.outputs = [files.param("outputCol")]
        if None in self.inputs or None in self.outputs:
            raise ModelLoadError(f"{files.path}: MinMaxScaler has no inputCol/outputCol")
        self.lo = float(files.param("min", 0.0))
        self.hi = float(files.param("max", 1.0))
        row = first_row(files.data(), files.path)
        self.e_min = decode_vector(row.get("originalMin"))
        self.e_max = decode_vector(row.get("originalMax"))
        rng = self.e_max - self.e_min
        with np.errstate(divide="ignore", invalid="ignore"):
            self.scale_arr = np.where(rng != 0, (self.hi - self.lo) / np.where(rng != 0, rng, 1.0), 0.0)
        self.constant = self.scale_arr == 0
        self.constant_output = (self.hi + self.lo) / 2

    def transform(self, cols):
        x = cols[self.inputs[0]]
        out = (x - self.e_min) * self.scale_arr + self.lo
        if self.constant.any():
            out[:, self.constant] = np.where(np.isnan(x[:, self.constant]), np.nan, self.constant_output)
        cols[self.outputs[0]] = out

    def describe(self, info):
        base = self._info(info, self.inputs[0])
        info[self.outputs[0]] = ColumnInfo(kind="vector", slots=list(base.slots))


FEATURE_STAGES: dict[str, type[Stage]] = {
    "org.apache.spark.ml.feature.StringIndexerModel": StringIndexer,
    "org.apache.spark.ml.feature.OneHotEncoderModel": OneHotEncoder,
    "org.apache.spark.ml.feature.VectorAssembler": VectorAssembler,
    "org.apache.spark.ml.feature.StandardScalerModel": StandardScaler,
    "org.apache.spark.ml.feature.MinMaxScalerModel": MinMaxScaler,
}
