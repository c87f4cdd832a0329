"""lua/finish_job.lua: delete the job and leave a 24 h tombstone."""

from __future__ import annotations

import redis

from app.state.store import Store
from tests.lua.conftest import T0, make_job


def test_deletes_every_trace_and_tombstones(store: Store, run: str, client: redis.Redis) -> None:
    store.enqueue_job(make_job("j1"), T0, T0)
    store.enqueue_job(make_job("j2"), T0, T0)
    store.begin_job("j1", "a", T0, 1000)
    store.finish_job("j1", "a")

    assert store.count_jobs() == 1
    assert client.zrange("sl:jobs:due", 0, -1) == ["j2"]
    assert client.zrange("sl:jobs:by-run", 0, -1) == ["01RUN|j2"]
    assert client.hlen("sl:jobs:owner") == 0 and client.hlen("sl:jobs:lease") == 0
    assert client.get("sl:job-done:j1") == "1"

    # Finishing again, or finishing an unknown job, is harmless (and tombstones it).
    store.finish_job("j1", "a")
    store.finish_job("never", "a")
    assert store.count_jobs() == 1
    assert store.enqueue_job(make_job("never"), T0, T0) is False
