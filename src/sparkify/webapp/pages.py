"""HTML pages: dashboard and form (``master.html``), result (``go.html``), user look-up,
ranked at-risk list with CSV download, and plotly.js served from the plotly package."""

from __future__ import annotations

import io
import math
from pathlib import Path

import plotly
from flask import (Blueprint, Response, abort, current_app, redirect, render_template, request,
                   send_file, url_for)

from sparkify.webapp import service
from sparkify.webapp.state import ModelBundle, ScoresStore
from sparkify.webapp.validation import validate_record

bp = Blueprint("pages", __name__)

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
MAX_USER_ID_LENGTH = 100


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
    return {"metric_columns": summary_columns(table) if not table.empty else []}


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


def _record_from_scores(bundle: ModelBundle, row: dict) -> dict | None:
    """The feature record stored beside a user's score, when the scores file has every feature."""
    if not all(spec.name in row and row[spec.name] is not None for spec in bundle.specs):
        return None
    record, errors = validate_record(bundle.specs, row)
    return None if errors else record


@bp.get("/users")
def users():
    """Look a user up by ``userId`` in the latest scores."""
    bundle = _bundle()
    scores = _scores()
    user_id = request.args.get("userId", "").strip()
    frame = scores.frame()
    context = {"user_id": user_id, "scores_error": scores.error, "has_scores": frame is not None,
               "row": None, "result": None, "record": None, "form_url": None}
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
    record = _record_from_scores(bundle, row)
    if record is not None:
        context["record"] = record
        context["result"] = service.predict(bundle, [record], reasons=True)[0]
        context["form_url"] = url_for("pages.index", **record)
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
    return render_template("at_risk.html", rows=rows, error=None, show_all=show_all, page=page,
                           pages=pages, total=total, columns=columns,
                           scored=len(scores.frame() if scores.frame() is not None else []))


@bp.get("/at-risk.csv")
def at_risk_csv():
    """The at-risk list (``?all=1``: every scored user) as a CSV download, in rank order."""
    scores = _scores()
    show_all = request.args.get("all") in ("1", "true", "yes")
    frame = scores.at_risk(flagged_only=not show_all)
    if frame is None:
        abort(404)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
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
