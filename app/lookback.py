"""Wait lookback: no missed events at the start of a wait (opt-in, `app.sdk` only).

Inngest matches an event only against waits that exist when the event is processed, so an
event sent between a run's start and the moment its `wait_for_event` is stored is missed
(inngest#1433). `ctx.step.wait_for_event(..., lookback=timedelta(minutes=5))` also accepts
events of that name received up to `lookback` before the wait:

    event received:   store it and index it by name, in one script call
                      (`Store.ingest_events(index_recent=True)`), which queues its
                      processing if a trigger or a pending pause listens
    wait saved:       save the pause and read the recent events of its name, in one
                      script call (the run's suspend, lua/suspend.lua): with none, that is
                      all; with some, the job stays until they are matched (`match_events`)

Whichever of the two happens second sees the other (an event stored after the pause is
processed and matched as usual), so an event in the window is never missed; consuming a
pause is atomic, so it resumes the wait once. The index is bounded (the
newest 1000 events per name, none older than 24 h), so a lookback never scans all events and
reaches at most 24 h back. The oldest matching event in the window wins, as it would have had
the wait existed when it arrived.
"""

from __future__ import annotations

from app import expressions
from app.models import Pause
from app.runner import Runner, wire_event
from app.state.events import RECENT_EVENTS_MS
from app.state.records import EventRecord
from app.state.store import Store

MAX_LOOKBACK_MS = RECENT_EVENTS_MS


def since(pause: Pause, now: int) -> int:
    """The oldest received_at (ms) an event may have to match `pause`'s lookback."""
    return now - min(pause.lookback_ms, MAX_LOOKBACK_MS)


def match_recent(store: Store, runner: Runner, pause: Pause, now: int) -> bool:
    """Resume `pause` with the oldest matching event received within its lookback; True if
    this call resumed it."""
    if pause.lookback_ms <= 0 or not pause.event:
        return False
    return _match(runner, pause, store.recent_events(pause.event, since(pause, now), now), now)


def match_events(store: Store, runner: Runner, pause: Pause, ids: list[str], now: int) -> bool:
    """`match_recent` over the recent events its suspend read (their internal ids, oldest
    first)."""
    return _match(runner, pause, store.get_events(ids), now)


def _match(runner: Runner, pause: Pause, records: list[EventRecord], now: int) -> bool:
    for record in records:
        event = record.event
        if pause.trigger_event_id and pause.trigger_event_id in (
            record.internal_id,
            event.get("id"),
        ):
            continue  # a run's own trigger never resumes it
        if not expressions.pause_matches(pause, event):
            continue
        return runner.resume(pause, wire_event(event), now)
    return False
