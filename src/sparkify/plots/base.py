"""The shared look of every chart: colours, group labels, names and the common layout.

In:  label columns (0/1, bool or text), column names, a figure and its title.
Out: "stayed" / "churned" labels, display names, and figures with the common layout
     (``plotly_white``, legend on top); :func:`empty_figure` for missing data.

Conventions: the label column is ``churn`` (1 = churned, 0 = stayed); churners are drawn
in :data:`CHURN_COLOR`, stayers in :data:`STAY_COLOR`.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

CHURN_COLOR = "#d6452f"
STAY_COLOR = "#2f6fb0"
NEUTRAL_COLOR = "#6c757d"
GROUP_NAMES = {0: "stayed", 1: "churned"}
GROUP_COLORS = {"stayed": STAY_COLOR, "churned": CHURN_COLOR}
_TEMPLATE = "plotly_white"


def layout(fig: go.Figure, title: str | None, height: int | None = None) -> go.Figure:
    """``fig`` with the common look (template, title at the left, margins, legend on top)
    and, when given, its height; the same figure is returned."""
    fig.update_layout(
        template=_TEMPLATE,
        title={"text": title, "x": 0.01, "xanchor": "left"} if title else None,
        margin={"l": 60, "r": 20, "t": 80 if title else 50, "b": 45},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.06, "xanchor": "right", "x": 1},
        font={"size": 12},
    )
    if height:
        fig.update_layout(height=height)
    return fig


def empty_figure(message: str, title: str | None = None) -> go.Figure:
    """A blank figure carrying ``message`` in its centre (for missing data)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": NEUTRAL_COLOR})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return layout(fig, title, height=260)


_GROUP_WORDS = {"churner": "churned", "churners": "churned", "churned": "churned", "churn": "churned",
                "1": "churned", "1.0": "churned", "true": "churned",
                "stayer": "stayed", "stayers": "stayed", "stayed": "stayed", "stay": "stayed",
                "0": "stayed", "0.0": "stayed", "false": "stayed"}


def group_label(values: pd.Series) -> pd.Series:
    """Map a churn column (0/1, bool, or text such as "churner"/"stayer") to
    "stayed" / "churned" labels; anything else keeps its text."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return pd.to_numeric(values, errors="coerce").map(
            lambda v: GROUP_NAMES.get(int(v), "unknown") if pd.notna(v) else "unknown")
    text = values.astype(str)
    return text.map(lambda v: _GROUP_WORDS.get(v.strip().lower(), v))


def pretty_name(name: str) -> str:
    """``songs_per_day`` -> ``Songs per day`` (axis and table labels)."""
    text = str(name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def row_unit(frame: pd.DataFrame, user: str = "userId") -> str:
    """'rows' when ``frame`` holds several rows per user (one per user and observation
    date, as a training table does), else 'users'."""
    if user in frame and frame[user].duplicated().any():
        return "rows"
    return "users"
