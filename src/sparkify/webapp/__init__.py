"""The Flask + Bootstrap web app: dashboard, customer form, user look-up, at-risk list, JSON API.

``create_app(model_dir)`` loads the saved model once with the NumPy scorer
(no pyspark, no Java) and returns a WSGI app; ``sparkify serve`` and
``app/run.py`` run it under waitress.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from flask import Flask, request
from flask.json.provider import JSONProvider
from flask_bootstrap import Bootstrap5

from sparkify.plots import MODEL_NAMES
from sparkify.webapp.state import AppStartupError, ScoresStore, load_bundle
from sparkify.webapp.validation import format_number

__all__ = ["create_app", "AppStartupError", "MODEL_NAMES"]

log = logging.getLogger(__name__)

DEFAULT_CONFIG: dict[str, Any] = {
    "BOOTSTRAP_SERVE_LOCAL": True,  # Bootstrap 5 from the package's files, never a CDN
    "BOOTSTRAP_BTN_SIZE": "md",
    "MAX_CONTENT_LENGTH": 1024 * 1024,  # 1 MiB request bodies (pages, forms)
    "MAX_FORM_MEMORY_SIZE": 256 * 1024,
    "MAX_FORM_PARTS": 200,
    "MAX_BATCH": 1000,  # records per POST /api/predict
    # POST /api/predict's body limit is MAX_BATCH times this (api.body_limit): a customer
    # built from the model's medians is ~1.1 KB as compact JSON, ~1.6 KB pretty-printed
    "API_BYTES_PER_CUSTOMER": 4 * 1024,
    "AT_RISK_PAGE_SIZE": 50,
    "SEND_FILE_MAX_AGE_DEFAULT": 3600,
}

# Content-Security-Policy: everything from this origin; inline scripts/styles for
# Plotly's figure snippets. No third-party host can load anything.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "same-origin"), ("Content-Security-Policy", CSP))


class OrjsonProvider(JSONProvider):
    """Flask's JSON through orjson: several times faster than the standard library on the
    API's answers; keys keep their order, NumPy values serialise, NaN becomes null."""

    OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=str, option=self.OPTIONS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(orjson.dumps(obj, default=str, option=self.OPTIONS),
                                         mimetype="application/json")


def create_app(model_dir: str | Path | None = None, scores_path: str | Path | None = None,
               config: dict[str, Any] | None = None) -> Flask:
    """Build the web app for a saved model directory.

    In: ``model_dir`` (default ``model/classifier`` of the project);
    ``scores_path``: a ``sparkify score`` output (default
    ``<model_dir>/scores.csv`` when it exists; re-read whenever it changes);
    ``config``: Flask config overrides. ``config["SPARKIFY_MODEL"]`` may hold an
    already-loaded scorer object (used instead of loading ``model_dir``).
    Out: the Flask app. Raises :class:`AppStartupError` (clear message) when
    the model directory is missing or cannot be loaded.
    """
    from sparkify.config import DEFAULT_MODEL_DIR

    model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    config = dict(config or {})
    preloaded = config.pop("SPARKIFY_MODEL", None)
    bundle = load_bundle(model_dir, model=preloaded)
    if scores_path is None:
        scores_path = model_dir / "scores.csv"
    app = Flask(__name__)
    app.config.update(DEFAULT_CONFIG)
    app.config.update(config)
    app.json = OrjsonProvider(app)
    app.extensions["sparkify"] = bundle
    model = bundle.model
    edges = None
    if getattr(model, "medium_edge", None) is not None and getattr(model, "high_edge", None) is not None:
        edges = (float(model.medium_edge), float(model.high_edge))
    app.extensions["sparkify_scores"] = ScoresStore(scores_path, band_edges=edges)
    Bootstrap5(app)

    from sparkify.webapp import api, errors, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    errors.register(app)

    @app.after_request
    def security_headers(response):
        headers = response.headers
        if "Content-Security-Policy" not in headers:  # no view sets any of them itself
            headers.extend(SECURITY_HEADERS)
        return response

    @app.template_filter("fmt")
    def fmt(value):
        """Numbers compactly (no 1e+03 forms); booleans and text as they are."""
        if isinstance(value, bool) or value is None:
            return "–" if value is None else str(value)
        if isinstance(value, (int, float, np.integer, np.floating)):
            return format_number(float(value))
        return str(value)

    @app.template_filter("model_name")
    def model_name(model_type):
        """Spark class names as people say them."""
        return MODEL_NAMES.get(str(model_type), str(model_type))

    @app.context_processor
    def inject_globals():
        return {"bundle": bundle, "nav": request.endpoint or ""}

    log.info("sparkify app ready: %s (%s, threshold %.3f)", model_dir, bundle.model_type, bundle.threshold)
    return app
