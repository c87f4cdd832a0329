"""A worker process killed (`kill -9`) right after the script that created a run started,
its start job leased to that process (lua/create_run.lua with a lease): the tick sends the
start job again when the lease runs out, the worker that takes it over finds the run started,
and the run completes exactly once, each step body run once."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from app.models import RunStatus
from tests.integration.cluster import ROOT, Cluster

pytestmark = pytest.mark.e2e

DOOMED = """
import os, signal
from app.config import Settings
from app.engine import Engine
from app.functions import load_functions
from app.models import event_job


class Lost:
    \"\"\"The Celery messages of a process about to die, never sent.\"\"\"

    def send_task(self, *args, **kwargs):
        pass


engine = Engine.create(
    Settings.from_env(), sender=Lost(), local=load_functions(["tests.integration.functions"]),
    inline=True,
)
now = engine.now()
ids = engine.runner.ingest([{"name": "e2e/steps", "data": {"n": 3}}], now)
job = event_job(ids)
# What a worker's task does with its event job, up to the first run's creation.
assert not isinstance(engine.store.lease_job(job.id, "doomed", now, 2_000), str)
[start] = engine.runner.process_events(job, now)
print(ids[0], start.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # before the task runs its work list
"""


def test_a_worker_killed_after_creating_a_started_run_completes_it_exactly_once(
    redis_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(redis_url, tmp_path, STEPLINE_LEASE_SECONDS="2")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        doomed = subprocess.run(
            [sys.executable, "-c", DOOMED],
            cwd=ROOT,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert doomed.returncode == -signal.SIGKILL, doomed.stderr
        event_id, start_id = doomed.stdout.split()
        [run_id] = cluster.engine.store.event_run_ids(event_id)
        assert start_id == f"{run_id}:start"
        # Left by the dead process: the run started, its start job leased to it.
        state = cluster.engine.store.load_run(run_id)
        assert state is not None
        assert (state.status, state.started_at) == ("Running", state.created_at)
        assert cluster.engine.store.lease_job(start_id, "probe", cluster.engine.now(), 1) == "busy"

        cluster.start_worker()
        cluster.start_beat()
        run = cluster.run_of(event_id, timeout=60)
        assert (run.status, run.output) == (RunStatus.COMPLETED.value, {"total": 3})
        assert run.started_at == state.created_at  # started once, by its creation
        assert cluster.engine.store.event_run_ids(event_id) == [run_id]
        for i in range(3):
            assert client.get(f"e2e:exec:{run_id}:{i}") == "1"
        started = client.hget(cluster.engine.store.keys.metric("runs_started_total"), "e2e-steps")
        assert started == "1"
    finally:
        cluster.stop()
        client.close()
