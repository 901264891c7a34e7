"""HTML pages: dashboard and form (``master.html``), result (``go.html``), user look-up,
ranked at-risk list with CSV download, and plotly.js served from the plotly package.

The look-up and the at-risk list show each user's exact reasons (the model's per-feature
contributions, as ``go.html`` shows for a form entry), computed from the feature rows that
``sparkify score`` keeps beside the scores file (``scores.rows.parquet``).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly
from flask import Blueprint, Response, abort, current_app, redirect, render_template, request, send_file, url_for

from sparkify.webapp import service
from sparkify.webapp.state import ModelBundle, ScoresStore
from sparkify.webapp.validation import OTHER_CATEGORY, validate_record

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
MAX_USER_ID_LENGTH = 100
AT_RISK_REASONS = 3  # reasons per user on the at-risk list (the look-up shows as many as /go)
# The model loaded now must give the score the scores file holds for the same feature
# values (the NumPy scorer matches Spark to about 1e-9); otherwise the rows or the scores
# come from another run or model and reasons would explain a different number.
SCORE_TOLERANCE = 1e-6
# Cells a spreadsheet would run as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _bundle() -> ModelBundle:
    return current_app.extensions["sparkify"]


def _scores() -> ScoresStore:
    return current_app.extensions["sparkify_scores"]


def _form_values(bundle: ModelBundle, source) -> dict[str, str]:
    """The raw submitted values (as text) to re-display in the form."""
    values = {}
    for spec in bundle.specs:
        raw = source.get(spec.name)
        values[spec.name] = "" if raw is None else str(raw)[:200]
    return values


def _dashboard_context(bundle: ModelBundle) -> dict:
    from sparkify.plots import summary_columns

    table = bundle.metrics_table
    columns = summary_columns(table) if not table.empty else []
    # the rows / users / churner rows behind each group of figures the table shows
    prefixes = list(dict.fromkeys(c.split("_", 1)[0] for c in columns if c.startswith(("test_", "validation_"))))
    return {"metric_columns": columns, "figure_basis": bundle.figure_basis(prefixes)}


@bp.get("/")
def index():
    """The dashboard and the customer form, pre-filled with training medians."""
    bundle = _bundle()
    values = {s.name: s.default_text() for s in bundle.specs}
    # "Edit these values" links come back here with the customer in the query string.
    for name, raw in _form_values(bundle, request.args).items():
        if name in request.args:
            values[name] = raw
    return render_template("master.html", values=values, errors={}, **_dashboard_context(bundle))


@bp.route("/go", methods=["GET", "POST"])
def go():
    """Score the customer of the form: the result page, or the form again with messages (400)."""
    bundle = _bundle()
    source = request.values
    if request.method == "GET" and not any(spec.name in source for spec in bundle.specs):
        return redirect(url_for("pages.index"))
    record, errors = validate_record(bundle.specs, source)
    if errors:
        values = _form_values(bundle, source)
        shown = {}
        for name, message in errors.items():
            entered = values.get(name, "").strip()
            # Number inputs drop text they cannot parse: say what was entered.
            shown[name] = f"{message} (entered: “{entered[:40]}”)" if entered else message
        return render_template("master.html", values=values, errors=shown, **_dashboard_context(bundle)), 400
    try:
        result = service.predict(bundle, [record], reasons=True)[0]
    except ValueError as exc:  # the scorer's ScoringInputError: input it cannot score
        fields = list(getattr(exc, "fields", []) or [])
        errors = {name: "cannot be scored" for name in fields} or {bundle.specs[0].name: str(exc)}
        return render_template("master.html", values=_form_values(bundle, source), errors=errors,
                               **_dashboard_context(bundle)), 400
    entered = [(spec, service.display_value(record[spec.name])) for spec in bundle.specs]
    return render_template("go.html", result=result, entered=entered, record=record)


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def record_from_values(bundle: ModelBundle, values: Mapping[str, Any]) -> tuple[dict | None, str | None]:
    """A scorer record from stored feature values (a row of the rows file, or a scores row
    carrying every feature): numeric features as floats, categorical ones as text (a
    missing category becomes the "other" entry, the unseen bucket, as Spark's
    ``handleInvalid="keep"`` treats a null). Out: (record, None) or (None, why not)."""
    record: dict[str, Any] = {}
    missing, bad = [], []
    for spec in bundle.specs:
        if spec.name not in values:
            missing.append(spec.name)
            continue
        value = values[spec.name]
        if spec.numeric:
            number = _finite(value)
            if number is None:
                bad.append(spec.name)
            else:
                record[spec.name] = number
        elif value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
            record[spec.name] = OTHER_CATEGORY
        else:
            record[spec.name] = str(value)
    if missing:
        return None, (f"the stored feature row lacks {', '.join(missing[:5])}"
                      f"{' and others' if len(missing) > 5 else ''}: it was scored by another model; "
                      "run `sparkify score` again with this model")
    if bad:
        return None, f"the stored feature row has no finite value for {', '.join(bad[:5])}"
    return record, None


def _score_mismatch(result: dict, row: Mapping[str, Any]) -> str | None:
    """Why reasons computed now would not explain the stored score (None when they do)."""
    for key in ("score", "probability"):
        stored, now = _finite(row.get(key)), _finite(result.get(key))
        if stored is None or now is None:
            continue
        if abs(stored - now) > SCORE_TOLERANCE * max(1.0, abs(stored)):
            return (f"the model loaded now gives this user's stored features a {key} of {now:.4f}, "
                    f"but the scores file says {stored:.4f}: the scores and the feature rows come from "
                    "another model or another run, so the reasons would explain a different number; "
                    "run `sparkify score` again")
        return None
    return None


def explain_users(bundle: ModelBundle, scores: ScoresStore, rows: Sequence[Mapping[str, Any]],
                  top: int) -> tuple[dict[str, dict], dict[str, str]]:
    """The exact reasons of each scored user in ``rows`` (rows of the scores file), with one
    batched scorer call, the same one ``/go`` makes for a form entry.

    Feature values come from the rows file beside the scores, else from the scores row
    itself when it carries every feature. Out: (userId -> {"record", "result"}: the
    record and ``service.predict``'s answer with ``reasons``; userId -> why there are
    no reasons for that user). Never raises for bad or missing data."""
    ids = [str(row.get("userId")) for row in rows]
    try:
        stored = scores.feature_rows(ids)
    except Exception as exc:  # defensive: a broken rows file must not break the page
        log.warning("feature rows unavailable: %s", exc)
        stored = {}
    names = [spec.name for spec in bundle.specs]
    records: dict[str, dict] = {}
    by_id: dict[str, Mapping[str, Any]] = {}
    why: dict[str, str] = {}
    for uid, row in zip(ids, rows):
        values = stored.get(uid)
        if values is None and all(name in row for name in names):
            values = row
        if values is None:
            if scores.rows_error:
                why[uid] = scores.rows_error
            else:
                rows_name = scores.rows_path.name if scores.rows_path else "the rows file"
                why[uid] = f"{rows_name} holds no feature row for this user"
            continue
        record, problem = record_from_values(bundle, values)
        if record is None:
            why[uid] = problem or "no usable feature values"
            continue
        records[uid], by_id[uid] = record, row
    explained: dict[str, dict] = {}
    if not records:
        return explained, why
    try:
        results = service.predict(bundle, list(records.values()), reasons=True, top=top)
    except Exception as exc:  # the scorer refusing a stored row must not break the page
        log.warning("cannot explain stored feature rows: %s", exc)
        for uid in records:
            why[uid] = f"reasons could not be computed: {str(exc)[:200]}"
        return explained, why
    for (uid, record), result in zip(records.items(), results):
        problem = _score_mismatch(result, by_id[uid])
        if problem:
            why[uid] = problem
        else:
            explained[uid] = {"record": record, "result": result}
    return explained, why


@bp.get("/users")
def users():
    """Look a user up by ``userId`` in the latest scores."""
    bundle = _bundle()
    scores = _scores()
    user_id = request.args.get("userId", "").strip()
    frame = scores.frame()
    context = {"user_id": user_id, "scores_error": scores.error, "has_scores": frame is not None,
               "row": None, "result": None, "record": None, "form_url": None, "reasons_note": None}
    if not user_id:
        return render_template("user.html", **context)
    if len(user_id) > MAX_USER_ID_LENGTH:
        context["message"] = f"A userId has at most {MAX_USER_ID_LENGTH} characters."
        return render_template("user.html", **context), 400
    if frame is None:
        context["message"] = "No scores are loaded, so users cannot be looked up."
        return render_template("user.html", **context), 404
    row = scores.lookup(user_id)
    if row is None:
        context["message"] = "No user with this userId in the latest scores."
        return render_template("user.html", **context), 404
    context["row"] = row
    explained, why = explain_users(bundle, scores, [row], top=service.DEFAULT_TOP_REASONS)
    found = explained.get(str(row["userId"]))
    if found is not None:
        context["record"] = found["record"]
        context["result"] = found["result"]
        context["form_url"] = url_for("pages.index", **found["record"])
    else:
        context["reasons_note"] = why.get(str(row["userId"]))
    return render_template("user.html", **context)


AT_RISK_COLUMNS = ("rank", "userId", "probability", "decision", "band", "top_features")


@bp.get("/at-risk")
def at_risk():
    """The ranked list of users the model flags (``?all=1``: every scored user), paginated."""
    scores = _scores()
    show_all = request.args.get("all") in ("1", "true", "yes")
    frame = scores.at_risk(flagged_only=not show_all)
    if frame is None:
        return render_template("at_risk.html", rows=None, error=scores.error, show_all=show_all,
                               page=1, pages=1, total=0, columns=AT_RISK_COLUMNS)
    size = current_app.config["AT_RISK_PAGE_SIZE"]
    total = len(frame)
    pages = max(1, math.ceil(total / size))
    page = request.args.get("page", 1, type=int) or 1
    page = min(max(page, 1), pages)
    columns = [c for c in AT_RISK_COLUMNS if c in frame]
    part = frame.iloc[(page - 1) * size: page * size]
    rows = part.to_dict("records")
    explained, why = explain_users(_bundle(), scores, rows, top=AT_RISK_REASONS)
    reasons = {uid: item["result"].get("reasons") or [] for uid, item in explained.items()}
    reasons_note = None
    if rows and not reasons:  # one message for the page rather than one per row
        reasons_note = next(iter(why.values()), None)
    if reasons:  # the exact reasons replace the "furthest from typical" hint
        columns = [c for c in columns if c != "top_features"] + ["reasons"]
    scored = scores.frame()
    return render_template("at_risk.html", rows=rows, error=None, show_all=show_all, page=page,
                           pages=pages, total=total, columns=columns, reasons=reasons,
                           reasons_missing=why, reasons_note=reasons_note,
                           scored=len(scored) if scored is not None else 0)


def _neutral_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` safe to open in a spreadsheet: every text cell (and column
    name) starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading
    ``'`` so it is shown as text, never run as a formula (OWASP CSV injection). Numbers
    stay numbers, negative ones included; only strings are changed.

    For files meant for people only (the ``/at-risk.csv`` download): the scores file that
    ``sparkify score`` writes is a data file and keeps its values as they are."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if series.dtype.kind in "biufcmM":  # numbers, booleans, times: never formulas
            continue
        out[column] = series.astype(object).map(_neutral_cell)
    out.columns = [_neutral_cell(c) for c in out.columns]
    return out


@bp.get("/at-risk.csv")
def at_risk_csv():
    """The at-risk list (``?all=1``: every scored user) as a CSV download, in rank order,
    with cells a spreadsheet would run as formulas neutralised (:func:`neutralise_formulas`)."""
    scores = _scores()
    show_all = request.args.get("all") in ("1", "true", "yes")
    frame = scores.at_risk(flagged_only=not show_all)
    if frame is None:
        abort(404)
    buffer = io.StringIO()
    # CRLF rows (RFC 4180): a field holding a CR or LF is then quoted, never split
    neutralise_formulas(frame).to_csv(buffer, index=False, lineterminator="\r\n")
    name = "scored_users.csv" if show_all else "at_risk_users.csv"
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


@bp.get("/vendor/plotly.min.js")
def plotly_js():
    """plotly.js from the installed plotly package (no CDN; cached by the browser)."""
    return send_file(PLOTLY_JS, mimetype="text/javascript", max_age=86400)


@bp.get("/api")
def api_index():
    """A tiny human-readable page documenting the JSON API."""
    bundle = _bundle()
    example = {s.name: (round(float(s.default), 3) if s.numeric else s.default) for s in bundle.specs}
    return render_template("api.html", example=example)
