"""``sparkify report``: one self-contained HTML report of the data and the models.

    sparkify report EVENTS --model DIR --out reports/ [--master URL]

In:  an event log (anything :func:`sparkify.dataset.load_events` reads) and a model
     directory written by ``sparkify train`` (docs/model-directory.md).
Out: ``<out>/sparkify_report.html`` (or ``--out`` itself when it ends in ``.html``): one
     file that opens offline. Plotly's JavaScript and Bootstrap's CSS are inlined once;
     every chart is a Plotly figure from :mod:`sparkify.plots` (the charts the web app's
     dashboard uses).

Sections: data quality and the training table (rows of (user, observation date), users,
churner rows), exploration (churners vs stayers), models (comparison of the families, the
saved model's in-time and out-of-time test figures side by side, its calibration with a
reliability curve, curves and importances), the true ceiling on simulated logs (the
simulator's own probability of churning within the horizon, on the same test rows) and,
when the model directory holds a ``backtest.json`` (``sparkify backtest``), the backtest.
Every figure names the rows, users and churners it rests on.

Where the work happens: every aggregation over events runs in Spark
(:mod:`sparkify.report_data`); only aggregated tables reach the driver. The model
section reads the model directory's small artifacts and scores its test users with the
JVM-free scorer (:func:`sparkify.scorer.load_model`).

The steps, one module each (every name is importable from ``sparkify.report`` itself):

- :mod:`sparkify.report.command`    the command: arguments, input checks, the atomic write;
                                    :func:`write_report` from Python
- :mod:`sparkify.report.collect`    :class:`ReportData` and :func:`collect_report_data`: the
                                    log aggregated in Spark, the model directory read
- :mod:`sparkify.report.model_dir`  the model directory's artifacts, the test rows scored
                                    (:class:`ModelEvaluation`), the simulator's ground truth
- :mod:`sparkify.report.tables`     the tables and sentences of the page
- :mod:`sparkify.report.figures`    every chart, keyed by name (:func:`build_figures`)
- :mod:`sparkify.report.render`     the Jinja template filled in (:func:`render_report`)
"""

from sparkify.modeling.evaluate import counts_text
from sparkify.report.collect import ReportData, collect_report_data
from sparkify.report.command import (
    REPORT_NAME,
    check_model_dir,
    configure_report,
    resolve_out_path,
    run_report,
    write_atomic,
    write_report,
)
from sparkify.report.figures import (
    CATEGORY_FEATURES,
    CATEGORY_NAMES,
    LOG_FEATURES,
    MAIN_FEATURES,
    MIN_BIN_ROWS,
    WEEKLY_MEASURES,
    WEEKLY_UNITS,
    build_figures,
    chart_bins,
)
from sparkify.report.model_dir import (
    PERIOD_NAMES,
    ModelEvaluation,
    evaluate_saved_model,
    model_section,
    read_backtest,
    read_json,
    read_model_artifacts,
    truth_path_for,
    truth_summary,
)
from sparkify.report.render import TEMPLATE_DIR, TEMPLATE_NAME, figure_html, render_report
from sparkify.report.tables import (
    FIGURE_ROWS,
    PART_NAMES,
    TABLE_COLUMNS,
    backtest_relation,
    class_weighted,
    comparison_rows,
    figure_cell,
    figure_table,
    importance_series,
    period_dates,
    split_table,
)

__all__ = [
    "CATEGORY_FEATURES", "CATEGORY_NAMES", "FIGURE_ROWS", "LOG_FEATURES", "MAIN_FEATURES", "MIN_BIN_ROWS",
    "PART_NAMES", "PERIOD_NAMES", "REPORT_NAME", "TABLE_COLUMNS", "TEMPLATE_DIR", "TEMPLATE_NAME",
    "WEEKLY_MEASURES", "WEEKLY_UNITS",
    "ModelEvaluation", "ReportData",
    "backtest_relation", "build_figures", "chart_bins", "check_model_dir", "class_weighted",
    "collect_report_data", "comparison_rows", "configure_report", "counts_text", "evaluate_saved_model",
    "figure_cell", "figure_html", "figure_table", "importance_series", "model_section", "period_dates",
    "read_backtest", "read_json", "read_model_artifacts", "render_report", "resolve_out_path", "run_report",
    "split_table", "truth_path_for", "truth_summary", "write_atomic", "write_report",
]
