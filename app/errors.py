"""Errors raised by the engine, each with a stable `code` the API returns.

    SteplineError
    ├── BadRequest              (400) input that fails validation; names the field
    │   ├── InvalidFunction     (400) a function definition or registration that is invalid
    │   ├── AddressRefused      (400) a URL leads to an address the policy refuses (netpolicy)
    │   └── AddressUnresolved   (400) a URL's host does not resolve (netpolicy)
    ├── Unauthorized            (401) a credential is missing or wrong
    ├── Forbidden               (403) refused whatever the credential
    │   └── NotConfigured       (403) production mode, and the route's credential is not set
    ├── NotFound                (404)
    ├── PayloadTooLarge         (413)
    ├── UnsupportedMediaType    (415) a request body that is not declared JSON
    ├── Conflict                (409)
    ├── NonDeterminismError     a replay met a different step than the one recorded
    ├── StateError              Redis state is not what a transition expects
    ├── ConfigError             a setting's value is not allowed (names the variable)
    └── HistoryUnavailable (503) the history database is unreachable or not migrated

User-facing step errors (`NonRetriableError`, `RetryAfterError`, `StepError`) live in
`app.sdk.errors`, as the official SDK names them.
"""

from __future__ import annotations

from typing import Any


class SteplineError(Exception):
    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message, "code": self.code, "status": self.status}
        if self.field is not None:
            body["field"] = self.field
        return body


class BadRequest(SteplineError):
    code = "bad_request"
    status = 400


class InvalidFunction(BadRequest):
    code = "invalid_function"


class Unauthorized(SteplineError):
    code = "unauthorized"
    status = 401


class Forbidden(SteplineError):
    code = "forbidden"
    status = 403


class NotConfigured(Forbidden):
    code = "not_configured"


class NotFound(SteplineError):
    code = "not_found"
    status = 404


class Conflict(SteplineError):
    code = "conflict"
    status = 409


class PayloadTooLarge(SteplineError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(SteplineError):
    code = "unsupported_media_type"
    status = 415


class NonDeterminismError(SteplineError):
    code = "non_determinism"


class StateError(SteplineError):
    code = "state_error"


class ConfigError(SteplineError):
    """A setting has a value that is not allowed; the message names each bad variable, its
    value and what is allowed (raised by `Settings.from_env`)."""

    code = "config_error"


class HistoryUnavailable(SteplineError):
    code = "history_unavailable"
    status = 503


class Unavailable(SteplineError):
    """Redis (the state store and Celery's broker) does not answer: an outage, a restart, a
    frozen server. Nothing was lost; the client retries the same request later."""

    code = "unavailable"
    status = 503
