"""The API SDK apps call besides events: registration and run data.

    POST /fn/register              an app registers its functions (PROTOCOL.md 3.1-3.3)
    GET  /v0/runs/<id>/batch       a run's events, for SDKs told `use_api: true` (3.5)
    GET  /v0/runs/<id>/actions     a run's memoized steps, likewise

All three are `sdk` routes (`app.api.auth`): in production mode each needs the signing key,
`Authorization: Bearer <hashed key>`, so only a caller holding the key can register an app or
change its URL; in dev mode none is checked (the TS SDK sends `Bearer undefined`).

A registration is refused whole, before anything is stored, when its URLs lead to addresses the
outbound policy refuses (`app.netpolicy`). It is stored by one Lua call (`lua/save_app.lua`)
that also refuses, atomically, functions another app owns and apps served in-process. The same
code (`app.registration.register_app`) registers the apps of Connect workers.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from app.api import jsonbody
from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.errors import error_response as _error
from app.drivers import signing
from app.errors import BadRequest, SteplineError
from app.registration import register_app
from app.sync import read_registration

log = logging.getLogger("stepline.api.register")

blueprint = Blueprint("register", __name__)


@blueprint.post("/fn/register")
@requires(Access.SDK)
def register() -> tuple[Response, int]:
    engine = current_engine()
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
    try:
        body = jsonbody.parse(request.get_data(cache=True))
    except BadRequest as exc:
        return _error(exc)
    if not isinstance(body, dict):
        return _error(BadRequest("the registration body must be a JSON object"))
    try:
        registration = read_registration(body, headers=dict(request.headers))
    except SteplineError as exc:
        log.warning("registration refused: %s", exc.message)
        return _error(exc)
    registered = register_app(engine.store, engine.settings, registration, engine.now())
    return jsonify(registered.body), registered.status


def _run_gone(run_id: str) -> tuple[Response, int]:
    body = {"error": f"run {run_id} is gone (finished and expired, or never existed)"}
    return jsonify({**body, "status": 410}), 410


@blueprint.get("/v0/runs/<run_id>/batch")
@requires(Access.SDK)
def run_batch(run_id: str) -> tuple[Response, int]:
    engine = current_engine()
    state = engine.store.load_run(run_id)
    if state is None:
        return _run_gone(run_id)
    return jsonify(state.events), 200


@blueprint.get("/v0/runs/<run_id>/actions")
@requires(Access.SDK)
def run_actions(run_id: str) -> tuple[Response, int]:
    engine = current_engine()
    state = engine.store.load_run(run_id)
    if state is None:
        return _run_gone(run_id)
    return jsonify(state.steps), 200
