"""Fuzzing CEL over event data the API accepts (any integer, any valid Unicode, finite
floats): expressions, flow-control keys and pauses never raise, and a pause that compares a
field with the trigger's own value matches an event carrying that value (issue 9, defect 2).
No Redis: these are the functions the runner and the executor call."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from app import expressions
from app.flow import options, slots
from app.models import JSON, Pause, Trigger
from tests.fuzz.harness import examples
from tests.fuzz.strategies import KEYS, STRICT_VALUES

EVENTS = st.fixed_dictionaries(
    {
        "name": st.just("fuzz/a"),
        "data": st.dictionaries(KEYS, STRICT_VALUES, max_size=5),
        "user": st.dictionaries(KEYS, STRICT_VALUES, max_size=2),
    }
)
EXPRESSIONS = [
    "event.data.k == 'x'",
    "event.data.n > 10 || event.data.s == 'x'",
    "has(event.data.k) && event.data.k != null",
    "size(event.data) > 2",
    "event.data.k + 1 > 2",
    "string(event.data.k).startsWith('1')",
    "event.user.id in [1, 2, 3]",
]


@examples(60)
@given(event=EVENTS)
@example(event={"name": "fuzz/a", "data": {"k": 2**70, "n": 11}, "user": {"id": -(2**64)}})
def test_expressions_and_keys_never_raise(event: dict[str, JSON]) -> None:
    for expr in EXPRESSIONS:
        assert isinstance(expressions.evaluate(expr, {"event": event}), bool)
        assert isinstance(
            expressions.trigger_matches(Trigger(event="fuzz/*", expression=expr), event), bool
        )
    for expr in ("event.data.k", "event.data", "[event.data.k, event.user]", "event.data.k > 0"):
        for on_error in ("invalid", "off"):
            hashed = options.key_hash(expr, event, on_error=on_error)  # type: ignore[arg-type]
            assert hashed is None or isinstance(hashed, str)
        assert isinstance(slots.key_hash(expr, event), str)
    assert isinstance(slots.priority_factor("event.data.k", event), int)


@examples(120)
@given(value=STRICT_VALUES)
@example(value=2**70 + 1)
@example(value=-(10**400))
@example(value={"a": [1, 2.5, -0.0, "\x00\u2028\"'\\", None, True]})
@example(value=9_007_199_254_740_993)
def test_a_value_always_matches_itself(value: Any) -> None:
    """What `cancel: [{if: "async.data.k == event.data.k"}]` and `wait_for_event` rely on: the
    trigger's value, interpolated as a literal, equals the same value in the awaited event, and
    the pause index finds the pause."""
    trigger = {"name": "fuzz/a", "data": {"k": value}}
    prepared = expressions.prepare_pause("async.data.k == event.data.k", trigger)
    assert prepared.expression is not None and prepared.index_path == "async.data.k"
    pause = Pause(
        id="p",
        run_id="r",
        step="s",
        step_name="s",
        kind="Cancel",
        event="fuzz/stop",
        expression=prepared.expression,
        index_path=prepared.index_path,
        index_value=prepared.index_value,
        trigger_event=trigger,
        expires_at=1,
        created_at=0,
    )
    incoming: dict[str, JSON] = {"name": "fuzz/stop", "data": {"k": value}}
    assert expressions.pause_matches(pause, incoming), prepared.expression
    lookups = expressions.lookups_for([prepared.index_path], incoming)
    assert (prepared.index_path, prepared.index_value) in lookups
