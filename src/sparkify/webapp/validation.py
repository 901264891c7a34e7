"""Customer-record validation shared by the HTML form and the JSON API.

The model's feature list (``model.features``: dicts with name, kind, unit,
min, max, median, p01, p99, categories, default) becomes one :class:`FieldSpec`
per feature. :func:`validate_record` turns untrusted input (form strings or
JSON values) into a clean record for the scorer, or a message per bad field.

Rules: every feature is required. Numeric values must parse as finite
numbers inside a generous range around the training range (negative values
are refused where training never saw one; anything beyond ten times the
training extremes is refused as absurd), or inside the fixed range of their
unit (:data:`UNIT_RANGES`: a "fraction" is from 0 to 1) when the model's
feature list gives one, widened to the training extremes where training went beyond it
(a value the model was trained on is real: models saved before ``active_day_share``
counted calendar days hold new users' shares a little above 1). Categorical values may be any short text (not NaN or
Infinity): an unseen category is accepted and the scorer handles it like
Spark's ``handleInvalid="keep"`` bucket.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Value of the "other / unknown" entry of a categorical select: an unseen category.
OTHER_CATEGORY = "__other__"
MAX_TEXT_LENGTH = 100
MAX_NUMBER_TEXT_LENGTH = 40
# Absurd means beyond this many times the training extremes.
ABSURD_FACTOR = 10.0
# Units (the ``unit`` of the model's features) whose values lie in a fixed range,
# whatever the training rows reached: the accepted range instead of the generous one.
UNIT_RANGES: dict[str, tuple[float, float]] = {"fraction": (0.0, 1.0)}


@dataclass(frozen=True)
class FieldSpec:
    """One form/API field derived from a model feature."""

    name: str
    kind: str  # "numeric" | "categorical"
    label: str
    unit: str = ""
    description: str = ""
    default: Any = None  # training median (numeric) or most common category
    lo: float | None = None  # smallest accepted value
    hi: float | None = None  # largest accepted value
    train_min: float | None = None
    train_max: float | None = None
    p01: float | None = None
    p99: float | None = None
    categories: tuple[str, ...] = field(default_factory=tuple)
    numeric: bool = field(init=False, repr=False, compare=False)  # kind == "numeric"
    # The accepted and the training range with open ends as +-max float / +-inf, for
    # comparisons without None checks on the per-request path.
    accept_lo: float = field(init=False, repr=False, compare=False)
    accept_hi: float = field(init=False, repr=False, compare=False)
    seen_lo: float = field(init=False, repr=False, compare=False)
    seen_hi: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("numeric", self.kind == "numeric")
        put("accept_lo", self.lo if self.lo is not None else -sys.float_info.max)
        put("accept_hi", self.hi if self.hi is not None else sys.float_info.max)
        put("seen_lo", self.train_min if self.train_min is not None else -math.inf)
        put("seen_hi", self.train_max if self.train_max is not None else math.inf)

    def default_text(self) -> str:
        """The default rendered in the form (rounded medians, e.g. ``45.1``)."""
        if self.default is None:
            return ""
        if self.numeric:
            return format_number(float(self.default))
        return str(self.default)


def format_number(value: float) -> str:
    """A compact human rendering: 3 significant decimals, no trailing zeros."""
    if value is None or not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    magnitude = abs(value)
    digits = 2 if magnitude >= 100 else (3 if magnitude >= 1 else 4)
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def accepted_range(train_min: float | None, train_max: float | None,
                   unit: str = "") -> tuple[float | None, float | None]:
    """The generous accepted range ``(lo, hi)`` around a training range.

    A unit with a fixed range (:data:`UNIT_RANGES`) gives that range, widened to the
    training extremes where they lie outside it (values the model was trained on). Otherwise
    non-negative training data gives ``lo = 0``; negative minima allow ten
    times further down. The upper bound is ten times the training maximum
    (at least 10 when the maximum is small or zero, so a feature whose training
    values were all 0 still accepts small positive values).
    """
    if unit in UNIT_RANGES:
        lo, hi = UNIT_RANGES[unit]
        return (lo if train_min is None else min(lo, train_min)), (hi if train_max is None else max(hi, train_max))
    lo = hi = None
    if train_min is not None:
        lo = 0.0 if train_min >= 0 else ABSURD_FACTOR * train_min
    if train_max is not None:
        if train_max > 0:
            hi = ABSURD_FACTOR * train_max
        else:
            span = (train_max - train_min) if train_min is not None else 0.0
            hi = train_max + ABSURD_FACTOR * max(span, 1.0)
    return lo, hi


def field_specs(features: Sequence[Mapping[str, Any]]) -> list[FieldSpec]:
    """Build one :class:`FieldSpec` per model feature, in the model's order."""
    specs = []
    for feature in features:
        name = str(feature["name"])
        kind = str(feature.get("kind", "numeric"))
        label = str(feature.get("label") or name.replace("_", " ").capitalize())
        if kind == "categorical":
            categories = tuple(str(c) for c in (feature.get("categories") or ()) if c is not None)
            default = feature.get("default")
            if default is None and categories:
                default = categories[0]
            specs.append(FieldSpec(name=name, kind="categorical", label=label,
                                   unit=str(feature.get("unit") or ""),
                                   description=str(feature.get("description") or ""),
                                   default=default, categories=categories))
            continue
        train_min, train_max = _num(feature.get("min")), _num(feature.get("max"))
        unit = str(feature.get("unit") or "")
        lo, hi = accepted_range(train_min, train_max, unit)
        default = _num(feature.get("median"))
        if default is None:
            default = _num(feature.get("default"))
        specs.append(FieldSpec(
            name=name, kind="numeric", label=label, unit=unit,
            description=str(feature.get("description") or ""), default=default, lo=lo, hi=hi,
            train_min=train_min, train_max=train_max,
            p01=_num(feature.get("p01")), p99=_num(feature.get("p99")),
        ))
    return specs


def _parse_numeric(spec: FieldSpec, raw: Any) -> tuple[float | None, str | None]:
    if raw is None:
        return None, "required"
    if isinstance(raw, bool):
        return None, "must be a number, not true/false"
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:  # an integer beyond float range
            return None, "must be a finite number"
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None, "required"
        if len(text) > MAX_NUMBER_TEXT_LENGTH:
            return None, "must be a number"
        try:
            value = float(text)
        except ValueError:
            return None, "must be a number"
    else:
        return None, "must be a number"
    if not math.isfinite(value):
        return None, "must be a finite number"
    if spec.unit in UNIT_RANGES and not spec.accept_lo <= value <= spec.accept_hi:
        return None, f"must be from {format_number(spec.accept_lo)} to {format_number(spec.accept_hi)} (a {spec.unit})"
    if spec.lo is not None and value < spec.lo:
        if spec.lo == 0:
            return None, "must not be negative"
        return None, f"must be at least {format_number(spec.lo)}"
    if spec.hi is not None and value > spec.hi:
        seen = f" (training users reached at most {format_number(spec.train_max)})" \
            if spec.train_max is not None else ""
        return None, f"is implausibly large: at most {format_number(spec.hi)} accepted{seen}"
    return value, None


def _parse_categorical(spec: FieldSpec, raw: Any) -> tuple[str | None, str | None]:
    if raw is None:
        return None, "required"
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        return None, "must be text"
    if isinstance(raw, float) and not math.isfinite(raw):  # JSON NaN/Infinity literals
        return None, "must be text, not NaN or Infinity"
    text = str(raw).strip()
    if not text:
        return None, "required"
    if len(text) > MAX_TEXT_LENGTH:
        return None, f"must be at most {MAX_TEXT_LENGTH} characters"
    return text, None


def validate_record(specs: Sequence[FieldSpec], raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate one customer.

    In: the field specs and a mapping of raw values (form strings or JSON
    values); keys other than the features are ignored.
    Out: ``(record, errors)``: ``record`` maps each valid feature to a float
    (numeric) or a string (categorical; the select's "other" entry becomes
    :data:`OTHER_CATEGORY`, an unseen category); ``errors`` maps each bad
    feature name to a short message. The record is complete iff ``errors`` is empty.
    """
    record: dict[str, Any] = {}
    errors: dict[str, str] = {}
    get = raw.get if isinstance(raw, Mapping) else _nothing
    for spec in specs:
        raw_value = get(spec.name)
        if spec.numeric:
            kind = type(raw_value)  # JSON numbers within the accepted range: no parsing
            if kind is float or (kind is int and -_EXACT_INT <= raw_value <= _EXACT_INT):
                value = float(raw_value)
                if spec.accept_lo <= value <= spec.accept_hi:  # False for NaN and +-inf
                    record[spec.name] = value
                    continue
            value, error = _parse_numeric(spec, raw_value)
        else:
            value, error = _parse_categorical(spec, raw_value)
        if error:
            errors[spec.name] = error
        else:
            record[spec.name] = value
    return record, errors


def _nothing(name: str) -> None:
    return None


_EXACT_INT = 2**53


def range_notes(specs: Sequence[FieldSpec], record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """For a valid record: the categorical fields with a category not seen in training,
    and the numeric fields outside the training min..max (both in spec order)."""
    unknown = [s.name for s in specs if not s.numeric and s.categories
               and str(record.get(s.name)) not in s.categories]
    outside = [s.name for s in specs if s.numeric and (v := record.get(s.name)) is not None
               and not s.seen_lo <= v <= s.seen_hi]
    return unknown, outside


def default_record(specs: Sequence[FieldSpec]) -> dict[str, Any]:
    """The form's initial values: training medians and most common categories."""
    return {spec.name: spec.default for spec in specs}
