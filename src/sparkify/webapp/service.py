"""Score validated customer records with the NumPy scorer; shape the answer for pages and API.

In: the :class:`~sparkify.webapp.state.ModelBundle` and clean records (from
:func:`sparkify.webapp.validation.validate_record`). Out: plain dicts (JSON
ready): probability, score, decision, band, threshold, reasons and notes on
unseen categories or values outside the training range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from sparkify.webapp.state import ModelBundle, _plain
from sparkify.webapp.validation import OTHER_CATEGORY, range_notes

DEFAULT_TOP_REASONS = 5


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def reason_dict(reason: Any) -> dict[str, Any]:
    """A scorer ``Reason`` (feature, value, contribution, direction) as a plain dict."""
    value = _plain(getattr(reason, "value", None))
    if value == OTHER_CATEGORY:
        value = "other"
    return {
        "feature": str(reason.feature),
        "value": value,
        "contribution": _float(reason.contribution),
        "direction": str(getattr(reason, "direction", "")),
    }


def predict(bundle: ModelBundle, records: Sequence[dict], reasons: bool = True,
            top: int = DEFAULT_TOP_REASONS) -> list[dict[str, Any]]:
    """Score ``records`` (one scorer call for all) and explain each when ``reasons``.

    Out: one dict per record, in order.
    """
    if not records:
        return []
    model = bundle.model
    if hasattr(model, "predict_records"):  # JSON-ready dicts, no pandas; one pipeline pass
        scored = model.predict_records(list(records), reasons=reasons, top=top)
    else:
        frame = model.predict(list(records))
        scored = frame.to_dict("records")
    specs = bundle.specs
    threshold = bundle.threshold
    out = []
    for record, row in zip(records, scored):
        probability = _float(row.get("probability"))
        score = _float(row.get("score")) if row.get("score") is not None else probability
        decision = row.get("decision")
        item: dict[str, Any] = {
            "probability": probability,
            "score": score,
            "decision": bool(decision) if decision is not None else None,
            "label": ("churn" if decision else "stay") if decision is not None else None,
            "band": _plain(row.get("band")),
            "threshold": threshold,
        }
        if reasons:
            found = row.get("reasons")
            if found is None:
                found = model.explain(record, top=top)
            item["reasons"] = [reason_dict(r) for r in found]
        unknown, outside = range_notes(specs, record)
        if unknown:
            item["unknown_categories"] = unknown
        if outside:
            item["outside_training_range"] = outside
        out.append(item)
    return out


def display_value(value: Any) -> Any:
    """How an entered value is shown back (the "other" select entry as text)."""
    if value == OTHER_CATEGORY:
        return "other (not seen in training)"
    if isinstance(value, (float, np.floating)):
        from sparkify.webapp.validation import format_number

        return format_number(float(value))
    return value
