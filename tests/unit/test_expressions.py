"""CEL expressions: compile/evaluate, trigger filters, interpolation and the pause index."""

from __future__ import annotations

import json

import pytest

from app import expressions
from app.errors import BadRequest
from app.expressions import (
    PreparedPause,
    canonical_json,
    compile_expression,
    evaluate,
    interpolate,
    lookups_for,
    pause_matches,
    prepare_pause,
    trigger_matches,
)
from app.models import JSON, Pause, Trigger

TRIGGER: dict[str, JSON] = {
    "name": "shop/order.created",
    "data": {
        "order_id": "o-1",
        "n": -3,
        "amount": 12.5,
        "items": [1, 2],
        "customer": {"id": "c-9", "vip": True},
        "quote": 'say "hi"\n',
    },
    "id": "evt-1",
    "ts": 1_700_000_000_000,
    "user": {},
}


def _pause(prepared: PreparedPause, **overrides: object) -> Pause:
    fields: dict[str, object] = {
        "id": "p1",
        "run_id": "r1",
        "step": "s1",
        "step_name": "wait",
        "kind": "WaitForEvent",
        "event": "shop/order.paid",
        "expression": prepared.expression,
        "index_path": prepared.index_path,
        "index_value": prepared.index_value,
        "trigger_event": TRIGGER,
        "expires_at": 10,
        "created_at": 0,
    }
    fields.update(overrides)
    return Pause.model_validate(fields)


# --- compile and evaluate -------------------------------------------------------------------


def test_compile_is_cached() -> None:
    assert compile_expression("event.data.x == 1") is compile_expression("event.data.x == 1")


@pytest.mark.parametrize("expr", ["event.data.x ==", "event.data.x = 1", "foo(", "'unclosed"])
def test_compile_error_is_bad_request_naming_the_expression(expr: str) -> None:
    with pytest.raises(BadRequest) as info:
        compile_expression(expr)
    assert repr(expr) in info.value.message
    assert info.value.field == "expression"


def test_evaluate_true_and_false() -> None:
    assert evaluate("event.data.n > 2", {"event": {"data": {"n": 3}}}) is True
    assert evaluate("event.data.n > 2", {"event": {"data": {"n": 1}}}) is False


@pytest.mark.parametrize(
    "expr",
    [
        "event.data.n",  # an int, not a bool
        "event.data.name",  # a string
        "event.data.missing == 1",  # no such field: an evaluation error
        "event.data.n == 'x'",  # no such overload
        "1 / 0 == 1",
        "event.data.n ==",  # does not compile
    ],
)
def test_evaluate_non_bool_or_error_is_false(expr: str) -> None:
    assert evaluate(expr, {"event": {"data": {"n": 3, "name": "x"}}}) is False


def test_evaluate_logical_operators_absorb_errors_like_cel() -> None:
    variables: dict[str, JSON] = {"event": {"data": {"n": 3}}}
    assert evaluate("event.data.missing == 1 || event.data.n == 3", variables) is True
    assert evaluate("has(event.data.missing) && event.data.missing == 1", variables) is False


# --- triggers -------------------------------------------------------------------------------


def test_trigger_name_exact_and_wildcard() -> None:
    event: dict[str, JSON] = {"name": "app/user.created", "data": {}}
    assert trigger_matches(Trigger(event="app/user.created"), event)
    assert trigger_matches(Trigger(event="app/user.*"), event)
    assert trigger_matches(Trigger(event="app/*"), event)
    assert not trigger_matches(Trigger(event="app/user.deleted"), event)
    assert not trigger_matches(Trigger(event="other/*"), event)
    assert not trigger_matches(Trigger(cron="* * * * *"), event)


def test_trigger_expression_sees_the_event() -> None:
    trigger = Trigger(event="app/*", expression="event.data.plan == 'pro' && event.data.seats > 5")
    assert trigger_matches(trigger, {"name": "app/signup", "data": {"plan": "pro", "seats": 6}})
    assert not trigger_matches(trigger, {"name": "app/signup", "data": {"plan": "pro", "seats": 2}})
    assert not trigger_matches(trigger, {"name": "app/signup", "data": {}})
    assert not trigger_matches(trigger, {"name": "nope", "data": {"plan": "pro", "seats": 6}})


def test_on_failure_style_trigger() -> None:
    trigger = Trigger(
        event="inngest/function.failed", expression="event.data.function_id == 'app-send'"
    )
    failed: dict[str, JSON] = {
        "name": "inngest/function.failed",
        "data": {"function_id": "app-send", "run_id": "r", "error": {"message": "x"}},
    }
    assert trigger_matches(trigger, failed)
    assert not trigger_matches(trigger, {**failed, "data": {"function_id": "app-other"}})


# --- interpolation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("event.data.order_id == async.data.order_id", '"o-1" == async.data.order_id'),
        ("async.data.n == event.data.n", "async.data.n == (-3)"),
        ("async.data.amount > event.data.amount", "async.data.amount > 12.5"),
        ("async.data.c == event.data.customer", 'async.data.c == {"id":"c-9","vip":true}'),
        ("async.data.x == event.data.missing.deep", "async.data.x == null"),
        ("event.data.items.size() == 2", "[1,2].size() == 2"),
        ("event.data.order_id.startsWith('o-')", "\"o-1\".startsWith('o-')"),
        ('event.data["order_id"] == "o-1"', '{"order_id"'),
        ("has(event.data.order_id) && !has(event.data.nope)", "true && !false"),
        ("async.event.data == 'event.data.order_id'", "async.event.data == 'event.data.order_id'"),
        ('async.data.s == "event.data.n"', 'async.data.s == "event.data.n"'),
        ("event.id == async.data.source", '"evt-1" == async.data.source'),
    ],
)
def test_interpolate(expr: str, expected: str) -> None:
    assert interpolate(expr, TRIGGER).startswith(expected)


def test_interpolated_strings_round_trip_through_cel() -> None:
    expr = interpolate("async.data.q == event.data.quote", TRIGGER)
    assert evaluate(expr, {"async": {"data": {"q": 'say "hi"\n'}}})
    assert not evaluate(expr, {"async": {"data": {"q": "say hi"}}})


def test_interpolation_leaves_only_async() -> None:
    prepared = prepare_pause("event.data.customer.id == async.data.customer_id", TRIGGER)
    assert prepared.expression == '"c-9" == async.data.customer_id'
    # Evaluated without any `event` at all.
    assert prepared.expression is not None
    assert evaluate(prepared.expression, {"async": {"data": {"customer_id": "c-9"}}})


# --- the index ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "path", "value"),
    [
        ("event.data.order_id == async.data.order_id", "async.data.order_id", '"o-1"'),
        ("async.data.order_id == event.data.order_id", "async.data.order_id", '"o-1"'),
        ("async.data.n > 2 && async.data.id == 'x'", "async.data.id", '"x"'),
        ("async.data.n == event.data.n && async.data.ok == true", "async.data.n", "-3"),
        ("(async.data.a == 1 && async.data.b > 0) && async.name != 'x'", "async.data.a", "1"),
        ("async.data.c == event.data.customer", "async.data.c", '{"id":"c-9","vip":true}'),
        ("async.data.x == event.data.missing", "async.data.x", "null"),
        ("async.data.f == 2.0", "async.data.f", "2"),
        ("async.data.s == 'a' + 'b'", "async.data.s", '"ab"'),
        ('async.data.s == "a && b || c"', "async.data.s", '"a && b || c"'),
    ],
)
def test_index_found(expr: str, path: str, value: str) -> None:
    prepared = prepare_pause(expr, TRIGGER)
    assert (prepared.index_path, prepared.index_value) == (path, value)


@pytest.mark.parametrize(
    "expr",
    [
        "async.data.a == 1 || async.data.b == 2",
        "async.data.a == 1 && async.data.b == 2 || async.data.c == 3",
        "async.data.c == 3 && (async.data.a == 1 || async.data.b == 2) || true",
        "async.data.a != 1",
        "async.data.a > 1",
        "!(async.data.a == 1)",
        "async.data.a == async.data.b",
        "async.data.a == 1 < 2",  # (async.data.a == 1) < 2: not an equality with a literal
        "async.data.a + 1 == 2",
        "async.data.a == size(async.data.b)",
        "async.data.tags.exists(t, t == 'x')",
        "async.data.a == 1 ? true : false",
        "async.data.ts == timestamp('2024-01-01T00:00:00Z')",
    ],
)
def test_index_not_found(expr: str) -> None:
    prepared = prepare_pause(expr, TRIGGER)
    assert prepared.expression is not None
    assert prepared.index_path is None and prepared.index_value is None


def test_no_expression() -> None:
    assert prepare_pause(None, TRIGGER) == PreparedPause(None)
    assert prepare_pause("  ", TRIGGER) == PreparedPause(None)


def test_prepare_rejects_bad_expressions() -> None:
    with pytest.raises(BadRequest):
        prepare_pause("async.data.x ==", TRIGGER)


def test_lookups_for() -> None:
    event: dict[str, JSON] = {
        "name": "x",
        "data": {"order_id": "o-1", "n": 2.0, "obj": {"b": 1, "a": [1.0, "x"]}, "nil": None},
    }
    paths = [
        "async.data.order_id",
        "async.data.n",
        "async.data.obj",
        "async.data.nil",
        "async.data.missing",
        "async.data.order_id.deeper",
        "async.name",
        "data.order_id",
    ]
    assert lookups_for(paths, event) == [
        ("async.data.order_id", '"o-1"'),
        ("async.data.n", "2"),
        ("async.data.obj", '{"a":[1,"x"],"b":1}'),
        ("async.data.nil", "null"),
        ("async.name", '"x"'),
    ]


def test_canonical_json() -> None:
    assert canonical_json({"b": 1.0, "a": "é"}) == '{"a":"\\u00e9","b":1}'
    assert canonical_json(True) == "true"
    assert canonical_json(1.5) == "1.5"


@pytest.mark.parametrize(
    "incoming",
    [
        {"data": {"order_id": "o-1"}},
        {"data": {"order_id": "o-2"}},
        {"data": {"order_id": 1}},
        {"data": {}},
        {"data": {"order_id": None}},
        {"data": {"order_id": "o-1", "n": -3}},
    ],
)
@pytest.mark.parametrize(
    "expr",
    [
        "event.data.order_id == async.data.order_id",
        "async.data.order_id == 'o-1' && async.data.n == event.data.n",
        "async.data.order_id == event.data.missing",
    ],
)
def test_index_never_hides_a_match(expr: str, incoming: dict[str, JSON]) -> None:
    """If a pause matches an event, the event's lookups include the pause's index entry."""
    prepared = prepare_pause(expr, TRIGGER)
    event: dict[str, JSON] = {"name": "shop/order.paid", **incoming}
    assert prepared.index_path is not None
    if pause_matches(_pause(prepared), event):
        assert (prepared.index_path, prepared.index_value) in lookups_for(
            [prepared.index_path], event
        )


def test_pause_matches() -> None:
    prepared = prepare_pause("event.data.order_id == async.data.order_id", TRIGGER)
    pause = _pause(prepared)
    assert pause_matches(pause, {"name": "shop/order.paid", "data": {"order_id": "o-1"}})
    assert not pause_matches(pause, {"name": "shop/order.paid", "data": {"order_id": "o-2"}})
    assert not pause_matches(pause, {"name": "shop/order.paid", "data": {}})
    assert pause_matches(_pause(PreparedPause(None)), {"name": "x", "data": {}})


def test_pause_matches_uninterpolated_expression_sees_trigger_event() -> None:
    # A pause saved by an older writer may still reference `event`.
    pause = _pause(PreparedPause("event.data.order_id == async.data.order_id"))
    assert pause_matches(pause, {"name": "shop/order.paid", "data": {"order_id": "o-1"}})


def test_evaluations_are_counted_by_module_function(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = expressions.evaluate

    def counting(expr: str, variables: dict[str, JSON]) -> bool:
        calls.append(expr)
        return real(expr, variables)

    monkeypatch.setattr(expressions, "evaluate", counting)
    pause_matches(_pause(PreparedPause("async.data.x == 1")), {"data": {"x": 1}})
    assert calls == ["async.data.x == 1"]


# --- integers beyond int64 (issue 9, defect 2) ----------------------------------------------

BIG = 2**70 + 1
"""Beyond int64: CEL's int cannot hold it; celpy's json_to_cel raised for the whole event."""
HUGE = 10**400
"""Beyond a double's range too."""
BIG_EVENT: dict[str, JSON] = {
    "name": "shop/order.created",
    "data": {"order_id": "o-1", "big": BIG, "huge": HUGE, "neg": -(2**64), "ids": [1, BIG]},
    "user": {"account": 2**63},
}


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ("event.data.order_id == 'o-1'", True),  # unrelated fields still match
        ("event.data.order_id == 'o-2'", False),
        ("event.data.big > 1e21", True),  # the big field compares as a double
        ("event.data.big < 1e21", False),
        ("event.data.big > 100", True),
        ("event.data.neg < -1e19", True),
        ("event.data.huge > 1e300", True),
        ("event.user.account > 9e18", True),
        ("size(event.data.ids) == 2 && event.data.ids[0] == 1", True),
        ("event.data.big == 1180591620717411303424.0", True),  # double equality, as Inngest
    ],
)
def test_big_integers_evaluate_as_doubles(expr: str, want: bool) -> None:
    assert evaluate(expr, {"event": BIG_EVENT}) is want
    trigger = Trigger(event="shop/order.created", expression=expr)
    assert trigger_matches(trigger, BIG_EVENT) is want


def test_a_key_over_a_big_integer_stays_exact() -> None:
    assert expressions.value_of("event.data.big", {"event": BIG_EVENT}) == BIG
    assert expressions.value_of("event.data.ids", {"event": BIG_EVENT}) == [1, BIG]
    assert expressions.value_of("event.data.huge", {"event": BIG_EVENT}) == HUGE
    assert expressions.value_of("event.data.big + 1.0", {"event": BIG_EVENT}) == float(BIG) + 1


def test_pauses_interpolate_big_integers_and_index_what_cel_matches() -> None:
    prepared = prepare_pause(
        "async.data.id == event.data.big && async.data.h == event.data.huge", BIG_EVENT
    )
    assert prepared.expression == "async.data.id == 1.1805916207174113e+21 && async.data.h == 1e999"
    assert prepared.index_path == "async.data.id"
    pause = _pause(prepared, trigger_event=BIG_EVENT)
    for incoming, want in (
        ({"id": BIG, "h": HUGE}, True),
        ({"id": BIG - 1, "h": HUGE + 1}, True),  # the same doubles: CEL (and Inngest) say equal
        ({"id": 5, "h": HUGE}, False),
        ({"id": BIG, "h": 1}, False),
    ):
        event: dict[str, JSON] = {"name": "shop/order.paid", "data": incoming}
        assert pause_matches(pause, event) is want, incoming
        if want:  # the index finds every pause CEL would match
            lookups = lookups_for([prepared.index_path], event)
            assert (prepared.index_path, prepared.index_value) in lookups
    negative = prepare_pause("async.data.n == event.data.neg", BIG_EVENT)
    assert negative.expression == "async.data.n == (-1.8446744073709552e+19)"
    assert pause_matches(
        _pause(negative, trigger_event=BIG_EVENT),
        {"name": "shop/order.paid", "data": {"n": -(2**64)}},
    )


def test_cel_literal_of_json_values() -> None:
    assert (
        expressions.cel_literal({"a": [1, 2.5, None, True, "x"]}) == '{"a":[1,2.5,null,true,"x"]}'
    )
    assert expressions.cel_literal(2**63) == "9.223372036854776e+18"
    assert expressions.cel_literal(-(10**400)) == "-1e999"
    assert expressions.cel_literal(1e22) == "1e+22"
    assert expressions.cel_literal(3.0) == "3.0"
    for value in (BIG_EVENT, [2**64, -(2**64)], {"k": HUGE}):
        compile_expression(expressions.cel_literal(value))  # every literal compiles


def test_the_index_form_is_strict_json() -> None:
    """An integer beyond a double's range is infinity to CEL; its index form stays JSON."""
    assert canonical_json({"k": expressions.cel_numbers(10**400)}) == '{"k":"Infinity"}'
    assert canonical_json([float("-inf"), 2.0]) == '["-Infinity",2]'
    prepared = prepare_pause("async.data.k == event.data.k", {"data": {"k": [-(10**400)]}})
    assert prepared.index_value == '["-Infinity"]'
    for literal in ("0.0/0.0", "1.0/0.0", "-1e999"):  # computed non-finite literals
        index_value = prepare_pause(f"async.data.k == {literal}", {}).index_value
        assert index_value is not None and json.loads(index_value) in (
            "NaN",
            "Infinity",
            "-Infinity",
        )


def test_values_too_deep_or_large_for_a_literal_stay_references() -> None:
    """celpy's evaluator breaks near 60 levels of a literal: such values are compared
    through the trigger event the pause stores, with the same outcome."""
    deep: JSON = 1
    for _ in range(98):
        deep = [deep]
    large = "x" * 5_000
    trigger: dict[str, JSON] = {"name": "a", "data": {"deep": deep, "large": large, "id": 7}}
    expr = "async.data.d == event.data.deep && async.data.l == event.data.large"
    prepared = prepare_pause(expr + " && async.data.id == event.data.id", trigger)
    assert prepared.expression == expr + " && async.data.id == 7"
    assert (prepared.index_path, prepared.index_value) == ("async.data.id", "7")
    pause = _pause(prepared, trigger_event=trigger)
    same: dict[str, JSON] = {"name": "b", "data": {"d": deep, "l": large, "id": 7}}
    assert pause_matches(pause, same)
    assert not pause_matches(pause, {"name": "b", "data": {"d": [deep], "l": large, "id": 7}})
    assert interpolate("event.data.deep[0] == 1", trigger) == "event.data.deep[0] == 1"
