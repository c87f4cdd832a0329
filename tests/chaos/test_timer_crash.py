"""kill -9 of a worker while it runs messages of many due timers: with
`STEPLINE_ETA_MAX_SECONDS=0` every sleep and wait timeout of the load goes through the Redis
timer set and beat, which sends due timers many to a message, leased together. The jobs of
the messages the dead worker held come back when their leases end: every run completes with
the right output and no step result is committed twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from tests.chaos.conftest import chaos_cluster, wait_healthy
from tests.chaos.load import Load, check
from tests.integration.cluster import RedisServer

pytestmark = pytest.mark.chaos

RUNS = 120


def test_kill9_of_a_worker_running_batched_timers_mid_load(
    server: RedisServer, ledger: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    cluster = chaos_cluster(server, redis_url, tmp_path, STEPLINE_ETA_MAX_SECONDS="0")
    try:
        worker = cluster.start_worker("w1", as_procfile=True)
        cluster.start_beat()
        cluster.start_web()
        wait_healthy(cluster)
        load = Load(cluster, RUNS)
        load.start()
        load.wait_accepted(RUNS // 2)
        cluster.kill(worker)  # timers it had leased come back when their leases end
        cluster.start_worker("w2", as_procfile=True)
        load.join()
        check(load, ledger)
    finally:
        cluster.stop()
