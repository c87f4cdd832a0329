"""lua/release_due.lua: timers due, unstarted jobs and expired leases, never future ones."""

from __future__ import annotations

import redis

from app.state.store import Store
from tests.lua.conftest import T0, make_job

RESEND = 60_000


def test_releases_only_what_is_due(store: Store, run: str, client: redis.Redis) -> None:
    timer, future = make_job("timer"), make_job("future")
    dead, alive = make_job("dead"), make_job("alive")
    store.enqueue_job(timer, T0 + 500, T0 + 500)
    store.enqueue_job(future, T0 + 5_000, T0 + 5_000)
    store.enqueue_job(dead, T0, T0 + RESEND)
    store.enqueue_job(alive, T0, T0 + RESEND)
    store.begin_job("dead", "w1", T0, 1_000)
    store.begin_job("alive", "w2", T0, 10_000)

    now = T0 + 1_000
    released = store.release_due(now, RESEND, 100)
    assert sorted(j.id for j in released) == ["dead", "timer"]
    assert client.zscore("sl:jobs:due", "timer") == now + RESEND
    assert client.zscore("sl:jobs:due", "dead") == now + RESEND
    assert client.zscore("sl:jobs:due", "future") == T0 + 5_000
    assert client.zscore("sl:jobs:due", "alive") == T0 + 10_000
    # The expired lease is cleared: the redelivered copy can begin at once.
    assert client.hget("sl:jobs:owner", "dead") is None
    assert store.begin_job("dead", "w3", now, 1_000) == dead
    assert store.begin_job("alive", "w3", now, 1_000) == "busy"

    # Calling again at the same time releases nothing more.
    assert store.release_due(now, RESEND, 100) == []


def test_sent_but_never_started_is_sent_again(store: Store, run: str) -> None:
    job = make_job("j1")
    store.enqueue_job(job, T0, T0 + RESEND)
    assert store.release_due(T0 + RESEND - 1, RESEND, 10) == []
    assert store.release_due(T0 + RESEND, RESEND, 10) == [job]
    assert store.release_due(T0 + 2 * RESEND - 1, RESEND, 10) == []
    assert store.release_due(T0 + 2 * RESEND, RESEND, 10) == [job]


def test_limit(store: Store, run: str) -> None:
    for i in range(5):
        store.enqueue_job(make_job(f"j{i}"), T0 + i, T0 + i)
    assert [j.id for j in store.release_due(T0 + 10, RESEND, 2)] == ["j0", "j1"]
    assert [j.id for j in store.release_due(T0 + 10, RESEND, 10)] == ["j2", "j3", "j4"]


def test_stale_ids_are_dropped(store: Store, client: redis.Redis) -> None:
    client.zadd("sl:jobs:due", {"ghost": T0})
    assert store.release_due(T0, RESEND, 10) == []
    assert client.zcard("sl:jobs:due") == 0


def test_lookahead_releases_soon_due_timers_with_their_due_time(
    store: Store, run: str, client: redis.Redis
) -> None:
    soon, later, leased = make_job("soon"), make_job("later"), make_job("leased")
    store.enqueue_job(soon, T0 + 700, T0 + 700)
    store.enqueue_job(later, T0 + 5_000, T0 + 5_000)
    store.enqueue_job(leased, T0, T0 + RESEND)
    store.begin_job("leased", "w1", T0, 800)  # lease ends within the lookahead: not early

    released = store.release_upcoming(T0, RESEND, 100, 1_000)
    assert [(job.id, due) for job, due in released] == [("soon", T0 + 700)]
    assert client.zscore("sl:jobs:due", "soon") == T0 + 700 + RESEND
    assert client.zscore("sl:jobs:due", "leased") == T0 + 800
    # Released once: the next tick does not send it again.
    assert store.release_upcoming(T0 + 500, RESEND, 100, 1_000) == []


def test_an_expired_lease_counts_as_a_failed_delivery_once(
    store: Store, run: str, client: redis.Redis
) -> None:
    """A delivery that died holding its lease is counted when the tick clears the lease (and a
    repeat of the tick counts nothing more); the next delivery sees the count."""
    store.enqueue_job(make_job("dead"), T0, T0 + RESEND)
    store.begin_job("dead", "w1", T0, 1_000)
    store.release_due(T0 + 1_000, RESEND, 100)
    store.release_due(T0 + 1_000, RESEND, 100)
    assert client.hget("sl:jobs:failures", "dead") == "1"
    leased = store.lease_job("dead", "w2", T0 + 1_001, 1_000)
    assert not isinstance(leased, str) and leased.failures == 1


def test_flow_control_owners_are_not_deliveries(
    store: Store, run: str, client: redis.Redis
) -> None:
    """'parked', 'woken' and 'deferred' jobs have no live delivery: clearing them counts
    nothing."""
    for owner in ("parked", "woken", "deferred"):
        store.enqueue_job(make_job(owner), T0, T0)
        client.hset("sl:jobs:owner", owner, owner)
        client.hset("sl:jobs:lease", owner, 0)
    store.release_due(T0 + 1_000, RESEND, 100)
    for owner in ("parked", "woken", "deferred"):
        leased = store.lease_job(owner, "w1", T0 + 1_000, 1_000)
        assert not isinstance(leased, str) and leased.failures == 0
    assert client.hlen("sl:jobs:failures") == 0


def test_what_fell_due_recently_goes_ahead_of_an_old_backlog(
    store: Store, client: redis.Redis
) -> None:
    """With `recent_ms`: a timer that just fell due is released before resends whose
    deadlines passed long ago, however many; then the backlog, oldest first. A repeated call
    (a lost reply) releases nothing twice."""
    for i in range(5):
        store.enqueue_job(make_job(f"old{i}"), T0, T0 + i)  # resend deadlines long past
    store.enqueue_job(make_job("timer"), T0 + 60_000, T0 + 60_000)
    store.enqueue_job(make_job("soon"), T0 + 60_040, T0 + 60_040)  # within the lookahead
    now = T0 + 60_000
    first = store.release_upcoming(now, RESEND, 3, 50, 5_000)
    assert [(job.id, due) for job, due in first] == [
        ("timer", now),
        ("soon", T0 + 60_040),
        ("old0", now),
    ]
    assert [j.id for j, _ in store.release_upcoming(now, RESEND, 3, 50, 5_000)] == [
        "old1",
        "old2",
        "old3",
    ]
    assert [j.id for j, _ in store.release_upcoming(now, RESEND, 3, 50, 5_000)] == ["old4"]
    assert store.release_upcoming(now, RESEND, 3, 50, 5_000) == []
    assert client.zscore("sl:jobs:due", "old4") == now + RESEND
