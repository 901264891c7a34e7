"""Exploration charts: churners against stayers in the data.

In:  small aggregated pandas tables: a training table (one row per user, or per user and
     observation date, with a 0/1 ``churn`` column), daily activity, the page mix and the
     weeks before cancellation (:mod:`sparkify.report_data`).
Out: one ``plotly.graph_objects.Figure`` per call: churn rate (overall and by category),
     feature distributions, activity over time, page mix, behaviour before cancellation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sparkify.plots.base import (
    CHURN_COLOR,
    GROUP_COLORS,
    NEUTRAL_COLOR,
    empty_figure,
    group_label,
    layout,
    pretty_name,
    row_unit,
)


def churn_rate(features: pd.DataFrame, label: str = "churn", by: str | None = None,
               title: str | None = "Churn rate", unit: str | None = None) -> go.Figure:
    """Rows (or users) that churned vs stayed, with the churn rate in the title.

    In: a table with a 0/1 ``label`` column: one row per user, or one per (user,
    observation date) as in a training table; optional ``by`` column (e.g. ``split`` or
    ``level``) to show one bar pair per value; ``unit``: what a row is, 'users' or 'rows'
    (default: 'rows' when a ``userId`` repeats, and the title then also gives the users).
    Out: a bar chart of counts per group (percentages on the bars).
    """
    if features is None or len(features) == 0 or label not in features:
        return empty_figure("no labelled users", title)
    unit = unit or row_unit(features)
    keep = [label] + ([by] if by else []) + (["userId"] if "userId" in features and by != "userId" else [])
    frame = features[keep].dropna(subset=[label]).copy()
    frame["group"] = group_label(frame[label])
    rate = float(frame[label].astype(float).mean())
    of = f"{len(frame):,} {unit}"
    if unit == "rows" and "userId" in frame:
        of += f" of {frame['userId'].nunique():,} users"
    full_title = f"{title}: {rate:.1%} of {of}" if title else None
    fig = go.Figure()
    if by:
        counts = frame.groupby([by, "group"], observed=True).size().unstack("group", fill_value=0)
        totals = counts.sum(axis=1)
        for group in ("stayed", "churned"):
            if group not in counts:
                continue
            share = counts[group] / totals
            fig.add_bar(x=[str(i) for i in counts.index], y=counts[group], name=group,
                        marker_color=GROUP_COLORS[group],
                        text=[f"{s:.0%}" for s in share], textposition="auto",
                        hovertemplate="%{x}: %{y:,} " + unit + "<extra>" + group + "</extra>")
        fig.update_layout(barmode="stack", xaxis_title=pretty_name(by))
    else:
        counts = frame["group"].value_counts().reindex(["stayed", "churned"], fill_value=0)
        fig.add_bar(x=list(counts.index), y=list(counts.values),
                    marker_color=[GROUP_COLORS[g] for g in counts.index],
                    text=[f"{c:,} ({c / max(1, counts.sum()):.1%})" for c in counts.values],
                    textposition="auto", showlegend=False)
    fig.update_yaxes(title_text=unit)
    return layout(fig, full_title, height=320)


def churn_rate_by_category(features: pd.DataFrame, columns: Sequence[str], label: str = "churn",
                           cols: int = 2, min_users: int = 1, names: Mapping[str, str] | None = None,
                           title: str | None = "Churn rate by category", unit: str | None = None) -> go.Figure:
    """Churn rate of each value of categorical ``columns`` (e.g. level, gender, os,
    region), one panel per column, the number of users on each bar.

    In: one row per user with a 0/1 ``label`` column; categories with fewer than
    ``min_users`` users are left out; ``names`` gives panel titles (default: the column
    name); ``unit``: what a row is ('users' or 'rows'; default: 'rows' when a ``userId``
    repeats), shown as n on each bar. Out: a grid of bar panels (rate in %), with the
    overall churn rate dotted.
    """
    columns = [c for c in columns if features is not None and c in features]
    if features is None or len(features) == 0 or not columns or label not in features:
        return empty_figure("no categorical features to compare", title)
    unit = unit or row_unit(features)
    n_unit = "" if unit == "users" else f" {unit}"
    overall = float(features[label].astype(float).mean())
    cols = max(1, min(cols, len(columns)))
    rows = math.ceil(len(columns) / cols)
    names = names or {}
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[names.get(c, pretty_name(c)) for c in columns],
                        horizontal_spacing=0.1, vertical_spacing=0.22 if rows > 1 else 0.1)
    for i, column in enumerate(columns):
        r, c = divmod(i, cols)
        stats = (features.assign(_value=features[column].fillna("Unknown").astype(str))
                 .groupby("_value")[label].agg(["mean", "size"]))
        stats = stats[stats["size"] >= min_users].sort_values("mean", ascending=False)
        fig.add_trace(go.Bar(
            x=list(stats.index), y=(stats["mean"] * 100).round(1), marker_color=CHURN_COLOR,
            text=[f"{m:.0%}<br>n={n:,}{n_unit}" for m, n in zip(stats["mean"], stats["size"])],
            textposition="auto", showlegend=False, customdata=list(stats["size"]),
            hovertemplate="%{x}: %{y:.1f} % churn of %{customdata:,} " + unit + "<extra></extra>"),
            row=r + 1, col=c + 1)
        fig.add_hline(y=overall * 100, line_dash="dot", line_color=NEUTRAL_COLOR, row=r + 1, col=c + 1)
        fig.update_yaxes(title_text="churn rate (%)" if c == 0 else None, rangemode="tozero",
                         row=r + 1, col=c + 1)
    return layout(fig, title, height=max(320, 300 * rows))


def group_comparison(features: pd.DataFrame, columns: Sequence[str], label: str = "churn",
                     kind: str = "box", units: Mapping[str, str] | None = None,
                     cols: int = 3, title: str | None = "Churners vs stayers",
                     log_columns: Sequence[str] = ()) -> go.Figure:
    """Distributions of numeric ``columns`` for churners and stayers, one panel each.

    In: one row per user (or per user and date) with a 0/1 ``label`` column; the numeric
    columns to show; ``kind`` one of ``box``, ``violin``, ``hist``; optional units per
    column (axis titles); ``log_columns``: panels drawn on a log value axis (positive
    ratios with heavy tails). Out: a grid of panels.
    """
    if kind not in ("box", "violin", "hist"):
        raise ValueError(f"kind must be box, violin or hist, not {kind!r}")
    columns = [c for c in columns if c in features]
    if features is None or len(features) == 0 or not columns or label not in features:
        return empty_figure("no feature rows to compare", title)
    units = units or {}
    groups = group_label(features[label])
    cols = max(1, min(cols, len(columns)))
    rows = math.ceil(len(columns) / cols)
    fig = make_subplots(
        rows=rows, cols=cols,
        subplot_titles=[pretty_name(c) + (f" ({units[c]})" if units.get(c) else "") for c in columns],
        horizontal_spacing=0.08, vertical_spacing=0.16 if rows > 1 else 0.1,
    )
    for i, column in enumerate(columns):
        r, c = divmod(i, cols)
        values = pd.to_numeric(features[column], errors="coerce")
        for group in ("stayed", "churned"):
            v = values[groups == group].dropna()
            common = dict(name=group, legendgroup=group, showlegend=(i == 0),
                          marker_color=GROUP_COLORS[group])
            if kind == "box":
                trace = go.Box(y=v, boxpoints="outliers", marker_size=3, **common)
            elif kind == "violin":
                trace = go.Violin(y=v, box_visible=True, meanline_visible=True, points=False,
                                  line_color=GROUP_COLORS[group], **common)
            else:
                trace = go.Histogram(x=v, opacity=0.6, histnorm="probability", nbinsx=30, **common)
            fig.add_trace(trace, row=r + 1, col=c + 1)
        if column in log_columns:
            if kind == "hist":
                fig.update_xaxes(type="log", row=r + 1, col=c + 1)
            else:
                fig.update_yaxes(type="log", row=r + 1, col=c + 1)
    if kind == "hist":
        fig.update_layout(barmode="overlay")
    return layout(fig, title, height=max(320, 290 * rows))


def feature_histogram(features: pd.DataFrame, column: str, label: str = "churn",
                      unit: str | None = None, bins: int = 40) -> go.Figure:
    """One feature's distribution for churners and stayers (overlaid, normalised)."""
    return group_comparison(features, [column], label=label, kind="hist",
                            units={column: unit} if unit else None, cols=1,
                            title=pretty_name(column))


def _pick(frame: pd.DataFrame, candidates: Iterable[str]) -> str | None:
    lower = {c.lower(): c for c in frame.columns}
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def activity_over_time(activity: pd.DataFrame, date: str | None = None, group: str | None = None,
                       values: Sequence[str] | None = None,
                       title: str | None = "Activity over time") -> go.Figure:
    """Daily activity of churners and stayers, one panel per measure.

    In: a long table with a date column (default: the first of ``date``,
    ``day``, ``ts``), an optional group column (``group``/``churn``; 0/1 or text)
    and numeric measures (default: every other numeric column, e.g.
    ``active_users``, ``events``). Out: stacked line panels sharing the date axis.
    """
    if activity is None or len(activity) == 0:
        return empty_figure("no activity data", title)
    date = date or _pick(activity, ("date", "day", "ts", "event_date"))
    if date is None:
        return empty_figure("no date column in the activity data", title)
    group = group or _pick(activity, ("group", "churn", "label", "cohort"))
    if values is None:
        values = [c for c in activity.columns if c not in (date, group)
                  and pd.api.types.is_numeric_dtype(activity[c])]
    if not values:
        return empty_figure("no numeric measures in the activity data", title)
    frame = activity.copy()
    frame[date] = pd.to_datetime(frame[date], errors="coerce", utc=True)
    frame = frame.dropna(subset=[date]).sort_values(date)
    if group is not None:
        frame["_group"] = group_label(frame[group])
    else:
        frame["_group"] = "all users"
    fig = make_subplots(rows=len(values), cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[pretty_name(v) for v in values])
    for i, value in enumerate(values):
        for name, part in frame.groupby("_group", sort=True):
            fig.add_trace(go.Scatter(
                x=part[date], y=part[value], mode="lines", name=str(name), legendgroup=str(name),
                showlegend=(i == 0), line={"color": GROUP_COLORS.get(str(name), NEUTRAL_COLOR)},
            ), row=i + 1, col=1)
    return layout(fig, title, height=max(320, 230 * len(values) + 60))


def page_mix(mix: pd.DataFrame, value: str = "share", exclude: Sequence[str] = ("NextSong",),
             title: str | None = "Page mix: share of each group's events") -> go.Figure:
    """How churners and stayers spend their events, page by page.

    In: a long table with ``page``, a 0/1 ``churn`` column and ``value`` (``share`` of
    the group's events, or ``per_user``), e.g. from
    :func:`sparkify.report_data.page_mix`; pages in ``exclude`` are left out (NextSong
    dwarfs the rest). Out: horizontal grouped bars, most frequent page on top.
    """
    if mix is None or len(mix) == 0 or value not in mix or "page" not in mix:
        return empty_figure("no page counts", title)
    frame = mix[~mix["page"].isin(list(exclude))].copy()
    if frame.empty:
        return empty_figure("no page counts", title)
    frame["group"] = group_label(frame["churn"])
    order = frame.groupby("page")[value].mean().sort_values().index.tolist()
    fig = go.Figure()
    pct = value == "share"
    for group in ("stayed", "churned"):
        part = frame[frame["group"] == group].set_index("page").reindex(order)
        y = part[value] * (100 if pct else 1)
        fig.add_bar(y=order, x=y, orientation="h", name=group, marker_color=GROUP_COLORS[group],
                    hovertemplate="%{y}: %{x:.2f}" + (" %" if pct else "") + "<extra>" + group + "</extra>")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="% of the group's events" if pct else pretty_name(value))
    return layout(fig, title, height=max(320, 34 * len(order) + 120))


def weeks_before_churn(weekly: pd.DataFrame, measures: Sequence[str],
                       units: Mapping[str, str] | None = None,
                       title: str | None = "Behaviour in the weeks before cancellation") -> go.Figure:
    """How behaviour changes in the weeks before churn, churners vs stayers.

    In: one row per (``churn``, ``week``) with ``week`` = 1 for the 7 days just before
    the cancellation (stayers: a matched calendar date) and the ``measures`` columns
    (e.g. from :func:`sparkify.report_data.weeks_before_churn`); optional ``users``
    column shown on hover. Out: one line panel per measure, time running left to right
    (x = -week).
    """
    if weekly is None or len(weekly) == 0 or "week" not in weekly or "churn" not in weekly:
        return empty_figure("no churners to align on", title)
    measures = [m for m in measures if m in weekly]
    if not measures:
        return empty_figure("no measures to show", title)
    units = units or {}
    frame = weekly.sort_values("week").copy()
    frame["group"] = group_label(frame["churn"])
    cols = min(2, len(measures))
    rows = math.ceil(len(measures) / cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.1,
                        vertical_spacing=0.2 if rows > 1 else 0.1,
                        subplot_titles=[pretty_name(m) + (f" ({units[m]})" if units.get(m) else "")
                                        for m in measures])
    weeks = sorted(frame["week"].unique())
    for i, measure in enumerate(measures):
        r, c = divmod(i, cols)
        for group in ("stayed", "churned"):
            part = frame[frame["group"] == group]
            if part.empty:
                continue
            users = part["users"] if "users" in part else pd.Series([None] * len(part))
            fig.add_trace(go.Scatter(
                x=-part["week"], y=part[measure], mode="lines+markers", name=group,
                legendgroup=group, showlegend=(i == 0), line={"color": GROUP_COLORS[group]},
                customdata=list(users),
                hovertemplate="week %{x}: %{y:.2f}<br>%{customdata} users<extra>" + group + "</extra>",
            ), row=r + 1, col=c + 1)
        fig.update_xaxes(tickvals=[-w for w in weeks], ticktext=[f"-{w}" for w in weeks],
                         title_text="weeks before cancellation" if r == rows - 1 else None,
                         row=r + 1, col=c + 1)
    return layout(fig, title, height=max(340, 290 * rows + 40))
