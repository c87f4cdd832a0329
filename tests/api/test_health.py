"""Liveness: workers' heartbeats and beat's last tick, judged at a given `now` (app/liveness.py),
and what GET /health and GET /metrics make of them."""

from __future__ import annotations

from app.liveness import Heartbeat, liveness
from app.state.store import Store
from tests.api.conftest import Api
from tests.api.openapi_check import check

T0 = 1_700_000_000_000


def worker(store: Store, now: int, every: float = 1.0) -> Heartbeat:
    beat = Heartbeat(store, "worker", every, now, pool="prefork", concurrency=4, queues=["q"])
    beat.beat(now, ["run-a:start", "run-b:edge:1"])
    return beat


def test_a_worker_that_stops_heartbeating_goes_red(api: Api) -> None:
    store = api.engine.store
    beat = worker(store, T0)
    assert liveness(store, T0 + 3000).workers_alive == 1  # three intervals: still fine
    late = liveness(store, T0 + 3001)
    assert late.workers_alive == 0
    assert "no worker is running: no run makes progress" in late.problems()
    beat.beat(T0 + 3500)
    assert liveness(store, T0 + 3600).workers_alive == 1


def test_a_worker_record_says_who_and_what(api: Api) -> None:
    store = api.engine.store
    beat = worker(store, T0)
    (process,) = liveness(store, T0 + 10).workers
    assert process.id == beat.process.id and process.id.startswith("worker@")
    assert (process.pool, process.concurrency, process.queues) == ("prefork", 4, ["q"])
    assert (process.jobs, process.job_count) == (["run-a:start", "run-b:edge:1"], 2)
    assert process.started_at == T0 and process.age_seconds(T0 + 10) == 0.01


def test_heartbeats_are_written_once_per_interval(api: Api) -> None:
    beat = worker(api.engine.store, T0)
    assert beat.beat(T0 + 999) is False
    assert beat.beat(T0 + 1000) is True


def test_beat_tick_age(api: Api) -> None:
    store = api.engine.store
    never = liveness(store, T0)
    assert never.last_tick is None and not never.beat_alive
    assert never.problems()[0].startswith("beat is not running")
    Heartbeat(store, "beat", 0.5, T0).beat(T0)
    assert liveness(store, T0 + 1500).beat_alive
    stale = liveness(store, T0 + 20_000)
    assert stale.last_tick == T0 and not stale.beat_alive
    shown = stale.to_json()["beat"]
    assert isinstance(shown, dict)
    assert (shown["alive"], shown["last_tick"], shown["age_seconds"]) == (False, T0, 20.0)
    assert "beat has not ticked for 20 s" in stale.problems()[0]


def test_health_reports_liveness(api: Api) -> None:
    store, now = api.engine.store, api.engine.now()
    worker(store, now, every=60)
    Heartbeat(store, "beat", 60, now).beat(now)
    body = check(api.client.get("/health"), "get", "/health")
    assert body["ok"] is True and body["message"] == "OK" and body["problems"] == []
    assert body["workers"]["alive"] == 1 and body["beat"]["alive"] is True
    assert body["workers"]["items"][0]["jobs"] == ["run-a:start", "run-b:edge:1"]


def test_health_stays_200_but_not_ok_when_beat_is_gone(api: Api) -> None:
    store, now = api.engine.store, api.engine.now()
    worker(store, now, every=60)
    Heartbeat(store, "beat", 1, now - 10_000).beat(now - 10_000)  # silent for 10 intervals
    response = api.client.get("/health")
    assert response.status_code == 200  # the API still takes events
    body = check(response, "get", "/health")
    assert body["ok"] is False and body["beat"]["alive"] is False
    assert body["message"].startswith("beat has not ticked for 10 s")


def test_metrics_gauges_for_workers_and_beat(api: Api) -> None:
    store, now = api.engine.store, api.engine.now()
    beat = worker(store, now - 2000, every=60)
    text = api.client.get("/metrics").get_data(as_text=True)
    assert "stepline_workers_alive 1.0" in text
    assert "stepline_beat_alive 0.0" in text
    assert "stepline_beat_last_tick_age_seconds" not in text  # no beat ever ticked
    line = f'stepline_process_heartbeat_age_seconds{{kind="worker",process="{beat.process.id}"}}'
    assert line in text
    age = float(text.split(line)[1].split()[0])
    assert 2.0 <= age < 60
    Heartbeat(store, "beat", 60, now).beat(now)
    text = api.client.get("/metrics").get_data(as_text=True)
    assert "stepline_beat_alive 1.0" in text and "stepline_beat_last_tick_age_seconds" in text
