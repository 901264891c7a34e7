"""The report's tables and sentences, from a model directory's metrics and training table.

In:  ``metrics.json`` blocks (a test block: ``rows``, ``users``, ``churners``, ``pr_auc``,
     ``confusion``, ``reliability``, ...), ``model.json``'s ``label``, ``backtest.json``,
     and ``features.parquet`` (one row per user and observation date, with ``split`` and
     ``period``).
Out: plain rows (lists of dicts) and display text for the Jinja template: the parts of the
     training table, the model comparison, side-by-side figure tables, counts and dates as
     text, the backtest's relation to the model's dates, the saved model's importances.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

#: The parts of a training table (features.parquet ``split`` and ``period``), in display order.
PART_NAMES = {
    ("train", "in_time"): "train",
    ("unused", "out_of_time"): "unused: train users, latest date",
    ("test", "in_time"): "test, in time",
    ("test", "out_of_time"): "test, out of time",
}
#: Columns of the model comparison table: (metrics key under "test", header, format).
TABLE_COLUMNS = (
    ("f1", "Churn F1", "{:.3f}"), ("precision", "Precision", "{:.3f}"), ("recall", "Recall", "{:.3f}"),
    ("pr_auc", "PR-AUC", "{:.3f}"), ("roc_auc", "ROC-AUC", "{:.3f}"), ("accuracy", "Accuracy", "{:.3f}"),
    ("weighted_f1", "Weighted F1", "{:.3f}"),
)
#: The figures of a block of scored rows, in table order: (key, label, help).
FIGURE_ROWS = (
    ("rows", "rows (user, date)", "observations the figures rest on"),
    ("users", "users", "distinct users among them"),
    ("churners", "churner rows", "rows whose user cancels within the horizon; share = base rate"),
    ("pr_auc", "PR-AUC", "area under precision-recall; a random ranking scores the base rate"),
    ("roc_auc", "ROC-AUC", "0.5 = random ranking"),
    ("top10", "top 10 %: precision (lift)", "the highest-scored tenth of the rows"),
    ("flagged", "flagged at the threshold", "rows above the saved decision threshold"),
    ("precision", "precision", "at the saved threshold"),
    ("recall", "recall", "at the saved threshold"),
    ("f1", "churn-class F1", "at the saved threshold"),
    ("brier", "Brier score", "mean (probability - outcome)²; lower is better"),
    ("log_loss", "log loss", "lower is better"),
    ("expected", "expected vs realized churners", "sum of the probabilities vs churner rows (z = gap / its sd)"),
    ("bins_within", "reliability bins within the noise",
     "bins whose mean prediction lies in the 95 % interval of the observed rate"),
    ("calibration_p", "calibration test p",
     "chi-square test of the reliability curve against the diagonal; at least 0.05: within the noise"),
)


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (for None, booleans, text and NaN/inf)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _counts(block: dict[str, Any] | None) -> dict[str, Any]:
    b = block or {}
    return {"rows": b.get("rows"), "users": b.get("users"), "churners": b.get("churners")}


def fmt(value: Any, spec: str = "{:,}") -> str:
    """``value`` formatted with ``spec`` for display ('–' for None and NaN/inf, the plain
    text when the spec does not apply)."""
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    try:
        return spec.format(value)
    except (TypeError, ValueError):
        return str(value)


def split_table(features: pd.DataFrame | None, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of the model's table: one dict per part (``name``, ``rows``, ``users``,
    ``churners`` = churner rows, ``churner_users``, ``dates`` = distinct observation
    dates, ``what``), in the order train, unused, test in time, test out of time, and a
    ``total``. From features.parquet when it has split and period columns, else from
    metrics.json's ``data`` counts (without the unused part)."""
    what = {
        "train": "training users' rows before the latest date: fitted, tuned and calibrated on (folds by user)",
        "unused: train users, latest date": "kept out of training so the latest date is out of time for every model",
        "test, in time": "held-out users at the dates training also covers",
        "test, out of time": "held-out users at the latest date, which no training row is from",
    }
    rows: list[dict[str, Any]] = []
    if features is not None and {"split", "churn"} <= set(features.columns) and "period" in features:
        for (split, period), name in PART_NAMES.items():
            part = features[(features["split"] == split) & (features["period"] == period)]
            if not len(part):
                continue
            rows.append({"name": name, "rows": int(len(part)), "users": int(part["userId"].nunique()),
                         "churners": int(part["churn"].sum()),
                         "churner_users": int(part.loc[part["churn"] == 1, "userId"].nunique()),
                         "dates": int(part["as_of_ms"].nunique()) if "as_of_ms" in part else None,
                         "what": what[name]})
        f = features
        rows.append({"name": "total", "rows": int(len(f)), "users": int(f["userId"].nunique()),
                     "churners": int(f["churn"].sum()),
                     "churner_users": int(f.loc[f["churn"] == 1, "userId"].nunique()),
                     "dates": int(f["as_of_ms"].nunique()) if "as_of_ms" in f else None, "what": ""})
        return rows
    d = metrics.get("data") or {}
    for prefix, name in (("train_", "train"), ("test_in_time_", "test, in time"),
                         ("test_out_of_time_", "test, out of time")):
        if d.get(f"{prefix}rows"):
            rows.append({"name": name, "rows": d.get(f"{prefix}rows"), "users": d.get(f"{prefix}users"),
                         "churners": d.get(f"{prefix}churner_rows", d.get(f"{prefix}churners")),
                         "churner_users": d.get(f"{prefix}churning_users"), "dates": None, "what": what[name]})
    if d.get("rows"):
        rows.append({"name": "total", "rows": d.get("rows"), "users": d.get("users"),
                     "churners": d.get("churner_rows"), "churner_users": d.get("churning_users"), "dates": None,
                     "what": ""})
    return rows


def comparison_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the model comparison table from metrics.json: each family's test figures,
    the tuned best, the true ceiling and the constant baseline (when present).

    Each row: ``name``, ``kind`` (family/best/ceiling/baseline), the :data:`TABLE_COLUMNS`
    keys (float or None), ``train_seconds``, ``threshold``, and ``rows``, ``users``,
    ``churners`` (the test rows it was measured on)."""
    rows: list[dict[str, Any]] = []
    best = metrics.get("best") or {}
    models = metrics.get("models") or {}
    base_counts = _counts(best.get("test"))
    for key, fig in models.items():
        if not isinstance(fig, dict):
            continue
        test = fig.get("test") or {}
        row = {"name": fig.get("name") or key, "kind": "family", "family": key,
               "train_seconds": finite_number(fig.get("train_seconds")), "threshold": finite_number(fig.get("threshold")),
               "chosen": key == best.get("family"), **_counts(test)}
        row.update({k: finite_number(test.get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    if best:
        test = best.get("test") or {}
        src = best.get("selected_from")
        row = {"name": f"{best.get('name', 'best')} (saved{', tuned' if src == 'tuning' else ''})",
               "kind": "best", "family": best.get("family"),
               "train_seconds": finite_number(best.get("train_seconds")), "threshold": finite_number(best.get("threshold")),
               "chosen": True, **_counts(test)}
        row.update({k: finite_number(test.get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    ceiling = metrics.get("ceiling")
    if isinstance(ceiling, dict) and isinstance(ceiling.get("test"), dict):
        row = {"name": "True ceiling (simulator's probability)", "kind": "ceiling",
               "family": None, "train_seconds": None, "threshold": finite_number(ceiling.get("threshold")),
               "chosen": False, **_counts(ceiling["test"])}
        row.update({k: finite_number(ceiling["test"].get(k)) for k, _, _ in TABLE_COLUMNS})
        rows.append(row)
    base = metrics.get("baseline")
    if isinstance(base, dict):
        row = {"name": "Constant predictor (knows nothing)", "kind": "baseline", "family": None,
               "train_seconds": None, "threshold": None, "chosen": False, **base_counts}
        row.update({k: None for k, _, _ in TABLE_COLUMNS})
        row["f1"] = finite_number(base.get("f1_flag_all"))
        row["pr_auc"] = finite_number(base.get("pr_auc"))
        row["roc_auc"] = finite_number(base.get("roc_auc"))
        rows.append(row)
    return rows


def _dates_text(dates: list[str]) -> str:
    days = [d[:10] for d in dates]
    if not days:
        return "–"
    if len(days) == 1:
        return days[0]
    return f"{len(days)} dates, {days[0]} to {days[-1]}"


def period_dates(label: dict[str, Any]) -> dict[str, str]:
    """The observation dates of each part of the test set, as text: ``in_time`` (every
    date but the latest), ``out_of_time`` (the latest, when there are two or more) and
    ``all``."""
    dates = sorted(label.get("dates") or [])
    if len(dates) >= 2:
        return {"in_time": _dates_text(dates[:-1]), "out_of_time": _dates_text(dates[-1:]), "all": _dates_text(dates)}
    return {"in_time": _dates_text(dates), "out_of_time": "–", "all": _dates_text(dates)}


def figure_cell(block: dict[str, Any] | None, key: str) -> str:
    """One figure of a metrics block as display text ('–' when absent)."""
    b = block or {}
    if not b:
        return "–"
    if key in ("rows", "users"):
        return fmt(b.get(key))
    if key == "churners":
        rows, ch = b.get("rows"), b.get("churners")
        if ch is None:
            return "–"
        return f"{int(ch):,}" + (f" ({ch / rows:.1%})" if rows else "")
    if key == "top10":
        t = b.get("top10") or {}
        if finite_number(t.get("precision")) is None:
            return "–"
        lift = finite_number(t.get("lift"))
        return f"{t['precision']:.3f}" + (f" ({lift:.2f}×)" if lift is not None else "")
    if key == "flagged":
        c = b.get("confusion") or {}
        if not c:
            return "–"
        return f"{int(c.get('tp', 0)) + int(c.get('fp', 0)):,} ({int(c.get('tp', 0)):,} churners)"
    if key == "expected":
        e, r = finite_number(b.get("expected_churners")), b.get("realized_churners")
        if e is None or r is None:
            return "–"
        z = finite_number(b.get("z"))
        return f"{e:,.1f} vs {int(r):,}" + (f" (z {z:+.1f})" if z is not None else "")
    if key == "bins_within":
        if b.get("bins") is None:
            return "–"
        return f"{b.get('bins_within', 0)} of {b['bins']}"
    spec = "{:.4f}" if key in ("brier", "log_loss") else "{:.2f}" if key == "calibration_p" else "{:.3f}"
    return fmt(finite_number(b.get(key)), spec)


def figure_table(columns: list[tuple[str, dict[str, Any] | None]], dates: dict[str, str] | None = None
                 ) -> list[dict[str, Any]]:
    """Rows of a side-by-side table: one per :data:`FIGURE_ROWS` entry (plus the
    observation dates when given, keyed like ``columns``' names), each with ``label``,
    ``help``, ``key`` and ``cells`` (one text per column)."""
    out = []
    if dates is not None:
        out.append({"key": "dates", "label": "observation dates", "help": "the dates t of the rows",
                    "cells": [dates.get(name, "–") for name, _ in columns]})
    for key, label, help_ in FIGURE_ROWS:
        cells = [figure_cell(block, key) for _, block in columns]
        if all(c == "–" for c in cells):
            continue
        out.append({"key": key, "label": label, "help": help_, "cells": cells})
    return out


def backtest_relation(backtest: dict[str, Any], label: dict[str, Any]) -> str:
    """How a backtest's date relates to the model's observation dates, in a sentence."""
    as_of = str(backtest.get("as_of") or "")[:10]
    dates = sorted(d[:10] for d in (backtest.get("model_dates") or label.get("dates") or []))
    if not dates or not as_of:
        return ""
    if as_of > dates[-1]:
        overlap = backtest.get("label_overlap_days") or 0
        if overlap:
            return (f"{as_of} is after the model's latest observation date ({dates[-1]}), but the model's "
                    f"training labels reach {overlap} days into this label period: users who cancel then also "
                    "taught the model, so these figures are somewhat optimistic. A clean out-of-time test starts "
                    f"a horizon after {dates[-1]}.")
        return (f"{as_of} is after the model's latest observation date ({dates[-1]}) and its horizon: a clean "
                "out-of-time test, on a period the model never saw.")
    return (f"{as_of} is not after the model's latest observation date ({dates[-1]}): training rows of that "
            "date or the days before it were fitted on, so these figures are optimistic. Backtest at a later date.")


def importance_series(metrics: dict[str, Any]) -> tuple[pd.Series, str]:
    """(feature -> importance or coefficient, kind) of the saved model, from metrics.json."""
    best = metrics.get("best") or {}
    items = best.get("importances") or []
    if isinstance(items, dict):
        return pd.Series(items, dtype="float64"), "importance"
    values = {}
    kind = "importance"
    for item in items:
        if isinstance(item, dict) and finite_number(item.get("value")) is not None:
            values[str(item.get("feature") or item.get("slot"))] = float(item["value"])
            kind = item.get("kind", kind)
    return pd.Series(values, dtype="float64"), kind


def class_weighted(metrics: dict[str, Any]) -> bool:
    """Whether the saved model was fitted with class weights: the class-weight choice kept
    them, or (no choice made) its ``weightCol`` is the class-weight column, or (neither
    recorded) training weighted the classes at all."""
    best = metrics.get("best") or {}
    choice = best.get("class_weights")
    if isinstance(choice, dict) and "kept" in choice:
        return bool(choice["kept"])
    col = (best.get("params") or {}).get("weightCol")
    if col is not None:
        return col == "weight"
    weights = metrics.get("class_weights") or {}
    return any(abs(float(v) - 1.0) > 1e-9 for v in weights.values())
