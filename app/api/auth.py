"""Who may call what: one policy for every route, declared on the route itself.

    @bp.get("/v1/runs")
    @requires(Access.OPERATOR)
    def list_runs() -> Response: ...

`check` runs before every request and enforces the class of the route's view. A view without
one is refused (500, failing closed), and the route-table test walks Flask's url_map so such a
route fails the suite; a new route (Connect's `/v0/connect/*`, `/v1/signals`,
`/v1/checkpoint/...`) only has to say which class it is in. `route_table(app)` lists them all
(the README's route table is checked against it).

    class     who calls                  credential in production mode
    public    anyone                     none: /health, the UI's page shell and static files
    sdk       SDK apps                   signing key: `Authorization: Bearer <hashed key>`
    events    event senders              event key, in the path: `POST /e/<key>`
    operator  people, scripts, the UI    `Bearer <STEPLINE_API_TOKEN>`, the proxy's
                                         STEPLINE_AUTH_HEADER, or `Bearer <signing key>`

Production mode is any credential configured (`Settings.production`). Then a missing or wrong
credential answers 401, and a route whose kind of credential is not configured at all is closed:
403 `not_configured`, naming the setting to add. Nothing fails open.

Dev mode (no credential configured) checks no credential (the TS SDK sends `Bearer undefined`)
but serves loopback peers only, and only with a localhost or IP-literal Host header, so a web
page cannot reach it through DNS rebinding. In both modes a state-changing request from another
origin is refused and a request body must be declared JSON (`app.api.browser`), so a web page
the developer visits cannot register an app or send events (CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, request
from werkzeug.wrappers import Request

from app.api import browser
from app.api.context import EXTENSION
from app.config import Settings
from app.drivers import signing
from app.errors import NotConfigured, SteplineError, Unauthorized

if TYPE_CHECKING:
    from app.engine import Engine

View = TypeVar("View", bound=Callable[..., Any])
_ATTRIBUTE = "stepline_access"


class Access(StrEnum):
    PUBLIC = "public"
    SDK = "sdk"
    EVENTS = "events"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Rule:
    access: Access
    media_types: tuple[str, ...] = ("application/json",)
    """Accepted `Content-Type`s of a request body (see `app.api.browser.check_body`)."""


def requires(
    access: Access, *, media_types: tuple[str, ...] = ("application/json",)
) -> Callable[[View], View]:
    """Declare the access class of a view (under its route decorator). `media_types`: the
    body types the route accepts (JSON unless said otherwise, e.g. Connect's protobuf)."""

    def declare(view: View) -> View:
        setattr(view, _ATTRIBUTE, Rule(access, media_types))
        return view

    return declare


def rule_of(view: Callable[..., Any] | None) -> Rule | None:
    rule = getattr(view, _ATTRIBUTE, None)
    return rule if isinstance(rule, Rule) else None


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    access: Access | None


def route_table(app: Flask) -> list[Route]:
    """Every route of `app` with its access class (None: undeclared, refused)."""
    routes = []
    for url_rule in app.url_map.iter_rules():
        rule = rule_of(app.view_functions.get(url_rule.endpoint))
        methods = tuple(sorted((url_rule.methods or set()) - {"HEAD", "OPTIONS"}))
        routes.append(Route(url_rule.rule, methods, rule.access if rule else None))
    return sorted(routes, key=lambda route: (route.path, route.methods))


def check() -> None:
    """Before each request: refuse it unless the route's class admits it."""
    if request.endpoint is None:
        return  # no route: 404 or 405 follows, nothing is served
    rule = rule_of(current_app.view_functions.get(request.endpoint))
    if rule is None:
        raise SteplineError(f"route {request.url_rule} declares no access class (app.api.auth)")
    if rule.access is Access.PUBLIC:
        return
    admit(request, rule, _settings(), request.view_args or {})


def admit(request: Request, rule: Rule, settings: Settings, view_args: Mapping[str, Any]) -> None:
    """Raise unless `rule` (not public) admits `request`, whose route matched `view_args`:
    `check` for Flask's routes, `app.api.fast_events` for `POST /e/<key>` ahead of Flask."""
    if settings.production:
        _CREDENTIALS[rule.access](settings, request, view_args)
    else:
        browser.check_dev_peer(request)
    browser.check_origin(request)
    browser.check_body(request, rule.media_types)


def _settings() -> Settings:
    engine: Engine | None = current_app.extensions.get(EXTENSION)
    return engine.settings if engine is not None else Settings.from_env()


# --- credentials, one check per class ------------------------------------------------------


def _sdk(settings: Settings, request: Request, view_args: Mapping[str, Any]) -> None:
    keys = [key for key in (settings.signing_key, settings.signing_key_fallback) if key]
    if not keys:
        raise NotConfigured(
            "SDK routes are closed: this Stepline runs in production mode without "
            "STEPLINE_SIGNING_KEY; set it (and INNGEST_SIGNING_KEY in the apps to the same value)"
        )
    if not signing.authorization_matches(request.headers.get("Authorization"), keys):
        raise Unauthorized(
            "missing or wrong signing key: send `Authorization: Bearer <hashed signing key>` "
            "(set INNGEST_SIGNING_KEY in the app to Stepline's STEPLINE_SIGNING_KEY)"
        )


def _events(settings: Settings, request: Request, view_args: Mapping[str, Any]) -> None:
    if not settings.event_keys:
        raise NotConfigured(
            "the event API is closed: this Stepline runs in production mode without "
            "STEPLINE_EVENT_KEYS; set it to the keys senders use (INNGEST_EVENT_KEY)"
        )
    given = view_args.get("event_key", "")
    if not isinstance(given, str) or not given.strip():
        raise Unauthorized("Event key is required")
    if not event_key_known(given, settings.event_keys):
        raise Unauthorized("Event key not found")


def event_key_known(given: str, keys: list[str]) -> bool:
    """Compared in constant time: digests of equal length, every key compared."""
    digest = hashlib.sha256(given.encode("utf-8")).digest()
    found = False
    for key in keys:
        found |= hmac.compare_digest(digest, hashlib.sha256(key.encode("utf-8")).digest())
    return found


def _operator(settings: Settings, request: Request, view_args: Mapping[str, Any]) -> None:
    keys = [key for key in (settings.signing_key, settings.signing_key_fallback) if key]
    if not (settings.api_token or settings.auth_header or keys):
        raise NotConfigured(
            "the operations API is closed: this Stepline runs in production mode without "
            "STEPLINE_API_TOKEN; set it (or STEPLINE_AUTH_HEADER behind an authenticating proxy)"
        )
    if settings.auth_header and request.headers.get(settings.auth_header, "").strip():
        return
    header = request.headers.get("Authorization")
    if settings.api_token and header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            hashlib.sha256(token.strip().encode("utf-8")).digest(),
            hashlib.sha256(settings.api_token.encode("utf-8")).digest(),
        ):
            return
    if keys and signing.authorization_matches(header, keys):
        return
    accepted = ["`Authorization: Bearer <STEPLINE_API_TOKEN>`"] if settings.api_token else []
    if settings.auth_header:
        accepted.append(f"the `{settings.auth_header}` header of your authenticating proxy")
    if keys:
        accepted.append("`Authorization: Bearer <signing key>`")
    raise Unauthorized(f"this Stepline requires authentication: send {' or '.join(accepted)}")


_CREDENTIALS: dict[Access, Callable[[Settings, Request, Mapping[str, Any]], None]] = {
    Access.SDK: _sdk,
    Access.EVENTS: _events,
    Access.OPERATOR: _operator,
}
