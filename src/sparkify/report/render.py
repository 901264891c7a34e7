"""The report as one self-contained HTML page.

In:  a :class:`~sparkify.report.collect.ReportData` and an optional title.
Out: the page's text: the Jinja template ``templates_report/report.html.j2`` filled with
     the report's tables (:mod:`sparkify.report.tables`) and figures
     (:mod:`sparkify.report.figures`, each an HTML fragment), with Bootstrap's CSS (from
     the ``bootstrap-flask`` package) and Plotly's JavaScript inlined once, so the file
     opens offline.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from sparkify.modeling.evaluate import counts_text, interval_text, spread_sizes
from sparkify.report.collect import ReportData
from sparkify.report.figures import build_figures
from sparkify.report.tables import (
    TABLE_COLUMNS,
    backtest_relation,
    class_weighted,
    comparison_rows,
    figure_table,
    fmt,
    period_dates,
    split_table,
)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates_report"
TEMPLATE_NAME = "report.html.j2"


def render_report(data: ReportData, title: str | None = None) -> str:
    """The complete, self-contained HTML page of a :class:`ReportData`."""
    import jinja2
    from plotly.offline import get_plotlyjs

    figs = build_figures(data)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    markup = jinja2.utils.markupsafe.Markup
    context = report_context(data, title)
    context.update({
        "figs": {k: markup(figure_html(v)) for k, v in figs.items()},
        "bootstrap_css": markup(_asset_text("bootstrap5/css/bootstrap.min.css")),
        "plotly_js": markup(get_plotlyjs()),
    })
    return env.get_template(TEMPLATE_NAME).render(**context)


def report_context(data: ReportData, title: str | None = None) -> dict[str, Any]:
    """The template's variables, figures and inlined assets aside: the data itself, the
    log's span in days, the tables (parts of the training table, model comparison,
    in-time / out-of-time side by side, ceiling, backtest, weeks before cancellation)
    and the metrics blocks they come from."""
    metrics = data.metrics
    best = metrics.get("best") or {}
    label = metrics.get("label") or data.model_json.get("label") or {}
    bt = data.backtest
    pdates = period_dates(label)
    ceiling = metrics.get("ceiling") if isinstance(metrics.get("ceiling"), dict) else None
    periods = best.get("periods") or {}
    side_names, side_table = period_table(best, pdates)
    return {
        "title": title or "Sparkify churn report",
        "counts_text": counts_text,
        "interval_text": interval_text,
        "spread_sizes": spread_sizes,
        "splits": split_table(data.features, metrics),
        "pdates": pdates,
        "side_columns": side_names,
        "side_table": side_table,
        "periods": periods,
        "calibration": best.get("calibration") if isinstance(best.get("calibration"), dict) else None,
        "class_weighted": class_weighted(metrics),
        "ceiling_table": (figure_table([("saved model", best.get("test")), ("true ceiling", ceiling.get("test"))])
                          if ceiling and isinstance(ceiling.get("test"), dict) else []),
        "backtest": bt,
        "backtest_table": backtest_table(bt, best, pdates) if bt else [],
        "backtest_columns": [f"backtest at {str(bt.get('as_of'))[:10]}", "model's own test rows"] if bt else [],
        "backtest_relation": backtest_relation(bt, label) if bt else "",
        "data": data,
        "q": data.quality,
        "days": log_days(data.quality),
        "groups": data.groups,
        "rows": comparison_rows(metrics),
        "columns": TABLE_COLUMNS,
        "best": best,
        "label": label,
        "metrics": metrics,
        "model_json": data.model_json,
        "ceiling": ceiling,
        "label_comparison": metrics.get("label_comparison") if isinstance(metrics.get("label_comparison"), dict) else None,
        "seed_spread": metrics.get("seed_spread") if isinstance(metrics.get("seed_spread"), dict) else None,
        "evaluations": data.evaluations,
        "week_table": week_table(data.weekly),
        "n_features": len(data.model_json.get("features") or []),
    }


def log_days(quality: dict[str, Any]) -> float | None:
    """Days between the log's first and last event (its quality summary's ``first_ts``
    and ``last_ts``), or None when they are missing."""
    if not (quality.get("first_ts") and quality.get("last_ts")):
        return None
    t0 = datetime.strptime(quality["first_ts"], "%Y-%m-%dT%H:%M:%SZ")
    t1 = datetime.strptime(quality["last_ts"], "%Y-%m-%dT%H:%M:%SZ")
    return (t1 - t0).total_seconds() / 86400


def week_table(weekly: pd.DataFrame) -> list[dict[str, Any]]:
    """The weeks-before-cancellation table: one dict per week (``week``, ``churned``,
    ``stayed``: that group's row of ``weekly`` as a dict, or None)."""
    table = []
    if len(weekly):
        for w in sorted(weekly["week"].unique()):
            entry = {"week": int(w)}
            for churn, key in ((1, "churned"), (0, "stayed")):
                part = weekly[(weekly["week"] == w) & (weekly["churn"] == churn)]
                entry[key] = part.iloc[0].to_dict() if len(part) else None
            table.append(entry)
    return table


def period_table(best: dict[str, Any], pdates: dict[str, str]) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, rows) of the saved model's test figures side by side: in time, out
    of time (each when measured) and all test rows, with their observation dates."""
    periods = best.get("periods") or {}
    columns = [(name, periods.get(key)) for key, name in (("in_time", "in time"), ("out_of_time", "out of time"))
               if periods.get(key)]
    columns.append(("all test rows", best.get("test")))
    dates = {"in time": pdates["in_time"], "out of time": pdates["out_of_time"], "all test rows": pdates["all"]}
    return [name for name, _ in columns], figure_table(columns, dates)


def backtest_table(bt: dict[str, Any], best: dict[str, Any], pdates: dict[str, str]) -> list[dict[str, Any]]:
    """Rows of the backtest's figures beside the model's own test rows, with their dates."""
    name = f"backtest at {str(bt.get('as_of'))[:10]}"
    return figure_table([(name, bt.get("figures")), ("model's own test rows", best.get("test"))],
                        {name: str(bt.get("as_of"))[:10], "model's own test rows": pdates["all"]})


def figure_html(fig) -> str:
    """A figure as an HTML fragment (a div and its inline script; plotly.js not included)."""
    return fig.to_html(full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


def _asset_text(package_path: str) -> str:
    import flask_bootstrap

    path = Path(flask_bootstrap.__file__).resolve().parent / "static" / package_path
    return path.read_text(encoding="utf-8")
