"""Admission options: their limits and defaults, key expressions, and validation.

Shared by `admission` (reading options at run time), `app.sdk` (checking a function when it
is defined) and `app.sync` (checking a registration), so one place knows Inngest's limits.
Options are in their registration-JSON shape (`rateLimit`, `batchEvents`, ...), as
`FunctionConfig.options` keeps them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Literal

from app import expressions
from app.durations import format_duration, parse_duration_ms, parse_time_ms
from app.errors import BadRequest
from app.models import JSON

log = logging.getLogger("stepline.flow")

NO_KEY = "-"
"""The key hash of an option without a key expression (one bucket per function)."""

# --- limits and defaults (Inngest's, pkg/consts and the SDK docs) ---------------------------
RATE_LIMIT_MAX_PERIOD_MS = 86_400_000
DEBOUNCE_MIN_PERIOD_MS = 1_000
DEBOUNCE_MAX_PERIOD_MS = 7 * 86_400_000
BATCH_MAX_SIZE = 100
BATCH_DEFAULT_TIMEOUT_MS = 60_000
BATCH_MAX_BYTES = 10 * 1024 * 1024
MAX_CANCELS = 5
CANCEL_DEFAULT_TIMEOUT_MS = 365 * 86_400_000
MIN_DURATION_MS = 1_000
INVALID_KEY = "<invalid>"
"""What a key expression that fails to evaluate counts as (Inngest's debounce does the same)."""


# --- key expressions --------------------------------------------------------------------------


def key_hash(
    expr: str | None,
    event: Mapping[str, JSON],
    *,
    on_error: Literal["invalid", "off"],
    report: Callable[[str], None] | None = None,
) -> str | None:
    """The hashed value of a key expression over `{"event": event}`.

    No expression: `-` (one key for the function). Boolean `false`: None (the option does not
    apply to this event, as in Inngest). An evaluation error: the hash of `<invalid>`
    (`on_error="invalid"`) or None (`"off"`), as Inngest does; never silently: it is logged
    and told to `report` (admission records it as the event's `key_error` outcome).
    """
    if not expr:
        return NO_KEY
    try:
        value = expressions.value_of(expr, {"event": dict(event)})
    except Exception as exc:  # BadRequest, CELEvalError and friends
        consequence = (
            "the option is off for this event"
            if on_error == "off"
            else f"the event counts in the shared {INVALID_KEY} bucket"
        )
        message = f"key {expr!r} could not be evaluated ({_reason(exc)}): {consequence}"
        log.warning("key expression failed expr=%r error=%s", expr, exc)
        if report is not None:
            report(message)
        if on_error == "off":
            return None
        value = INVALID_KEY
    if value is False:
        return None
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _reason(exc: Exception) -> str:
    """An evaluation error in a few words (celpy's errors are tuples of details)."""
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, str) else str(exc) or type(exc).__name__


# --- option validation ------------------------------------------------------------------------


MAX_CONCURRENCY_CONSTRAINTS = 2
THROTTLE_MAX_PERIOD_MS = 7 * 86_400_000


def check_options(options: Mapping[str, JSON]) -> list[tuple[str, str]]:
    """Problems with the flow-control options (registration-JSON shape), as (field, problem).

    Covers concurrency, throttle, priority, rateLimit, idempotency, debounce, batchEvents,
    cancel, timeouts and singleton, with Inngest's limits. Used when functions are defined
    (`app.sdk`) and registered (`app.sync`), so an invalid function is refused with a message
    naming the option.
    """
    checker = _OptionChecker()
    checker.run(options)
    return checker.problems


class _OptionChecker:
    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, problem: str) -> None:
        self.problems.append((path, problem))

    def run(self, options: Mapping[str, JSON]) -> None:
        for name, check in (
            ("rateLimit", self.rate_limit),
            ("debounce", self.debounce),
            ("batchEvents", self.batch),
            ("timeouts", self.timeouts),
            ("singleton", self.singleton),
            ("throttle", self.throttle),
            ("priority", self.priority),
        ):
            value = options.get(name)
            if value is None:
                continue
            if not isinstance(value, dict):
                self.fail(name, "must be an object")
                continue
            check(name, value)
        if options.get("idempotency") is not None:
            self.expression("idempotency", options["idempotency"])
        if options.get("cancel") is not None:
            self.cancel(options["cancel"])
        if options.get("concurrency") is not None:
            self.concurrency(options["concurrency"])

    def expression(self, path: str, value: JSON) -> None:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "must be a non-empty expression")
            return
        try:
            expressions.compile_expression(value)
        except BadRequest as exc:
            self.fail(path, exc.message)

    def duration(
        self, path: str, value: JSON, *, required: bool = False, maximum: int | None = None
    ) -> None:
        if value is None:
            if required:
                self.fail(path, "is required")
            return
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(path, f"must be a duration such as '30s' or '1h', got {value!r}")
            return
        try:
            ms = parse_duration_ms(value)
        except BadRequest as exc:
            self.fail(path, exc.message)
            return
        if ms < MIN_DURATION_MS:
            self.fail(path, f"must be at least 1s, got {value!r}")
        elif maximum is not None and ms > maximum:
            self.fail(path, f"must be at most {format_duration(maximum)}, got {value!r}")

    def integer(self, path: str, value: JSON, minimum: int, maximum: int | None = None) -> None:
        if value is None:
            self.fail(path, "is required")
        elif isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, got {value!r}")
        elif value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            self.fail(path, f"must be an integer {bound}, got {value}")

    def key(self, path: str, value: dict[str, JSON], *names: str) -> None:
        for name in names:
            if value.get(name) is not None:
                self.expression(f"{path}.{name}", value[name])

    def rate_limit(self, path: str, value: dict[str, JSON]) -> None:
        self.integer(f"{path}.limit", value.get("limit"), 1)
        self.duration(
            f"{path}.period", value.get("period"), required=True, maximum=RATE_LIMIT_MAX_PERIOD_MS
        )
        self.key(path, value, "key")

    def debounce(self, path: str, value: dict[str, JSON]) -> None:
        maximum = DEBOUNCE_MAX_PERIOD_MS
        self.duration(f"{path}.period", value.get("period"), required=True, maximum=maximum)
        self.duration(f"{path}.timeout", value.get("timeout"), maximum=maximum)
        self.key(path, value, "key")

    def batch(self, path: str, value: dict[str, JSON]) -> None:
        self.integer(f"{path}.maxSize", value.get("maxSize"), 1, BATCH_MAX_SIZE)
        self.duration(f"{path}.timeout", value.get("timeout"))
        self.key(path, value, "key", "if")

    def timeouts(self, path: str, value: dict[str, JSON]) -> None:
        self.duration(f"{path}.start", value.get("start"))
        self.duration(f"{path}.finish", value.get("finish"))

    def singleton(self, path: str, value: dict[str, JSON]) -> None:
        if value.get("mode") not in ("skip", "cancel"):
            self.fail(f"{path}.mode", f"must be 'skip' or 'cancel', got {value.get('mode')!r}")
        self.key(path, value, "key")

    def concurrency(self, value: JSON) -> None:
        constraints = [value] if isinstance(value, dict) else value
        if not isinstance(constraints, list):
            self.fail("concurrency", "must be a list of {limit, key?, scope?}")
            return
        if len(constraints) > MAX_CONCURRENCY_CONSTRAINTS:
            self.fail(
                "concurrency",
                f"must have at most {MAX_CONCURRENCY_CONSTRAINTS} constraints, "
                f"got {len(constraints)}",
            )
        for i, item in enumerate(constraints):
            path = f"concurrency[{i}]"
            if not isinstance(item, dict):
                self.fail(path, "must be an object")
                continue
            self.integer(f"{path}.limit", item.get("limit"), 0)
            if item.get("scope", "fn") not in ("fn", "env", "account"):
                self.fail(f"{path}.scope", f"must be fn, env or account, got {item['scope']!r}")
            self.key(path, item, "key")

    def throttle(self, path: str, value: dict[str, JSON]) -> None:
        self.integer(f"{path}.limit", value.get("limit"), 1)
        self.duration(
            f"{path}.period", value.get("period"), required=True, maximum=THROTTLE_MAX_PERIOD_MS
        )
        if value.get("burst") is not None:
            self.integer(f"{path}.burst", value.get("burst"), 0)
        self.key(path, value, "key")

    def priority(self, path: str, value: dict[str, JSON]) -> None:
        if value.get("run") is not None:
            self.expression(f"{path}.run", value["run"])

    def cancel(self, value: JSON) -> None:
        if not isinstance(value, list):
            self.fail("cancel", "must be a list")
            return
        if len(value) > MAX_CANCELS:
            self.fail("cancel", f"must have at most {MAX_CANCELS} entries, got {len(value)}")
        for i, item in enumerate(value):
            path = f"cancel[{i}]"
            if not isinstance(item, dict):
                self.fail(path, "must be an object")
                continue
            event = item.get("event")
            if not isinstance(event, str) or not event.strip():
                self.fail(f"{path}.event", "must be a non-empty event name")
            self.key(path, item, "if")
            timeout = item.get("timeout")
            if isinstance(timeout, str) and looks_like_time(timeout):
                try:
                    parse_time_ms(timeout)
                except BadRequest as exc:
                    self.fail(f"{path}.timeout", exc.message)
            else:
                self.duration(f"{path}.timeout", timeout)


def looks_like_time(text: str) -> bool:
    return len(text) >= 10 and text[4:5] == "-" and text[:4].isdigit()


def option_ms(value: JSON, default: int = 0) -> int:
    """A stored duration option in ms (validated at registration; bad values read as unset)."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        return default
    try:
        return parse_duration_ms(value)
    except BadRequest:
        return default


def option_str(value: JSON) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


__all__ = [
    "BATCH_DEFAULT_TIMEOUT_MS",
    "BATCH_MAX_BYTES",
    "BATCH_MAX_SIZE",
    "CANCEL_DEFAULT_TIMEOUT_MS",
    "DEBOUNCE_MAX_PERIOD_MS",
    "DEBOUNCE_MIN_PERIOD_MS",
    "INVALID_KEY",
    "MAX_CANCELS",
    "NO_KEY",
    "RATE_LIMIT_MAX_PERIOD_MS",
    "check_options",
    "key_hash",
    "looks_like_time",
    "option_ms",
    "option_str",
]
