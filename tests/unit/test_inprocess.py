"""The in-process driver, called directly with an in-memory checkpoint (no Redis)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

import pytest

import app.sdk as inngest
from app.drivers.base import CallRequest, CallResult, CheckpointResult, Op
from app.drivers.inprocess import InProcessDriver
from app.functions import FunctionSet
from app.ids import hash_step_id
from app.models import JSON

EVENT = {"name": "app/test", "data": {"n": 1}, "id": "01EVENT", "ts": 1_700_000_000_000, "user": {}}


class Memory:
    """The test harness's state: a checkpoint that stores memos, first write wins."""

    def __init__(self, proceed: bool = True) -> None:
        self.memos: dict[str, JSON] = {}
        self.stack: list[str] = []
        self.checkpoints: list[Op] = []
        self.proceed = proceed

    def __call__(self, op: Op) -> CheckpointResult:
        self.checkpoints.append(op)
        if op.id not in self.memos:
            self.memos[op.id] = {"data": op.data}
            self.stack.append(op.id)
        return CheckpointResult(proceed=self.proceed, memo=self.memos[op.id])


class Harness:
    def __init__(self, *functions: inngest.Function[Any]) -> None:
        self.functions = FunctionSet(functions)
        self.driver = InProcessDriver(self.functions)

    def call(
        self,
        fn: inngest.Function[Any],
        memory: Memory | None = None,
        *,
        steps: dict[str, JSON] | None = None,
        attempt: int = 0,
        max_attempts: int = 5,
        target: str | None = None,
        disable_immediate_execution: bool = False,
        event: dict[str, JSON] | None = None,
        kinds: dict[str, str] | None = None,
    ) -> CallResult:
        memory = memory or Memory()
        if steps is not None:
            memory.memos.update(steps)
            memory.stack.extend(h for h in steps if h not in memory.stack)
        request = CallRequest(
            function=self.functions[fn.slug].config,
            run_id="01RUN",
            event=event or EVENT,
            events=[event or EVENT],
            steps=dict(memory.memos),
            stack=list(memory.stack),
            attempt=attempt,
            max_attempts=max_attempts,
            target=target,
            disable_immediate_execution=disable_immediate_execution,
            kinds=kinds or {},
        )
        return self.driver.call(request, memory)


client = inngest.Inngest(app_id="t")


def make(handler: Callable[..., Any], fn_id: str = "fn", **kwargs: Any) -> inngest.Function[Any]:
    return client.create_function(
        fn_id=fn_id, trigger=inngest.TriggerEvent(event="app/test"), **kwargs
    )(handler)


H = hash_step_id


# --- sequential steps ---------------------------------------------------------------------
def test_sequential_steps_run_in_one_call_with_checkpoints() -> None:
    calls: list[str] = []

    def body(name: str) -> str:
        calls.append(name)
        return name.upper()

    def handler(ctx: inngest.ContextSync) -> list[str]:
        a = ctx.step.run("a", body, "a")
        b = ctx.step.run("b", body, "b")
        return [a, b, ctx.step.run("c", lambda: f"{a}{b}")]

    fn = make(handler)
    memory = Memory()
    result = Harness(fn).call(fn, memory)
    assert result == CallResult("complete", output=["A", "B", "AB"])
    assert calls == ["a", "b"]
    assert [(op.op, op.id, op.name, op.data) for op in memory.checkpoints] == [
        ("StepRun", H("a"), "a", "A"),
        ("StepRun", H("b"), "b", "B"),
        ("StepRun", H("c"), "c", "AB"),
    ]


def test_checkpoint_refusing_to_proceed_stops_after_that_step() -> None:
    calls: list[str] = []

    def handler(ctx: inngest.ContextSync) -> None:
        ctx.step.run("a", lambda: calls.append("a"))
        ctx.step.run("b", lambda: calls.append("b"))

    fn = make(handler)
    result = Harness(fn).call(fn, Memory(proceed=False))
    assert result.kind == "ops"
    assert [(op.op, op.name) for op in result.ops] == [("StepRun", "a")]
    assert calls == ["a"]


def test_the_stored_value_is_authoritative() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("a", lambda: "mine")

    fn = make(handler)
    memory = Memory()
    memory.memos[H("a")] = {"data": "theirs"}  # another writer won, but we did not see it
    memory.stack.clear()
    request_steps: dict[str, JSON] = {}
    harness = Harness(fn)
    request = CallRequest(
        function=harness.functions[fn.slug].config,
        run_id="r",
        event=EVENT,
        events=[EVENT],
        steps=request_steps,
        stack=[],
        attempt=0,
        max_attempts=1,
    )
    assert harness.driver.call(request, memory).output == "theirs"


def test_memoized_steps_are_not_executed_again() -> None:
    calls: list[str] = []

    def body(name: str, value: int) -> int:
        calls.append(name)
        return value

    def handler(ctx: inngest.ContextSync) -> list[Any]:
        return [ctx.step.run("a", body, "a", 1), ctx.step.run("b", body, "b", 2)]

    fn = make(handler)
    result = Harness(fn).call(fn, steps={H("a"): {"data": 10}})
    assert result.output == [10, 2]
    assert calls == ["b"]


def test_repeated_step_ids_hash_with_a_counter() -> None:
    def handler(ctx: inngest.ContextSync) -> list[int]:
        return [ctx.step.run("x", lambda i=i: i) for i in range(3)]

    fn = make(handler)
    memory = Memory()
    result = Harness(fn).call(fn, memory)
    assert result.output == [0, 1, 2]
    assert [op.id for op in memory.checkpoints] == [H("x"), H("x", 1), H("x", 2)]
    assert H("x", 1) == hash_step_id("x:1")
    assert {op.name for op in memory.checkpoints} == {"x"}


def test_output_is_normalised_to_json() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("a", lambda: (1, 2))

    fn = make(handler)
    assert Harness(fn).call(fn).output == [1, 2]


# --- sleeps, waits, invokes ----------------------------------------------------------------
def test_sleep_reports_its_wake_time() -> None:
    def handler(ctx: inngest.ContextSync) -> str:
        ctx.step.sleep("nap", datetime.timedelta(seconds=30))
        return "woke"

    fn = make(handler)
    before = datetime.datetime.now(datetime.UTC)
    result = Harness(fn).call(fn)
    assert result.kind == "ops"
    (op,) = result.ops
    assert (op.op, op.id, op.name) == ("Sleep", H("nap"), "nap")
    until = op.opts["until"]
    assert isinstance(until, str) and until.endswith("Z") and len(until) == 24
    woke_at = datetime.datetime.fromisoformat(until.replace("Z", "+00:00"))
    assert datetime.timedelta(seconds=29) < woke_at - before < datetime.timedelta(seconds=31)
    # Any memo means the sleep is over.
    assert Harness(fn).call(fn, steps={H("nap"): None}).output == "woke"
    assert Harness(fn).call(fn, steps={H("nap"): {"data": None}}).output == "woke"


def test_sleep_until_and_int_durations() -> None:
    def handler(ctx: inngest.ContextSync) -> None:
        ctx.step.sleep_until("until", datetime.datetime(2030, 1, 2, 3, 4, 5, 678900, datetime.UTC))
        ctx.step.sleep("ms", 1500)

    fn = make(handler)
    (op,) = Harness(fn).call(fn).ops
    assert op.opts == {"until": "2030-01-02T03:04:05.678Z"}
    (op,) = Harness(fn).call(fn, steps={H("until"): None}).ops
    assert op.name == "ms"


def test_wait_for_event_reports_and_decodes() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        got = ctx.step.wait_for_event(
            "approval", event="app/ok", if_exp="async.data.n == event.data.n", timeout=90_000
        )
        return None if got is None else [got.name, got.data]

    fn = make(handler)
    (op,) = Harness(fn).call(fn).ops
    assert (op.op, op.id, op.name) == ("WaitForEvent", H("approval"), "approval")
    assert op.opts == {"event": "app/ok", "if": "async.data.n == event.data.n", "timeout": "90s"}
    raw = {"name": "app/ok", "data": {"n": 1}, "id": "e1", "ts": 1, "user": {}}
    assert Harness(fn).call(fn, steps={H("approval"): raw}).output == ["app/ok", {"n": 1}]
    wrapped = {"data": raw}
    assert Harness(fn).call(fn, steps={H("approval"): wrapped}).output == ["app/ok", {"n": 1}]
    assert Harness(fn).call(fn, steps={H("approval"): None}).output is None
    assert Harness(fn).call(fn, steps={H("approval"): {"data": None}}).output is None


def test_invoke_reports_and_returns_the_output() -> None:
    child = make(lambda ctx: 42, fn_id="child")

    def handler(ctx: inngest.ContextSync) -> Any:
        a = ctx.step.invoke("call", function=child, data={"x": 1}, timeout=3_600_000)
        b = ctx.step.invoke_by_id("other", app_id="app2", function_id="f", data={}, v="2")
        return [a, b]

    fn = make(handler)
    harness = Harness(fn, child)
    (op,) = harness.call(fn).ops
    assert (op.op, op.id, op.name) == ("InvokeFunction", H("call"), "call")
    assert op.opts == {
        "function_id": "t-child",
        "payload": {"data": {"x": 1}, "v": None},
        "timeout": "3600s",
    }
    (op,) = harness.call(fn, steps={H("call"): {"data": 42}}).ops
    assert op.opts == {"function_id": "app2-f", "payload": {"data": {}, "v": "2"}, "timeout": None}
    done = harness.call(fn, steps={H("call"): {"data": 42}, H("other"): {"data": None}})
    assert done.output == [42, None]


def test_failed_invoke_raises_step_error() -> None:
    child = make(lambda ctx: 42, fn_id="child2")

    def handler(ctx: inngest.ContextSync) -> Any:
        try:
            ctx.step.invoke("call", function=child)
        except inngest.StepError as err:
            return [err.name, err.message]
        return "no error"

    fn = make(handler)
    error = {"name": "InngestInvokeTimeoutError", "message": "timed out", "stack": None}
    result = Harness(fn, child).call(fn, steps={H("call"): {"error": error}})
    assert result.output == ["InngestInvokeTimeoutError", "timed out"]


# --- parallel and targeting -----------------------------------------------------------------
def _parallel_fn(calls: list[str], fn_id: str = "par") -> inngest.Function[Any]:
    def body(name: str) -> str:
        calls.append(name)
        return name

    def handler(ctx: inngest.ContextSync) -> Any:
        results = ctx.group.parallel(
            (
                lambda: ctx.step.run("a", body, "a"),
                lambda: ctx.step.run("b", body, "b"),
                lambda: ctx.step.sleep("s", 1000),
            )
        )
        return list(results)

    return make(handler, fn_id=fn_id)


def test_parallel_steps_are_planned_together() -> None:
    calls: list[str] = []
    fn = _parallel_fn(calls)
    memory = Memory()
    result = Harness(fn).call(fn, memory)
    assert result.kind == "ops"
    assert [(op.op, op.id) for op in result.ops] == [
        ("StepPlanned", H("a")),
        ("StepPlanned", H("b")),
        ("Sleep", H("s")),
    ]
    assert calls == [] and memory.checkpoints == []


def test_targeted_call_runs_only_its_target() -> None:
    calls: list[str] = []
    fn = _parallel_fn(calls, "par2")
    memory = Memory()
    result = Harness(fn).call(fn, memory, target=H("b"))
    assert [(op.op, op.id, op.data) for op in result.ops] == [("StepRun", H("b"), "b")]
    assert calls == ["b"] and memory.checkpoints == []
    # With every item recorded, the discovery call completes.
    steps: dict[str, JSON] = {H("a"): {"data": "a"}, H("b"): {"data": "b"}, H("s"): None}
    assert Harness(fn).call(fn, steps=steps).output == ["a", "b", None]


def test_targeted_call_for_a_recorded_step_reports_the_record() -> None:
    calls: list[str] = []
    fn = _parallel_fn(calls, "par3")
    result = Harness(fn).call(fn, steps={H("b"): {"data": "B"}}, target=H("b"))
    assert [(op.op, op.id, op.data) for op in result.ops] == [("StepRun", H("b"), "B")]
    assert calls == []


def test_race_mode_marks_the_ops() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        return ctx.group.parallel(
            (lambda: ctx.step.run("a", lambda: 1), lambda: ctx.step.run("b", lambda: 2)),
            parallel_mode=inngest.ParallelMode.RACE,
        )

    fn = make(handler, fn_id="race")
    result = Harness(fn).call(fn)
    assert [op.opts for op in result.ops] == [{"parallelMode": "race"}] * 2


def test_disable_immediate_execution_plans_new_steps() -> None:
    calls: list[str] = []

    def handler(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("a", lambda: calls.append("a"))

    fn = make(handler)
    result = Harness(fn).call(fn, disable_immediate_execution=True)
    assert [(op.op, op.id) for op in result.ops] == [("StepPlanned", H("a"))]
    assert calls == []
    result = Harness(fn).call(fn, disable_immediate_execution=True, target=H("a"))
    assert [op.op for op in result.ops] == ["StepRun"] and calls == ["a"]


# --- errors ---------------------------------------------------------------------------------
def _failing_step_fn(fn_id: str = "fails") -> inngest.Function[Any]:
    def handler(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("boom", lambda: 1 / 0)

    return make(handler, fn_id=fn_id)


def test_step_error_then_step_failed_on_the_last_attempt() -> None:
    fn = _failing_step_fn()
    (op,) = Harness(fn).call(fn, attempt=0, max_attempts=3).ops
    assert (op.op, op.id, op.name) == ("StepError", H("boom"), "boom")
    assert op.error is not None
    assert op.error["name"] == "ZeroDivisionError"
    assert op.error["message"] == "division by zero"
    assert "Traceback" in str(op.error["stack"])
    (op,) = Harness(fn).call(fn, attempt=2, max_attempts=3).ops
    assert op.op == "StepFailed"


def test_memoized_error_raises_step_error_catchable_by_user_code() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        try:
            ctx.step.run("boom", lambda: 1 / 0)
        except inngest.StepError as err:
            return {"name": err.name, "message": err.message}
        return "unreachable"

    fn = make(handler, fn_id="catches")
    error = {"name": "ZeroDivisionError", "message": "division by zero", "stack": "tb"}
    result = Harness(fn).call(fn, steps={H("boom"): {"error": error}})
    assert result.output == {"name": "ZeroDivisionError", "message": "division by zero"}


def test_uncaught_step_error_fails_the_run_without_retry() -> None:
    fn = _failing_step_fn("uncaught")
    error = {"name": "ZeroDivisionError", "message": "division by zero", "stack": "tb"}
    result = Harness(fn).call(fn, steps={H("boom"): {"error": error}})
    assert result.kind == "error" and result.retriable is False
    assert result.error == error


def test_non_retriable_error_in_a_step_fails_the_function() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        def body() -> None:
            raise inngest.NonRetriableError("nope")

        return ctx.step.run("a", body)

    fn = make(handler, fn_id="nonretry")
    result = Harness(fn).call(fn)
    assert result.kind == "error" and result.retriable is False
    assert result.error is not None
    assert (result.error["name"], result.error["message"]) == ("NonRetriableError", "nope")


def test_retry_after_error_sets_the_retry_time() -> None:
    at = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    def handler(ctx: inngest.ContextSync) -> Any:
        def body() -> None:
            raise inngest.RetryAfterError("later", at)

        return ctx.step.run("a", body)

    fn = make(handler, fn_id="retryafter")
    result = Harness(fn).call(fn)
    assert result.kind == "error" and result.retriable is True
    assert result.retry_at_ms == int(at.timestamp() * 1000)


def test_function_level_errors() -> None:
    def plain(ctx: inngest.ContextSync) -> None:
        raise ValueError("bad input")

    def final(ctx: inngest.ContextSync) -> None:
        raise inngest.NonRetriableError("give up")

    def later(ctx: inngest.ContextSync) -> None:
        raise inngest.RetryAfterError("busy", datetime.timedelta(seconds=60))

    fns = [make(plain, fn_id="e1"), make(final, fn_id="e2"), make(later, fn_id="e3")]
    harness = Harness(*fns)
    r1, r2, r3 = (harness.call(fn) for fn in fns)
    assert r1.kind == "error" and r1.retriable and r1.error and r1.error["name"] == "ValueError"
    assert r2.kind == "error" and not r2.retriable
    assert r3.kind == "error" and r3.retriable and r3.retry_at_ms is not None


def test_interrupts_are_not_swallowed_by_except_exception() -> None:
    def handler(ctx: inngest.ContextSync) -> str:
        try:
            ctx.step.sleep("nap", 1000)
        except Exception:
            return "swallowed"
        return "woke"

    fn = make(handler, fn_id="swallow")
    assert [op.op for op in Harness(fn).call(fn).ops] == ["Sleep"]


def test_unserialisable_output_fails_clearly() -> None:
    def step_output(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("make-set", lambda: {1, 2})

    def fn_output(ctx: inngest.ContextSync) -> Any:
        return object()

    f1, f2 = make(step_output, fn_id="ser1"), make(fn_output, fn_id="ser2")
    r1 = Harness(f1).call(f1)
    assert r1.kind == "error" and r1.retriable is False and r1.error is not None
    assert "make-set" in str(r1.error["message"]) and "set" in str(r1.error["message"])
    r2 = Harness(f2).call(f2)
    assert r2.kind == "error" and r2.retriable is False
    assert r2.error is not None and "object" in str(r2.error["message"])


def test_non_finite_outputs_fail_naming_the_step() -> None:
    def step_nan(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("ratio", lambda: {"values": [1.0, float("nan")]})

    def step_inf(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("overflow", lambda: float("inf"))

    def fn_nan(ctx: inngest.ContextSync) -> Any:
        return {"mean": float("-inf")}

    def step_deep(ctx: inngest.ContextSync) -> Any:
        def build() -> Any:
            value: Any = 1
            for _ in range(150):
                value = [value]
            return value

        return ctx.step.run("deep", build)

    for handler, fn_id, words in (
        (step_nan, "nan1", ["step 'ratio'", "values[1]", "finite"]),
        (step_inf, "nan2", ["step 'overflow'", "finite"]),
        (fn_nan, "nan3", ["function's output", "mean", "finite"]),
        (step_deep, "nan4", ["step 'deep'", "deeper than 100"]),
    ):
        fn = make(handler, fn_id=fn_id)
        memory = Memory()
        result = Harness(fn).call(fn, memory)
        assert result.kind == "error" and result.retriable is False, fn_id
        assert result.error is not None and result.error["name"] == "OutputUnserializableError"
        for word in words:
            assert word in str(result.error["message"]), (fn_id, result.error["message"])
        assert memory.checkpoints == []  # nothing was saved


def test_lone_surrogates_in_outputs_become_replacement_characters() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        cut = ctx.step.run("cut", lambda: {"text": "\U0001f600"[:1] + "\ud83d", "\udc00": 1})
        return [cut, "end\udfff"]

    fn = make(handler, fn_id="surrogates")
    memory = Memory()
    result = Harness(fn).call(fn, memory)
    assert result.kind == "complete"
    saved = {"text": "\U0001f600\ufffd", "\ufffd": 1}
    assert [op.data for op in memory.checkpoints] == [saved]
    assert result.output == [saved, "end\ufffd"]


def test_error_messages_are_stored_as_valid_unicode() -> None:
    def step_fails(ctx: inngest.ContextSync) -> Any:
        def body() -> None:
            raise ValueError("bad \udc80 byte")

        return ctx.step.run("decode", body)

    def fn_fails(ctx: inngest.ContextSync) -> Any:
        raise inngest.NonRetriableError("gave up on \ud800")

    step = make(step_fails, fn_id="err1")
    [op] = Harness(step).call(step).ops
    assert op.error is not None and op.error["message"] == "bad \ufffd byte"
    assert "\ufffd" in str(op.error["stack"])
    whole = make(fn_fails, fn_id="err2")
    result = Harness(whole).call(whole)
    assert result.error is not None and result.error["message"] == "gave up on \ufffd"


def test_nested_steps_are_refused() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("outer", lambda: ctx.step.run("inner", lambda: 1))

    fn = make(handler, fn_id="nested")
    result = Harness(fn).call(fn)
    assert result.kind == "error" and result.retriable is False and result.error is not None
    assert result.error["name"] == "NestedStepError"


# --- nondeterminism -------------------------------------------------------------------------
def test_a_step_met_out_of_order_is_nondeterminism() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        ctx.step.run("renamed", lambda: 1)
        return ctx.step.run("b", lambda: 2)

    fn = make(handler, fn_id="nondet")
    result = Harness(fn).call(fn, steps={H("original"): {"data": 1}})
    assert result.kind == "error" and result.retriable is False and result.error is not None
    assert result.error["name"] == "NonDeterminismError"
    message = str(result.error["message"])
    assert H("original") in message and "'renamed'" in message


def test_a_recorded_result_of_another_kind_is_nondeterminism() -> None:
    def waits(ctx: inngest.ContextSync) -> Any:
        return ctx.step.wait_for_event("x", event="app/e", timeout=1000)

    def runs(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("x", lambda: 1)

    f1, f2 = make(waits, fn_id="kind1"), make(runs, fn_id="kind2")
    r1 = Harness(f1).call(f1, steps={H("x"): {"data": 5}})  # a step.run's output
    r2 = Harness(f2).call(f2, steps={H("x"): None})  # a sleep's or timed-out wait's record
    for result in (r1, r2):
        assert result.kind == "error" and result.retriable is False and result.error is not None
        assert result.error["name"] == "NonDeterminismError"


def test_a_step_recorded_as_another_kind_is_nondeterminism() -> None:
    def sleeps_now(ctx: inngest.ContextSync) -> Any:
        ctx.step.sleep("x", 1000)  # was an invoke when the run recorded it
        return "done"

    fn = make(sleeps_now, fn_id="kind3")
    recorded = {H("x"): {"data": None}}
    result = Harness(fn).call(fn, steps=recorded, kinds={H("x"): "InvokeFunction"})
    assert result.kind == "error" and result.error is not None
    assert result.error["name"] == "NonDeterminismError"
    assert "InvokeFunction" in str(result.error["message"])
    assert "Sleep" in str(result.error["message"])
    same = Harness(fn).call(fn, steps=recorded, kinds={H("x"): "Sleep"})
    assert same.kind == "complete" and same.output == "done"


def test_targeted_call_meeting_an_unknown_sequential_step_is_nondeterminism() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("a", lambda: 1)

    fn = make(handler, fn_id="nondet2")
    result = Harness(fn).call(fn, target=H("zzz"))
    assert result.kind == "error" and result.error and result.error["name"] == "NonDeterminismError"


# --- context, events, logging, async --------------------------------------------------------
def test_context_fields() -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        return [ctx.run_id, ctx.attempt, ctx.event.name, ctx.event.data, len(ctx.events)]

    fn = make(handler, fn_id="ctx")
    assert Harness(fn).call(fn, attempt=2).output == ["01RUN", 2, "app/test", {"n": 1}, 1]


def test_send_event_is_a_memoized_step_through_the_installed_sender() -> None:
    sent: list[list[dict[str, JSON]]] = []
    local = inngest.Inngest(app_id="sender")

    def sender(events: list[dict[str, JSON]]) -> list[str]:
        sent.append(events)
        return [f"id{i}" for i in range(len(events))]

    @local.create_function(fn_id="fn", trigger=inngest.TriggerEvent(event="app/test"))
    def handler(ctx: inngest.ContextSync) -> list[str]:
        return ctx.step.send_event("send", [inngest.Event(name="app/x", data={"a": 1})])

    harness = Harness(handler)
    harness.functions.install_sender(sender)
    memory = Memory()
    assert harness.call(handler, memory).output == ["id0"]
    assert memory.checkpoints[0].id == H("send")
    assert sent[0][0]["name"] == "app/x" and sent[0][0]["data"] == {"a": 1}
    assert harness.call(handler, steps={H("send"): {"data": ["old"]}}).output == ["old"]
    assert len(sent) == 1


def test_logger_is_quiet_while_replaying(caplog: pytest.LogCaptureFixture) -> None:
    quiet = inngest.Inngest(app_id="logs", logger=logging.getLogger("test.replay"))

    @quiet.create_function(fn_id="fn", trigger=inngest.TriggerEvent(event="app/test"))
    def handler(ctx: inngest.ContextSync) -> None:
        ctx.logger.info("before a")
        ctx.step.run("a", lambda: 1)
        ctx.logger.info("after a")

    with caplog.at_level(logging.INFO, logger="test.replay"):
        Harness(handler).call(handler, steps={H("a"): {"data": 1}})
    assert [r.getMessage() for r in caplog.records] == ["after a"]


def test_async_handlers() -> None:
    calls: list[str] = []

    async def fetch(name: str) -> str:
        calls.append(name)
        return name.upper()

    async def handler(ctx: inngest.Context) -> Any:
        a = await ctx.step.run("a", fetch, "a")
        b = await ctx.step.run("b", lambda: "sync-body")
        pair = await ctx.group.parallel(
            (lambda: ctx.step.run("p1", fetch, "p1"), lambda: ctx.step.run("p2", fetch, "p2"))
        )
        await ctx.step.sleep("nap", 1000)
        return [a, b, list(pair)]

    fn = make(handler, fn_id="async")
    harness = Harness(fn)
    memory = Memory()
    result = harness.call(fn, memory)
    assert [(op.op, op.name) for op in result.ops] == [("StepPlanned", "p1"), ("StepPlanned", "p2")]
    assert calls == ["a"]
    assert harness.call(fn, memory, target=H("p2")).ops[0].data == "P2"
    memory.memos.update({H("p1"): {"data": "P1"}, H("p2"): {"data": "P2"}})
    memory.stack += [H("p1"), H("p2")]
    assert [op.op for op in harness.call(fn, memory).ops] == ["Sleep"]
    final = harness.call(fn, memory, steps={H("nap"): None})
    assert final.output == ["A", "sync-body", ["P1", "P2"]]
    assert calls == ["a", "p2"]


def test_async_step_error_and_send_event() -> None:
    local = inngest.Inngest(app_id="async2")
    local.set_sender(lambda events: ["e1"])

    @local.create_function(fn_id="fn", trigger=inngest.TriggerEvent(event="app/test"))
    async def handler(ctx: inngest.Context) -> Any:
        ids = await ctx.step.send_event("send", inngest.Event(name="app/x"))

        async def boom() -> None:
            raise KeyError("k")

        await ctx.step.run("boom", boom)
        return ids

    (op,) = Harness(handler).call(handler).ops
    assert op.op == "StepError" and op.error and op.error["name"] == "KeyError"


def test_failure_handler_runs_under_its_own_slug() -> None:
    def on_failure(ctx: inngest.ContextSync) -> Any:
        return ctx.event.data["function_id"]

    fn = make(lambda ctx: None, fn_id="with-failure", on_failure=on_failure)
    harness = Harness(fn)
    failed = {"name": "inngest/function.failed", "data": {"function_id": fn.slug}}
    request = CallRequest(
        function=harness.functions[f"{fn.slug}-failure"].config,
        run_id="r",
        event=failed,
        events=[failed],
        steps={},
        stack=[],
        attempt=0,
        max_attempts=1,
    )
    assert harness.driver.call(request, Memory()).output == "t-with-failure"


def test_unknown_function() -> None:
    fn = make(lambda ctx: None, fn_id="known")
    other = make(lambda ctx: None, fn_id="unknown")
    result = Harness(fn).driver.call(
        CallRequest(other.config()[0], "r", EVENT, [EVENT], {}, [], 0, 1), Memory()
    )
    assert result.kind == "error" and result.error and result.error["name"] == "FunctionNotFound"
