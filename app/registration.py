"""Registering an app's functions: the one code path for `POST /fn/register` (apps served over
HTTP) and for Connect workers (their `WORKER_CONNECT` message, in `app.gateway`).

    payload ─► app.sync.read_registration ─► register_app ─► store.save_app ─► runner, UI ...

Whichever way an app arrives, its functions are validated, its URLs checked against the
outbound address policy (only http(s) URLs are ever dialled: a Connect app's `wss://connect`
has nothing to check), and saved by one Lua call that refuses functions another app owns, so a
Connect app's functions trigger, invoke and are listed like any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from app.config import Settings
from app.errors import SteplineError
from app.ids import new_ulid
from app.models import JSON, FunctionConfig
from app.netpolicy import AddressPolicy
from app.sync import Registration, check_app_urls

log = logging.getLogger("stepline.registration")


class AppStore(Protocol):
    """The store verb registration needs (`app.state.store.Store.save_app`)."""

    def save_app(
        self,
        app_id: str,
        url: str | None,
        functions: list[FunctionConfig],
        now: int,
        *,
        sync_id: str | None = None,
        takeover: bool = True,
    ) -> bool: ...


@dataclass(frozen=True)
class Registered:
    """The answer to a registration: `/fn/register`'s status code and JSON body."""

    status: int
    body: dict[str, JSON]

    @property
    def ok(self) -> bool:
        return self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("error") or "registered")


def register_app(
    store: AppStore, settings: Settings, registration: Registration, now: int
) -> Registered:
    """Save the app's valid functions (replacing what it had). Refused whole: URLs the address
    policy refuses, function ids of another app (409). The invalid functions are left out, each
    named in the answer (400)."""
    app_id, url, configs = registration.app_id, registration.url, registration.functions
    modified = False
    try:
        check_app_urls(registration, AddressPolicy.for_apps(settings), strict=settings.production)
        if configs or not registration.errors:
            modified = store.save_app(app_id, url, configs, now, sync_id=new_ulid(), takeover=False)
            log.info(
                "app registered app=%s url=%s functions=%d modified=%s",
                app_id,
                url,
                len(configs),
                modified,
            )
    except SteplineError as exc:
        log.warning("registration refused: %s", exc.message)
        return Registered(exc.status, exc.to_json())
    if not registration.errors:
        return Registered(200, {"ok": True, "modified": modified, "app_id": app_id})
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
    return Registered(first.status, answer)
