"""Strict JSON: what Stepline accepts from outside and is willing to store.

JSON as RFC 8259 defines it, which Python's `json` module is more lenient than:

- numbers are finite: `NaN`, `Infinity` and literals beyond a double (`1e999`, which Python
  reads as infinity) have no JSON form, so nothing could answer them back;
- strings and keys are valid Unicode: a lone UTF-16 surrogate (`"\\ud800"`) parses in
  Python but cannot be encoded as UTF-8 (Redis could not take it raw; stored escaped, it
  would be answered as JSON that strict readers refuse);
- arrays and objects nest at most `MAX_DEPTH` levels deep, below the ~200 levels pydantic's
  JSON parser reads (pauses and jobs are pydantic models) and far below the ~1,000 at which
  Python's recursion limit breaks `json.dumps` and the CEL conversion of an event; the
  engine wraps a value in a few more levels (a memo, a pause, a finish event).

Integers may have any size (`app.expressions` converts those beyond int64 for CEL).

    loads(raw)       parse a request or reply body; refuse what strict JSON cannot hold
    check(value)     the same checks over a value already in memory
    cleaned(value)   for values a function produced: lone surrogates become U+FFFD, as
                     Go's JSON decoder (hence Inngest) reads them; the other checks raise

Each refusal is a `JSONRejected` naming where it is (`data.items[3].price`), so the API can
answer 400 naming the field and a driver can name the step.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from app.models import JSON

MAX_DEPTH = 100
"""Arrays and objects nested in each other, the outermost counting as 1."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_DEEP_PATH = 4
"""A nesting refusal names the first levels of the path only (where the deep part starts)."""

Path = tuple[str | int, ...]


class JSONRejected(ValueError):
    """A JSON value strict JSON cannot hold: `problem` says why, `path` where."""

    def __init__(self, problem: str, path: Path = ()) -> None:
        super().__init__(f"{render_path(path)}: {problem}" if path else problem)
        self.problem = problem
        self.path = path


def render_path(path: Path, prefix: str = "") -> str:
    """`("data", "items", 3)` as `data.items[3]`; odd keys quoted (`data["a b"]`), with
    non-ASCII escaped so the path itself is always printable, strict JSON text."""
    out = prefix
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> JSON:
    """Parse a JSON text, then `check` it. Raises `JSONRejected`."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JSONRejected(_too_deep(max_depth)) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise JSONRejected(f"not valid JSON: {exc}") from None
    check(value, max_depth=max_depth)
    return value


def check(value: JSON, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise `JSONRejected` for the first part of `value` strict JSON cannot hold: a
    non-finite number, a lone surrogate, nesting beyond `max_depth`, a non-JSON type."""
    if not _clean(value, max_depth):
        _walk(value, max_depth, repair=False)


def cleaned(value: JSON, *, max_depth: int = MAX_DEPTH) -> JSON:
    """`value` with every lone surrogate replaced by U+FFFD (containers fixed in place);
    raises `JSONRejected` for the other problems `check` finds."""
    if isinstance(value, str):
        return _repair_text(value) if _has_surrogate(value) else value
    if not _clean(value, max_depth):
        _walk(value, max_depth, repair=True)
    return value


def _clean(value: JSON, max_depth: int) -> bool:
    """The fast path: is `value` strict JSON? (No paths kept: `_walk` finds the problem.)"""
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        kind = type(node)
        if kind is dict:
            for key in node:
                if type(key) is not str or (not key.isascii() and _SURROGATE.search(key)):
                    return False
            items: Any = node.values()
        elif kind is list:
            items = node
        else:
            items = (node,)  # the root scalar
            depth = 0
        if depth > max_depth:
            return False
        for item in items:
            kind = type(item)
            if kind is str:
                if not item.isascii() and _SURROGATE.search(item):
                    return False
            elif kind is dict or kind is list:
                push((item, depth + 1))
            elif kind is float:
                if item - item != 0.0:  # inf - inf and nan - nan are nan
                    return False
            elif not (item is None or kind is int or kind is bool):
                return False  # another type, or a subclass: `_walk` decides
    return True


def _walk(value: JSON, max_depth: int, *, repair: bool) -> None:
    """Depth-first over the containers of `value`, iteratively (deep input cannot blow the
    stack), keeping paths for the refusal. Scalars are checked where they sit."""
    if isinstance(value, str) and not repair and _has_surrogate(value):
        raise JSONRejected(_SURROGATE_PROBLEM)
    problem = _scalar_problem(value)
    if problem is not None:
        raise JSONRejected(problem)
    stack: list[tuple[Any, int, Path]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            raise JSONRejected(_too_deep(max_depth), path[:_DEEP_PATH])
        if isinstance(node, dict):
            items: Any = list(node.items()) if repair else node.items()
            for key, item in items:
                if not isinstance(key, str):
                    raise JSONRejected(f"key {key!r} is not a string", path)
                if _has_surrogate(key):
                    if not repair:
                        raise JSONRejected(_SURROGATE_PROBLEM, (*path, key))
                    del node[key]
                    key = _repair_text(key)
                    node[key] = item
                _item(node, key, item, depth, path, stack, repair)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                _item(node, index, item, depth, path, stack, repair)


def _item(
    parent: Any,
    key: str | int,
    item: Any,
    depth: int,
    path: Path,
    stack: list[tuple[Any, int, Path]],
    repair: bool,
) -> None:
    kind = type(item)
    if kind is str:
        if _has_surrogate(item):
            if not repair:
                raise JSONRejected(_SURROGATE_PROBLEM, (*path, key))
            parent[key] = _repair_text(item)
    elif kind is dict or kind is list:
        stack.append((item, depth + 1, (*path, key)))
    elif kind is float:
        if not math.isfinite(item):
            raise JSONRejected(_NON_FINITE_PROBLEM, (*path, key))
    elif item is None or kind is bool or kind is int:
        pass
    elif isinstance(item, dict | list):  # subclasses: rare, same rules
        stack.append((item, depth + 1, (*path, key)))
    else:
        problem = _scalar_problem(item)
        if problem is not None:
            raise JSONRejected(problem, (*path, key))
        if isinstance(item, str) and _has_surrogate(item):
            if not repair:
                raise JSONRejected(_SURROGATE_PROBLEM, (*path, key))
            parent[key] = _repair_text(item)


def _scalar_problem(value: Any) -> str | None:
    """What is wrong with a value that is not a container, if anything (the root's check)."""
    if value is None or isinstance(value, bool | int | dict | list):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else _NON_FINITE_PROBLEM
    if isinstance(value, str):
        return None  # surrogates: checked (or repaired) by the caller
    return f"{type(value).__name__} is not a JSON value"


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _repair_text(text: str) -> str:
    # Through UTF-16: a lone surrogate cannot be decoded and becomes U+FFFD.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _too_deep(max_depth: int) -> str:
    return f"arrays and objects nest deeper than {max_depth} levels"


_NON_FINITE_PROBLEM = (
    "not a finite number (NaN, Infinity and numbers beyond a double such as 1e999 have no "
    "JSON form)"
)
_SURROGATE_PROBLEM = "text with a lone UTF-16 surrogate (such as \\ud800) is not valid Unicode"


def dumps(value: JSON) -> str:
    """Compact JSON text; raises ValueError rather than write NaN or Infinity."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


__all__ = ["MAX_DEPTH", "JSONRejected", "check", "cleaned", "dumps", "loads", "render_path"]
