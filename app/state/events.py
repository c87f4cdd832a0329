"""Store verbs for events: stored once (deduplicated by user id), listed newest first."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from app.models import JSON
from app.state.base import StoreBase, _dumps
from app.state.records import EventRecord, Page, Position, SearchPage

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

    def get_event(self, internal_id: str) -> EventRecord | None:
        raw = self._client.get(self._keys.event(internal_id))
        return None if raw is None else _event_record(raw)

    def page_events(
        self,
        limit: int,
        *,
        received_after: int | None = None,
        received_before: int | None = None,
        after: Position | None = None,
    ) -> Page[EventRecord]:
        """Newest first: events received in [received_after, received_before) (ms), following
        position `after` (a previous page's `next`)."""
        members, more = self._score_page(
            self._keys.events, limit, received_after, received_before, after
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
        *,
        name: str | None = None,
        received_after: int | None = None,
        received_before: int | None = None,
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
                received_after,
                received_before,
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
                if name is not None and record.event.get("name") != name:
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

    def event_run_ids(self, internal_id: str) -> list[str]:
        return sorted(self._client.smembers(self._keys.event_runs(internal_id)))


def _event_record(raw: str) -> EventRecord:
    record = json.loads(raw)
    return EventRecord(
        internal_id=record["internal_id"],
        received_at=int(record["received_at"]),
        event=record["event"],
    )
