"""HttpDriver and sync against real apps built with the official SDKs, run as subprocesses:
Python (`tests/sdk_apps/py_app.py`) and TypeScript (`tests/sdk_apps/ts_app/index.js`, skipped
unless `npm install` was run there).

Each app is pointed at Stepline's real API (`LiveStepline`), exactly as a user points an app at
the Inngest dev server; then the test drives `HttpDriver.call` through every step shape,
memoizing by hand what the app reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from app.config import Settings
from app.drivers.base import CallRequest, CallResult, Op
from app.drivers.http import HttpDriver
from app.durations import parse_time_ms
from app.ids import hash_step_id
from app.models import FunctionConfig
from app.sync import SyncError, sync_app
from tests.sdk_apps.captures import CLOUD_SIGNING_KEY
from tests.sdk_apps.harness import LiveStepline, SdkApp, node_app, node_available, python_app

PRODUCTION = Settings(signing_key=CLOUD_SIGNING_KEY, allowed_app_hosts=["127.0.0.1"])
"""Production mode; the test apps listen on loopback, which production allows only if listed."""


@dataclass(frozen=True)
class Sdk:
    """One official SDK's test app and where its replies legitimately differ."""

    app_id: str
    start: Callable[[Mapping[str, str]], Iterator[SdkApp]]
    failure_handler_retries: int
    invoke_payload: dict[str, Any]

    def sent_ids(self, data: Any) -> list[str]:
        """`step.send_event` output: Python returns the ids, TS `{"ids": [...]}`."""
        return list(data if isinstance(data, list) else data["ids"])


SDKS = {
    "py": Sdk("pyapp", python_app, 0, {"data": {"n": 21}, "v": None}),
    "ts": Sdk("tsapp", node_app, 1, {"data": {"n": 21}}),
}


@pytest.fixture(scope="module", params=list(SDKS))
def sdk(request: pytest.FixtureRequest) -> Sdk:
    if request.param == "ts" and (why := node_available()):
        pytest.skip(why)
    return SDKS[request.param]


@pytest.fixture(scope="module")
def stepline() -> Iterator[LiveStepline]:
    stub = LiveStepline()
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def app(sdk: Sdk, stepline: LiveStepline) -> Iterator[SdkApp]:
    yield from sdk.start({"INNGEST_DEV": stepline.url})


@pytest.fixture(scope="module")
def functions(sdk: Sdk, app: SdkApp, stepline: LiveStepline) -> dict[str, FunctionConfig]:
    reply = sync_app(app.url, Settings())
    assert reply["modified"] is True
    return {
        fn.id.removeprefix(f"{sdk.app_id}-"): fn
        for fn in stepline.functions().values()
        if fn.app_id == sdk.app_id
    }


@pytest.fixture(scope="module")
def driver() -> Iterator[HttpDriver]:
    drv = HttpDriver(Settings())
    yield drv
    drv.close()


def no_checkpoint(op: Op) -> Any:
    raise AssertionError("the HTTP driver never checkpoints")


class Run:
    """One run of a function, driven by hand: memoize what the app reports, call again."""

    def __init__(
        self, driver: HttpDriver, fn: FunctionConfig, event: dict[str, Any] | None = None
    ) -> None:
        self.driver = driver
        self.fn = fn
        trigger = fn.triggers[0].event or "x"
        self.event = event or {"name": trigger, "data": {"id": "abc"}, "id": "01HEV", "ts": 1}
        self.steps: dict[str, Any] = {}
        self.stack: list[str] = []

    def memo(self, step: str, value: Any) -> None:
        self.steps[hash_step_id(step)] = value
        self.stack.append(hash_step_id(step))

    def call(self, *, target: str | None = None, attempt: int = 0, die: bool = False) -> CallResult:
        request = CallRequest(
            function=self.fn,
            run_id="01HRUNSDK",
            event=self.event,
            events=[self.event],
            steps=dict(self.steps),
            stack=list(self.stack),
            attempt=attempt,
            max_attempts=self.fn.max_attempts,
            target=hash_step_id(target) if target else None,
            disable_immediate_execution=die,
        )
        return self.driver.call(request, no_checkpoint)

    def op(self, **kwargs: Any) -> Op:
        result = self.call(**kwargs)
        assert result.kind == "ops" and len(result.ops) == 1, result
        return result.ops[0]


def test_registration(sdk: Sdk, functions: dict[str, FunctionConfig], app: SdkApp) -> None:
    # The apps serve more functions, for the end-to-end tests (tests/integration/test_sdk_*).
    assert set(functions) >= {
        "three",
        "child",
        "ops",
        "par",
        "fail",
        "fail-failure",
        "nr",
        "ra",
        "flow",
    }
    three = functions["three"]
    assert (three.retries, three.driver, three.app_id) == (2, "http", sdk.app_id)
    assert three.url == f"{app.url}?fnId={sdk.app_id}-three&stepId=step"
    assert functions["fail"].retries == 1
    assert functions["fail-failure"].retries == sdk.failure_handler_retries
    assert functions["ops"].retries == 4
    flow = functions["flow"]
    assert [t.cron for t in flow.triggers] == [None, "*/5 * * * *"]
    assert flow.triggers[0].expression == "event.data.x > 1"
    assert flow.options["concurrency"] == [{"limit": 1, "key": "event.data.k"}]
    assert set(flow.options) == {"concurrency", "debounce", "rateLimit", "idempotency", "cancel"}


def test_sync_again_is_not_a_change(functions: dict[str, FunctionConfig], app: SdkApp) -> None:
    assert sync_app(app.url, Settings())["modified"] is False


def test_sequential_steps(functions: dict[str, FunctionConfig], driver: HttpDriver) -> None:
    run = Run(driver, functions["three"])
    for step, value in (("a", 1), ("b", 2), ("c", 3)):
        op = run.op()
        assert (op.op, op.id, op.name, op.data) == ("StepRun", hash_step_id(step), step, value)
        run.memo(step, {"data": op.data})
    assert run.call() == CallResult("complete", output={"sum": 6})


def test_planned_then_targeted(functions: dict[str, FunctionConfig], driver: HttpDriver) -> None:
    run = Run(driver, functions["three"])
    planned = run.op(die=True)
    assert (planned.op, planned.id, planned.data) == ("StepPlanned", hash_step_id("a"), None)
    run.memo("a", {"data": 1})
    targeted = run.op(target="b")
    assert (targeted.op, targeted.name, targeted.data) == ("StepRun", "b", 2)


def test_parallel_group(functions: dict[str, FunctionConfig], driver: HttpDriver) -> None:
    run = Run(driver, functions["par"])
    result = run.call()
    assert [(op.op, op.name) for op in result.ops] == [("StepPlanned", "p1"), ("StepPlanned", "p2")]
    p2 = run.op(target="p2", die=True)
    assert (p2.op, p2.data) == ("StepRun", "y")
    run.memo("p2", {"data": "y"})
    p1 = run.op(target="p1", die=True)
    assert (p1.op, p1.data) == ("StepRun", "x")
    run.memo("p1", {"data": "x"})
    assert run.call(die=True) == CallResult("complete", output=["x", "y"])


def test_failing_step_retries_then_fails(
    sdk: Sdk, functions: dict[str, FunctionConfig], driver: HttpDriver
) -> None:
    run = Run(driver, functions["fail"])
    first = run.op(attempt=0)
    assert (first.op, first.no_retry) == ("StepError", False)
    assert first.error is not None and first.error["message"] == "kaput"
    last = run.op(attempt=1)
    assert (last.op, last.no_retry) == ("StepFailed", True)
    assert last.error is not None
    run.memo("boom", {"error": {k: last.error[k] for k in ("name", "message", "stack")}})
    result = run.call()
    assert (result.kind, result.retriable) == ("error", False)
    assert result.error is not None and result.error["message"] == "kaput"

    failed_event = {
        "name": "inngest/function.failed",
        "data": {
            "function_id": f"{sdk.app_id}-fail",
            "run_id": "01HRUNSDK",
            "error": {"name": "Error", "message": "kaput"},
            "event": run.event,
        },
        "id": "01HFAILED",
        "ts": 1,
    }
    handler = Run(driver, functions["fail-failure"], failed_event)
    assert handler.call() == CallResult("complete", output={"saw": "inngest/function.failed"})


def test_non_retriable_error(functions: dict[str, FunctionConfig], driver: HttpDriver) -> None:
    result = Run(driver, functions["nr"]).call()
    assert (result.kind, result.retriable) == ("error", False)
    assert result.error is not None
    assert (result.error["name"], result.error["message"]) == ("NonRetriableError", "stop now")


def test_retry_after_error(functions: dict[str, FunctionConfig], driver: HttpDriver) -> None:
    before = int(time.time() * 1000)
    result = Run(driver, functions["ra"]).call()
    after = int(time.time() * 1000)
    assert (result.kind, result.retriable) == ("error", True)
    assert result.error is not None and result.error["name"] == "RetryAfterError"
    assert result.retry_at_ms is not None
    assert before + 29_000 <= result.retry_at_ms <= after + 31_000


def test_sleep_wait_invoke_send(
    sdk: Sdk, functions: dict[str, FunctionConfig], driver: HttpDriver, stepline: LiveStepline
) -> None:
    run = Run(driver, functions["ops"])
    before = int(time.time() * 1000)
    sleep = run.op()
    assert (sleep.op, sleep.name) == ("Sleep", "nap")
    if "duration" in sleep.opts:
        assert sleep.opts == {"duration": "2s"}
    else:
        wake = parse_time_ms(str(sleep.opts["until"]))
        assert before + 1_000 <= wake <= int(time.time() * 1000) + 3_000
    run.memo("nap", None)

    wait = run.op()
    assert (wait.op, wait.name) == ("WaitForEvent", "wait")
    assert wait.opts == {
        "event": f"{sdk.app_id}/approve",
        "if": "async.data.id == event.data.id",
        "timeout": "1m",
    }
    approval = {"name": f"{sdk.app_id}/approve", "data": {"id": "abc"}, "id": "01HOK", "ts": 2}
    run.memo("wait", approval)

    invoke = run.op()
    assert (invoke.op, invoke.name) == ("InvokeFunction", "call")
    assert invoke.opts["function_id"] == f"{sdk.app_id}-child"
    assert invoke.opts["payload"] == sdk.invoke_payload
    run.memo("call", {"data": {"double": 42}})

    sent_before = len(stepline.events)
    send = run.op()
    assert (send.op, send.name) == ("StepRun", "send")
    assert len(sdk.sent_ids(send.data)) == 1
    assert [e["name"] for e in stepline.events[sent_before:]] == [f"{sdk.app_id}/sent"]
    run.memo("send", {"data": send.data})

    assert run.call() == CallResult(
        "complete", output={"approved": True, "invoked": {"double": 42}, "sent": send.data}
    )


def test_invoked_child(sdk: Sdk, functions: dict[str, FunctionConfig], driver: HttpDriver) -> None:
    invoked = {
        "name": "inngest/function.invoked",
        "data": {"n": 21, "_inngest": {"fn_id": f"{sdk.app_id}-child", "correlation_id": "r.h"}},
        "id": "01HINV",
        "ts": 3,
    }
    run = Run(driver, functions["child"], invoked)
    double = run.op()
    assert (double.op, double.data) == ("StepRun", 42)
    run.memo("double", {"data": 42})
    assert run.call() == CallResult("complete", output={"double": 42})


# --- production mode: signed both ways ---------------------------------------------------------


@pytest.fixture(scope="module")
def prod_stepline() -> Iterator[LiveStepline]:
    stub = LiveStepline(PRODUCTION)
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def cloud_app(sdk: Sdk, prod_stepline: LiveStepline) -> Iterator[SdkApp]:
    yield from sdk.start(
        {"INNGEST_BASE_URL": prod_stepline.url, "INNGEST_SIGNING_KEY": CLOUD_SIGNING_KEY}
    )


def test_production_mode_end_to_end(
    sdk: Sdk, cloud_app: SdkApp, prod_stepline: LiveStepline
) -> None:
    settings = PRODUCTION
    assert sync_app(cloud_app.url, settings)["modified"] is True
    three = prod_stepline.functions()[f"{sdk.app_id}-three"]
    driver = HttpDriver(settings)
    run = Run(driver, three)
    op = run.op()
    assert (op.op, op.name, op.data) == ("StepRun", "a", 1)

    other_key = PRODUCTION.replace(signing_key="signkey-prod-" + "cd" * 32)
    wrong = Run(HttpDriver(other_key), three).call()
    assert (wrong.kind, wrong.retriable) == ("error", True)
    assert wrong.error is not None and "refused our signature" in str(wrong.error["message"])
    unsigned = Run(HttpDriver(Settings()), three).call()
    assert (unsigned.kind, unsigned.retriable) == ("error", True)


def test_dev_app_refuses_a_production_sync(app: SdkApp) -> None:
    with pytest.raises(SyncError):
        sync_app(app.url, PRODUCTION)
