"""Durations and times as the SDKs write them: "30s", "1h30m", "2d", "1w", "500ms", ISO-8601."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from app.errors import BadRequest

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")

MAX_WAIT_MS = 366 * 86_400_000
"""Sleeps and waits longer than this are refused, as Inngest refuses them."""


def parse_duration_ms(text: str | int | float) -> int:
    """Milliseconds in a duration string ("1h30m", "90s", "500ms"); bare numbers are seconds."""
    if isinstance(text, int | float):
        return int(text * 1000)
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return int(float(value) * 1000)
    if not _WHOLE.fullmatch(value):
        raise BadRequest(f"malformed duration {text!r}: use forms like '30s', '5m', '1h30m', '2d'")
    return int(sum(float(n) * _UNIT_MS[unit] for n, unit in _PART.findall(value)))


def format_duration(ms: int) -> str:
    """The shortest exact form with one unit ("2m", "90s", "1500ms")."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_time_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 / RFC 3339 time ("...Z" allowed)."""
    value = text.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"malformed time {text!r}: expected ISO-8601") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and Z, as the SDKs write times."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )
