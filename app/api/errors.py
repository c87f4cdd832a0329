"""Error handlers: every failure answers `{"error", "code", "status"[, "field"]}` JSON."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from app.errors import PayloadTooLarge, SteplineError

log = logging.getLogger("stepline.api")


def register(app: Flask) -> None:
    app.register_error_handler(SteplineError, _stepline_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def error_response(error: SteplineError) -> tuple[Response, int]:
    return jsonify(error.to_json()), error.status


def _stepline_error(error: SteplineError) -> tuple[Response, int]:
    if error.status >= 500:
        log.error("request failed: %s", error.message)
    return error_response(error)


def _http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    if status == 413:
        return error_response(PayloadTooLarge("request body is too large"))
    code = (error.name or "error").lower().replace(" ", "_").replace("'", "")
    body = {"error": error.description or error.name, "code": code, "status": status}
    return jsonify(body), status


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    log.exception("unhandled error", exc_info=error)
    return error_response(SteplineError("internal server error"))
