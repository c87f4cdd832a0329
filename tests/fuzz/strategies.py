"""Hypothesis strategies for hostile input: JSON that strict JSON refuses and JSON it accepts
but that is still odd (huge integers, any Unicode, deep nesting), raw bytes, odd headers."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from hypothesis import strategies as st

from app.strictjson import MAX_DEPTH

ANY_TEXT = st.text(st.characters(exclude_categories=[]), max_size=12)
"""Any code point, lone surrogates included."""
VALID_TEXT = st.text(max_size=12)
"""Valid Unicode only (Hypothesis' default alphabet)."""
KEYS = st.one_of(st.sampled_from(["k", "n", "s", "id", "data", "_inngest", "", "a.b"]), ANY_TEXT)

EDGE_INTEGERS = st.sampled_from(
    [0, -1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 2**70 + 1, 10**400]
)
NUMBERS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(),
    EDGE_INTEGERS,
    st.floats(allow_nan=True, allow_infinity=True),
)
FINITE_NUMBERS = st.one_of(
    st.integers(-1000, 1000),
    st.integers(),
    EDGE_INTEGERS,
    st.floats(allow_nan=False, allow_infinity=False),
)


def json_values(text: st.SearchStrategy[str] = ANY_TEXT, numbers: Any = NUMBERS) -> Any:
    """Nested JSON-shaped values: NaN, infinities and lone surrogates unless told otherwise."""
    leaves = st.none() | st.booleans() | numbers | text
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
        max_leaves=12,
    )


STRICT_VALUES = json_values(VALID_TEXT, FINITE_NUMBERS)
"""Values strict JSON accepts (any integer, valid Unicode, finite floats, shallow)."""

TIMESTAMPS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 315_532_800_000, 4_102_444_799_999, 4_102_444_800_000, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    ANY_TEXT,
    st.booleans(),
)
EVENTS = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["fuzz/a", "fuzz/b", "fuzz/stop"]), ANY_TEXT)},
    optional={
        "data": st.one_of(st.dictionaries(KEYS, json_values(), max_size=5), json_values()),
        "user": st.one_of(st.dictionaries(KEYS, json_values(), max_size=3), json_values()),
        "id": st.one_of(ANY_TEXT, NUMBERS, st.none(), json_values()),
        "ts": TIMESTAMPS,
        "v": st.one_of(ANY_TEXT, NUMBERS, st.none()),
    },
)
"""Events as a client could send them: mostly shaped right, any field may be hostile."""
GOOD_EVENTS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["fuzz/a", "fuzz/b", "fuzz/stop"]),
        "data": st.dictionaries(KEYS, STRICT_VALUES, max_size=5),
    },
    optional={"id": VALID_TEXT, "user": st.dictionaries(KEYS, STRICT_VALUES, max_size=2)},
)
"""Events the API accepts, with odd but valid content: they reach the runner."""


def encode(value: Any) -> bytes:
    """JSON text as Python writes it: NaN/Infinity tokens, `\\udXXX` escapes for surrogates."""
    return json.dumps(value).encode()


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


NUMBER_TOKENS = st.sampled_from(
    ["1e999", "-1e400", "1E+309", "NaN", "Infinity", "-Infinity", "1" * 400, "-0", "1.0e-400"]
)
RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    EVENTS.map(encode),
    st.lists(EVENTS, max_size=4).map(encode),
    json_values().map(encode),
    # Number tokens Python reads leniently (1e999 is infinity), wherever a value goes.
    NUMBER_TOKENS.map(lambda t: f'{{"name": "fuzz/a", "data": {{"k": {t}}}}}'.encode()),
    NUMBER_TOKENS.map(lambda t: f'{{"data": {{"k": {t}}}, "from_step": {t}}}'.encode()),
    # Strings with surrogates as raw UTF-8 bytes rather than escapes.
    ANY_TEXT.map(
        lambda t: f'{{"name": "fuzz/a", "data": {{"k": "{t}"}}}}'.encode("utf-8", "surrogatepass")
    ),
    # Nesting from shallow to past Python's parse limit, in data and at the root.
    st.integers(MAX_DEPTH - 3, 3_000).map(
        lambda d: ('{"name": "fuzz/a", "data": {"k": ' + nested(d) + "}}").encode()
    ),
    st.integers(1, 3_000).map(lambda d: nested(d).encode()),
)
HEADER_TEXT = st.text(
    st.characters(max_codepoint=255, exclude_characters="\r\n", exclude_categories=["Cs"]),
    max_size=40,
)
"""What an HTTP client can put in a header value (Latin-1, no line breaks)."""
JSON_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "Application/JSON; charset=latin-1"]
)
OTHER_TYPES = st.sampled_from(
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz", ""]
)
CONTENT_TYPES = st.one_of(JSON_TYPES, JSON_TYPES, OTHER_TYPES, HEADER_TEXT)
"""Mostly JSON (a wrong type is refused with 415 before the body is read), often not."""
WIRE_CONTENT_TYPES = st.one_of(
    CONTENT_TYPES.filter(lambda t: t.isascii() and t.isprintable() and t == t.strip()),
    st.from_regex(r"[!-~]([ -~]{0,30}[!-~])?", fullmatch=True),
)
"""Content types a real HTTP client sends (visible ASCII): anything else is refused by the
HTTP layer (h11, gunicorn) before Stepline sees it."""
QUERY_NAMES = st.one_of(
    st.sampled_from(
        ["limit", "cursor", "after", "before", "status", "function_id", "app_id", "from_step"]
    ),
    ANY_TEXT,
)
QUERY_VALUES = st.one_of(
    ANY_TEXT,
    st.sampled_from(["0", "-1", "101", "1e999", "NaN", "9" * 30, "2024-13-45T99:99:99Z", "\x00"]),
    st.integers().map(str),
    st.binary(max_size=12).map(lambda b: b.decode("latin-1")),
)


def quote(text: str) -> str:
    """Percent-encode anything, lone surrogates included (as raw, invalid UTF-8 bytes)."""
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def query_string(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name)}={quote(value)}" for name, value in pairs)
