"""`GET /metrics`: Prometheus text with Redis-backed counters (shared by every process)."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from app.models import Job, JobKind, Trigger
from app.state.store import NewRun
from tests.api.conftest import Api, fn, make_api

T0 = 1_700_000_000_000


def _samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_run_counters_gauges_and_events(api: Api) -> None:
    api.register(fn("f", Trigger(event="a/b")))
    api.client.post(
        "/e/k", data=json.dumps([{"name": "a/b"}, {"name": "a/b"}]), content_type="application/json"
    )
    api.process_events()
    store = api.engine.store
    runs = store.list_runs(10)
    assert len(runs) == 2
    first, second = runs
    store.mark_started(first.run_id, T0)
    store.mark_started(first.run_id, T0)  # counted once
    store.finish_run(first.run_id, "Failed", None, {"message": "x"}, T0)
    store.finish_run(second.run_id, "Cancelled", None, None, T0)
    store.create_run(NewRun("other", "app-g", [{"name": "x"}], [], T0))
    store.enqueue_job(Job(id="other:start", kind=JobKind.START, run_id="other"), T0, T0)
    samples = _samples(api)
    f = (("function", "app-f"),)
    assert samples[("stepline_events_received_total", ())] == 2
    assert samples[("stepline_runs_queued_total", f)] == 2
    assert samples[("stepline_runs_queued_total", (("function", "app-g"),))] == 1
    assert samples[("stepline_runs_started_total", f)] == 1
    assert samples[("stepline_runs_failed_total", f)] == 1
    assert samples[("stepline_runs_cancelled_total", f)] == 1
    assert ("stepline_runs_completed_total", f) not in samples
    assert samples[("stepline_pauses_pending", ())] == 0
    assert samples[("stepline_queue_jobs", ())] == 1  # the queued run's start job
    assert ("stepline_timers_pending", ()) in samples
    assert ("stepline_queue_jobs_due", ()) in samples


def test_counters_are_shared_between_processes(redis_url: str) -> None:
    """Two engines (say an API process and a worker) count into the same numbers."""
    one, two = make_api(redis_url), make_api(redis_url)
    try:
        for api in (one, two):
            api.client.post(
                "/e/k", data=json.dumps({"name": "a/b"}), content_type="application/json"
            )
        assert _samples(one)[("stepline_events_received_total", ())] == 2
        assert _samples(two)[("stepline_events_received_total", ())] == 2
    finally:
        one.engine.store.close()
        two.engine.store.close()


def test_step_duration_histogram(api: Api) -> None:
    from app import metrics

    for seconds in (0.001, 0.2, 0.2, 7.0, 1000.0):
        metrics.observe_step(api.engine.store, "app-f", seconds)
    samples = _samples(api)
    f = ("function", "app-f")

    def bucket(le: str) -> float:
        return samples[("stepline_step_duration_seconds_bucket", tuple(sorted([f, ("le", le)])))]

    assert bucket("0.005") == 1
    assert bucket("0.25") == 3
    assert bucket("10.0") == 4
    assert bucket("300.0") == 4
    assert bucket("+Inf") == 5
    assert samples[("stepline_step_duration_seconds_count", (f,))] == 5
    assert abs(samples[("stepline_step_duration_seconds_sum", (f,))] - 1007.401) < 1e-6
