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
from typing import Literal, cast

import celpy
from lark import Token, Tree

from app import expressions
from app.errors import BadRequest
from app.models import JSON

Kind = Literal["runs", "events"]

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

    def matches(self, variables: dict[str, JSON]) -> bool:
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


def program(text: str) -> celpy.Runner:
    return expressions.compile_expression(text)
