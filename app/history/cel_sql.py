"""Search filters (`app/search.py`) as SQL over the history tables, on SQLite and PostgreSQL.

`translate(tree, source, dialect)` answers a clause and whether it is *exact*:

    exact      the clause matches exactly the rows the CEL filter matches: no CEL needed
    not exact  the clause matches every row the filter matches, and maybe more (None: it
               cannot narrow anything): the rows it finds are then evaluated with cel-python

Translated: comparisons of a field with a literal (== != < <= > >=, `in` a list of
literals), `.startsWith` / `.endsWith` / `.contains` with a string literal, `&&`, `||`, `!`.
Anything else (arithmetic, macros, `has`, comparisons of two fields) is left to CEL.

CEL's outcome is true, false or an error (a missing field, a comparison across types), and
an error only matches nothing: SQL's NULL plays the error, and its three-valued logic then
gives what CEL gives for `&&`, `||` and `!` (`missing || true` is true, `!missing` matches
nothing). A comparison of a JSON value with a literal is a CASE over the value's JSON type
(`OUTCOMES`): compared, true, false or NULL, exactly as cel-python answers for that pair of
types (`1 == 1.0` is an error, `2.5 >= 2` compares, `"x" != null` is true). Strings compare
by code point (PostgreSQL: COLLATE "C", SQLite: BINARY).

On PostgreSQL an equality on a JSON field, where no `!` is above it, also gives
`Translation.indexed`: `column @> {...}`, which the GIN indexes of migration 0003
(jsonb_path_ops) serve, for values too rare for the bounded walk (`app.history.sql_search`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from app.models import JSON
from app.search import (
    ORDER,
    OUTCOMES,
    Compare,
    Field,
    JsonKind,
    ListOf,
    Literal_,
    Logical,
    Method,
    Node,
    Not,
    Outcome,
    literal_type,
)

Clause = sa.ColumnElement[Any]


@dataclass(frozen=True)
class Translation:
    clause: Clause | None
    """None: no constraint (every row is a candidate)."""
    exact: bool
    indexed: Clause | None = None
    """PostgreSQL: a GIN-served condition every match meets (`column @> {...}`), for a
    search of rare values that the bounded walk of the list index would not reach."""
    narrow: Clause | None = None
    """A condition on plain columns only (status, function_id, created_at, an event's name,
    received_at) every match meets: the search walks the list index with it, so the bounded
    walk looks only at rows that can match (`status == "Failed" && function_id == "f"` is
    served by the (function, status, created) index, a `created_at` range by the created
    one) instead of the newest rows of the whole table."""


NOTHING = Translation(None, False)


@dataclass(frozen=True)
class Source:
    """What a filter's names are in one table."""

    json: dict[str, tuple[sa.Column[Any], tuple[str | int, ...]]]
    """A JSON name -> (column, path inside it): `event` -> (runs.events, (0,))."""
    columns: dict[tuple[str, ...], sa.Column[Any]] = field(default_factory=dict)
    """Plain columns by path: ("status",) -> runs.status, ("event", "name") -> events.name."""


def translate(node: Node, source: Source, dialect: str) -> Translation:
    return _Translator(source, dialect).node(node, positive=True)


class _Translator:
    def __init__(self, source: Source, dialect: str) -> None:
        self.source = source
        self.pg = dialect == "postgresql"

    def node(self, node: Node, *, positive: bool) -> Translation:
        """`positive`: no `!` above, so false and error mean the same (no match)."""
        if isinstance(node, Logical):
            left = self.node(node.left, positive=positive)
            right = self.node(node.right, positive=positive)
            exact = left.exact and right.exact
            if node.op == "&&":
                parts = [t.clause for t in (left, right) if t.clause is not None]
                if not parts:
                    return NOTHING
                found = [t.indexed for t in (left, right) if t.indexed is not None]
                both = sa.and_(*parts) if len(parts) > 1 else parts[0]
                if _is_plain(left) and _is_plain(right):
                    return _plain(both)
                narrow = [t.narrow for t in (left, right) if t.narrow is not None]
                return Translation(
                    both,
                    exact,
                    sa.and_(*found) if found else None,
                    sa.and_(*narrow) if narrow else None,
                )
            if left.clause is None or right.clause is None:
                return NOTHING
            either = (
                sa.or_(left.indexed, right.indexed)
                if left.indexed is not None and right.indexed is not None
                else None
            )
            one = sa.or_(left.clause, right.clause)
            if _is_plain(left) and _is_plain(right):
                return _plain(one)
            narrow_either = (
                sa.or_(left.narrow, right.narrow)
                if left.narrow is not None and right.narrow is not None
                else None
            )
            return Translation(one, exact, either, narrow_either)
        if isinstance(node, Not):
            inner = self.node(node.operand, positive=False)
            if inner.exact and inner.clause is not None:
                negated = sa.not_(inner.clause)
                return _plain(negated) if _is_plain(inner) else Translation(negated, True)
            return NOTHING
        if isinstance(node, Literal_) and isinstance(node.value, bool):
            return Translation(sa.true() if node.value else sa.false(), True)
        if isinstance(node, Field):
            # a field alone must be a bool; what CEL makes of other types is not pinned down
            alone = self.compare("==", node, True, positive=positive)
            return Translation(alone.clause, False)
        if isinstance(node, Compare):
            if node.op == "in":
                return self.within(node.left, node.right, positive=positive)
            if isinstance(node.left, Field) and isinstance(node.right, Literal_):
                return self.compare(node.op, node.left, node.right.value, positive=positive)
            return NOTHING
        if isinstance(node, Method):
            return self.method(node)
        return NOTHING

    # --- leaves ---------------------------------------------------------------------------
    def within(self, left: Node, right: Node, *, positive: bool) -> Translation:
        """`field in [literals]`. On a plain column: exact. On JSON, cel-python's `in` is not
        the `||` of equalities for every type (`1 in [true]` is true): a list of strings is
        (exact); a list of numbers gives a superset; anything else is left to CEL."""
        if not isinstance(left, Field) or not isinstance(right, ListOf):
            return NOTHING
        items = [item.value for item in right.items if isinstance(item, Literal_)]
        if len(items) != len(right.items):
            return NOTHING
        column = self.source.columns.get(left.path)
        if column is not None:
            if not items:
                return Translation(sa.false(), True)
            kind = str if isinstance(column.type, sa.String) else int
            if all(isinstance(v, kind) and not isinstance(v, bool) for v in items):
                return _plain(column.in_(items))
            return NOTHING
        kinds = {literal_type(value) for value in items}
        if not items or not (kinds == {"str"} or kinds <= {"int", "real"}):
            return NOTHING
        parts = [self.compare("==", left, value, positive=positive) for value in items]
        clauses = [part.clause for part in parts if part.clause is not None]
        if len(clauses) != len(parts):
            return NOTHING
        found = [part.indexed for part in parts if part.indexed is not None]
        indexed = sa.or_(*found) if len(found) == len(parts) else None
        return Translation(sa.or_(*clauses), kinds == {"str"}, indexed)

    def compare(self, op: str, target: Field, value: JSON, *, positive: bool) -> Translation:
        column = self.source.columns.get(target.path)
        if column is not None:
            return self._column(op, column, value)
        found = self._json(target)
        literal = literal_type(value)
        if found is None or literal is None:
            return NOTHING
        outcomes = OUTCOMES.get((literal, "order" if op in ORDER else op))
        if outcomes is None:
            return NOTHING
        if positive:
            clause = self._positive(found, outcomes, op, value)
        else:
            clause = self._case(found, outcomes, op, value)
        indexed = None
        if positive and self.pg and op == "==" and value is not None:
            indexed = self._containment(found, value)
        return Translation(clause, True, indexed)

    def method(self, node: Method) -> Translation:
        if node.name not in ("startsWith", "endsWith", "contains"):
            return NOTHING
        if not isinstance(node.target, Field) or len(node.args) != 1:
            return NOTHING
        arg = node.args[0]
        if not isinstance(arg, Literal_) or not isinstance(arg.value, str):
            return NOTHING
        text = arg.value
        column = self.source.columns.get(node.target.path)
        if column is not None:
            if not isinstance(column.type, sa.String):
                return NOTHING
            value: Clause = column
        else:
            found = self._json(node.target)
            if found is None:
                return NOTHING
            value = self._string(found)
        size = len(text)
        if node.name == "contains":
            position = sa.func.strpos if self.pg else sa.func.instr
            found_text = position(value, text) > 0
            if column is not None:
                return _plain(found_text)
            # on a map or a list CEL's `contains` asks for a key or an item: CEL decides those
            container = self._kind_in(self._json(node.target), ("list", "obj"))
            return Translation(sa.or_(found_text, container), False)
        made = _plain if column is not None else _exact
        if size == 0:
            return made(value.is_not(None))
        if node.name == "startsWith":
            head = sa.func.left(value, size) if self.pg else sa.func.substr(value, 1, size)
            return made(head == text)
        tail = sa.func.right(value, size) if self.pg else sa.func.substr(value, -size)
        return made(tail == text)

    # --- columns and JSON -----------------------------------------------------------------
    def _column(self, op: str, column: sa.Column[Any], value: JSON) -> Translation:
        if isinstance(column.type, sa.String):
            if not isinstance(value, str) or op not in ("==", "!="):
                return NOTHING
            return _plain(_apply(op, column, value))
        if isinstance(value, bool) or not isinstance(value, int):
            return NOTHING
        return _plain(_apply(op, column, value))

    def _json(self, target: Field) -> tuple[sa.Column[Any], tuple[str | int, ...]] | None:
        root = self.source.json.get(target.path[0])
        if root is None:
            return None
        column, prefix = root
        rest = target.path[1:]
        if any('"' in key or "\\" in key for key in rest):
            return None
        return column, (*prefix, *rest)

    def _case(
        self,
        found: tuple[sa.Column[Any], tuple[str | int, ...]],
        outcomes: dict[JsonKind, Outcome],
        op: str,
        value: JSON,
    ) -> Clause:
        """CASE over the value's JSON type: each type's outcome, else NULL (an error)."""
        column, path = found
        literal: JSON = int(value) if isinstance(value, bool) else value
        whens: list[tuple[Clause, Clause]] = []
        if not path and "null" in outcomes:  # an absent output/error is SQL NULL: CEL null
            whens.append((column.is_(None), _outcome(outcomes["null"], None)))
        for kind, outcome in outcomes.items():
            test, as_value = self._kind(found, kind)
            whens.append((test, _outcome(outcome, as_value, op, literal)))
        return sa.case(*whens)

    def _positive(
        self,
        found: tuple[sa.Column[Any], tuple[str | int, ...]],
        outcomes: dict[JsonKind, Outcome],
        op: str,
        value: JSON,
    ) -> Clause:
        """`_case` where no `!` is above: false and an error both mean no match, so only
        the types that can answer true are tested (cheaper, and no CASE for the planner).
        On PostgreSQL a string or boolean equality is JSONB equality (type included)."""
        column, path = found
        if self.pg and op == "==" and isinstance(value, str | bool) and path:
            return self._at(found) == sa.cast(sa.literal(json.dumps(value)), postgresql.JSONB)
        literal: JSON = int(value) if isinstance(value, bool) else value
        parts: list[Clause] = []
        if not path and outcomes.get("null") == "T":
            parts.append(column.is_(None))
        kinds: list[JsonKind | Literal["number"]] = list(outcomes)
        if outcomes.get("int") == "cmp" and outcomes.get("real") == "cmp":
            # both compared as numbers: one type test, no telling 1 from 1.0 (a regex each)
            kinds = ["number", *(kind for kind in kinds if kind not in ("int", "real"))]
        for kind in kinds:
            outcome = "cmp" if kind == "number" else outcomes[kind]
            if outcome == "F":
                continue
            test, as_value = self._number(found) if kind == "number" else self._kind(found, kind)
            if outcome == "T":
                parts.append(test)
            else:
                assert as_value is not None
                parts.append(sa.and_(test, _apply(op, as_value, literal)))
        return sa.or_(*parts) if len(parts) > 1 else parts[0]

    def _number(self, found: tuple[sa.Column[Any], tuple[str | int, ...]]) -> tuple[Clause, Clause]:
        """(is the value a JSON number, integer or not; the value as SQL)."""
        column, path = found
        if self.pg:
            at = self._at(found)
            return sa.func.jsonb_typeof(at) == "number", sa.cast(sa.cast(at, sa.Text), sa.Numeric)
        text_path = _sqlite_path(path)
        return (
            sa.func.json_type(column, text_path).in_(["integer", "real"]),
            sa.func.json_extract(column, text_path),
        )

    def _kind(
        self, found: tuple[sa.Column[Any], tuple[str | int, ...]], kind: JsonKind
    ) -> tuple[Clause, Clause | None]:
        """(is the value of this JSON type, the value as SQL for comparing)."""
        column, path = found
        if self.pg:
            at = self._at(found)
            typeof = sa.func.jsonb_typeof(at)
            text = sa.cast(at, sa.Text)
            fraction = text.regexp_match("[.eE]")
            if kind == "int":
                return sa.and_(typeof == "number", ~fraction), sa.cast(text, sa.Numeric)
            if kind == "real":
                return sa.and_(typeof == "number", fraction), sa.cast(text, sa.Numeric)
            if kind == "bool":
                one = sa.case((text == "true", 1), else_=0)
                return typeof == "boolean", one
            if kind == "str":
                return typeof == "string", self._string(found)
            names = {"null": "null", "list": "array", "obj": "object"}
            return typeof == names[kind], None
        text_path = _sqlite_path(path)
        json_type = sa.func.json_type(column, text_path)
        extracted = sa.func.json_extract(column, text_path)
        names_sqlite = {
            "int": ["integer"],
            "real": ["real"],
            "bool": ["true", "false"],
            "str": ["text"],
            "null": ["null"],
            "list": ["array"],
            "obj": ["object"],
        }
        return json_type.in_(names_sqlite[kind]), extracted

    def _kind_in(
        self,
        found: tuple[sa.Column[Any], tuple[str | int, ...]] | None,
        kinds: tuple[JsonKind, ...],
    ) -> Clause:
        assert found is not None
        return sa.or_(*(self._kind(found, kind)[0] for kind in kinds))

    def _at(self, found: tuple[sa.Column[Any], tuple[str | int, ...]]) -> Clause:
        column, path = found
        if not path:
            return column
        return column.op("#>")(sa.literal([str(p) for p in path], postgresql.ARRAY(sa.Text)))

    def _string(self, found: tuple[sa.Column[Any], tuple[str | int, ...]]) -> Clause:
        """The value as SQL text when it is a JSON string, else NULL."""
        column, path = found
        if self.pg:
            at = self._at(found)
            text = at.op("#>>")(sa.literal_column("'{}'::text[]"))
            return sa.case((sa.func.jsonb_typeof(at) == "string", text)).collate("C")
        text_path = _sqlite_path(path)
        return sa.case(
            (
                sa.func.json_type(column, text_path) == "text",
                sa.func.json_extract(column, text_path),
            )
        )

    def _containment(
        self, found: tuple[sa.Column[Any], tuple[str | int, ...]], value: JSON
    ) -> Clause | None:
        column, path = found
        if not path:
            return None
        document: JSON = value
        for part in reversed(path):
            if isinstance(part, int):
                if part != 0:
                    return None
                document = [document]
            else:
                document = {part: document}
        return column.op("@>")(sa.cast(sa.literal(json.dumps(document)), postgresql.JSONB))


def _plain(clause: Clause) -> Translation:
    """An exact condition on a plain column: it narrows the list index walk too."""
    return Translation(clause, True, narrow=clause)


def _is_plain(translation: Translation) -> bool:
    """Is the whole translation an exact condition on plain columns?"""
    return (
        translation.exact
        and translation.narrow is not None
        and (translation.narrow is translation.clause)
    )


def _exact(clause: Clause) -> Translation:
    return Translation(clause, True)


def _sqlite_path(path: tuple[str | int, ...]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f'."{p}"' for p in path)


def _outcome(
    outcome: Outcome, as_value: Clause | None, op: str = "==", literal: JSON = None
) -> Clause:
    if outcome == "T":
        return sa.true()
    if outcome == "F":
        return sa.false()
    assert as_value is not None
    return _apply(op, as_value, literal)


def _apply(op: str, left: Clause, value: JSON) -> Clause:
    right = sa.literal(value)
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right
