"""The baseline: bare Celery tasks that each enqueue their successor (no Stepline at all),
on the same worker settings Stepline uses (Redis broker, prefork, acks_late, prefetch 1)."""

from __future__ import annotations

import os

import redis
from celery import Celery

REDIS_URL = (
    os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/14"
)
"""The benchmark's Redis, as `bench.harness` picks it (its workers get it as REDIS_URL): a
sender that read only REDIS_URL sent its hops to another Redis than the worker's."""

app = Celery("bare", broker=REDIS_URL, set_as_current=False)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    task_default_queue="bare",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
_redis: redis.Redis | None = None


@app.task(name="bare.hop")
def hop(chain: str, remaining: int) -> None:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(REDIS_URL)
    _redis.incr("bare:hops")
    if remaining > 1:
        hop.delay(chain, remaining - 1)
    else:
        _redis.incr("bare:done")


@app.task(name="bare.timer")
def timer(due_ms: int) -> None:
    """Records how late (ms) this ETA task ran."""
    import time

    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(REDIS_URL)
    _redis.rpush("bare:lateness", int(time.time() * 1000) - due_ms)
