"""lua/begin_job.lua and lua/renew_job.lua: leases, with time as a parameter."""

from __future__ import annotations

import redis

from app.state.store import Store
from tests.lua.conftest import T0, make_job, race

LEASE = 30_000


def test_leases_and_moves_the_send_by_to_the_deadline(
    store: Store, run: str, client: redis.Redis
) -> None:
    job = make_job("j1")
    store.enqueue_job(job, T0, T0 + 60_000)
    assert store.begin_job("j1", "a", T0, LEASE) == job
    assert client.zscore("sl:jobs:due", "j1") == T0 + LEASE
    assert client.hget("sl:jobs:owner", "j1") == "a"
    # The same token again (a repeat) re-leases.
    assert store.begin_job("j1", "a", T0 + 5, LEASE) == job
    assert client.zscore("sl:jobs:due", "j1") == T0 + 5 + LEASE


def test_busy_while_the_lease_lives_then_taken_over(store: Store, run: str) -> None:
    job = make_job("j1")
    store.enqueue_job(job, T0, T0)
    store.begin_job("j1", "a", T0, LEASE)
    assert store.begin_job("j1", "b", T0 + LEASE - 1, LEASE) == "busy"
    assert store.begin_job("j1", "b", T0 + LEASE, LEASE) == job
    assert store.begin_job("j1", "a", T0 + LEASE + 1, LEASE) == "busy"


def test_gone_when_missing_or_finished(store: Store, run: str) -> None:
    assert store.begin_job("nope", "a", T0, LEASE) == "gone"
    store.enqueue_job(make_job("j1"), T0, T0)
    store.finish_job("j1", "a")
    assert store.begin_job("j1", "a", T0, LEASE) == "gone"


def test_exactly_one_of_eight_racers_leases(store: Store, run: str) -> None:
    store.enqueue_job(make_job("j1"), T0, T0)
    results = race(8, lambda i: store.begin_job("j1", f"t{i}", T0, LEASE))
    assert sum(1 for r in results if r not in ("busy", "gone")) == 1
    assert results.count("busy") == 7


def test_renew(store: Store, run: str, client: redis.Redis) -> None:
    store.enqueue_job(make_job("j1"), T0, T0)
    store.begin_job("j1", "a", T0, LEASE)
    assert store.renew_job("j1", "a", T0 + 10_000, LEASE) is True
    assert store.renew_job("j1", "a", T0 + 10_000, LEASE) is True
    assert client.zscore("sl:jobs:due", "j1") == T0 + 10_000 + LEASE
    assert store.renew_job("j1", "b", T0 + 10_000, LEASE) is False
    # The lease now lasts past the original deadline.
    assert store.begin_job("j1", "b", T0 + LEASE + 1, LEASE) == "busy"
    assert store.renew_job("nope", "a", T0, LEASE) is False


def test_renew_after_release_keeps_the_job_for_its_holder(store: Store, run: str) -> None:
    job = make_job("j1")
    store.enqueue_job(job, T0, T0)
    store.begin_job("j1", "a", T0, LEASE)
    # The holder stalled past its lease; the tick releases it for redelivery...
    assert store.release_due(T0 + LEASE, 60_000, 10) == [job]
    # ...but the holder is alive and renews before the redelivered copy begins.
    assert store.renew_job("j1", "a", T0 + LEASE + 1, LEASE) is True
    assert store.begin_job("j1", "b", T0 + LEASE + 2, LEASE) == "busy"
    # Once another token holds it, the old holder cannot renew.
    assert store.begin_job("j1", "b", T0 + 3 * LEASE, LEASE) == job
    assert store.renew_job("j1", "a", T0 + 3 * LEASE, LEASE) is False
