"""What every fuzzed answer and everything stored must satisfy."""

from __future__ import annotations

import json
from typing import Any

import redis

NON_JSON_ROUTES = ("/", "/ui/", "/metrics", "/v0/connect/")
"""Routes whose successful answers are HTML, Prometheus text or protobuf (Connect's start and
flush: an empty body is a valid, all-defaults protobuf message), while their errors are JSON."""


def strict_loads(text: str | bytes) -> Any:
    """Parse as strict JSON: NaN, Infinity and numbers beyond a double raise ValueError, and so
    does text that is not valid UTF-8 (a lone surrogate written raw)."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    def finite(token: str) -> float:
        number = float(token)
        if number in (float("inf"), float("-inf")):
            raise ValueError(f"{token} is beyond a double")
        return number

    if isinstance(text, bytes):
        text = text.decode("utf-8")
    value = json.loads(text, parse_constant=refuse, parse_float=finite)
    _no_surrogates(value)
    return value


def _no_surrogates(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # raises for a lone surrogate (a `\udXXX` escape)
        elif isinstance(item, dict):
            for key, inner in item.items():
                key.encode("utf-8")
                stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def json_route(path: str) -> bool:
    return not (path == "/" or path.startswith(NON_JSON_ROUTES[1:]))


def check_answer(path: str, status: int, content_type: str, body: bytes) -> Any:
    """No 5xx; a JSON route (and every error) answers a strict JSON object."""
    assert status < 500, f"{status} for {path}: {body[:300]!r}"
    if status == 304 or (status < 300 and not json_route(path)):
        return None
    assert content_type.startswith("application/json"), f"{content_type} for {path} ({status})"
    answer = strict_loads(body)
    assert isinstance(answer, dict | list), answer
    if status >= 400:
        assert isinstance(answer, dict) and answer.get("status") == status and answer.get("error")
    return answer


def assert_stored_strict(redis_url: str, prefix: str) -> int:
    """Every stored value under `prefix` (strings, hash values, list items) that is JSON, and
    every JSON text inside one, parses as strict JSON; every stored byte string, set and zset
    members too, is valid UTF-8. Returns how many JSON values were checked.

    Bare words are not JSON here (an id may be the text `NaN`): a value counts as JSON when it
    starts like an object, an array, a string or a number."""
    client = redis.Redis.from_url(redis_url)  # bytes, not decoded: junk would show
    try:
        return _check_keys(client, prefix)
    finally:
        client.close()


def _check_keys(client: redis.Redis, prefix: str) -> int:
    checked = 0
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = client.type(key)
        members: list[bytes] = []
        values: list[bytes | None] = []
        if kind == b"string":
            values = [client.get(key)]
        elif kind == b"hash":
            pairs = client.hgetall(key)
            members, values = list(pairs.keys()), list(pairs.values())
        elif kind == b"list":
            values = list(client.lrange(key, 0, -1))
        elif kind == b"set":
            members = list(client.smembers(key))
        elif kind == b"zset":
            members = list(client.zrange(key, 0, -1))
        for raw in members:
            raw.decode("utf-8")
        for raw in values:
            if raw is not None:
                checked += _check_text(raw.decode("utf-8"), f"{key!r}")
    return checked


def _check_text(text: str, where: str) -> int:
    if text[:1] not in tuple('{["-0123456789'):
        return 0
    try:
        value = json.loads(text)  # lenient: is it JSON at all?
    except ValueError:
        return 0
    try:
        strict_loads(text)
    except ValueError as exc:
        raise AssertionError(f"{where} holds non-strict JSON ({exc}): {text[:200]}") from None
    checked = 1
    stack = [value]
    while stack:  # JSON text stored inside JSON (memos of a replayed run)
        item = stack.pop()
        if isinstance(item, str) and item[:1] in ("{", "["):
            checked += _check_text(item, where)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return checked
