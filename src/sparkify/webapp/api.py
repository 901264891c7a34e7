"""The JSON API: ``POST /api/predict``, ``GET /api/health``, ``GET /api/model``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Blueprint, current_app, jsonify, request

from sparkify import __version__
from sparkify.webapp import service
from sparkify.webapp.state import ModelBundle, ScoresStore
from sparkify.webapp.validation import validate_record

bp = Blueprint("api", __name__)

MAX_TOP = 50


def _bundle() -> ModelBundle:
    return current_app.extensions["sparkify"]


def _bad_request(message: str, **extra: Any):
    body = {"error": "Bad Request", "message": message}
    body.update(extra)
    return jsonify(body), 400


FLAG_VALUES = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}


def body_limit(config: Mapping[str, Any]) -> int:
    """Bytes ``POST /api/predict`` reads: room for ``MAX_BATCH`` customers, so a full batch
    fits and one customer more gets the count message (400), not a byte-limit 413."""
    return int(config["MAX_BATCH"]) * int(config["API_BYTES_PER_CUSTOMER"])


def _flag(name: str, default: bool) -> bool | None:
    """A yes/no query parameter (1/0, true/false, yes/no, on/off; any case): its value,
    ``default`` when absent, None when it is anything else."""
    value = request.args.get(name)
    if value is None:
        return default
    return FLAG_VALUES.get(value.strip().lower())


@bp.post("/predict")
def predict():
    """Score one customer (a JSON object) or several (a JSON list of objects).

    Query: ``reasons=0`` skips the explanations (a yes/no flag: 1/0, true/false, yes/no,
    on/off; anything else is a 400); ``top=N`` (1..50, default 5) reasons per customer.
    Out: one result object, or a list in input order.
    Bad input: 400 with ``fields`` (the bad field names, with a message each); more than
    ``MAX_BATCH`` customers: 400; a body beyond :func:`body_limit`: 413.
    """
    bundle = _bundle()
    request.max_content_length = body_limit(current_app.config)  # 413 beyond
    raw = request.get_data(cache=False)
    try:
        payload = orjson.loads(raw)
    except ValueError:  # orjson.JSONDecodeError; strict JSON only
        try:  # NaN/Infinity literals and huge integers: parsed, so validation names the field
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            return _bad_request("The body must be JSON: one customer object or a list of customer objects.")
    top_text = request.args.get("top", str(service.DEFAULT_TOP_REASONS)).strip()
    try:
        top = int(top_text) if top_text.isascii() and len(top_text) <= 3 else 0
    except ValueError:
        top = 0
    if not 1 <= top <= MAX_TOP:
        return _bad_request(f"top must be a whole number from 1 to {MAX_TOP}.", fields={"top": "invalid"})
    reasons = _flag("reasons", True)
    if reasons is None:
        return _bad_request("reasons must be 1, true, yes or on (explain) or 0, false, no or off (skip).",
                            fields={"reasons": "invalid"})
    single = isinstance(payload, dict)
    items = [payload] if single else payload
    if not isinstance(items, list) or not items:
        return _bad_request("The body must be one customer object or a non-empty list of customer objects.")
    limit = current_app.config["MAX_BATCH"]
    if len(items) > limit:
        return _bad_request(f"At most {limit} customers per request.")
    records, problems = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append({"index": index, "fields": {"_": "must be an object of feature values"}})
            continue
        record, errors = validate_record(bundle.specs, item)
        if errors:
            problems.append({"index": index, "fields": errors})
        records.append(record)
    if problems:
        if single:
            fields = problems[0]["fields"]
            return _bad_request("Invalid customer: " + ", ".join(sorted(fields)) + ".", fields=fields)
        names = sorted({name for p in problems for name in p["fields"]})
        return _bad_request(f"{len(problems)} of {len(items)} customers are invalid.",
                            fields=names, records=problems)
    try:
        results = service.predict(bundle, records, reasons=reasons, top=top)
    except ValueError as exc:  # the scorer's ScoringInputError: input it cannot score
        fields = list(getattr(exc, "fields", []) or [])
        return _bad_request(f"These customers cannot be scored: {exc}", fields=fields)
    for item, result in zip(items, results):
        user_id = item.get("userId", item.get("id"))
        if isinstance(user_id, (str, int)) and not isinstance(user_id, bool) and len(str(user_id)) <= 100:
            result["userId"] = str(user_id)
    return jsonify(results[0] if single else results)


@bp.get("/health")
def health():
    """Liveness and what is loaded: model type, threshold, feature count, scores."""
    bundle = _bundle()
    scores: ScoresStore = current_app.extensions["sparkify_scores"]
    frame = scores.frame()
    return jsonify({
        "status": "ok",
        "version": __version__,
        "model_type": bundle.model_type,
        "threshold": bundle.threshold,
        "features": len(bundle.specs),
        "scores_loaded": frame is not None,
        "scored_users": int(len(frame)) if frame is not None else 0,
    })


@bp.get("/model")
def model_info():
    """The model's metadata (model.json), metrics.json and data_quality.json."""
    bundle = _bundle()
    model = bundle.model
    metadata = dict(getattr(model, "metadata", {}) or {})
    metadata.pop("features", None)
    return jsonify({
        "model_type": bundle.model_type,
        "score_kind": getattr(model, "score_kind", None),
        "threshold": bundle.threshold,
        "features": [
            {k: v for k, v in {
                "name": s.name, "kind": s.kind, "unit": s.unit or None, "description": s.description or None,
                "min": s.train_min, "max": s.train_max, "median": s.default if s.numeric else None,
                "accepted_min": s.lo, "accepted_max": s.hi,
                "categories": list(s.categories) if not s.numeric else None,
                "default": s.default if not s.numeric else None,
            }.items() if v is not None}
            for s in bundle.specs
        ],
        "metadata": metadata,
        "metrics": bundle.metrics,
        "data_quality": bundle.data_quality,
        "feature_importance": {k: float(v) for k, v in bundle.importances.items()},
    })
