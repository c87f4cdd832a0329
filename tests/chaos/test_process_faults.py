"""kill -9 of each Stepline process mid-load (a worker, beat, the web API; a supervisor then
starts it again), a lost reply between Stepline and Redis, and a poison step beside healthy
runs. After each: every accepted event has its run, every run completes with the right
output, no step result is committed twice, the concurrency limit holds."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.chaos.conftest import chaos_cluster, start_all, wait_healthy
from tests.chaos.load import Load, check
from tests.chaos.proxy import LosingProxy
from tests.integration.cluster import RedisServer, chaos_port

pytestmark = pytest.mark.chaos

RUNS = 120


def test_kill9_of_a_worker_and_of_beat_each_mid_load(
    server: RedisServer, ledger: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    cluster = chaos_cluster(server, redis_url, tmp_path)
    try:
        worker = cluster.start_worker("w1", as_procfile=True)
        beat = cluster.start_beat()
        cluster.start_web()
        wait_healthy(cluster)
        load = Load(cluster, RUNS)
        load.start()
        load.wait_accepted(RUNS // 3)
        cluster.kill(worker)  # its in-flight jobs come back when their leases end
        cluster.start_worker("w2", as_procfile=True)
        load.wait_accepted(2 * RUNS // 3)
        cluster.kill(beat)  # no timers, resends or wake-ups until it is back
        cluster.start_beat()
        load.join()
        check(load, ledger)
    finally:
        cluster.stop()


def test_kill9_of_web_mid_load(
    server: RedisServer, ledger: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """Requests in flight die with the web process (some after their event was stored); the
    client sends them again to the restarted process."""
    cluster = chaos_cluster(server, redis_url, tmp_path)
    try:
        cluster.start_worker("w1", as_procfile=True)
        cluster.start_beat()
        web = cluster.start_web()
        wait_healthy(cluster)
        port = urlsplit(cluster.web_url).port
        load = Load(cluster, RUNS)
        load.start()
        load.wait_accepted(RUNS // 3)
        cluster.kill(web)  # the client's sends fail to connect, then are retried
        cluster.start_web(port)
        load.join()
        check(load, ledger)
    finally:
        cluster.stop()


def test_lost_replies_of_scripts_mid_load(
    server: RedisServer, ledger: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """Every tenth script reply is lost for a while: the scripts ran, their callers saw the
    connection drop and sent them again (or gave the job up to a redelivery)."""
    proxy = LosingProxy(server.port, chaos_port(1), every=10)
    proxy.start()
    cluster = chaos_cluster(server, redis_url, tmp_path, url=proxy.url)
    try:
        start_all(cluster)
        load = Load(cluster, RUNS)
        load.start()
        load.wait_accepted(RUNS // 5)
        proxy.armed = True
        load.wait_accepted(4 * RUNS // 5)
        proxy.armed = False
        load.join()
        assert proxy.dropped > 0
        check(load, ledger)
        print(f"chaos: {proxy.dropped} script replies lost")
    finally:
        cluster.stop()
        proxy.stop()


def test_a_poison_step_fails_its_run_beside_20_healthy_runs(
    server: RedisServer, ledger: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """A step that kills its worker process (`os.kill(os.getpid(), 9)`) never raises: its
    deliveries are counted, and after STEPLINE_MAX_JOB_FAILURES the run fails with an
    InternalError naming the step. The healthy runs beside it all complete."""
    cluster = chaos_cluster(server, redis_url, tmp_path, STEPLINE_MAX_JOB_FAILURES="3")
    try:
        start_all(cluster)
        load = Load(cluster, 20, senders=2)
        load.start()
        poisoned = cluster.send("chaos/poison")
        run = cluster.run_of(poisoned, timeout=90)
        assert run.status == "Failed"
        assert isinstance(run.error, dict) and run.error["name"] == "InternalError"
        message = str(run.error["message"])
        assert "step 'explode'" in message and "3 deliveries failed" in message, message
        assert int(ledger.get(f"chaos:poison:{run.run_id}") or 0) == 3
        load.join()
        check(load, ledger)
        assert all(proc.poll() is None for proc in cluster.procs)
    finally:
        cluster.stop()
