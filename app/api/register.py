"""The API SDK apps call besides events: registration and run data.

    POST /fn/register              an app registers its functions (PROTOCOL.md 3.1-3.3)
    GET  /v0/runs/<id>/batch       a run's events, for SDKs told `use_api: true` (3.5)
    GET  /v0/runs/<id>/actions     a run's memoized steps, likewise

In production mode (a signing key is set) each needs `Authorization: Bearer <hashed key>`; in
dev mode none is checked (the TS SDK sends `Bearer undefined`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, request

from app.api.context import current_engine
from app.api.errors import error_response as _error
from app.drivers import signing
from app.errors import BadRequest, Conflict, SteplineError, Unauthorized
from app.models import FunctionConfig
from app.sync import read_registration

if TYPE_CHECKING:
    from app.engine import Engine

log = logging.getLogger("stepline.api.register")

blueprint = Blueprint("register", __name__)


def _auth_error(engine: Engine) -> tuple[Response, int] | None:
    key = engine.settings.signing_key
    if not key:
        return None
    keys = [key, engine.settings.signing_key_fallback or ""]  # the fallback while rotating
    if signing.authorization_matches(request.headers.get("Authorization"), keys):
        return None
    return _error(
        Unauthorized(
            "missing or wrong signing key: this Stepline runs in production mode; send "
            "`Authorization: Bearer <hashed signing key>` (set INNGEST_SIGNING_KEY in the app "
            "to Stepline's STEPLINE_SIGNING_KEY)"
        )
    )


def _taken(engine: Engine, app_id: str, configs: list[FunctionConfig]) -> Conflict | None:
    """A function id another app owns: registering it would take the function over, and the
    owner's next sync would delete it."""
    for config in configs:
        owner = engine.store.get_function(config.id)
        if owner is not None and owner.app_id != app_id:
            return Conflict(
                f"function {config.id!r} already belongs to app {owner.app_id!r}: give this app "
                "or the function another id",
                field="functions",
            )
    return None


@blueprint.post("/fn/register")
def register() -> tuple[Response, int]:
    engine = current_engine()
    refused = _auth_error(engine)
    if refused is not None:
        return refused
    ours = signing.server_kind(engine.settings.signing_key)
    expected = request.headers.get("X-Inngest-Expected-Server-Kind", "").strip().lower()
    if expected and expected != ours:
        return _error(
            BadRequest(
                f"the app expected a {expected} server but this Stepline runs in {ours} mode "
                f"({'a signing key is set' if ours == 'cloud' else 'no signing key is set'})",
                field="X-Inngest-Expected-Server-Kind",
            )
        )
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        return _error(BadRequest("the registration body must be a JSON object"))
    try:
        registration = read_registration(body, headers=dict(request.headers))
    except SteplineError as exc:
        log.warning("registration refused: %s", exc.message)
        return _error(exc)
    app_id, url, configs = registration.app_id, registration.url, registration.functions
    taken = _taken(engine, app_id, configs)
    if taken is not None:
        log.warning("registration refused: %s", taken.message)
        return _error(taken)
    modified = False
    if configs or not registration.errors:
        modified = engine.store.save_app(app_id, url, configs, engine.now())
        log.info(
            "app registered app=%s url=%s functions=%d modified=%s",
            app_id,
            url,
            len(configs),
            modified,
        )
    if registration.errors:
        # The valid functions are registered; the invalid ones are refused, each named.
        for error in registration.errors:
            log.warning("function refused app=%s: %s", app_id, error.message)
        first = registration.errors[0]
        answer = first.to_json()
        more = len(registration.errors) - 1
        if more:
            answer["error"] = f"{first.message} (and {more} more invalid function(s))"
        answer.update(
            ok=False,
            app_id=app_id,
            modified=modified,
            registered=[config.id for config in configs],
            errors=[error.to_json() for error in registration.errors],
        )
        return jsonify(answer), first.status
    return jsonify({"ok": True, "modified": modified, "app_id": app_id}), 200


def _run_gone(run_id: str) -> tuple[Response, int]:
    body = {"error": f"run {run_id} is gone (finished and expired, or never existed)"}
    return jsonify({**body, "status": 410}), 410


@blueprint.get("/v0/runs/<run_id>/batch")
def run_batch(run_id: str) -> tuple[Response, int]:
    engine = current_engine()
    refused = _auth_error(engine)
    if refused is not None:
        return refused
    state = engine.store.load_run(run_id)
    if state is None:
        return _run_gone(run_id)
    return jsonify(state.events), 200


@blueprint.get("/v0/runs/<run_id>/actions")
def run_actions(run_id: str) -> tuple[Response, int]:
    engine = current_engine()
    refused = _auth_error(engine)
    if refused is not None:
        return refused
    state = engine.store.load_run(run_id)
    if state is None:
        return _run_gone(run_id)
    return jsonify(state.steps), 200
