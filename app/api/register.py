"""The API SDK apps call besides events: registration and run data.

    POST /fn/register              an app registers its functions (PROTOCOL.md 3.1-3.3)
    GET  /v0/runs/<id>/batch       a run's events, for SDKs told `use_api: true` (3.5)
    GET  /v0/runs/<id>/actions     a run's memoized steps, likewise

All three are `sdk` routes (`app.api.auth`): in production mode each needs the signing key,
`Authorization: Bearer <hashed key>`, so only a caller holding the key can register an app or
change its URL; in dev mode none is checked (the TS SDK sends `Bearer undefined`).

A registration is refused whole, before anything is stored, when its URLs lead to addresses the
outbound policy refuses (`app.netpolicy`). It is stored by one Lua call (`lua/save_app.lua`)
that also refuses, atomically, functions another app owns and apps served in-process.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.errors import error_response as _error
from app.drivers import signing
from app.errors import BadRequest, SteplineError
from app.ids import new_ulid
from app.netpolicy import AddressPolicy
from app.sync import check_app_urls, read_registration

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
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        return _error(BadRequest("the registration body must be a JSON object"))
    try:
        registration = read_registration(body, headers=dict(request.headers))
        policy = AddressPolicy.for_apps(engine.settings)
        check_app_urls(registration, policy, strict=engine.settings.production)
        app_id, url, configs = registration.app_id, registration.url, registration.functions
        modified = False
        if configs or not registration.errors:
            modified = engine.store.save_app(
                app_id, url, configs, engine.now(), sync_id=new_ulid(), takeover=False
            )
            log.info(
                "app registered app=%s url=%s functions=%d modified=%s",
                app_id,
                url,
                len(configs),
                modified,
            )
    except SteplineError as exc:
        log.warning("registration refused: %s", exc.message)
        return _error(exc)
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
