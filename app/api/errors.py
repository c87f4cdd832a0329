"""Error handlers: every failure answers `{"error", "code", "status"[, "field"]}` JSON.

A Redis that does not answer (down, restarting, frozen: the state store or Celery's broker)
is 503 `unavailable` with `Retry-After`, never 500: the request may be retried as it is
(events are deduplicated by id), and the same processes answer 200 once Redis is back.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from app.errors import PayloadTooLarge, SteplineError, Unavailable
from app.queue import send_errors
from app.state.client import UNAVAILABLE

log = logging.getLogger("stepline.api")


def register(app: Flask) -> None:
    app.register_error_handler(SteplineError, _stepline_error)
    app.register_error_handler(HTTPException, _http_error)
    for error in (*UNAVAILABLE, *send_errors()):
        app.register_error_handler(error, _unavailable)
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


RETRY_AFTER_SECONDS = 1


def why(error: BaseException) -> str:
    """Why Redis is unavailable, in words a public answer may carry (no address)."""
    name = type(error).__name__
    if name == "BusyLoadingError":
        return "loading its data after a restart"
    if "timeout" in name.lower() or "timed out" in str(error).lower():
        return "it does not answer in time"
    return "the connection failed"


def _unavailable(error: Exception) -> tuple[Response, int]:
    log.warning("redis unavailable: %s: %s", type(error).__name__, error)
    response, status = error_response(Unavailable(f"Redis unavailable ({why(error)}); retry"))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, status


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    log.exception("unhandled error", exc_info=error)
    return error_response(SteplineError("internal server error"))
