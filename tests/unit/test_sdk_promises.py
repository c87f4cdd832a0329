"""`app.sdk` keeps the promise that only the import changes: `output_type` with a serializer,
`ctx.step.ai`, `middleware=` and `TZ=` crons behave as in the official SDK 0.5.19, or are
refused loudly, never ignored."""

from __future__ import annotations

import datetime
from typing import Any

import inngest as official
import pydantic
import pytest
from inngest.experimental.ai import openai

import app.sdk as inngest
from app.drivers.base import CallResult
from app.errors import InvalidFunction
from app.ids import hash_step_id
from app.models import Trigger
from tests.unit.test_inprocess import Harness, Memory


class Order(pydantic.BaseModel):
    id: str
    total: float
    placed: datetime.date


ORDER = Order(id="o-1", total=9.5, placed=datetime.date(2026, 1, 2))
STORED = {"id": "o-1", "total": 9.5, "placed": "2026-01-02"}

typed = inngest.Inngest(app_id="typed", serializer=inngest.PydanticSerializer())
plain = inngest.Inngest(app_id="plain")


def trigger() -> inngest.TriggerEvent:
    return inngest.TriggerEvent(event="app/test")


# --- output_type ---------------------------------------------------------------------------


def test_output_type_stores_json_and_returns_the_model_fresh_and_on_replay() -> None:
    seen: list[object] = []

    @typed.create_function(fn_id="order", trigger=trigger())
    def handler(ctx: inngest.ContextSync) -> str:
        order = ctx.step.run("load", lambda: ORDER, output_type=Order)
        seen.append(order)
        orders = ctx.step.run("many", lambda: [order, order], output_type=list[Order])
        return f"{order.id}:{len(orders)}"

    memory = Memory()
    result = Harness(handler).call(handler, memory)
    assert result == CallResult("complete", output="o-1:2")
    assert memory.memos[hash_step_id("load")] == {"data": STORED}  # stored as JSON
    assert seen == [ORDER]  # handed back as the model within the same call
    again = Harness(handler).call(handler, memory)  # a replay from the stored memos
    assert again == CallResult("complete", output="o-1:2")
    assert seen == [ORDER, ORDER]


def test_output_type_matches_the_official_serializer() -> None:
    assert inngest.PydanticSerializer().serialize(ORDER, Order) == (
        official.PydanticSerializer().serialize(ORDER, Order)
    )
    assert inngest.PydanticSerializer().deserialize(STORED, Order) == ORDER


def test_async_handlers_and_function_output_type() -> None:
    @typed.create_function(fn_id="async-order", trigger=trigger(), output_type=Order)
    async def handler(ctx: inngest.Context) -> Order:
        async def load() -> Order:
            return ORDER

        order = await ctx.step.run("load", load, output_type=Order)
        assert isinstance(order, Order)
        return order

    memory = Memory()
    assert Harness(handler).call(handler, memory) == CallResult("complete", output=STORED)
    assert memory.memos[hash_step_id("load")] == {"data": STORED}


def test_without_a_serializer_output_type_changes_nothing_as_in_the_official_sdk() -> None:
    @plain.create_function(fn_id="untyped", trigger=trigger())
    def handler(ctx: inngest.ContextSync) -> object:
        return ctx.step.run("load", lambda: ORDER, output_type=Order)

    result = Harness(handler).call(handler)
    assert (result.kind, result.retriable) == ("error", False)
    assert result.error is not None and result.error["name"] == "OutputUnserializableError"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_stored_value_that_is_not_an_output_type_is_a_retriable_error() -> None:
    """As on the official SDK's replay: reading it back as `Order` fails the call."""

    @typed.create_function(fn_id="wrong-type", trigger=trigger())
    def handler(ctx: inngest.ContextSync) -> object:
        return ctx.step.run("load", lambda: {"id": 1}, output_type=Order)

    result = Harness(handler).call(handler, max_attempts=3)
    assert (result.kind, result.retriable) == ("error", True)
    assert result.error is not None and "Order" in str(result.error["message"])


# --- ctx.step.ai -----------------------------------------------------------------------------


def adapter() -> openai.Adapter:
    return openai.Adapter(auth_key="sk-test", base_url="http://127.0.0.1:9/v1", model="gpt-x")


def test_step_ai_infer_reports_the_ai_gateway_op_and_returns_the_memo() -> None:
    """The engine makes the call (app.outbound); the replay hands back its JSON answer."""
    after: list[object] = []

    @plain.create_function(fn_id="ai", trigger=trigger())
    def handler(ctx: inngest.ContextSync) -> object:
        ctx.step.run("before", lambda: 1)
        answer = ctx.step.ai.infer("ask", adapter=adapter(), body={"messages": []})
        after.append(answer)
        return answer

    memory = Memory()
    result = Harness(handler).call(handler, memory)
    assert result.kind == "ops"
    (op,) = result.ops
    assert (op.op, op.id, op.name) == ("AIGateway", hash_step_id("ask"), "ask")
    assert op.opts["url"] == "http://127.0.0.1:9/v1/chat/completions"
    assert op.opts["auth_key"] == "sk-test" and op.opts["format"] == "openai-chat"
    assert after == []
    answer = {"choices": [{"message": {"content": "hi"}}]}
    memory.memos[hash_step_id("ask")] = {"data": answer}
    memory.stack.append(hash_step_id("ask"))
    again = Harness(handler).call(handler, memory, kinds={hash_step_id("ask"): "AIGateway"})
    assert again == CallResult("complete", output=answer)
    failed = Harness(handler).call(
        handler,
        steps={
            hash_step_id("before"): {"data": 1},
            hash_step_id("ask"): {"error": {"name": "AIGatewayError", "message": "HTTP 500"}},
        },
    )
    assert failed.kind == "error" and failed.error is not None
    assert failed.error["name"] == "AIGatewayError"


def test_wait_for_signal_reports_the_op_and_returns_the_signal_or_none() -> None:
    @plain.create_function(fn_id="signal", trigger=trigger())
    def handler(ctx: inngest.ContextSync) -> object:
        return ctx.step.wait_for_signal(
            "wait", signal="sig-1", timeout=datetime.timedelta(seconds=90)
        )

    result = Harness(handler).call(handler)
    (op,) = result.ops
    assert (op.op, op.name) == ("WaitForSignal", "wait")
    assert op.opts == {"signal": "sig-1", "timeout": "90s", "conflict": "fail"}
    got = {"signal": "sig-1", "data": {"k": 1}}
    fired = Harness(handler).call(handler, steps={hash_step_id("wait"): {"data": got}})
    assert fired == CallResult("complete", output=got)
    timed_out = Harness(handler).call(handler, steps={hash_step_id("wait"): None})
    assert timed_out == CallResult("complete", output=None)


def test_wait_for_signal_refuses_bad_arguments() -> None:
    @plain.create_function(fn_id="signal-bad", trigger=trigger())
    def handler(ctx: inngest.ContextSync) -> object:
        return ctx.step.wait_for_signal("w", signal="s", timeout=1000, on_conflict="merge")  # type: ignore[arg-type]

    result = Harness(handler).call(handler)
    assert result.kind == "error" and result.error is not None
    assert "on_conflict" in str(result.error["message"])


def test_step_ai_infer_builds_the_official_sdks_opts() -> None:
    """The op the engine will get once it implements AIGateway: as inngest 0.5.19 builds it."""
    from inngest._internal.step_lib.base import AIInferOpts

    ours_body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    theirs_body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    from app.sdk.ai import infer_opts

    ours = infer_opts(adapter(), ours_body)
    a = adapter()
    a.on_call(theirs_body)
    theirs = AIInferOpts(
        auth_key=a.auth_key(),
        body=theirs_body,
        format=a.format(),
        headers=a.headers(),
        url=a.url_infer(),
    ).to_dict()
    assert ours == theirs
    assert ours["url"] == "http://127.0.0.1:9/v1/chat/completions"
    assert ours["body"] == {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-x"}


def test_async_step_ai_infer_and_wait_for_signal() -> None:
    @plain.create_function(fn_id="ai-async", trigger=trigger())
    async def handler(ctx: inngest.Context) -> object:
        answer = await ctx.step.ai.infer("ask", adapter=adapter(), body={})
        got = await ctx.step.wait_for_signal("wait", signal="s", timeout=5000)
        return [answer, got]

    assert Harness(handler).call(handler).ops[0].op == "AIGateway"
    steps: dict[str, Any] = {hash_step_id("ask"): {"data": {"a": 1}}}
    assert Harness(handler).call(handler, steps=steps).ops[0].op == "WaitForSignal"
    steps[hash_step_id("wait")] = {"data": {"signal": "s", "data": 2}}
    done = Harness(handler).call(handler, steps=steps)
    assert done == CallResult("complete", output=[{"a": 1}, {"signal": "s", "data": 2}])


# --- middleware ------------------------------------------------------------------------------


class EncryptionMiddleware(official.MiddlewareSync):
    """Stands in for `inngest_encryption.EncryptionMiddleware` (same base, same name)."""


def test_client_middleware_is_refused_naming_it() -> None:
    with pytest.raises(InvalidFunction) as info:
        inngest.Inngest(app_id="enc", middleware=[EncryptionMiddleware])
    assert info.value.field == "middleware"
    assert "EncryptionMiddleware" in info.value.message
    assert "plaintext" in info.value.message
    inngest.Inngest(app_id="none", middleware=[])  # nothing to ignore


def test_function_middleware_is_refused_naming_it() -> None:
    with pytest.raises(InvalidFunction) as info:
        plain.create_function(fn_id="enc", trigger=trigger(), middleware=[EncryptionMiddleware])
    assert "function 'plain-enc'" in info.value.message
    assert "EncryptionMiddleware" in info.value.message


# --- crons with a time zone ----------------------------------------------------------------


def test_cron_with_a_time_zone_prefix_is_accepted() -> None:
    @plain.create_function(
        fn_id="nightly", trigger=inngest.TriggerCron(cron="TZ=Europe/Paris 0 3 * * *")
    )
    def handler(ctx: inngest.ContextSync) -> None:
        return None

    assert handler.config()[0].triggers == [Trigger(cron="TZ=Europe/Paris 0 3 * * *")]
    with pytest.raises(InvalidFunction) as info:
        plain.create_function(
            fn_id="nowhere", trigger=inngest.TriggerCron(cron="TZ=Nowhere/Land 0 3 * * *")
        )(lambda ctx: None)
    assert info.value.field == "trigger[0].cron"
