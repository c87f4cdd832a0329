"""The admission checks that may skip an event: rate limit, idempotency key, singleton.

A rate limit is checked when the event arrives (after batching, before debounce); the
idempotency key and the singleton lock are the last checks before a run is created
(`Gates.prepare`), for an arriving event and for a debounced or batched run alike. Repeats of
a schedule are answered from what was recorded (rate-limit `seen` key, singleton decision,
idempotency key), so a retry is never a new decision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from app.durations import format_duration
from app.flow.options import key_hash, option_ms, option_str
from app.flow.outcomes import RATE_LIMITED, SINGLETON_SKIPPED, Decision, Outcomes
from app.ids import new_ulid
from app.models import JSON, FunctionConfig

if TYPE_CHECKING:
    from app.state.flow import FlowStore

log = logging.getLogger("stepline.flow")

CancelRun = Callable[[str, JSON, int], bool]
"""Cancel a run (id, error, now) if it has not ended; True if this call cancelled it."""


class Gates:
    """Rate limit, idempotency key and singleton decisions over `FlowStore`."""

    def __init__(self, flow: FlowStore, outcomes: Outcomes, cancel_run: CancelRun) -> None:
        self._flow = flow
        self._outcomes = outcomes
        self._cancel_run = cancel_run

    def rate_allows(
        self,
        fn: FunctionConfig,
        rate: dict[str, JSON],
        event: dict[str, JSON],
        internal_id: str,
        now: int,
    ) -> bool:
        """Whether `rateLimit` admits the event; a refusal is recorded."""
        report = self._outcomes.key_error(fn, [internal_id], "rateLimit.key")
        hashed = key_hash(option_str(rate.get("key")), event, on_error="invalid", report=report)
        limit = rate.get("limit")
        period = option_ms(rate.get("period"))
        if hashed is None or not isinstance(limit, int) or limit < 1 or period <= 0:
            return True
        result = self._flow.rate_limit(
            fn.id, hashed, internal_id, now, period_ms=period, limit=limit, burst=limit // 10
        )
        if result.admitted:
            return True
        message = (
            f"rate limit of {limit} per {format_duration(period)} reached; "
            f"the next run is admitted in {max(0, result.retry_at - now)} ms"
        )
        self._outcomes.record(fn, [internal_id], RATE_LIMITED, message, retry_at=result.retry_at)
        return False

    def prepare(
        self,
        fn: FunctionConfig,
        event: dict[str, JSON],
        event_ids: list[str],
        schedule_key: str,
        now: int,
        *,
        correlation_id: str | None = None,
        idempotency: bool = True,
        default_key: str | None = None,
    ) -> Decision:
        """The last checks before a run is created: idempotency key, then singleton."""
        idem = self.idempotency_key(fn, event, event_ids) if idempotency else None
        key = idem or default_key
        start = Decision("start", idempotency_key=key, correlation_id=correlation_id)
        singleton = fn.options.get("singleton")
        if not isinstance(singleton, dict):
            return start
        report = self._outcomes.key_error(fn, event_ids, "singleton.key")
        hashed = key_hash(option_str(singleton.get("key")), event, on_error="off", report=report)
        if hashed is None:
            return start  # not a singleton for this event (false, or the key failed)
        if idem is not None and self._flow.idempotency_holder(f"{fn.id}:{idem}") is not None:
            return start  # the run exists already: schedule answers it, no lock is needed
        mode: Literal["skip", "cancel"] = "cancel" if singleton.get("mode") == "cancel" else "skip"
        decided = self._flow.acquire_singleton(
            fn.id, hashed, schedule_key, new_ulid(now), mode, now
        )
        if decided.code == "skip":
            message = f"run {decided.other} of this singleton has not finished"
            self._outcomes.record(fn, event_ids, SINGLETON_SKIPPED, message, run_id=decided.other)
            if correlation_id:
                reason = SINGLETON_SKIPPED
                self._outcomes.fail_invoker(fn.id, event, event_ids[0], correlation_id, now, reason)
            return Decision("skip", SINGLETON_SKIPPED, other=decided.other)
        if decided.other:
            error = {
                "name": "FunctionCancelled",
                "message": f"replaced by run {decided.run_id} (singleton mode cancel)",
            }
            if self._cancel_run(decided.other, error, now):
                log.info(
                    "singleton replaced run_id=%s function=%s by=%s",
                    decided.other,
                    fn.id,
                    decided.run_id,
                )
        return Decision(
            "start", run_id=decided.run_id, idempotency_key=key, correlation_id=correlation_id
        )

    def idempotency_key(
        self, fn: FunctionConfig, event: dict[str, JSON], event_ids: list[str]
    ) -> str | None:
        expr = option_str(fn.options.get("idempotency"))
        if expr is None:
            return None
        report = self._outcomes.key_error(fn, event_ids, "idempotency")
        hashed = key_hash(expr, event, on_error="off", report=report)
        return None if hashed is None else f"idem:{hashed}"
