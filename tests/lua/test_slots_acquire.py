"""lua/slots_acquire.lua: slots up to the limit, parking past it, order by score."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.models import Job
from app.state.slots import Acquired, Constraint, SlotStore
from app.state.store import Store
from tests.lua.conftest import T0, make_job, race

LEASE = 30_000
RESEND = 60_000
PARK = 300_000
FN = ("f:app-fn", 2)


@pytest.fixture
def slots(store: Store) -> Iterator[SlotStore]:
    yield SlotStore.over(store)


def queued(store: Store, job_id: str, run_id: str = "01RUN") -> Job:
    """A job as the runner holds it: queued, then leased to token `t-<id>`."""
    job = make_job(job_id, run_id)
    store.enqueue_job(job, T0, T0)
    assert store.begin_job(job_id, f"t-{job_id}", T0, LEASE) == job
    return job


def acquire(
    slots: SlotStore, job_id: str, score: int = T0, now: int = T0, *constraints: Constraint
) -> Acquired:
    return slots.acquire(job_id, list(constraints) or [FN], score, now, LEASE, RESEND, PARK)


def test_up_to_the_limit_then_parks(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    for job_id in ("a", "b", "c"):
        queued(store, job_id)
    assert acquire(slots, "a").code == "ok"
    assert acquire(slots, "b").code == "ok"
    assert client.zrange("sl:slots:f:app-fn", 0, -1, withscores=True) == [
        ("a", T0 + LEASE),
        ("b", T0 + LEASE),
    ]
    got = acquire(slots, "c", score=T0 + 5)
    assert got.code == "wait" and got.woken == []
    # Parked in place: still a queued job, owned by nobody who could run it.
    assert client.zrange("sl:slots-wait:f:app-fn", 0, -1, withscores=True) == [("c", T0 + 5)]
    assert client.smembers("sl:slots:waiting") == {"f:app-fn"}
    assert client.hget("sl:slots:limits", "f:app-fn") == "2"
    assert client.hget("sl:jobs:owner", "c") == "parked"
    assert client.hget("sl:jobs:lease", "c") == str(T0 + PARK)
    assert client.zscore("sl:jobs:due", "c") == T0 + PARK
    assert client.hexists("sl:jobs", "c")
    # A stray delivery of the parked job is refused as busy.
    assert store.begin_job("c", "other", T0 + 1, LEASE) == "busy"


def test_acquiring_twice_is_harmless(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    queued(store, "a")
    assert acquire(slots, "a").code == "ok"
    assert acquire(slots, "a", now=T0 + 10).code == "ok"
    assert client.zrange("sl:slots:f:app-fn", 0, -1, withscores=True) == [("a", T0 + 10 + LEASE)]
    # Parking twice too: one entry, same score.
    queued(store, "b")
    queued(store, "c")
    acquire(slots, "b")
    assert acquire(slots, "c").code == "wait"
    assert acquire(slots, "c").code == "wait"
    assert client.zcard("sl:slots-wait:f:app-fn") == 1


def test_a_better_score_goes_ahead_of_earlier_waiters(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    for job_id in ("a", "b", "low1", "low2", "high"):
        queued(store, job_id)
    acquire(slots, "a")
    acquire(slots, "b")
    acquire(slots, "low1", score=T0 + 100)
    acquire(slots, "low2", score=T0 + 200)
    acquire(slots, "high", score=T0 + 300 - 600_000)  # queued last, priority 600 s
    assert client.zrange("sl:slots-wait:f:app-fn", 0, -1) == ["high", "low1", "low2"]


def test_room_goes_to_waiters_ahead_before_a_newcomer(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    """Holders died (their leases ran out) and nobody woke the waiters: a newcomer with a
    worse score wakes them and parks itself instead of jumping the queue."""
    for job_id in ("a", "b", "w1", "w2", "late"):
        queued(store, job_id)
    acquire(slots, "a")
    acquire(slots, "b")
    acquire(slots, "w1", score=T0 + 1)
    acquire(slots, "w2", score=T0 + 2)
    after = T0 + LEASE  # a and b crashed: their slot leases expire now
    got = acquire(slots, "late", score=T0 + 3, now=after)
    assert got.code == "wait"
    assert [job.id for job in got.woken] == ["w1", "w2"]
    assert client.zrange("sl:slots:f:app-fn", 0, -1) == ["w1", "w2"]
    assert client.zrange("sl:slots-wait:f:app-fn", 0, -1) == ["late"]
    # A newcomer with a better score than every waiter takes free room directly.
    queued(store, "first")
    slots.release("w1", [FN], after, LEASE, RESEND)  # wakes "late"
    slots.release("late", [FN], after, LEASE, RESEND)
    assert acquire(slots, "first", score=T0, now=after).code == "ok"


def test_the_woken_job_owns_its_reserved_slot(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    for job_id in ("a", "w"):
        queued(store, job_id)
    acquire(slots, "a")
    acquire(slots, "w", T0, T0, ("f:app-fn", 1))
    woken = slots.release("a", [("f:app-fn", 1)], T0 + 5, LEASE, RESEND)
    assert [job.id for job in woken] == ["w"]
    # Its delivery leases it at once and finds the slot already its own.
    assert store.begin_job("w", "t2", T0 + 6, LEASE) == make_job("w")
    queued(store, "newcomer")
    got = slots.acquire("newcomer", [("f:app-fn", 1)], T0 - 1, T0 + 6, LEASE, RESEND, PARK)
    assert got.code == "wait"
    got = slots.acquire("w", [("f:app-fn", 1)], T0, T0 + 7, LEASE, RESEND, PARK)
    assert got.code == "ok"
    assert client.zrange("sl:slots:f:app-fn", 0, -1) == ["w"]


def test_two_constraints_all_or_nothing(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    fn, key = ("f:app-fn", 2), ("f:app-fn:k1", 1)
    for job_id in ("a", "b", "c"):
        queued(store, job_id)
    assert acquire(slots, "a", T0, T0, fn, key).code == "ok"
    # b fits the function limit but not the key's: it takes neither and waits on the key.
    assert acquire(slots, "b", T0 + 1, T0, fn, key).code == "wait"
    assert client.zrange("sl:slots:f:app-fn", 0, -1) == ["a"]
    assert client.zrange("sl:slots-wait:f:app-fn:k1", 0, -1) == ["b"]
    assert client.zcard("sl:slots-wait:f:app-fn") == 0
    # c was woken by the function constraint but the key is still full: it gives its
    # reserved function slot back (waking nobody else) and moves to the key's wait list.
    client.hset("sl:jobs:owner", "c", "parked")
    client.zadd("sl:slots:f:app-fn", {"c": T0 + LEASE})
    got = acquire(slots, "c", T0 + 2, T0, fn, key)
    assert got.code == "wait"
    assert client.zrange("sl:slots:f:app-fn", 0, -1) == ["a"]
    assert client.zrange("sl:slots-wait:f:app-fn:k1", 0, -1) == ["b", "c"]


def test_gone_job_is_not_parked(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    queued(store, "a")
    acquire(slots, "a", T0, T0, ("f:app-fn", 1))
    got = slots.acquire("ghost", [("f:app-fn", 1)], T0, T0, LEASE, RESEND, PARK)
    assert got.code == "gone"
    assert client.zcard("sl:slots-wait:f:app-fn") == 0
    assert not client.hexists("sl:jobs:owner", "ghost")


def test_slot_lease_expires_after_a_crash(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    """A worker kill -9'd while executing never releases: its slot is free once the lease
    (not renewed) runs out, and not a millisecond before."""
    queued(store, "crashed")
    queued(store, "next")
    acquire(slots, "crashed", T0, T0, ("f:app-fn", 1))
    one = ("f:app-fn", 1)
    assert slots.acquire("next", [one], T0, T0 + LEASE - 1, LEASE, RESEND, PARK).code == "wait"
    # The sweep (tick) wakes the waiter once the dead holder's lease has run out.
    assert slots.release("", [one], T0 + LEASE - 1, LEASE, RESEND) == []
    woken = slots.release("", [one], T0 + LEASE, LEASE, RESEND)
    assert [job.id for job in woken] == ["next"]
    assert client.zrange("sl:slots:f:app-fn", 0, -1) == ["next"]


def test_exactly_limit_of_eight_racers_get_a_slot(store: Store, slots: SlotStore) -> None:
    for i in range(8):
        queued(store, f"j{i}")
    results = race(8, lambda i: acquire(slots, f"j{i}", T0 + i).code)
    assert results.count("ok") == 2
    assert results.count("wait") == 6
