"""Cron triggers, fired by the beat tick: exactly one run per function and scheduled time.

Each function keeps a cursor (the last scheduled time handled). A tick fires the most recent
scheduled time after the cursor, if one has come: after downtime the missed times collapse into
that one run, never a burst. Two beats (or a beat and its restarted self) may both see it due;
`claim_cron` lets one of them fire, and the run's idempotency key (`cron:<ts>`) makes even a
second claim after a crashed claimer's lease harmless.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from app.durations import parse_duration_ms
from app.errors import BadRequest
from app.models import JSON, FunctionConfig, Trigger
from app.registry import Registry
from app.runner import Runner
from app.state.store import Store

log = logging.getLogger("stepline.cron")

SCHEDULED_EVENT = "inngest/scheduled.timer"
CLAIM_TTL_MS = 60_000
"""How long a claim blocks other beats. Only the claimer advances the cursor, so if it dies
before firing, another beat claims the same time once this lapses (and the run's idempotency
key keeps that from ever making a second run)."""


def fire_due_crons(registry: Registry, store: Store, runner: Runner, now: int) -> int:
    """Start the cron runs that are due at `now` (ms). Returns how many this call started."""
    tick_ms = max(1, int(runner.settings.tick_seconds * 1000))
    fired = 0
    for fn in registry.all():
        latest = _latest_due(fn, now)
        if latest is None:
            continue
        ts, expr = latest
        cursor = store.cron_cursor(fn.id)
        if cursor is None:
            cursor = now - tick_ms  # first sight: only what fell due within the last tick
            store.set_cron_cursor(fn.id, cursor)
        if ts <= cursor:
            continue
        if not store.claim_cron(fn.id, ts, CLAIM_TTL_MS):
            continue  # another beat fires it; if it dies first, its claim lapses and we do
        _fire(fn, expr, ts, runner, now)
        store.set_cron_cursor(fn.id, ts)
        fired += 1
    return fired


def _fire(fn: FunctionConfig, expr: str, ts: int, runner: Runner, now: int) -> None:
    event: dict[str, JSON] = {
        "name": SCHEDULED_EVENT,
        "data": {"cron": expr},
        "id": rfc3339(ts),
        "ts": ts,
        "user": {},
    }
    [event_id] = runner.ingest([event], now, internal=True)
    run_id = runner.start_scheduled(fn, event, event_id, now, key=f"cron:{ts}")
    log.info("cron fired function=%s scheduled_at=%s run_id=%s", fn.id, event["id"], run_id)


def _latest_due(fn: FunctionConfig, now: int) -> tuple[int, str] | None:
    """The most recent scheduled time whose firing time (the scheduled time plus the trigger's
    jitter offset) is <= now, over the function's cron triggers."""
    best: tuple[int, str] | None = None
    for trigger in fn.triggers:
        if not trigger.cron:
            continue
        ts = latest_at_or_before(trigger.cron, now)
        if ts is None:
            log.warning("invalid cron function=%s cron=%r", fn.id, trigger.cron)
            continue
        if ts + jitter_ms(fn.id, trigger, ts) > now:
            # This time fires a little later; the one before has fired (jitter < interval).
            earlier = latest_at_or_before(trigger.cron, ts - 1)
            if earlier is None:
                continue
            ts = earlier
        if best is None or ts > best[0]:
            best = (ts, trigger.cron)
    return best


def jitter_ms(function_id: str, trigger: Trigger, ts: int) -> int:
    """The firing delay of scheduled time `ts`: in [0, jitter), the same for every beat."""
    if not trigger.jitter:
        return 0
    try:
        span = parse_duration_ms(trigger.jitter)
    except BadRequest:
        return 0
    if span <= 0:
        return 0
    digest = hashlib.sha1(f"{function_id}:{ts}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % span


def latest_at_or_before(expr: str, now: int) -> int | None:
    """The last time (ms) `expr` was due at or before `now`; None if `expr` is invalid.

    Accepts a `TZ=<zone> ` or `CRON_TZ=<zone> ` prefix, as Inngest does; UTC otherwise.
    """
    zone: tzinfo = UTC
    spec = expr.strip()
    head, _, rest = spec.partition(" ")
    if head.startswith(("TZ=", "CRON_TZ=")):
        try:
            zone = ZoneInfo(head.split("=", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            return None
        spec = rest.strip()
    base = datetime.fromtimestamp((now + 1) / 1000, zone)  # get_prev is strictly before
    try:
        previous = croniter(spec, base).get_prev(datetime)
    except (ValueError, KeyError):
        return None
    return int(previous.timestamp() * 1000)


def rfc3339(ts: int) -> str:
    """`2024-01-01T12:00:00Z` (UTC, second precision unless the time has milliseconds)."""
    moment = datetime.fromtimestamp(ts / 1000, UTC)
    if ts % 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
