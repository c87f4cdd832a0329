"""OpenTelemetry traces of runs and steps: off unless the standard `OTEL_*` variables ask.

    configure()        once per process (`Engine.create`): when OTEL_TRACES_EXPORTER is set
                       (otlp, console) or an OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT is, and
                       OTEL_SDK_DISABLED is not true, install a TracerProvider (service name
                       OTEL_SERVICE_NAME, default "stepline"; batch export; the exporter reads
                       its own OTEL_EXPORTER_OTLP_* settings). Otherwise every span is a no-op.
    install(provider)  use this provider instead (tests: an InMemorySpanExporter)

One trace per run, whatever worker runs which job: the trace id and the run span's id are
derived from the run id, so no context has to travel through the queue.

    run <function>          the whole run, created_at → ended_at, emitted when it ends
      └─ call <function>    one per driver call (a job executing the function); its
         │                  context is what SDK apps get as `traceparent` (app/drivers/http)
         └─ step <name>     a step.run body executing in process (the current span while it
                            runs, so the user's own spans nest under it)

Attributes: `stepline.run_id`, `stepline.function_id`, `stepline.step`, `stepline.attempt`,
`stepline.status`; a failed call or run has status ERROR with the error's message.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags

log = logging.getLogger("stepline.tracing")

SCOPE = "stepline"
_provider: TracerProvider | None = None
_fixed_ids: ContextVar[tuple[int, int] | None] = ContextVar("stepline_span_ids", default=None)


class _RunIds(RandomIdGenerator):
    """Random ids, except for a run's span: its trace and span ids come from the run id."""

    def generate_trace_id(self) -> int:
        fixed = _fixed_ids.get()
        return fixed[0] if fixed is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        fixed = _fixed_ids.get()
        return fixed[1] if fixed is not None else super().generate_span_id()


def run_ids(run_id: str) -> tuple[int, int]:
    """The run's trace id (128 bits) and its run span's id (64 bits), never zero."""
    digest = hashlib.sha256(f"stepline-run:{run_id}".encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def enabled_by_env(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Install a provider exporting as the `OTEL_*` variables say; False when they ask for
    no traces (or a provider is installed already)."""
    env = os.environ if env is None else env
    if _provider is not None or not enabled_by_env(env):
        return False
    name = env.get("OTEL_SERVICE_NAME") or "stepline"
    provider = TracerProvider(
        resource=Resource.create({"service.name": name}), id_generator=_RunIds()
    )
    kind = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if kind == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        if kind != "otlp":
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported; exporting with otlp", kind)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    log.info("tracing on: service %s, exporter %s", name, kind)
    return True


def install(provider: TracerProvider | None) -> None:
    """Trace with `provider` (None: stop tracing). Its id generator is replaced by one that
    gives each run its fixed trace id."""
    global _provider
    if provider is not None:
        provider.id_generator = _RunIds()
    _provider = provider


def _tracer() -> trace.Tracer | None:
    return _provider.get_tracer(SCOPE) if _provider is not None else None


def _run_parent(run_id: str) -> otel_context.Context:
    trace_id, span_id = run_ids(run_id)
    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def call_span(run_id: str, function_id: str, attempt: int, job_kind: str) -> Iterator[Span]:
    """The span of one driver call, current inside the block (child of the run's span)."""
    tracer = _tracer()
    if tracer is None:
        yield trace.INVALID_SPAN
        return
    attributes: dict[str, str | int] = {
        "stepline.run_id": run_id,
        "stepline.function_id": function_id,
        "stepline.attempt": attempt,
        "stepline.job_kind": job_kind,
    }
    with tracer.start_as_current_span(
        f"call {function_id}", context=_run_parent(run_id), attributes=attributes
    ) as span:
        yield span


def fail(span: Span, message: str) -> None:
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, message))


class StepSpan:
    """A step body's span (in-process): `start` makes it current, `end` ends it."""

    def __init__(self, name: str, step_id: str, run_id: str) -> None:
        self._span: Span | None = None
        self._token: Any = None
        tracer = _tracer()
        if tracer is None:
            return
        self._span = tracer.start_span(
            f"step {name}",
            attributes={
                "stepline.run_id": run_id,
                "stepline.step": name,
                "stepline.step_id": step_id,
            },
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def end(self, error: str | None = None) -> None:
        if self._span is None:
            return
        if error is not None:
            fail(self._span, error)
        otel_context.detach(self._token)
        self._span.end()
        self._span = None


def run_ended(
    run_id: str, function_id: str, status: str, created_at: int, ended_at: int, error: str
) -> None:
    """Emit the run's span (its fixed ids, created_at → ended_at)."""
    tracer = _tracer()
    if tracer is None:
        return
    token = _fixed_ids.set(run_ids(run_id))
    try:
        span = tracer.start_span(
            f"run {function_id}",
            context=otel_context.Context(),
            start_time=created_at * 1_000_000,
            attributes={
                "stepline.run_id": run_id,
                "stepline.function_id": function_id,
                "stepline.status": status,
            },
        )
    finally:
        _fixed_ids.reset(token)
    if error:
        fail(span, error)
    span.end(end_time=max(created_at, ended_at) * 1_000_000)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's context (`traceparent`, `tracestate`) to outgoing headers."""
    if _provider is not None:
        propagate.inject(headers)
