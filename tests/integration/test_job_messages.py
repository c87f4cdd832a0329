"""Job messages written by the ingest script: `Queue.message` builds a job's Celery message
with Celery's and kombu's own code, and lua/ingest_events.lua pushes it onto the queue's list
with the job, so nothing is published after the events are stored. The message must be the
one `send_task` would publish, and a real `celery worker` must consume it as any other:
run the job, and ack it (kombu's unacked bookkeeping keyed by its delivery tag)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from app.config import Settings
from app.engine import Engine
from app.models import event_job
from tests.integration.cluster import Cluster, free_port

WORK_LIST = "stepline\x06\x166"
"""kombu's Redis transport: queue `stepline`, priority step 6 (`app.queue.WORK_PRIORITY`)."""


def _comparable(message: dict[str, Any]) -> dict[str, Any]:
    """A kombu message without what differs between two publishes of one task (its task id
    and delivery tag, fresh uuids each time), its body decoded."""
    message = json.loads(json.dumps(message))
    message["body"] = json.loads(base64.b64decode(message["body"]))
    for name in ("id", "root_id"):
        message["headers"].pop(name)
    for name in ("correlation_id", "delivery_tag"):
        message["properties"].pop(name)
    return message


def test_a_built_message_is_the_one_send_task_publishes(redis_url: str) -> None:
    engine = Engine.create(Settings.from_env().replace(redis_url=redis_url, functions=[]))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    job = event_job(["01E1"])
    built = engine.queue.message(job)
    assert built is not None and built.list_key == WORK_LIST
    engine.queue.dispatch(job)  # Celery's own send_task, over the same broker
    published = client.lpop(WORK_LIST)
    assert isinstance(published, str) and client.llen(WORK_LIST) == 0
    mine = json.loads(built.payload)
    assert _comparable(mine) == _comparable(json.loads(published))
    assert _comparable(mine)["body"][0] == ["event:01E1"]
    assert mine["headers"]["id"] == mine["properties"]["correlation_id"]
    assert mine["properties"]["delivery_tag"] != json.loads(published)["properties"]["delivery_tag"]


@pytest.mark.e2e
def test_a_worker_runs_the_jobs_the_ingest_script_queued(redis_url: str, tmp_path: Path) -> None:
    """Events sent to the web process while no worker runs: each request's job is in the
    broker as soon as it is answered (no beat runs, so nothing else could send it). A worker
    started afterwards runs every job and acks every message."""
    cluster = Cluster(redis_url, tmp_path, STEPLINE_REDELIVER_SECONDS="600")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        cluster.start_web(free_port())
        ids: list[str] = []
        for i in range(4):
            event = {"name": "e2e/steps", "data": {"n": 2}, "id": f"m-{i}"}
            reply = requests.post(f"{cluster.web_url}/e/test", json=event, timeout=10)
            ids += reply.json()["ids"]
        batch = [{"name": "e2e/steps", "data": {"n": 2}} for _ in range(3)]
        ids += requests.post(f"{cluster.web_url}/e/test", json=batch, timeout=10).json()["ids"]
        assert client.hlen("sl:jobs") == 5
        assert client.llen(WORK_LIST) == 5  # one message per job, pushed with it
        # and none published through kombu (its first publish declares the queue's binding)
        assert client.exists("_kombu.binding.stepline") == 0
        again = {"name": "e2e/steps", "data": {"n": 2}, "id": "m-0"}  # a retried send
        assert requests.post(f"{cluster.web_url}/e/test", json=again, timeout=10).ok
        assert client.llen(WORK_LIST) == 5 and client.hlen("sl:jobs") == 5

        cluster.start_worker()
        for event_id in ids:
            run = cluster.run_of(event_id, timeout=60)
            assert run.status == "Completed" and run.output == {"total": 1}
        cluster.wait_for(lambda: client.hlen("sl:jobs") == 0, what="every job to finish")
        cluster.wait_for(lambda: client.hlen("unacked") == 0, what="every message acked")
        assert client.llen(WORK_LIST) == 0
    finally:
        cluster.stop()
