"""kill -9 of the worker in the middle of a bulk replay: beat sends the BULK job again when
its lease ends, a new worker resumes it from its cursor, and every selected run is replayed
exactly once and counted once. On SQLite and PostgreSQL.

The crash is placed, not hoped for: once the operation has replayed a few runs, Redis is
paused for writes (CLIENT PAUSE WRITE), so the worker stops at its next write, in the middle
of the page it is working on; that is when it is killed."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from app.bulk import Spec
from app.state.records import RunCriteria
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.chaos

RUNS = 60


def test_kill9_mid_bulk_replay_replays_each_run_once(
    redis_url: str, history_url: str, tmp_path: Path
) -> None:
    cluster = Cluster(redis_url, tmp_path, history_url=history_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    engine = cluster.engine
    try:
        doomed = cluster.start_worker("doomed")
        cluster.start_beat()
        event_ids = [cluster.send("e2e/fatal", {"i": i}) for i in range(RUNS)]
        originals = [cluster.run_of(event_id, timeout=90) for event_id in event_ids]
        assert all(view.status == "Failed" for view in originals)
        function_id = originals[0].function_id

        now = engine.now()
        record, job = engine.bulks.start(Spec("replay", function_id, "Failed"), now)
        # an estimate: a run the archiver has committed but not yet marked counts twice
        assert record.estimate >= RUNS
        engine.queue.enqueue(job, now, now)

        def some_done() -> bool:
            found = engine.bulks.store.get(record.id)
            return found is not None and found.matched >= 5

        cluster.wait_for(some_done, timeout=60, what="the bulk replay to get going")
        client.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
        try:
            cluster.kill(doomed)
        finally:
            client.execute_command("CLIENT", "UNPAUSE")
        interrupted = engine.bulks.store.get(record.id)
        assert interrupted is not None
        assert interrupted.state == "running" and interrupted.matched < RUNS  # killed mid-way

        cluster.start_worker("rescuer")

        def done() -> bool:
            found = engine.bulks.store.get(record.id)
            return found is not None and found.state == "done"

        cluster.wait_for(done, timeout=120, what="the bulk replay to resume and finish")
        final = engine.bulks.store.get(record.id)
        assert final is not None
        assert (final.matched, final.done, final.failed, final.skipped) == (RUNS, RUNS, 0, 0)
        replays: dict[str, list[str]] = {}
        cursor = None
        while True:
            page = engine.reads.page_runs(100, RunCriteria(function_id), after=cursor)
            for view in page.items:
                if view.original_run_id is not None:
                    replays.setdefault(view.original_run_id, []).append(view.run_id)
            if page.next is None:
                break
            cursor = page.next
        assert sorted(replays) == sorted(view.run_id for view in originals)
        assert all(len(made) == 1 for made in replays.values()), replays
    finally:
        client.close()
        cluster.stop()
