"""Real worker and beat processes report heartbeats: the worker lists the job it is running,
beat's record moves with its ticks, and a `kill -9`'d worker goes red (judged at a `now` past
three of its intervals, then for real once that time has come)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from app.liveness import MISSES, Liveness, Process, liveness
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.e2e


def test_worker_and_beat_heartbeats_and_a_killed_worker_goes_red(
    redis_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(redis_url, tmp_path, STEPLINE_HEARTBEAT_SECONDS="0.5")
    worker = cluster.start_worker(concurrency=1, queues="stepline")
    cluster.start_beat()
    store = cluster.engine.store
    try:

        def now() -> Liveness:
            return liveness(store, cluster.engine.now())

        cluster.wait_for(lambda: now().workers_alive and now().beat_alive, 60, "heartbeats")
        event_id = cluster.send("e2e/steps", {"n": 30, "delay": 0.2})

        def runs_ours(worker: Process) -> bool:  # beat's archive jobs may run in between
            return bool(worker.jobs) and not worker.jobs[0].startswith("archive:")

        busy = cluster.wait_for(
            lambda: next((w for w in now().workers if runs_ours(w)), None), 30, "a busy worker"
        )
        ids = cluster.wait_for(lambda: cluster.engine.store.event_run_ids(event_id), 30, "run")
        (run_id,) = ids  # type: ignore[misc]
        # The event's job runs the new run's first job inline, in the same Celery task.
        assert busy.jobs[0] in (f"event:{event_id}", f"{run_id}:start"), busy.jobs
        assert busy.job_count == 1
        assert (busy.pool, busy.concurrency, busy.queues) == ("prefork", 1, ["stepline"])
        assert busy.kind == "worker" and busy.pid == worker.pid

        first_tick = now().last_tick
        assert first_tick is not None
        cluster.wait_for(lambda: (now().last_tick or 0) > first_tick, 30, "beat ticking on")

        cluster.kill(worker, signal.SIGKILL)
        (last,) = liveness(store, cluster.engine.now()).workers
        gone_at = last.last_seen + MISSES * last.every_ms + 1
        assert liveness(store, gone_at - 1).workers_alive == 1
        red = liveness(store, gone_at)  # (beat, judged at that future time, may look late)
        assert red.workers_alive == 0
        assert "no worker is running: no run makes progress" in red.problems()
        cluster.wait_for(lambda: now().workers_alive == 0, 30, "the dead worker to go red")
        cluster.wait_for(lambda: now().beat_alive, 30, "beat, still ticking")
    finally:
        cluster.stop()
