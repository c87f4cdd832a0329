"""OpenTelemetry spans of runs, calls and steps, exported to opentelemetry-sdk's
InMemorySpanExporter: through the real engine and Redis (jobs run by hand, Celery's broker hop
a recorder), and the `traceparent` the HTTP driver sends an SDK app (a local server replaying
a reply recorded from the official Python SDK)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import app.sdk as inngest
from app import tracing
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.state.diagnosis import Diagnosis
from tests.integration.test_flow_slots_engine import Recorder
from tests.sdk_apps.harness import CannedServer
from tests.unit.test_http_driver import PY_REPLIES, call, recorded

client = inngest.Inngest(app_id="traceunit")


def _user_work() -> int:
    # The user's own span: it nests under the step's span, the current one while it runs.
    with trace.get_tracer("user-code").start_as_current_span("query orders"):
        return 2


@client.create_function(fn_id="traced", trigger=inngest.TriggerEvent(event="trace/go"), retries=1)
def traced(ctx: inngest.ContextSync) -> int:
    first = ctx.step.run("first", _user_work)
    ctx.step.sleep("nap", datetime.timedelta(milliseconds=1))
    if ctx.event.data.get("fail"):
        ctx.step.run("boom", lambda: (_ for _ in ()).throw(ValueError("bad input")))
    return first + ctx.step.run("second", lambda: 3)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    previous = trace._TRACER_PROVIDER  # the user's tracer (in _user_work) uses the global one
    trace._TRACER_PROVIDER = provider
    yield exporter
    trace._TRACER_PROVIDER = previous
    tracing.install(None)
    provider.shutdown()


@pytest.fixture
def engine(redis_url: str) -> Iterator[Engine]:
    made = Engine.create(
        Settings(redis_url=redis_url), sender=Recorder(), local=FunctionSet([traced])
    )
    yield made
    made.store.close()


def run(engine: Engine, **data: Any) -> str:
    [event_id] = engine.runner.ingest([{"name": "trace/go", "data": data}], engine.now())
    engine.runner.process_event(event_id, engine.now())
    [run_id] = engine.store.event_run_ids(event_id)
    assert engine.jobs.handle(f"{run_id}:start") == "done"
    drain(engine, run_id)
    return run_id


def drain(engine: Engine, run_id: str) -> None:
    """Run the run's due jobs (its sleep's wake-up) as a worker would, until none is left
    or the next is a retry (not due yet)."""
    for _ in range(10):
        jobs = [q for q in Diagnosis(engine.store).run_jobs(run_id) if ":retry:" not in q.job.id]
        if not jobs:
            return
        for queued in jobs:
            engine.jobs.handle(queued.job.id)


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def test_a_run_is_one_trace_of_its_calls_and_steps(
    engine: Engine, spans: InMemorySpanExporter
) -> None:
    run_id = run(engine)
    view = engine.store.get_run(run_id)
    assert view is not None and view.status == "Completed"
    finished = spans.get_finished_spans()
    trace_id, run_span_id = tracing.run_ids(run_id)
    assert {span.context.trace_id for span in finished if span.name != "query orders"} == {trace_id}
    [root] = by_name(finished, "run traceunit-traced")
    assert root.context.span_id == run_span_id and root.parent is None
    assert root.attributes is not None and root.attributes["stepline.status"] == "Completed"
    assert root.start_time == view.created_at * 1_000_000
    assert root.end_time == view.ended_at * 1_000_000  # type: ignore[operator]
    calls = by_name(finished, "call traceunit-traced")
    assert len(calls) >= 2  # before the sleep and after it
    assert all(c.parent is not None and c.parent.span_id == run_span_id for c in calls)
    call_ids = {c.context.span_id for c in calls}
    [first] = by_name(finished, "step first")
    [second] = by_name(finished, "step second")
    assert first.parent is not None and first.parent.span_id in call_ids
    assert second.parent is not None and second.parent.span_id in call_ids
    assert first.attributes is not None and first.attributes["stepline.run_id"] == run_id
    [user] = by_name(finished, "query orders")
    assert user.parent is not None and user.parent.span_id == first.context.span_id
    assert user.context.trace_id == trace_id


def test_a_failing_step_and_run_are_marked_as_errors(
    engine: Engine, spans: InMemorySpanExporter
) -> None:
    run_id = run(engine, fail=True)
    view = engine.store.get_run(run_id)
    assert view is not None and view.status == "Running"  # the step waits for its retry
    [boom] = by_name(spans.get_finished_spans(), "step boom")
    assert boom.status.status_code is StatusCode.ERROR
    assert "ValueError: bad input" in (boom.status.description or "")
    assert by_name(spans.get_finished_spans(), "run traceunit-traced") == []  # not ended yet


def test_without_a_provider_nothing_is_traced(engine: Engine) -> None:
    tracing.install(None)
    run_id = run(engine)
    view = engine.store.get_run(run_id)
    assert view is not None and view.status == "Completed"
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}


def test_an_sdk_app_gets_the_calls_trace_context(spans: InMemorySpanExporter) -> None:
    server = CannedServer()
    try:
        with tracing.call_span("01HRUN", "cap-three", 0, "start") as span:
            result = call(server, recorded(PY_REPLIES["POST three with step a memoized"]))
            context = span.get_span_context()
        assert result.kind == "ops"
        header = server.received[0].headers["traceparent"]
        version, trace_hex, parent_hex, flags = header.split("-")
        assert (version, flags) == ("00", "01")
        assert int(trace_hex, 16) == tracing.run_ids("01HRUN")[0] == context.trace_id
        assert int(parent_hex, 16) == context.span_id
    finally:
        server.close()


def test_tracing_is_opt_in_with_the_standard_variables() -> None:
    assert not tracing.enabled_by_env({})
    assert tracing.enabled_by_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.enabled_by_env({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.enabled_by_env({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.enabled_by_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
