"""Everything the report shows, gathered: the log aggregated in Spark and the model directory read.

In:  a SparkSession, an event log (anything :func:`sparkify.dataset.load_events` reads), a
     model directory written by ``sparkify train`` and the weeks of the before-churn view.
Out: one :class:`ReportData`: the log's quality summary, small pandas tables of the
     exploration (:mod:`sparkify.report_data`; only aggregated rows reach the driver) and
     the model section (:func:`sparkify.report.model_dir.model_section`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from sparkify.progress import Progress, quiet
from sparkify.report.model_dir import ModelEvaluation, model_section


@dataclass
class ReportData:
    """Everything the report shows; small (aggregates, one row per user at most)."""

    events_path: str
    model_dir: str
    quality: dict[str, Any]                      # DataQuality.to_dict() of this load
    groups: dict[str, int]                       # users / churners / stayers (ever cancelled)
    daily: pd.DataFrame                          # date, churn, events, songs, active_users
    pages: pd.DataFrame                          # page, churn, events, users, share, per_user
    weekly: pd.DataFrame                         # churn, week, users, ... rates
    features: pd.DataFrame | None                # the model's table: one row per (user, date), churn, split, period, score
    model_json: dict[str, Any]
    metrics: dict[str, Any]
    model_quality: dict[str, Any] | None         # data_quality.json of the model directory
    evaluations: list[ModelEvaluation] = field(default_factory=list)
    truth: dict[str, Any] | None = None          # simulator ground truth summary
    backtest: dict[str, Any] | None = None       # backtest.json of the model directory (sparkify backtest)
    notes: list[str] = field(default_factory=list)
    weeks: int = 6
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    timings: dict[str, float] = field(default_factory=dict)


def collect_report_data(spark, events_path: str | Path, model_dir: str | Path, weeks: int = 6,
                        progress: Progress | None = None) -> ReportData:
    """Load the log, aggregate it in Spark and read the model directory.

    In: a SparkSession, the event log path, a model directory, the number of weeks of
    the before-churn view. Out: :class:`ReportData` (small pandas tables and dicts).
    Raises FileNotFoundError / ValueError from the loader for a missing or empty log."""
    from sparkify import report_data as rd
    from sparkify.dataset import load_events

    progress = progress or quiet()
    model_dir = Path(model_dir)
    with progress.stage("load"):
        loaded = load_events(spark, str(events_path))
    try:
        with progress.stage("explore (Spark aggregations)"):
            events = loaded.events
            groups_df = rd.user_groups(events).cache()
            groups = rd.group_sizes(groups_df)
            daily = rd.daily_activity(events, groups_df)
            pages = rd.page_mix(events, groups_df)
            weekly = rd.weeks_before_churn(events, groups_df, weeks=weeks)
            groups_df.unpersist()
    finally:
        loaded.unpersist()
    with progress.stage("model"):
        section = model_section(model_dir, events_path)
    model_quality = section["model_quality"]
    if model_quality and (model_quality.get("users"), model_quality.get("churners")) != \
            (loaded.quality.users, loaded.quality.churners):
        section["notes"].append(
            f"The model was trained on a different log ({model_quality.get('users')} users, "
            f"{model_quality.get('churners')} churners; this log: {loaded.quality.users} users, "
            f"{loaded.quality.churners} churners). Exploration describes this log; the model section "
            "describes the model's own test rows.")
    return ReportData(
        events_path=str(events_path), quality=loaded.quality.to_dict(),
        groups=groups, daily=daily, pages=pages, weekly=weekly, weeks=weeks,
        timings=progress.timings, **section,
    )

