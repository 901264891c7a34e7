"""Error pages and JSON errors: clean 4xx answers, and a 500 that never leaks a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    404: "There is no page at this address.",
    405: "This address does not accept that method.",
    413: "The request is too large.",
    500: "Something went wrong on our side. The error was logged.",
}


def wants_json() -> bool:
    """API paths (and clients that prefer JSON) get JSON errors; browsers get a page."""
    if request.path.startswith("/api/") or request.path == "/api":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def error_response(code: int, title: str, message: str, extra: dict | None = None):
    """Render an error as JSON (``{"error", "message", ...}``) or as the error page."""
    if wants_json():
        body = {"error": title, "message": message}
        body.update(extra or {})
        return jsonify(body), code
    return render_template("error.html", code=code, title=title, message=message), code


def register(app: Flask) -> None:
    """Install the handlers on ``app``."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        if code == 413:
            limit = request.max_content_length  # the view's own limit (the API's), else the app's
            message = f"The request is too large (limit {limit // 1024} KiB)." if limit else MESSAGES[413]
        else:
            message = MESSAGES.get(code) or exc.description or exc.name
        response = make_response(error_response(code, exc.name, message))
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        if isinstance(exc, HTTPException):  # pragma: no cover - routed above
            return http_error(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, InternalServerError().name, MESSAGES[500])
