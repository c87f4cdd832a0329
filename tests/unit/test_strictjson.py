"""Strict JSON (`app.strictjson`): what is refused, where the refusal points, what is repaired."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app import strictjson
from app.strictjson import MAX_DEPTH, JSONRejected


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("raw", "path", "problem"),
    [
        ('{"a": NaN}', ("a",), "finite"),
        ('{"a": Infinity}', ("a",), "finite"),
        ('{"a": -Infinity}', ("a",), "finite"),
        ('{"a": [1, {"b c": 1e999}]}', ("a", 1, "b c"), "finite"),
        ("-1e400", (), "finite"),
        ('{"a": "x\\ud800"}', ("a",), "surrogate"),
        ('{"a": "\\udfff"}', ("a",), "surrogate"),
        ('{"\\ud800": 1}', ("\ud800",), "surrogate"),
        ('"\\ud800"', (), "surrogate"),
        (b'{"a": "\xed\xa0\x80"}', ("a",), "surrogate"),  # one encoded in UTF-8 bytes
        (b"\xff", (), "not valid JSON"),
        ("{not json", (), "not valid JSON"),
        ("[1] 2", (), "not valid JSON"),
        ("1" * 5000, (), "not valid JSON"),  # past Python's int digit limit
    ],
)
def test_refusals_name_the_place(raw: str | bytes, path: tuple[Any, ...], problem: str) -> None:
    with pytest.raises(JSONRejected) as caught:
        strictjson.loads(raw)
    assert caught.value.path == path
    assert problem in caught.value.problem


def test_nesting_is_limited_whether_or_not_python_could_parse_it() -> None:
    assert strictjson.loads(json.dumps(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
    for depth in (MAX_DEPTH + 1, 990, 5_000, 100_000):
        with pytest.raises(JSONRejected) as caught:
            strictjson.loads("[" * depth + "]" * depth)
        assert "deeper than 100 levels" in caught.value.problem
    with pytest.raises(JSONRejected) as caught:
        strictjson.loads(json.dumps({"data": {"x": nested(200)}}))
    assert caught.value.path == ("data", "x", 0, 0)  # where the deep part starts


def test_what_strict_json_accepts() -> None:
    value = {
        "big": 2**80,
        "negative": -(2**70),
        "float": 1.5e300,
        "emoji": "\U0001f600",
        "text": "é ✓",
        "nothing": None,
        "flags": [True, False],
        "": {},
    }
    assert strictjson.loads(json.dumps(value)) == value
    assert strictjson.loads('"\\ud83d\\ude00"') == "\U0001f600"  # an escaped pair is fine
    strictjson.check(value)


def test_check_covers_values_built_in_memory() -> None:
    for bad, path in (
        ({"a": float("nan")}, ("a",)),
        ([1, (2, float("inf"))], (1,)),  # a tuple is no JSON value
        ({"a": {1: 2}}, ("a",)),  # nor is a non-string key
        ({"a": object()}, ("a",)),
        (float("-inf"), ()),
    ):
        with pytest.raises(JSONRejected) as caught:
            strictjson.check(bad)
        assert caught.value.path == path


def test_cleaned_repairs_lone_surrogates_as_go_does() -> None:
    value = {"a": "x\ud800y", "\udc00": ["\ud83d\ude00", "\ud83d", {"k": "\udfff"}]}
    assert strictjson.cleaned(value) == {
        "a": "x\ufffdy",
        "\ufffd": ["\U0001f600", "\ufffd", {"k": "\ufffd"}],
    }
    assert strictjson.cleaned("\ud800") == "\ufffd"
    with pytest.raises(JSONRejected):
        strictjson.cleaned({"a": float("nan")})
    with pytest.raises(JSONRejected):
        strictjson.cleaned(nested(MAX_DEPTH + 1))


def test_paths_render_as_fields() -> None:
    assert strictjson.render_path(("data", "items", 3, "price")) == "data.items[3].price"
    assert strictjson.render_path((2, "data"), "events") == "events[2].data"
    assert strictjson.render_path(("a b", "\ud800")) == '["a b"]["\\ud800"]'
    assert strictjson.render_path(()) == ""
    # The rendering is itself strict JSON text, whatever the keys were.
    strictjson.loads(json.dumps(strictjson.render_path(("\ud800", "é"))))


def test_dumps_never_writes_nan() -> None:
    assert strictjson.dumps({"a": [1, 2.5]}) == '{"a":[1,2.5]}'
    with pytest.raises(ValueError):
        strictjson.dumps({"a": float("nan")})
