"""Prometheus metrics kept in Redis, so every process (API, workers, beat, on any host) adds
to the same numbers and `/metrics` of any API process shows them all.

    counter (hash <p>:metric:<name>, field = function id)   incremented by
    runs_queued_total       create_run.lua          runs_started_total     mark_started.lua,
                                                    start_run.lua, create_run.lua (started)
    runs_completed_total    finish_run.lua          runs_failed_total      finish_run.lua
    runs_cancelled_total    finish_run.lua          events_received_total  POST /e (field "")
    histogram step_duration_seconds (fields "<function>|<bucket le>", "|count", "|sum")
                                                    save_step.lua (with the step's memo)
    gauges, read at scrape time: queue jobs (all / due / scheduled for later), pending pauses;
    liveness (app/liveness.py): workers alive, each process's heartbeat age, beat's tick age

Counting a run transition inside the Lua script that makes it means a transition is counted
exactly once, whatever retries or races happen around it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from app.liveness import Liveness, liveness
from app.state.ops import OpsStore

if TYPE_CHECKING:
    from app.state.store import Store

PREFIX = "stepline_"
EVENTS_RECEIVED = "events_received_total"
STEP_DURATION = "step_duration_seconds"
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class MetricsSource(Protocol):
    """What the collector reads (`OpsStore`)."""

    def read_metrics(self, names: list[str]) -> dict[str, dict[str, str]]: ...

    def queue_gauges(self, now: int) -> dict[str, int]: ...


@dataclass(frozen=True)
class RunCounter:
    name: str
    doc: str


RUN_COUNTERS = (
    RunCounter("runs_queued_total", "Runs created (queued), by function."),
    RunCounter("runs_started_total", "Runs whose first execution began, by function."),
    RunCounter("runs_completed_total", "Runs that completed, by function."),
    RunCounter("runs_failed_total", "Runs that failed, by function."),
    RunCounter("runs_cancelled_total", "Runs that were cancelled, by function."),
)


def bucket_for(seconds: float) -> str:
    """The (non-cumulative) bucket an observation falls in: its upper bound as Prometheus
    writes it (`0.005`, ..., `+Inf`)."""
    for bound in STEP_BUCKETS:
        if seconds <= bound:
            return _le(bound)
    return "+Inf"


def step_observation(seconds: float) -> tuple[str, float]:
    """A step duration as the script that saves the step counts it (lua/save_step.lua):
    (its bucket, seconds)."""
    seconds = max(0.0, seconds)
    return bucket_for(seconds), seconds


def observe_step(store: Store, function_id: str, seconds: float) -> None:
    """One step execution of `seconds` (its duration as the executor measured it)."""
    observe_steps(store, function_id, [seconds])


def observe_steps(store: Store, function_id: str, durations: list[float]) -> None:
    """Several step executions of one function, in one round trip (the executor buffers a
    task's steps and records them when the task stops, keeping Redis off the step path)."""
    observations = [(function_id, max(0.0, s), bucket_for(max(0.0, s))) for s in durations]
    OpsStore(store).observe_many(STEP_DURATION, observations)


class RedisCollector:
    """A prometheus_client collector reading the Redis-backed metrics at scrape time."""

    def __init__(self, source: MetricsSource, now: int) -> None:
        self._store = source
        self._now = now

    def collect(self) -> Iterator[Metric]:
        names = [EVENTS_RECEIVED, STEP_DURATION, *(counter.name for counter in RUN_COUNTERS)]
        raw = self._store.read_metrics(names)
        events = CounterMetricFamily(
            PREFIX + EVENTS_RECEIVED.removesuffix("_total"), "Events accepted by the event API."
        )
        events.add_metric([], float(sum(int(v) for v in raw[EVENTS_RECEIVED].values())))
        yield events
        for counter in RUN_COUNTERS:
            family = CounterMetricFamily(
                PREFIX + counter.name.removesuffix("_total"), counter.doc, labels=["function"]
            )
            for function_id, value in sorted(raw[counter.name].items()):
                family.add_metric([function_id], float(value))
            yield family
        yield _histogram(raw[STEP_DURATION])
        gauges = self._store.queue_gauges(self._now)
        for name, key, doc in (
            ("queue_jobs", "jobs", "Jobs queued (not yet done), whatever their time."),
            ("queue_jobs_due", "due", "Queued jobs whose time has come (backlog)."),
            (
                "timers_pending",
                "scheduled",
                "Queued jobs waiting for a later time: sleeps, retry backoffs, pause timeouts.",
            ),
            ("pauses_pending", "pauses", "Runs' pauses waiting for an event (waitForEvent)."),
        ):
            yield GaugeMetricFamily(PREFIX + name, doc, value=float(gauges[key]))


class LivenessCollector:
    """Gauges of the workers' and beat's heartbeats (read at scrape time)."""

    def __init__(self, live: Liveness) -> None:
        self._live = live

    def collect(self) -> Iterator[Metric]:
        live, now = self._live, self._live.now
        yield GaugeMetricFamily(
            PREFIX + "workers_alive",
            "Workers whose heartbeat is recent (0: no run makes progress).",
            value=float(live.workers_alive),
        )
        yield GaugeMetricFamily(
            PREFIX + "beat_alive",
            "1 while beat ticks (0: sleeps, retries, crons and crash recovery are stopped).",
            value=1.0 if live.beat_alive else 0.0,
        )
        if live.last_tick is not None:
            yield GaugeMetricFamily(
                PREFIX + "beat_last_tick_age_seconds",
                "Seconds since beat's last tick (to its heartbeat interval).",
                value=max(0, now - live.last_tick) / 1000,
            )
        ages = GaugeMetricFamily(
            PREFIX + "process_heartbeat_age_seconds",
            "Seconds since each worker's and beat's last heartbeat.",
            labels=["process", "kind"],
        )
        for process in live.processes:
            ages.add_metric([process.id, process.kind], process.age_seconds(now))
        yield ages


def render(store: Store, now: int) -> bytes:
    """The metrics in the Prometheus text exposition format."""
    return render_source(OpsStore(store), now, liveness(store, now))


def render_source(source: MetricsSource, now: int, live: Liveness | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(source, now))
    if live is not None:
        registry.register(LivenessCollector(live))
    return bytes(generate_latest(registry))


def _histogram(raw: dict[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        PREFIX + STEP_DURATION,
        "Duration of step executions (one call of a step's code), by function.",
        labels=["function"],
    )
    per_function: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        function_id, _, part = field.rpartition("|")
        per_function.setdefault(function_id, {})[part] = float(value)
    bounds = [*(_le(bound) for bound in STEP_BUCKETS), "+Inf"]
    for function_id, parts in sorted(per_function.items()):
        running = 0.0
        buckets: list[tuple[str, float]] = []
        for bound in bounds:
            running += parts.get(bound, 0.0)
            buckets.append((bound, running))
        family.add_metric([function_id], buckets, sum_value=parts.get("sum", 0.0))
    return family


def _le(bound: float) -> str:
    if math.isinf(bound):
        return "+Inf"
    return repr(float(bound))
