"""Query and body parameters of the `/v1` API: each parser raises `BadRequest` naming the
parameter, so every invalid input answers 400 with a stable `code`.

Cursors are opaque to clients: URL-safe base64 of `[score, member]`, the position of the last
item of the previous page (`Store.page_runs` / `page_events` continue after it).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from flask import request

from app import strictjson
from app.api import jsonbody
from app.errors import BadRequest
from app.models import RunStatus
from app.search import Filter, Kind, parse
from app.state.store import Position

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z"""


def limit() -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"limit must be an integer, not {raw!r}", field="limit") from exc
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return value


def status() -> str | None:
    raw = request.args.get("status")
    if raw is None or raw == "":
        return None
    try:
        return RunStatus(raw).value
    except ValueError:
        names = ", ".join(item.value for item in RunStatus)
        raise BadRequest(f"status must be one of {names}, not {raw!r}", field="status") from None


def text(name: str) -> str | None:
    raw = request.args.get(name)
    return raw if raw else None


def time_arg(name: str) -> int | None:
    """A time query parameter as ms since the epoch (ISO-8601 or integer ms)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    return parse_time(raw, name)


def parse_time(raw: Any, name: str) -> int:
    """ISO-8601 / RFC 3339 text (no zone = UTC) or integer milliseconds -> ms since epoch."""
    if isinstance(raw, bool):
        raise BadRequest(f"{name} must be an ISO-8601 time or milliseconds", field=name)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        value = int(raw.strip())
    elif isinstance(raw, str):
        text = raw.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise BadRequest(
                f"{name} must be an ISO-8601 time (2024-01-01T12:00:00Z) or milliseconds, "
                f"not {raw!r}",
                field=name,
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = int(moment.timestamp() * 1000)
    else:
        raise BadRequest(f"{name} must be an ISO-8601 time or milliseconds", field=name)
    if not 0 <= value <= MAX_MS:
        raise BadRequest(f"{name} is out of range", field=name)
    return value


def encode_cursor(position: Position | None) -> str | None:
    if position is None:
        return None
    raw = json.dumps([position[0], position[1]], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def cursor() -> Position | None:
    raw = request.args.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        decoded = strictjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise BadRequest("cursor is not valid (use metadata.next_cursor)", field="cursor") from None
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or isinstance(decoded[0], bool)
        or not isinstance(decoded[0], int)
        or not -MAX_MS <= decoded[0] <= MAX_MS
        or not isinstance(decoded[1], str)
    ):
        raise BadRequest("cursor is not valid (use metadata.next_cursor)", field="cursor")
    return decoded[0], decoded[1]


def body() -> dict[str, Any]:
    """The JSON object body (an empty body is `{}`), parsed strictly (`app.api.jsonbody`)."""
    return jsonbody.request_object()


def search_filter(kind: Kind) -> Filter | None:
    """The `filter` query parameter (CEL over runs or events, `app/search.py`)."""
    raw = request.args.get("filter")
    if raw is None or not raw.strip():
        return None
    return parse(raw, kind)
