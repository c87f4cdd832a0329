"""Identifiers: ULIDs for runs and events, SHA-1 step ids as the SDKs hash them."""

from __future__ import annotations

import base64
import hashlib
import os

from ulid import ULID

_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)


def new_ulid(now_ms: int | None = None) -> str:
    """A new ULID string, time-ordered; `now_ms` pins its timestamp (tests, replays)."""
    if now_ms is None:
        return str(ULID())
    return str(ULID.from_timestamp(now_ms / 1000))


def new_ulids(now_ms: int, count: int) -> list[str]:
    """`count` new ULID strings with the timestamp `now_ms`, as `new_ulid(now_ms)` makes
    them, for a request's events: one read of the random source, and base32 in C (the
    128 bits sit at the end of 160, so the first 6 of the 32 characters are the padding
    zeros and the 26 left are the ULID; RFC 4648's alphabet is then mapped to Crockford's)."""
    stamp = b"\0\0\0\0" + now_ms.to_bytes(6, "big")
    entropy = os.urandom(10 * count)
    return [
        base64.b32encode(stamp + entropy[i : i + 10])[6:].translate(_CROCKFORD).decode("ascii")
        for i in range(0, 10 * count, 10)
    ]


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
