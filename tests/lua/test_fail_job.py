"""lua/fail_job.lua: a crashed job backs off, doubling, and only its lease holder counts."""

from __future__ import annotations

import redis

from app.state.store import Store
from tests.lua.conftest import T0, make_job

BASE, CAP = 1_000, 5_000


def test_failures_back_off_doubling_up_to_the_cap(
    store: Store, run: str, client: redis.Redis
) -> None:
    store.enqueue_job(make_job("j"), T0, T0)
    delays = []
    for attempt in range(5):
        now = T0 + attempt * 10_000
        assert store.begin_job("j", "w", now, 30_000) != "gone"
        assert store.fail_job("j", "w", now, BASE, CAP) == attempt + 1
        delays.append(int(client.zscore("sl:jobs:due", "j") or 0) - now)
        assert client.hget("sl:jobs:owner", "j") is None  # the lease is let go
    assert delays == [1_000, 2_000, 4_000, 5_000, 5_000]


def test_only_the_lease_holder_counts_and_a_gone_job_is_zero(store: Store, run: str) -> None:
    store.enqueue_job(make_job("j"), T0, T0)
    store.begin_job("j", "w1", T0, 30_000)
    assert store.fail_job("j", "w2", T0, BASE, CAP) == -1
    assert store.fail_job("nope", "w1", T0, BASE, CAP) == 0


def test_finishing_clears_the_count(store: Store, run: str, client: redis.Redis) -> None:
    store.enqueue_job(make_job("j"), T0, T0)
    store.begin_job("j", "w", T0, 30_000)
    store.fail_job("j", "w", T0, BASE, CAP)
    store.finish_job("j", "w")
    assert client.hget("sl:jobs:failures", "j") is None
