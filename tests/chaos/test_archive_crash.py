"""kill -9 of the worker that is archiving: the batch it held comes back when its claim
lease ends, and every run and event reaches the history store once, with nothing left in
Redis after the hot window. On SQLite and PostgreSQL.

The crash is placed, not hoped for: the test holds a write lock on the history database, so
the archiver claims a batch, reads it from Redis, and then waits inside its transaction for
the lock; that is when the worker is killed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from app.history.schema import events as events_table
from app.history.schema import run_steps
from app.history.schema import runs as runs_table
from app.history.store import open_history
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.chaos

RUNS = 40
STEPS = 3


@contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Hold the history database's write lock (PostgreSQL: the runs table) until exit."""
    store = open_history(url)
    store.upgrade()
    engine: sa.Engine = store.engine  # type: ignore[attr-defined]
    connection = engine.connect()
    transaction = connection.begin()
    if engine.dialect.name == "sqlite":
        connection.exec_driver_sql("DELETE FROM runs WHERE run_id = ''")  # takes the write lock
    else:
        connection.exec_driver_sql("LOCK TABLE runs IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        transaction.rollback()
        connection.close()
        store.close()


def count(url: str, table: sa.Table) -> int:
    store = open_history(url)
    try:
        with store.engine.connect() as connection:  # type: ignore[attr-defined]
            return int(
                connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            )
    finally:
        store.close()


def test_kill9_of_the_archiving_worker_loses_and_duplicates_nothing(
    redis_url: str, history_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(redis_url, tmp_path, history_url=history_url, STEPLINE_HOT_WINDOW_SECONDS="1")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = cluster.engine.store
    try:
        with write_lock(history_url):
            doomed = cluster.start_worker("doomed")
            event_ids = [cluster.send("e2e/steps", {"n": STEPS}) for _ in range(RUNS)]
            views = [cluster.run_of(event_id) for event_id in event_ids]
            assert all(view.status == "Completed" for view in views)
            run_ids = [view.run_id for view in views]
            # Beat starts once every run has ended, so its first ARCHIVE job claims all of
            # them in one batch; beat sends no second job while that one is held by the lock.
            cluster.start_beat()

            def claimed() -> bool:  # every finished run is leased to the blocked archiver
                now = int(time.time() * 1000)
                return client.zcard("sl:history:runs") >= RUNS and not client.zcount(
                    "sl:history:runs", "-inf", now
                )

            cluster.wait_for(claimed, timeout=60, what="the archiver to claim the runs")
            time.sleep(0.5)  # it is now waiting for the lock inside its transaction
            cluster.kill(doomed)
        assert count(history_url, runs_table) == 0  # its transaction died with it

        cluster.start_worker("rescuer")

        def settled() -> bool:
            return (
                count(history_url, runs_table) == RUNS
                and client.zcard("sl:history:runs") == 0
                and client.zcard("sl:history:events") == 0
                and client.zcard("sl:history:drop-runs") == 0
                and client.zcard("sl:history:drop-events") == 0
            )

        cluster.wait_for(settled, timeout=90, what="every run archived and dropped from Redis")
        assert count(history_url, run_steps) == RUNS * STEPS
        # Each run's trigger event and its inngest/function.finished event, once each.
        assert count(history_url, events_table) == 2 * RUNS
        assert list(client.scan_iter("sl:{*}:run")) == []
        assert all(store.get_event(event_id) is None for event_id in event_ids)
        reads = cluster.engine.reads
        for event_id, run_id in zip(event_ids, run_ids, strict=True):
            view = reads.get_run(run_id)
            assert view is not None and view.status == "Completed"
            assert view.output == {"total": sum(range(STEPS))}
            assert [step["status"] for step in view.steps] == ["Completed"] * STEPS
            assert [v.run_id for v in reads.event_runs(event_id)] == [run_id]
        assert len(reads.page_runs(100).items) == RUNS
    finally:
        client.close()
        cluster.stop()
