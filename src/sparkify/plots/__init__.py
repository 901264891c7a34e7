"""Plotly charts shared by the web app, the HTML report and the notebook.

Every function takes small, already-aggregated data (pandas objects or plain dicts read
from a model directory) and returns a ``plotly.graph_objects.Figure``. Nothing here reads
files, starts Spark or renders HTML: callers decide where a figure goes
(``fig.to_html(include_plotlyjs=False)`` in the app, a self-contained page in the report).

Conventions: the label column is ``churn`` (1 = churned, 0 = stayed); churners are drawn
in :data:`CHURN_COLOR`, stayers in :data:`STAY_COLOR`.

The charts by family (every name is importable from ``sparkify.plots`` itself):

- :mod:`sparkify.plots.base`         colours, group labels, display names, the common layout,
                                     :func:`empty_figure`
- :mod:`sparkify.plots.exploration`  churners vs stayers in the data: churn rate (overall, by
                                     category), distributions, activity over time, page mix,
                                     the weeks before cancellation
- :mod:`sparkify.plots.models`       the models compared: :func:`metrics_frame`, score bars and
                                     table, importances, one customer's contributions
- :mod:`sparkify.plots.evaluation`   a model's held-out scores: score histogram, ROC,
                                     precision-recall, confusion matrix, calibration,
                                     reliability, gains and lift
"""

from sparkify.plots.base import (
    CHURN_COLOR,
    GROUP_COLORS,
    GROUP_NAMES,
    NEUTRAL_COLOR,
    STAY_COLOR,
    empty_figure,
    group_label,
    pretty_name,
)
from sparkify.plots.evaluation import (
    calibration_plot,
    confusion_matrix,
    gains_chart,
    precision_recall_curve,
    reliability_curve,
    roc_curve,
    score_distribution,
)
from sparkify.plots.exploration import (
    activity_over_time,
    churn_rate,
    churn_rate_by_category,
    feature_histogram,
    group_comparison,
    page_mix,
    weeks_before_churn,
)
from sparkify.plots.models import (
    MODEL_NAMES,
    PREFERRED_METRICS,
    contributions,
    feature_importances,
    metrics_frame,
    metrics_table,
    model_comparison,
    summary_columns,
)

__all__ = [
    "CHURN_COLOR", "GROUP_COLORS", "GROUP_NAMES", "MODEL_NAMES", "NEUTRAL_COLOR", "PREFERRED_METRICS",
    "STAY_COLOR",
    "activity_over_time", "calibration_plot", "churn_rate", "churn_rate_by_category", "confusion_matrix",
    "contributions", "empty_figure", "feature_histogram", "feature_importances", "gains_chart",
    "group_comparison", "group_label", "metrics_frame", "metrics_table", "model_comparison", "page_mix",
    "precision_recall_curve", "pretty_name", "reliability_curve", "roc_curve", "score_distribution",
    "summary_columns", "weeks_before_churn",
]
