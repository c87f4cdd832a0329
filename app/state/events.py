"""Store verbs for events: stored once (deduplicated by id), with the one job that processes
them, in one script call per request; listed newest first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.models import JSON, event_job
from app.state.base import StoreBase, _dumps
from app.state.keys import Keys
from app.state.records import (
    ANY_EVENT,
    BrokerMessage,
    EventCriteria,
    EventRecord,
    Ingested,
    NewEvent,
    Page,
    Position,
    SearchPage,
)
from app.state.scripts import EventItem

RECENT_EVENTS_MS = 86_400_000
"""How far back the index of recent events by name reaches (the longest wait lookback)."""
RECENT_EVENTS_MAX = 1_000
"""At most this many recent events are indexed per event name (the newest)."""

if TYPE_CHECKING:
    from app.search import Filter


class EventVerbs(StoreBase):
    """Part of `Store`: events."""

    def store_event(
        self, event: dict[str, JSON], internal_id: str, now: int, dedupe_ttl_ms: int
    ) -> tuple[str, bool]:
        """Store an event. If its user `id` was seen within the TTL, store nothing and return
        (the first event's internal id, False); else (internal_id, True)."""
        user_id = event.get("id")
        record = {"internal_id": internal_id, "received_at": now, "event": event}
        return self._scripts.store_event(
            internal_id,
            user_id if isinstance(user_id, str) else "",
            _dumps(record),
            now,
            dedupe_ttl_ms,
        )

    def ingest_events(
        self,
        events: Sequence[NewEvent],
        now: int,
        dedupe_ttl_ms: int,
        send_by: int,
        *,
        counter: str = "",
        message: BrokerMessage | None = None,
        index_recent: bool = False,
    ) -> Ingested:
        """Store `events` and queue the one job that processes those something listens to
        (a function's trigger, a pending pause, or `must_process`), in one Lua call: see
        lua/ingest_events.lua. A duplicate (its id seen within the TTL, or its internal id
        stored already) writes nothing and answers the first copy's internal id; its job
        was made with that copy, so a retried request never leaves an event unprocessed.
        `send_by` is when the tick sends the job if no Celery message did; `counter` names
        a counter metric to add the number of events to, in the same call.

        `message`: the broker message of job `event_job_id(events[0].internal_id)`. When
        the first event is stored by this call, the job gets that id and the script pushes
        the message with it (`Ingested.sent`: nothing left to send); otherwise (the first
        event is a duplicate) the job is named after its first event and the caller sends
        it. `index_recent`: add the new events to the recent-events index of their names
        (`recent_events`, for wait lookback), in the same call."""
        recent = (RECENT_EVENTS_MS, RECENT_EVENTS_MAX) if index_recent else (0, 0)
        job_id, sent, answers = self._scripts.ingest_events(
            [event_item(self._keys, event, now) for event in events],
            now,
            dedupe_ttl_ms,
            send_by,
            counter=counter,
            message=message,
            recent=recent,
        )
        ids = [internal_id for _, internal_id in answers]
        queued = [internal_id for code, internal_id in answers if code == "stored"]
        idle = sum(1 for code, _ in answers if code == "idle")
        job = None
        if job_id:
            job = event_job(queued, job_id)
        return Ingested(ids, job, idle, sent)

    def get_event(self, internal_id: str) -> EventRecord | None:
        raw = self._client.get(self._keys.event(internal_id))
        return None if raw is None else _event_record(raw)

    def page_events(
        self,
        limit: int,
        where: EventCriteria = ANY_EVENT,
        *,
        after: Position | None = None,
    ) -> Page[EventRecord]:
        """Newest first: events received in [received_after, received_before) (ms), following
        position `after` (a previous page's `next`). Pages go by the one index of every
        event: `search_events` selects by name."""
        where.check_unnamed()
        members, more = self._score_page(
            self._keys.events, limit, where.received_after, where.received_before, after
        )
        if not members:
            return Page([], None)
        raw = self._client.mget([self._keys.event(member) for member, _ in members])
        records = [_event_record(item) for item in raw if item is not None]
        last = members[-1]
        return Page(records, (last[1], last[0]) if more else None)

    def search_events(
        self,
        search: Filter | None,
        limit: int,
        where: EventCriteria = ANY_EVENT,
        *,
        after: Position | None = None,
        scan: int,
    ) -> SearchPage[EventRecord]:
        """`page_events` by name and filter, looking at most at `scan` events (newest
        first); a page cut short by that bound is `partial`."""
        from app.state.run_views import _search_page

        found: list[tuple[EventRecord, Position]] = []
        looked = 0
        cursor = after
        batch = min(scan, max(limit + 1, 100))
        while looked < scan:
            members, more = self._score_page(
                self._keys.events,
                min(batch, scan - looked),
                where.received_after,
                where.received_before,
                cursor,
            )
            if not members:
                return _search_page(found, limit, None)
            raw = self._client.mget([self._keys.event(member) for member, _ in members])
            for (member, score), item in zip(members, raw, strict=True):
                looked += 1
                cursor = (score, member)
                if item is None:
                    continue
                record = _event_record(item)
                if where.name is not None and record.event.get("name") != where.name:
                    continue
                if search is None or search.matches_event(record.event, record.received_at):
                    found.append((record, cursor))
                    if len(found) > limit:
                        return _search_page(found, limit, None)
            if not more:
                return _search_page(found, limit, None)
        return _search_page(found, limit, cursor)

    def list_events(self, limit: int, before: str | None = None) -> list[EventRecord]:
        """Newest first; `before` is an internal id (exclusive) from a previous page."""
        ids = self._page(self._keys.events, limit, before)
        if not ids:
            return []
        raw = self._client.mget([self._keys.event(internal_id) for internal_id in ids])
        return [_event_record(item) for item in raw if item is not None]

    def index_recent_event(self, name: str, internal_id: str, received_at: int) -> None:
        """Remember the event under its name for `wait_for_event(lookback=...)`: a bounded
        index (the newest `RECENT_EVENTS_MAX` per name, none older than `RECENT_EVENTS_MS`).
        Safe to repeat."""
        self.index_recent_events([(name, internal_id)], received_at)

    def index_recent_events(self, events: list[tuple[str, str]], received_at: int) -> None:
        """`index_recent_event` for (name, internal id) pairs, in one round trip."""
        if not events:
            return
        by_name: dict[str, dict[str, int]] = {}
        for name, internal_id in events:
            by_name.setdefault(name, {})[internal_id] = received_at
        pipe = self._client.pipeline(transaction=False)
        for name, members in by_name.items():  # a batch's events mostly share a few names
            key = self._keys.recent_events(name)
            pipe.zadd(key, members)  # type: ignore[arg-type]
            pipe.zremrangebyscore(key, "-inf", f"({received_at - RECENT_EVENTS_MS}")
            pipe.zremrangebyrank(key, 0, -RECENT_EVENTS_MAX - 1)
            pipe.pexpire(key, RECENT_EVENTS_MS)
        pipe.execute()

    def recent_events(self, name: str, since: int, until: int) -> list[EventRecord]:
        """Events named `name` received in [since, until] (ms), oldest first, from the bounded
        index (never a scan of all events). Events already deleted are left out."""
        key = self._keys.recent_events(name)
        ids = self._client.zrangebyscore(key, since, until, start=0, num=RECENT_EVENTS_MAX)
        return self.get_events(ids)

    def get_events(self, internal_ids: Sequence[str]) -> list[EventRecord]:
        """The events of these internal ids, in order, in one round trip; those deleted are
        left out."""
        if not internal_ids:
            return []
        raw = self._client.mget([self._keys.event(internal_id) for internal_id in internal_ids])
        return [_event_record(item) for item in raw if item is not None]

    def event_run_ids(self, internal_id: str) -> list[str]:
        return sorted(self._client.smembers(self._keys.event_runs(internal_id)))


def _event_record(raw: str) -> EventRecord:
    record = json.loads(raw)
    return EventRecord(
        internal_id=record["internal_id"],
        received_at=int(record["received_at"]),
        event=record["event"],
    )


def event_item(keys: Keys, event: NewEvent, now: int) -> EventItem:
    """A new event as the scripts take it (lua/include/ingest.lua)."""
    record = {"internal_id": event.internal_id, "received_at": now, "event": event.event}
    user_id = event.event.get("id")
    dedupe_key = ""
    if event.dedupe and isinstance(user_id, str) and user_id:
        dedupe_key = (
            keys.event_dedupe(user_id)
            if event.dedupe == "user"
            else keys.engine_event_dedupe(user_id)
        )
    return EventItem(
        event.internal_id,
        dedupe_key,
        _dumps(record),
        str(event.event.get("name", "")),
        event.must_process,
    )
