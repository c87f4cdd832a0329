"""CEL expressions: trigger filters, pause matching and the pause index.

Expressions are written as Inngest writes them: a trigger's `expression` sees the incoming
event as `event`; a pause's `if` sees the run's trigger as `event` and the awaited event as
`async` (`event.data.order_id == async.data.order_id`).

When a pause is saved, every `event.<path>` is replaced by the JSON literal of that value in the
run's trigger event (`prepare_pause`), so a stored pause only needs `async` (a value too deep or
too large for a literal keeps its reference, evaluated against the trigger event the pause
stores). If what is left is a conjunction with a term `async.<path> == <literal>`, the pause is
indexed under that path and the canonical JSON of the literal: an incoming event is then only
compared against the pauses indexed under its own values (`lookups_for`), never against every
pending pause of its name.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import celpy
from celpy import celtypes

from app.errors import BadRequest
from app.models import JSON, Pause, Trigger
from app.registry import event_matches

log = logging.getLogger("stepline.expressions")

_COMPILE_LOCK = threading.Lock()
_MISSING = object()


@dataclass(frozen=True)
class PreparedPause:
    expression: str | None
    """The expression with `event.*` replaced by literals (None: any event matches)."""
    index_path: str | None = None
    """`async.<dotted path>` the pause is indexed under, if the expression pins one."""
    index_value: str | None = None
    """Canonical JSON of the value that path must equal."""


# --- compile and evaluate ------------------------------------------------------------------


@functools.cache
def _environment() -> celpy.Environment:
    return celpy.Environment()  # built on first use: it raises the recursion limit


@functools.lru_cache(maxsize=512)
def compile_expression(expr: str) -> celpy.Runner:
    """Compile `expr` once (cached; ~1 ms and ~30 KB each, hence the bound).

    Raises `BadRequest` naming the expression if it is invalid.
    """
    try:
        with _COMPILE_LOCK:
            env = _environment()
            return env.program(env.compile(expr))
    except Exception as exc:  # CELParseError, or lark errors the parser lets through
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadRequest(f"invalid expression {expr!r}: {detail}", field="expression") from exc


def evaluate(expr: str, variables: dict[str, JSON]) -> bool:
    """True only if `expr` evaluates to boolean true; errors and non-bools are False."""
    try:
        program = compile_expression(expr)
    except BadRequest as exc:
        log.warning("expression does not compile: %s", exc.message)
        return False
    try:
        activation = {name: to_cel(value) for name, value in variables.items()}
        result = program.evaluate(activation)
    except Exception:  # CELEvalError and friends: a failed predicate does not match
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def value_of(expr: str, variables: dict[str, JSON]) -> JSON:
    """The value of `expr` as plain JSON data (flow-control keys, priorities). Raises
    `BadRequest` when it does not compile, and the evaluation error when it fails."""
    activation = {name: to_cel(value) for name, value in variables.items()}
    result = compile_expression(expr).evaluate(activation)
    if isinstance(result, Exception):
        raise result
    return to_plain(result)


def to_plain(value: Any) -> JSON:
    """A CEL value as plain JSON data (celpy's bool is an int subclass: test it first)."""
    if isinstance(value, bool | celpy.celtypes.BoolType):
        return bool(value)
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, BigInt):
        return value.exact  # a key over a big integer stays exact
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    return str(value)


def trigger_matches(trigger: Trigger, event: dict[str, JSON]) -> bool:
    """Does `event` fire `trigger` (name pattern, then the optional expression over `event`)?"""
    name = event.get("name")
    if trigger.event is None or not isinstance(name, str):
        return False
    if not event_matches(trigger.event, name):
        return False
    if not trigger.expression:
        return True
    return evaluate(trigger.expression, {"event": event})


def pause_matches(pause: Pause, event: dict[str, JSON]) -> bool:
    """Does the incoming `event` satisfy the pause's expression (no expression: always)?"""
    if not pause.expression:
        return True
    return evaluate(pause.expression, {"async": event, "event": pause.trigger_event})


# --- JSON values as CEL sees them: integers beyond int64 ---------------------------------
#
# CEL's `int` is 64 bits, and celpy's `json_to_cel` raises for anything larger, which made
# every expression over an event holding one big integer (anywhere) fail. Inngest decodes
# event JSON into Go's float64, so its CEL sees every number as a double: integers beyond
# int64 are converted to the nearest double here (±infinity past a double's range), so
# unrelated fields match as before and comparisons on the big field keep their meaning
# (`event.data.id > 0`). Each remembers its exact value: a flow-control key that is such a
# field (`event.data.account_id`) hashes it exactly, so close big values never share a
# bucket. Equality between two big values compares the doubles, as in Inngest.

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class BigInt(celtypes.DoubleType):
    """An integer outside int64 as a CEL double; `exact` is the integer itself."""

    exact: int

    def __new__(cls, exact: int) -> BigInt:
        value = cast("BigInt", super().__new__(cls, as_double(exact)))
        value.exact = exact
        return value


def as_double(number: int) -> float:
    """The nearest double to an integer; ±infinity beyond the range of doubles."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def to_cel(value: JSON) -> Any:
    """JSON data as CEL values: celpy's `json_to_cel`, except that an integer outside int64
    becomes a `BigInt` double instead of an error."""
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return celtypes.IntType(value)
        return BigInt(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if value is None:
        return None
    if isinstance(value, dict):
        return celtypes.MapType(
            {celtypes.StringType(key): to_cel(item) for key, item in value.items()}
        )
    if isinstance(value, list | tuple):
        return celtypes.ListType([to_cel(item) for item in value])
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def cel_numbers(value: JSON) -> JSON:
    """`value` with each integer outside int64 replaced by its double: the value CEL compares
    (the pause index stores and looks up this form, so it finds what CEL would match)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return as_double(value)
    if isinstance(value, dict):
        return {key: cel_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [cel_numbers(item) for item in value]
    return value


def cel_literal(value: JSON) -> str:
    """A CEL literal for a JSON value (`event.*` interpolated into a pause): JSON text, but
    integers outside int64 written as doubles (`1.2089258196146292e+24`, `1e999` past a
    double's range), which is how CEL sees them (an int literal that large does not parse)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return str(value)
        return _double_literal(as_double(value))
    if isinstance(value, float):
        return _double_literal(value)
    if isinstance(value, dict):
        items = (f"{cel_literal(key)}:{cel_literal(item)}" for key, item in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(cel_literal(item) for item in value) + "]"
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def _double_literal(number: float) -> str:
    if math.isinf(number):
        return "1e999" if number > 0 else "-1e999"
    text = repr(number)
    return text if any(c in text for c in ".enN") else text + ".0"


# --- the pause index -----------------------------------------------------------------------


def canonical_json(value: JSON) -> str:
    """The index form of a value: sorted keys, no spaces, integral floats written as ints,
    a non-finite double (an integer beyond a double's range, as CEL sees it) as a string
    (`"Infinity"`), so the form is strict JSON like everything else stored.

    Folding 1.0 into 1, or infinity into a string, can only add candidates (they are then
    evaluated), never lose one.
    """
    return json.dumps(_fold_numbers(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _fold_numbers(value: JSON) -> JSON:
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # "Infinity", "-Infinity", "NaN" (0.0/0.0 in a literal)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _fold_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fold_numbers(item) for item in value]
    return value


def lookups_for(paths: list[str], event: dict[str, JSON]) -> list[tuple[str, str]]:
    """(path, canonical JSON of the event's value there) for each `async.*` path it has."""
    lookups: list[tuple[str, str]] = []
    for path in paths:
        parts = path.split(".")
        if len(parts) < 2 or parts[0] != "async":
            continue
        value = _walk(event, parts[1:])
        if value is not _MISSING:
            lookups.append((path, canonical_json(cel_numbers(value))))
    return lookups


def _walk(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def prepare_pause(expr: str | None, trigger_event: dict[str, JSON]) -> PreparedPause:
    """Interpolate `event.*` from the run's trigger event and find the index term, if any.

    Raises `BadRequest` if the expression (as written or once interpolated) does not compile.
    """
    if expr is None or not expr.strip():
        return PreparedPause(None)
    compile_expression(expr)
    interpolated = interpolate(expr, trigger_event)
    compile_expression(interpolated)
    found = _index_term(_tokenize(interpolated), interpolated)
    if found is None:
        return PreparedPause(interpolated)
    return PreparedPause(interpolated, found[0], found[1])


def interpolate(expr: str, trigger_event: dict[str, JSON]) -> str:
    """Replace each `event.<path>` with the JSON literal of that value (missing: null).

    `has(event.<path>)` becomes `true` or `false`, since `has` needs a field selection.
    """
    tokens = _tokenize(expr)
    out: list[str] = []
    cursor = 0
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not _is_event_root(tokens, i):
            i += 1
            continue
        path, end = _dotted_path(tokens, i)
        last = tokens[end - 1]
        value = _walk(trigger_event, path)
        if _is_has_call(tokens, i, end):
            out.append(expr[cursor : tokens[i - 2].start])
            out.append("true" if value is not _MISSING else "false")
            cursor = tokens[end].end
            i = end + 1
            continue
        literal = _literal(None if value is _MISSING else value)
        if literal is None:
            i = end  # too deep or too large for a literal: the reference stays
            continue
        out.append(expr[cursor : token.start])
        out.append(literal)
        cursor = last.end
        i = end
    out.append(expr[cursor:])
    return "".join(out)


LITERAL_MAX_DEPTH = 8
"""An interpolated value nested deeper than this stays an `event.<path>` reference: celpy's
evaluator spends ~40 frames per level of a literal, and breaks near 60 levels."""
LITERAL_MAX_CHARS = 4_096
"""A larger value stays a reference too: every pause would otherwise compile its own copy."""


def _literal(value: JSON) -> str | None:
    """The CEL literal for an interpolated value, or None to keep the reference (the pause
    stores the trigger event, and `pause_matches` evaluates `event` against it)."""
    if _nesting(value) > LITERAL_MAX_DEPTH:
        return None
    text = cel_literal(value)
    if len(text) > LITERAL_MAX_CHARS:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return f"({text})"
    return text


def _nesting(value: JSON) -> int:
    """How many arrays and objects are nested in `value` (0 for a scalar), iteratively."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend(
                (inner, depth) for inner in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def _is_event_root(tokens: list[_Token], i: int) -> bool:
    token = tokens[i]
    if token.kind != "ident" or token.text != "event":
        return False
    if i > 0 and tokens[i - 1].text == ".":
        return False  # a field named `event`, e.g. async.event
    return not (i + 1 < len(tokens) and tokens[i + 1].text == "(")


def _dotted_path(tokens: list[_Token], i: int) -> tuple[list[str], int]:
    """The field names after `event` at tokens[i], and the index just past the last one.

    A trailing name followed by `(` is a method call (`.startsWith(...)`), not a field.
    """
    path: list[str] = []
    j = i + 1
    while (
        j + 1 < len(tokens)
        and tokens[j].text == "."
        and tokens[j + 1].kind == "ident"
        and not (j + 2 < len(tokens) and tokens[j + 2].text == "(")
    ):
        path.append(tokens[j + 1].text)
        j += 2
    return path, j


def _is_has_call(tokens: list[_Token], i: int, end: int) -> bool:
    return (
        i >= 2
        and tokens[i - 1].text == "("
        and tokens[i - 2].kind == "ident"
        and tokens[i - 2].text == "has"
        and (i < 3 or tokens[i - 3].text != ".")
        and end < len(tokens)
        and tokens[end].text == ")"
        and end > i + 1
    )


_LITERAL_IDENTS = frozenset({"true", "false", "null"})
_RELATIONS = frozenset({"<", ">", "<=", ">=", "!=", "=="})


def _index_term(tokens: list[_Token], expr: str) -> tuple[str, str] | None:
    """The first `async.<path> == <literal>` term of a top-level conjunction, if any."""
    if any(t.kind == "op" and t.text in ("||", "?") for t in _top_level(tokens)):
        return None
    for start, end in _split_top(tokens, "&&"):
        part = tokens[start:end]
        if not part:
            return None
        # A parenthesised conjunct: look inside it ((a && b) && c is still a conjunction).
        if _wrapped(part):
            inner = part[1:-1]
            found = _index_term(inner, expr)
            if found is not None:
                return found
            continue
        found = _equality(part, expr)
        if found is not None:
            return found
    return None


def _equality(part: list[_Token], expr: str) -> tuple[str, str] | None:
    sides = _split_top(part, "==")
    if len(sides) != 2:
        return None
    (ls, le), (rs, re_) = sides
    left, right = part[ls:le], part[rs:re_]
    for path_side, literal_side in ((left, right), (right, left)):
        path = _async_path(path_side)
        if path is None:
            continue
        value = _literal_value(literal_side, expr)
        if value is _MISSING:
            return None
        return path, canonical_json(value)
    return None


def _async_path(side: list[_Token]) -> str | None:
    """`async.a.b` if `side` is exactly such a field selection."""
    if len(side) < 3 or len(side) % 2 == 0 or side[0].text != "async":
        return None
    names = side[2::2]
    dots = side[1::2]
    if any(t.text != "." for t in dots) or any(t.kind != "ident" for t in names):
        return None
    return "async." + ".".join(t.text for t in names)


def _literal_value(side: list[_Token], expr: str) -> Any:
    """The JSON value of a constant side (no variables), or _MISSING."""
    if not side:
        return _MISSING
    for token in side:
        if token.kind == "ident" and token.text not in _LITERAL_IDENTS:
            return _MISSING
    if any(t.kind == "op" and t.text in _RELATIONS for t in _top_level(side)):
        return _MISSING
    text = expr[side[0].start : side[-1].end]
    try:
        result = compile_expression(text).evaluate({})
    except Exception:
        return _MISSING
    return _from_cel(result)


def _from_cel(value: Any) -> Any:
    """A CEL result as plain JSON data, or _MISSING for non-JSON types (bytes, timestamps)."""
    if value is None:
        return None
    if isinstance(value, bool | celpy.celtypes.BoolType):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list):
        items = [_from_cel(item) for item in value]
        return _MISSING if any(item is _MISSING for item in items) else items
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            converted = _from_cel(item)
            if not isinstance(key, str) or converted is _MISSING:
                return _MISSING
            out[str(key)] = converted
        return out
    return _MISSING


# --- a small CEL lexer: enough to find identifiers, strings and top-level operators --------


@dataclass(frozen=True)
class _Token:
    kind: str  # "ident", "string", "number", "op"
    text: str
    start: int
    end: int


_TOKEN = re.compile(
    r"""
    (?P<string>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"|'''|"|'))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%!<>?:.,()\[\]{}])
    """,
    re.VERBOSE,
)


def _tokenize(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    n = len(expr)
    while i < n:
        if expr[i].isspace():
            i += 1
            continue
        match = _TOKEN.match(expr, i)
        if match is None:
            tokens.append(_Token("op", expr[i], i, i + 1))  # unknown: CEL will reject it
            i += 1
            continue
        kind = match.lastgroup or "op"
        if kind == "string":
            end = _string_end(expr, match.end(), match.group())
            tokens.append(_Token("string", expr[i:end], i, end))
            i = end
            continue
        tokens.append(_Token(kind, match.group(), i, match.end()))
        i = match.end()
    return tokens


def _string_end(expr: str, body: int, opener: str) -> int:
    quote = opener.lstrip("rRbB")
    raw = "r" in opener.lower().replace(quote, "")
    i = body
    while i < len(expr):
        if not raw and expr[i] == "\\":
            i += 2
            continue
        if expr.startswith(quote, i):
            return i + len(quote)
        i += 1
    return len(expr)


_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = frozenset(_OPEN.values())


def _top_level(tokens: list[_Token]) -> list[_Token]:
    depth = 0
    out: list[_Token] = []
    for token in tokens:
        if token.kind == "op" and token.text in _OPEN:
            depth += 1
        elif token.kind == "op" and token.text in _CLOSE:
            depth -= 1
        elif depth == 0:
            out.append(token)
    return out


def _split_top(tokens: list[_Token], operator: str) -> list[tuple[int, int]]:
    """Index ranges of `tokens` between top-level occurrences of `operator`."""
    depth = 0
    ranges: list[tuple[int, int]] = []
    start = 0
    for i, token in enumerate(tokens):
        if token.kind != "op":
            continue
        if token.text in _OPEN:
            depth += 1
        elif token.text in _CLOSE:
            depth -= 1
        elif depth == 0 and token.text == operator:
            ranges.append((start, i))
            start = i + 1
    ranges.append((start, len(tokens)))
    return ranges


def _wrapped(tokens: list[_Token]) -> bool:
    """Is the whole of `tokens` one parenthesised group?"""
    if len(tokens) < 2 or tokens[0].text != "(" or tokens[-1].text != ")":
        return False
    depth = 0
    for i, token in enumerate(tokens):
        if token.kind != "op":
            continue
        if token.text in _OPEN:
            depth += 1
        elif token.text in _CLOSE:
            depth -= 1
            if depth == 0 and i != len(tokens) - 1:
                return False
    return True
