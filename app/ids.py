"""Identifiers: ULIDs for runs and events, SHA-1 step ids as the SDKs hash them."""

from __future__ import annotations

import hashlib
import os

from ulid import ULID, LaxMonotonicPolicy, ULIDGenerator

# Monotonic within a process: ids made in the same millisecond count up from the first one's
# random part (the ULID spec's monotonic mode), so events one client sends in a row list in
# the order they were accepted even when they share a millisecond. Across processes ids of the
# same millisecond stay unordered. A forked child starts afresh rather than counting on from
# its parent's last id (two children could otherwise make the same one).
_generator = ULIDGenerator(policy=LaxMonotonicPolicy())


def _fresh_generator() -> None:
    global _generator
    _generator = ULIDGenerator(policy=LaxMonotonicPolicy())


os.register_at_fork(after_in_child=_fresh_generator)


def new_ulid(now_ms: int | None = None) -> str:
    """A new ULID string, time-ordered; `now_ms` pins its timestamp (tests, replays)."""
    return str(_generator.generate(now_ms))


def new_ulids(now_ms: int, count: int) -> list[str]:
    """`count` new ULID strings with the timestamp `now_ms`, in increasing order (a request's
    events)."""
    generate = _generator.generate
    return [str(generate(now_ms)) for _ in range(count)]


def ulid_ms(value: str) -> int:
    """The millisecond timestamp inside a ULID string."""
    return int(ULID.from_str(value).milliseconds)


def hash_step_id(user_id: str, repeat: int = 0) -> str:
    """The hashed id of a step: sha1 of `id`, or of `id:n` for its n-th repeat (n >= 1)."""
    raw = user_id if repeat == 0 else f"{user_id}:{repeat}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


class StepCounter:
    """Counts uses of each user step id within one execution, to hash repeats as the SDKs do."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def next(self, user_id: str) -> tuple[str, int]:
        """Return (hashed id, repeat index) for the next use of `user_id`."""
        n = self._seen.get(user_id, 0)
        self._seen[user_id] = n + 1
        return hash_step_id(user_id, n), n
