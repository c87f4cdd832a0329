"""Search filters: one CEL expression over runs or events, the same language in the API, the
UI and bulk operations.

    runs     event (the trigger event: event.name, event.data...), output, error, status,
             function_id, run_id, created_at, ended_at (ms)
    events   event (name, data, id, ts, user), received_at (ms)

`parse(text, kind)` compiles and checks a filter: a syntax error or a name the filter cannot
see raises `BadRequest` naming the problem (400). `Filter.matches(variables)` evaluates it
with cel-python (an evaluation error, such as a missing field, does not match). The history
store translates the common forms to SQL (`app/history/cel_sql.py`) from `Filter.tree`, a
small syntax tree of our own built here from celpy's parse tree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal, cast

import celpy
from lark import Token, Tree

from app import expressions
from app.errors import BadRequest
from app.models import JSON

Kind = Literal["runs", "events"]
JsonKind = Literal["int", "real", "bool", "str", "null", "list", "obj"]
Outcome = Literal["cmp", "T", "F"]
"""Compare the values / always true / always false; a kind not listed is an error."""
ORDER = ("<", "<=", ">", ">=")


MAX_FILTER_CHARS = 2000

NAMES: dict[Kind, tuple[str, ...]] = {
    "runs": (
        "event",
        "output",
        "error",
        "status",
        "function_id",
        "run_id",
        "created_at",
        "ended_at",
    ),
    "events": ("event", "received_at"),
}
_FUNCTIONS = {"has", "size", "int", "uint", "double", "string", "bytes", "bool", "type"}


NUMBER_ORDER: dict[JsonKind, Outcome] = {"int": "cmp", "real": "cmp", "bool": "cmp"}
OUTCOMES: dict[tuple[str, str], dict[JsonKind, Outcome]] = {
    # (literal type, operator) -> outcome per JSON type of the value (measured on cel-python)
    ("int", "=="): {"int": "cmp", "bool": "cmp"},  # booleans as 0 and 1: `true == 1`
    ("int", "!="): {"int": "cmp", "bool": "cmp"},
    ("int", "order"): NUMBER_ORDER,
    ("real", "=="): {"real": "cmp"},
    ("real", "!="): {"real": "cmp"},
    ("real", "order"): {"real": "cmp", "bool": "cmp"},
    ("bool", "=="): {"bool": "cmp", "str": "F", "null": "F"},
    ("bool", "!="): {"bool": "cmp", "str": "T", "null": "T"},
    ("str", "=="): {"str": "cmp", "bool": "F", "null": "F"},
    ("str", "!="): {"str": "cmp", "bool": "T", "null": "T"},
    ("str", "order"): {"str": "cmp"},
    ("null", "=="): {"null": "T", "bool": "F", "str": "F", "list": "F", "obj": "F"},
    ("null", "!="): {"null": "F", "bool": "T", "str": "T"},
}


def literal_type(value: JSON) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "real"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "null"
    return None


# --- our syntax tree ------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """A name with a path into it: `event.data.order.id` is Field(("event","data","order","id"))."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class Literal_:
    value: JSON


@dataclass(frozen=True)
class ListOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Compare:
    op: str  # == != < <= > >= in
    left: Node
    right: Node


@dataclass(frozen=True)
class Logical:
    op: str  # && ||
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Method:
    name: str  # startsWith, endsWith, contains, ...
    target: Node
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Other:
    """Anything else (arithmetic, macros, functions): evaluated by CEL only."""


Node = Field | Literal_ | ListOf | Compare | Logical | Not | Method | Other

_RELATIONS = {
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_in": "in",
}


@dataclass(frozen=True)
class Filter:
    source: str
    kind: Kind
    tree: Node

    @property
    def quick(self) -> bool:
        """Evaluated by `quick` (microseconds) rather than cel-python (milliseconds)?"""
        return _quick_supported(self.tree)

    def matches(self, variables: dict[str, JSON]) -> bool:
        """cel-python's answer. The forms SQL translates exactly are answered by `quick`,
        which gives the same answers (tests/unit/test_search.py) a hundred times faster."""
        if _quick_supported(self.tree):
            try:
                return quick(self.tree, variables) is True
            except Unsupported:
                pass  # a value quick leaves to cel-python (`.contains` on a map or list)
        return expressions.evaluate(self.source, variables)

    def matches_run(self, **fields: JSON) -> bool:
        """Does the run match (fields as `run_variables` takes them)?"""
        return self.matches(run_variables(**fields))

    def matches_event(self, event: dict[str, JSON], received_at: int) -> bool:
        return self.matches(event_variables(event, received_at))


def parse(text: str, kind: Kind, field: str = "filter") -> Filter:
    """The filter for `text`, or BadRequest (field `filter`) naming what is wrong."""
    return _parse(text.strip(), kind, field)


@functools.lru_cache(maxsize=256)
def _parse(text: str, kind: Kind, field: str) -> Filter:
    if not text:
        raise BadRequest("filter is empty", field=field)
    if len(text) > MAX_FILTER_CHARS:
        raise BadRequest(f"filter is longer than {MAX_FILTER_CHARS} characters", field=field)
    try:
        expressions.compile_expression(text)
    except BadRequest as exc:
        raise BadRequest(exc.message, field=field) from exc
    env = expressions._environment()
    with expressions._COMPILE_LOCK:
        raw = env.compile(text)
    unknown = sorted(_idents(raw) - set(NAMES[kind]) - _FUNCTIONS)
    if unknown:
        raise BadRequest(
            f"filter {text!r} uses unknown name {unknown[0]!r}: a {kind[:-1]} filter can use "
            + ", ".join(NAMES[kind]),
            field=field,
        )
    return Filter(text, kind, _node(raw, text))


def run_variables(
    *,
    event: dict[str, JSON] | None,
    output: JSON,
    error: JSON,
    status: str,
    function_id: str,
    run_id: str,
    created_at: int,
    ended_at: int | None,
) -> dict[str, JSON]:
    return {
        "event": event or {},
        "output": output,
        "error": error,
        "status": status,
        "function_id": function_id,
        "run_id": run_id,
        "created_at": created_at,
        "ended_at": ended_at,
    }


def event_variables(event: dict[str, JSON], received_at: int) -> dict[str, JSON]:
    return {"event": event, "received_at": received_at}


# --- celpy's parse tree to ours ------------------------------------------------------------
_MACROS = {"all", "exists", "exists_one", "map", "filter"}


def _idents(tree: Tree[Token]) -> set[str]:
    """Free names of the expression (a macro's bound variable, `i` in `items.exists(i, ...)`,
    is not one)."""
    found = set()
    bound = set()
    for sub in tree.iter_subtrees():
        if sub.data == "member_dot_arg" and len(sub.children) == 3:
            method, args = sub.children[1], sub.children[2]
            if str(method) in _MACROS and isinstance(args, Tree) and args.children:
                first = _strip(args.children[0])
                if isinstance(first, Tree) and first.data == "ident":
                    bound.add(str(first.children[0]))
        if sub.data == "ident" or sub.data == "ident_arg":
            token = sub.children[0]
            if isinstance(token, Token):
                found.add(str(token))
    return found - bound


def _strip(tree: Tree[Token] | Token) -> Tree[Token] | Token:
    """Skip the grammar's one-child layers (expr -> conditionalor -> ... -> primary)."""
    while (
        isinstance(tree, Tree)
        and len(tree.children) == 1
        and tree.data
        in (
            "expr",
            "conditionalor",
            "conditionaland",
            "relation",
            "addition",
            "multiplication",
            "unary",
            "member",
            "primary",
            "paren_expr",
        )
    ):
        tree = tree.children[0]
    return tree


def _node(raw: Tree[Token] | Token, text: str) -> Node:
    tree = _strip(raw)
    if isinstance(tree, Token):
        return Other()
    kind = tree.data
    children = tree.children
    if kind == "conditionalor" and len(children) == 2:
        return Logical("||", _node(children[0], text), _node(children[1], text))
    if kind == "conditionaland" and len(children) == 2:
        return Logical("&&", _node(children[0], text), _node(children[1], text))
    if kind == "relation" and len(children) == 2:
        head = children[0]
        if isinstance(head, Tree) and head.data in _RELATIONS and len(head.children) == 1:
            op = _RELATIONS[str(head.data)]
            return Compare(op, _node(head.children[0], text), _node(children[1], text))
        return Other()
    if kind == "unary" and len(children) == 2:
        sign = children[0]
        if isinstance(sign, Tree) and sign.data == "unary_not":
            return Not(_node(children[1], text))
        if isinstance(sign, Tree) and sign.data == "unary_neg":
            inner = _node(children[1], text)
            if isinstance(inner, Literal_) and _is_number(inner.value):
                return Literal_(-cast("int | float", inner.value))
        return Other()
    if kind == "ident":
        return Field((str(children[0]),))
    if kind == "member_dot" and len(children) == 2:
        target = _node(children[0], text)
        if isinstance(target, Field):
            return Field((*target.path, str(children[1])))
        return Other()
    if kind == "member_index" and len(children) == 2:
        target = _node(children[0], text)
        key = _node(children[1], text)
        if isinstance(target, Field) and isinstance(key, Literal_) and isinstance(key.value, str):
            return Field((*target.path, key.value))
        return Other()
    if kind == "member_dot_arg" and len(children) in (2, 3):
        args: tuple[Node, ...] = ()
        if len(children) == 3 and isinstance(children[2], Tree):
            args = tuple(_node(arg, text) for arg in children[2].children)
        return Method(str(children[1]), _node(children[0], text), args)
    if kind == "literal":
        return _literal(children[0])
    if kind == "list_lit":
        if not children:
            return ListOf(())
        items = children[0]
        if isinstance(items, Tree):
            return ListOf(tuple(_node(item, text) for item in items.children))
        return Other()
    return Other()


def _literal(token: Tree[Token] | Token) -> Node:
    if not isinstance(token, Token):
        return Other()
    if token.type in ("STRING_LIT", "INT_LIT", "FLOAT_LIT", "BOOL_LIT", "NULL_LIT"):
        try:
            value = expressions.value_of(str(token), {})
        except Exception:
            return Other()
        if token.type == "FLOAT_LIT" and isinstance(value, int):
            value = float(value)
        return Literal_(value)
    return Other()


def _is_number(value: JSON) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- the quick evaluator ---------------------------------------------------------------------
class Unsupported(Exception):
    """A form (or, raised while evaluating, a value) `quick` leaves to cel-python."""


_Answer = bool | None
"""True, False or None: CEL's error (a missing field, a comparison across types)."""


def _quick_supported(tree: Node) -> bool:
    return _supported(tree)


@functools.lru_cache(maxsize=256)
def _supported(tree: Node) -> bool:
    try:
        quick(tree, {}, check=True)
    except Unsupported:
        return False
    return True


def quick(tree: Node, variables: dict[str, JSON], *, check: bool = False) -> _Answer:
    """The filter's answer over plain JSON values for the forms SQL says exactly (the same
    `OUTCOMES` table): comparisons of a field with a literal, `in` a list of strings,
    `.startsWith`/`.endsWith`/`.contains`, `&&`, `||`, `!`. `check`: only walk the tree,
    raising Unsupported for any other form."""
    if isinstance(tree, Logical):
        left = quick(tree.left, variables, check=check)
        right = quick(tree.right, variables, check=check)
        if tree.op == "&&":
            if left is False or right is False:
                return False
            return None if left is None or right is None else True
        if left is True or right is True:
            return True
        return None if left is None or right is None else False
    if isinstance(tree, Not):
        inner = quick(tree.operand, variables, check=check)
        return None if inner is None else not inner
    if isinstance(tree, Literal_) and isinstance(tree.value, bool):
        return tree.value
    if isinstance(tree, Compare):
        if tree.op == "in":
            return _quick_in(tree, variables, check)
        if isinstance(tree.left, Field) and isinstance(tree.right, Literal_):
            return _quick_compare(tree.op, tree.left, tree.right.value, variables, check)
        raise Unsupported
    if isinstance(tree, Method):
        if (
            tree.name not in ("startsWith", "endsWith", "contains")
            or not isinstance(tree.target, Field)
            or len(tree.args) != 1
            or not isinstance(tree.args[0], Literal_)
            or not isinstance(tree.args[0].value, str)
        ):
            raise Unsupported
        if check:
            return None
        value = _lookup(tree.target, variables)
        if tree.name == "contains" and isinstance(value, dict | list):
            raise Unsupported  # a key or an item of it: cel-python's own rules
        if not isinstance(value, str):
            return None
        text = tree.args[0].value
        if tree.name == "startsWith":
            return value.startswith(text)
        if tree.name == "endsWith":
            return value.endswith(text)
        return text in value
    raise Unsupported


def _quick_in(tree: Compare, variables: dict[str, JSON], check: bool) -> _Answer:
    if not isinstance(tree.left, Field) or not isinstance(tree.right, ListOf):
        raise Unsupported
    items = [item.value for item in tree.right.items if isinstance(item, Literal_)]
    if len(items) != len(tree.right.items) or not all(isinstance(v, str) for v in items):
        raise Unsupported
    if not items:  # CEL still reads the field: a missing one is an error
        return None if check or _lookup(tree.left, variables) is _MISSING else False
    answers = [_quick_compare("==", tree.left, item, variables, check) for item in items]
    if True in answers:
        return True
    return None if None in answers else False


def _quick_compare(
    op: str, field: Field, literal: JSON, variables: dict[str, JSON], check: bool
) -> _Answer:
    kind_of_literal = literal_type(literal)
    outcomes = OUTCOMES.get((kind_of_literal or "", "order" if op in ORDER else op))
    if outcomes is None:
        raise Unsupported
    if check:
        return None
    value = _lookup(field, variables)
    if value is _MISSING:
        return None
    outcome = outcomes.get(_json_kind(value))
    if outcome is None:
        return None
    if outcome != "cmp":
        return outcome == "T"
    left: Any = int(value) if isinstance(value, bool) else value
    right: Any = int(literal) if isinstance(literal, bool) else literal
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


_MISSING: Any = object()


def _lookup(field: Field, variables: dict[str, JSON]) -> Any:
    value: Any = variables
    for key in field.path:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _json_kind(value: JSON) -> JsonKind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "real"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "null"
    return "list" if isinstance(value, list) else "obj"


def program(text: str) -> celpy.Runner:
    return expressions.compile_expression(text)
