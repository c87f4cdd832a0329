"""Admission flow control end to end: rate limit, debounce, batching, idempotency,
cancellation (event and bulk), timeouts and singleton, through real `celery worker` and
`celery beat` processes running tests/integration/flow_functions.py.

Each test fails if its option were ignored (too many runs, a run that is not cancelled, a
body that runs). One cluster serves the module: every test uses its own function.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.engine import Engine
from app.flow.admission import Admission
from app.functions import load_functions
from app.queue import Sender, celery_sender
from app.state.store import RunView
from tests.conftest import REDIS_URL, require_redis
from tests.integration.cluster import FUNCTIONS, Cluster

pytestmark = pytest.mark.e2e

FLOW_FUNCTIONS = f"{FUNCTIONS},tests.integration.flow_functions"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two worker pool processes and beat against a test Redis flushed for this module."""
    client = require_redis()
    client.flushdb()
    tmp: Path = tmp_path_factory.mktemp("flow")
    c = Cluster(REDIS_URL, tmp, STEPLINE_FUNCTIONS=FLOW_FUNCTIONS)
    c.engine = Engine.create(c.engine.settings, local=load_functions(FLOW_FUNCTIONS.split(",")))
    c.start_worker()
    c.start_beat()
    try:
        yield c
    finally:
        c.stop()
        client.flushdb()
        client.close()


@pytest.fixture
def r(cluster: Cluster) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(cluster.env["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


def admission(cluster: Cluster) -> Admission:
    assert cluster.engine.admission is not None
    return cluster.engine.admission


def runs_of_function(cluster: Cluster, function_id: str) -> list[RunView]:
    return list(reversed(cluster.engine.store.list_runs(100, function_id=function_id)))


def outcomes(cluster: Cluster, event_id: str) -> list[str]:
    return [str(o["outcome"]) for o in admission(cluster).flow.event_outcomes(event_id)]


def ended(runs: list[RunView]) -> bool:
    return all(run.status in ("Completed", "Failed", "Cancelled") for run in runs)


def count(r: redis.Redis, name: str) -> int:
    return int(r.get(f"flow:count:{name}") or 0)


def step_status(cluster: Cluster, event_id: str, name: str) -> str | None:
    for run in cluster.runs_of(event_id):
        view = cluster.engine.store.get_run(run.run_id)
        for step in view.steps if view else []:
            if step.get("name") == name:
                return str(step.get("status"))
    return None


# --- rate limit ---------------------------------------------------------------------------


def test_rate_limit_drops_excess_events_and_records_why(cluster: Cluster) -> None:
    # limit 10 per minute: Inngest's GCRA admits limit // 10 + 1 = 2 back to back.
    events = [cluster.send("flow/rl", {"i": i}) for i in range(5)]
    cluster.wait_for(
        lambda: sum(bool(outcomes(cluster, e)) for e in events) == 3,
        what="3 events recorded as rate limited",
    )
    cluster.wait_for(
        lambda: (
            len(runs_of_function(cluster, "flow-rate-limited")) == 2
            and ended(runs_of_function(cluster, "flow-rate-limited"))
        ),
        what="2 runs to complete",
    )
    time.sleep(1)
    runs = runs_of_function(cluster, "flow-rate-limited")
    assert len(runs) == 2 and all(run.status == "Completed" for run in runs)
    assert sorted(o for e in events for o in outcomes(cluster, e)) == ["rate_limited"] * 3
    limited = {e for e in events if outcomes(cluster, e)}
    ran = {e for run in runs for e in run.event_ids}
    assert limited.isdisjoint(ran) and len(limited | ran) == 5


# --- debounce -------------------------------------------------------------------------------


def test_debounce_runs_once_with_the_last_event(cluster: Cluster) -> None:
    events = []
    for i in range(3):
        events.append(cluster.send("flow/deb", {"i": i, "k": "a"}))
        time.sleep(0.3)
    other = cluster.send("flow/deb", {"i": 9, "k": "b"})  # another key: its own run
    last_sent = time.time()
    cluster.wait_for(
        lambda: (
            len(runs_of_function(cluster, "flow-debounced")) == 2
            and ended(runs_of_function(cluster, "flow-debounced"))
        ),
        what="2 debounced runs",
    )
    assert time.time() - last_sent >= 1.5  # the run waited for the quiet period
    time.sleep(2.5)  # no late extra run
    runs = runs_of_function(cluster, "flow-debounced")
    assert len(runs) == 2
    by_event = {run.event_ids[0]: run for run in runs}
    assert set(by_event) == {events[2], other}
    assert by_event[events[2]].output == {"i": 2, "events": 1}
    assert all(outcomes(cluster, e) == ["debounced"] for e in events)


# --- batching -------------------------------------------------------------------------------


def test_batches_of_max_size_then_a_timed_out_batch(cluster: Cluster) -> None:
    events = [cluster.send("flow/batch", {"i": i}) for i in range(7)]
    cluster.wait_for(
        lambda: (
            sum(len(r.event_ids) for r in runs_of_function(cluster, "flow-batched")) == 7
            and ended(runs_of_function(cluster, "flow-batched"))
        ),
        timeout=30,
        what="7 batched events to run",
    )
    runs = runs_of_function(cluster, "flow-batched")
    assert sorted(len(run.event_ids) for run in runs) == [1, 3, 3]
    outputs = [run.output for run in runs]
    assert all(isinstance(out, list) for out in outputs)
    assert sorted(i for out in outputs for i in out) == list(range(7))  # type: ignore[union-attr]
    assert sorted(e for run in runs for e in run.event_ids) == sorted(events)
    assert all(outcomes(cluster, e) == ["batched"] for e in events)


# --- idempotency ----------------------------------------------------------------------------


def test_idempotency_key_runs_once_per_key(cluster: Cluster) -> None:
    first = cluster.send("flow/idem", {"order_id": "o-1"})
    second = cluster.send("flow/idem", {"order_id": "o-1"})
    third = cluster.send("flow/idem", {"order_id": "o-2"})
    cluster.wait_for(
        lambda: outcomes(cluster, first) + outcomes(cluster, second) == ["idempotent"],
        what="one duplicate recorded as idempotent",
    )
    cluster.wait_for(
        lambda: (
            len(runs_of_function(cluster, "flow-idempotent")) == 2
            and ended(runs_of_function(cluster, "flow-idempotent"))
        ),
        what="2 runs",
    )
    runs = runs_of_function(cluster, "flow-idempotent")
    assert sorted(str(run.output) for run in runs) == ["o-1", "o-2"]
    assert third in {e for run in runs for e in run.event_ids}


# --- cancellation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "step", "status"), [("sleep", "nap", "Sleeping"), ("wait", "never", "Waiting")]
)
def test_cancel_event_cancels_a_suspended_run(
    cluster: Cluster, r: redis.Redis, mode: str, step: str, status: str
) -> None:
    key = f"c-{mode}"
    event_id = cluster.send("flow/cancellable", {"id": key, "mode": mode})
    cluster.wait_for(lambda: step_status(cluster, event_id, step) == status, what=f"run {status}")
    cluster.send("flow/cancel", {"id": "someone-else"})
    time.sleep(1)
    [run] = cluster.runs_of(event_id)
    assert run.status == "Running"
    cluster.send("flow/cancel", {"id": key})
    run = cluster.run_of(event_id)
    assert run.status == "Cancelled"
    assert count(r, f"{key}:before") == 1 and count(r, f"{key}:after") == 0


def test_cancel_event_cancels_a_run_mid_step(cluster: Cluster, r: redis.Redis) -> None:
    event_id = cluster.send("flow/cancellable", {"id": "c-run", "mode": "run"})
    cluster.wait_for(lambda: count(r, "c-run:slow-started") == 1, what="the slow step to start")
    cluster.send("flow/cancel", {"id": "c-run"})
    run = cluster.run_of(event_id)
    assert run.status == "Cancelled"
    time.sleep(4)  # the slow step finishes: its result is dropped, nothing follows
    assert count(r, "c-run:after") == 0
    view = cluster.engine.store.get_run(run.run_id)
    assert view is not None and view.status == "Cancelled"


def test_bulk_cancel_cancels_the_functions_runs_in_the_window(cluster: Cluster) -> None:
    start = cluster.engine.now()
    events = [cluster.send("flow/cancellable", {"id": f"b-{i}", "mode": "sleep"}) for i in range(3)]
    cluster.wait_for(
        lambda: all(step_status(cluster, e, "nap") == "Sleeping" for e in events),
        what="3 sleeping runs",
    )
    outside = cluster.send("flow/cancellable", {"id": "b-late", "mode": "sleep"})
    cluster.wait_for(lambda: step_status(cluster, outside, "nap") == "Sleeping", what="late run")
    window_end = cluster.runs_of(outside)[0].created_at
    cancelled = admission(cluster).bulk_cancel(
        "flow-cancellable", start, window_end, cluster.engine.now()
    )
    assert cancelled == 3
    assert all(cluster.run_of(e).status == "Cancelled" for e in events)
    assert cluster.runs_of(outside)[0].status == "Running"
    cluster.send("flow/cancel", {"id": "b-late"})
    assert cluster.run_of(outside).status == "Cancelled"


# --- timeouts -------------------------------------------------------------------------------


def test_finish_timeout_cancels_a_long_sleeping_run(cluster: Cluster, r: redis.Redis) -> None:
    event_id = cluster.send("flow/finish-timeout")
    run = cluster.run_of(event_id, timeout=20)
    assert run.status == "Cancelled"
    assert run.error == {"name": "FunctionTimeout", "message": "run did not finish within 2s"}
    assert run.started_at is not None and run.ended_at is not None
    assert 2_000 <= run.ended_at - run.started_at < 10_000
    assert count(r, "finish-timeout:before") == 1 and count(r, "finish-timeout:after") == 0


class DropSends:
    """A sender that loses the messages of some tasks (a broker backlog, as seen by a run)."""

    def __init__(self, inner: Sender, drop: set[str]) -> None:
        self.inner = inner
        self.drop = drop

    def send_task(self, name: str, args: Any = None, **options: Any) -> Any:
        if name in self.drop:
            return None
        return self.inner.send_task(name, args, **options)


def test_start_timeout_cancels_a_run_that_never_started(cluster: Cluster, r: redis.Redis) -> None:
    settings = cluster.engine.settings
    lossy = DropSends(celery_sender(settings), {"stepline.event", "stepline.start"})
    engine = Engine.create(settings, sender=lossy, local=cluster.engine.local)
    [event_id] = engine.runner.ingest([{"name": "flow/start-timeout"}], engine.now())
    engine.runner.process_event(event_id, engine.now())  # its start message is lost
    run = cluster.run_of(event_id, timeout=20)  # the worker runs the 1 s start-timeout job
    assert run.status == "Cancelled"
    assert run.error == {"name": "FunctionTimeout", "message": "run did not start within 1s"}
    assert run.started_at is None
    assert count(r, "start-timeout:body") == 0


# --- singleton ------------------------------------------------------------------------------


def test_singleton_skip_skips_while_a_run_is_live(cluster: Cluster) -> None:
    first = cluster.send("flow/single-skip", {"n": 1})
    cluster.wait_for(lambda: step_status(cluster, first, "hold") == "Sleeping", what="run 1")
    second = cluster.send("flow/single-skip", {"n": 2})
    cluster.wait_for(lambda: outcomes(cluster, second) == ["singleton_skipped"], what="a skip")
    assert cluster.runs_of(second) == []
    assert cluster.run_of(first).status == "Completed"
    third = cluster.send("flow/single-skip", {"n": 3})  # the lock was freed at the end
    assert cluster.run_of(third).output == 3


def test_singleton_cancel_replaces_the_running_run(cluster: Cluster) -> None:
    first = cluster.send("flow/single-cancel", {"n": 1, "k": "x"})
    cluster.wait_for(lambda: step_status(cluster, first, "hold") == "Sleeping", what="run 1")
    second = cluster.send("flow/single-cancel", {"n": 2, "k": "x"})
    old = cluster.run_of(first)
    assert old.status == "Cancelled" and "singleton" in str(old.error)
    new = cluster.run_of(second, timeout=20)
    assert new.status == "Completed" and new.output == 2


# --- retries compose ------------------------------------------------------------------------


def test_retries_are_not_new_runs_for_rate_limit_or_idempotency(
    cluster: Cluster, r: redis.Redis
) -> None:
    # Rate limit 1 per minute and an idempotency key: the retry of the failed step still
    # runs (it is not a new schedule), and the run completes on its second attempt.
    event_id = cluster.send("flow/retry", {"key": "k1"})
    run = cluster.run_of(event_id, timeout=30)
    assert run.status == "Completed" and run.output == "ok"
    assert count(r, f"retry:{run.run_id}") == 2
    view = cluster.engine.store.get_run(run.run_id)
    assert view is not None and view.steps[0]["attempts"] == 2
    assert outcomes(cluster, event_id) == []
    limited = cluster.send("flow/retry", {"key": "k2"})  # the one run counted: limited
    cluster.wait_for(lambda: outcomes(cluster, limited) == ["rate_limited"], what="limit")
    assert len(runs_of_function(cluster, "flow-retry-limited")) == 1
