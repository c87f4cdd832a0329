"""tasks/broker.py: what keeps a worker alive through a Redis restart (the chaos tests of
tests/chaos/test_redis_faults.py prove it with real processes)."""

from __future__ import annotations

from app.config import Settings
from app.queue import broker_options
from tasks import celery_app
from tasks.broker import Worker


def test_gossip_mingle_and_event_heartbeat_stay_off_whatever_the_command_line() -> None:
    worker = Worker.__new__(Worker)  # prepare_args only; a real Worker starts a pool
    args = worker.prepare_args(without_gossip=False, without_mingle=False, concurrency=2)
    assert args["without_gossip"] and args["without_mingle"] and args["without_heartbeat"]
    assert args["concurrency"] == 2
    assert isinstance(celery_app.Worker.__new__(celery_app.Worker), Worker)


def test_the_worker_reconnects_forever_with_a_short_backoff() -> None:
    assert celery_app.conf.worker_consumer == "tasks.broker:Consumer"
    options = broker_options(Settings(redis_timeout_seconds=3))
    assert options["broker_connection_max_retries"] is None
    transport = options["broker_transport_options"]
    assert transport["socket_timeout"] == transport["socket_connect_timeout"] == 3
