"""Did the model find the drivers the simulator planted? (satisfaction runs only)

In:  the drivers of a ``--churn-model satisfaction`` log (:func:`sparkify.simulator.satisfaction.planted_drivers`,
     kept in ``metrics["ceiling"]["planted"]``), the saved model's importances and a
     model directory with its scored feature rows.
Out: a ``drivers`` dict for ``metrics["ceiling"]``: each driver's true importance (the
     mean absolute deviation of its part of the log-hazard over the test rows), its best rank among the
     model's inputs (by |importance| or |coefficient|, one-hot columns folded into their
     feature), its best rank by the mean absolute contribution over the test rows (the
     per-customer contributions the reasons come from: the model-side twin of the true
     importance), and how often it is the first reason that raises an at-risk test
     customer's score (the per-customer reasons the web app shows, from the NumPy scorer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

TOP_FEATURES = 10  # "among the top features": a driver's best feature ranks within these
AT_RISK_SHARE = 0.1  # the customers whose reasons are checked: the test rows scored highest
MIN_AT_RISK_ROWS = 20
#: A driver "leads" when its true importance is at least this share of the strongest one's.
LEADING_SHARE = 0.5


def importance_order(importances: list[dict]) -> list[str]:
    """The model's input features from most to least important (``importances`` as in
    metrics.json, largest |value| first; ``"level = paid"`` counts as ``level``)."""
    ranked = sorted(importances, key=lambda r: -abs(float(r.get("value") or 0.0)))
    order: list[str] = []
    for item in ranked:
        base = str(item.get("feature") or item.get("slot")).split(" = ")[0]
        if base not in order:
            order.append(base)
    return order


def first_raising_reason(reasons: list[Any]) -> str | None:
    """The feature of the first reason that raises the score, or None."""
    for r in reasons:
        if getattr(r, "direction", None) == "raises":
            return r.feature
    return None


def driver_check(model_dir: str | Path, features: pd.DataFrame, importances: list[dict],
                 planted: list[dict]) -> dict[str, Any]:
    """In: a model directory, its feature rows (features.parquet: ``split``, ``score`` and
    the raw inputs), the model's importances and the planted drivers (each with its
    ``true_importance``: the mean absolute deviation of its part of the log-hazard over
    the test rows).
    Out: ``top`` (the :data:`TOP_FEATURES` cut), ``top_features``, ``drivers`` (each
    planted driver with its ``rank`` among the model's inputs (None when unused),
    ``leading`` (its true importance is at least :data:`LEADING_SHARE` of the strongest
    driver's), ``in_top``, ``contribution_rank`` (its best rank by mean |contribution| over
    the test rows) and ``first_reason_share``), ``contribution_top_features``, ``leading``
    and ``leading_in_top``
    (how many leading drivers the model ranks among its top inputs), ``reason_rows``
    (at-risk test rows explained) and ``reason_driver_share`` (of them, the share whose
    first raising reason measures a planted driver)."""
    from sparkify.scorer import load_model

    order = importance_order(importances)
    rank = {f: i + 1 for i, f in enumerate(order)}
    model = load_model(model_dir)
    test = features[features["split"] == "test"].sort_values("score", ascending=False)
    n = min(len(test), max(MIN_AT_RISK_ROWS, round(AT_RISK_SHARE * len(test))))
    inputs = [c for c in model.feature_names if c in test.columns]
    # one pass over the test rows: every input's contribution, largest |contribution| first
    rows = model.predict_records(test[inputs].to_dict("records"), reasons=True, top=len(inputs)) if len(test) else []
    contributions = pd.DataFrame([{r.feature: r.contribution for r in row["reasons"]} for row in rows],
                                 columns=inputs, dtype=float).fillna(0.0)
    by_contribution = list(contributions.abs().mean().sort_values(ascending=False, kind="stable").index)
    contribution_rank = {f: i + 1 for i, f in enumerate(by_contribution)}
    firsts = [first_raising_reason(row["reasons"][:3]) for row in rows[:n]]  # the at-risk rows' top 3 reasons
    strongest = max((d.get("true_importance") or 0.0 for d in planted), default=0.0)
    out_drivers, driver_features = [], set()
    for d in sorted(planted, key=lambda d: -(d.get("true_importance") or 0.0)):
        ranks = [rank[f] for f in d["features"] if f in rank]
        best = min(ranks) if ranks else None
        by_c = [contribution_rank[f] for f in d["features"] if f in contribution_rank]
        share = sum(f in d["features"] for f in firsts) / len(firsts) if firsts else None
        driver_features.update(d["features"])
        out_drivers.append({**d, "rank": best, "in_top": best is not None and best <= TOP_FEATURES,
                            "contribution_rank": min(by_c) if by_c else None,
                            "leading": (d.get("true_importance") or 0.0) >= LEADING_SHARE * strongest > 0,
                            "first_reason_share": share})
    leading = [d for d in out_drivers if d["leading"]]
    return {
        "top": TOP_FEATURES, "top_features": order[:TOP_FEATURES], "drivers": out_drivers,
        "contribution_top_features": by_contribution[:TOP_FEATURES],
        "in_top": sum(d["in_top"] for d in out_drivers), "leading": len(leading),
        "leading_in_top": sum(d["in_top"] for d in leading), "reason_rows": len(firsts),
        "reason_driver_share": (sum(f in driver_features for f in firsts) / len(firsts)) if firsts else None,
    }


def drivers_note(check: dict[str, Any]) -> str:
    """One line: the leading planted drivers the model ranks among its top inputs, and how
    often a planted driver is an at-risk customer's first reason."""
    ranked = ", ".join(f"{d['driver']} #{d['rank']}" for d in check["drivers"] if d["in_top"])
    share = check.get("reason_driver_share")
    reasons = (f"; the first reason raising {share:.0%} of the {check['reason_rows']} at-risk test rows' scores is "
               "a planted driver") if share is not None else ""
    return (f"{check['leading_in_top']} of the {check['leading']} leading planted drivers among the model's top "
            f"{check['top']} inputs (in the top: {ranked or 'none'}){reasons}")
