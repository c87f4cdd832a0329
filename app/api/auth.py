"""Access to the operations API: `/v1/...` and `/metrics`.

In dev mode (no signing key, no `STEPLINE_API_TOKEN`, no `STEPLINE_AUTH_HEADER`) it is open
to loopback clients only (the CLI binds to loopback then; a request from another address,
e.g. behind a server bound to 0.0.0.0, is refused with a message saying what to set).
Otherwise a request is admitted with one of

    Authorization: Bearer <STEPLINE_API_TOKEN>
    Authorization: Bearer <signing key>        (plain or hashed, as Inngest's REST API takes it)
    <STEPLINE_AUTH_HEADER>: <anything>         set by an authenticating proxy in front

and refused with 401 JSON otherwise. The other routes keep their own rules: `/e/<key>` checks
event keys, `/fn/register` and `/v0` the signing key, `/health` is open; so is the UI's page
shell (`/`, `/ui/...`), which holds no data: everything it shows comes from `/v1`.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING

from flask import current_app, request

from app.api.context import EXTENSION
from app.config import Settings
from app.drivers import signing
from app.errors import Unauthorized

if TYPE_CHECKING:
    from app.engine import Engine

PROTECTED_PREFIXES = ("/v1/", "/metrics", "/invoke/")


def production(settings: Settings) -> bool:
    return bool(settings.api_token or settings.signing_key or settings.auth_header)


def check() -> None:
    """Before each request: refuse a protected route without valid credentials."""
    path = request.path
    if not (path.startswith(PROTECTED_PREFIXES) or path == "/v1"):
        return
    engine: Engine | None = current_app.extensions.get(EXTENSION)
    settings = engine.settings if engine is not None else Settings.from_env()
    if not production(settings):
        if _loopback(request.remote_addr):
            return
        raise Unauthorized(
            "dev mode is open to loopback clients only: set STEPLINE_API_TOKEN (and send "
            "`Authorization: Bearer <token>`) to reach /v1 and /metrics from elsewhere"
        )
    if admitted(settings):
        return
    raise Unauthorized(
        "this Stepline requires authentication: send `Authorization: Bearer "
        "<STEPLINE_API_TOKEN>`"
        + (f" or the `{settings.auth_header}` header" if settings.auth_header else "")
    )


def _loopback(address: str | None) -> bool:
    if not address:
        return True  # a unix socket or an in-process test client
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def admitted(settings: Settings) -> bool:
    if settings.auth_header and request.headers.get(settings.auth_header, "").strip():
        return True
    header = request.headers.get("Authorization")
    if settings.api_token and header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), settings.api_token.encode("utf-8")
        ):
            return True
    keys = [key for key in (settings.signing_key, settings.signing_key_fallback) if key]
    return bool(keys) and signing.authorization_matches(header, keys)
