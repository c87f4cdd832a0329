"""lua/slots_release.lua and lua/slots_renew.lua: giving slots back, waking waiters in order,
renewing leases while executing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.state.slots import Constraint, SlotStore
from app.state.store import Store
from tests.lua.conftest import T0, make_job

LEASE = 30_000
RESEND = 60_000
PARK = 300_000
ONE: Constraint = ("f:app-fn", 1)


@pytest.fixture
def slots(store: Store) -> Iterator[SlotStore]:
    yield SlotStore.over(store)


def holder_and_waiters(store: Store, slots: SlotStore, *waiters: str) -> None:
    """`h` holds the only slot; each waiter parked after it, in the given order."""
    for i, job_id in enumerate(("h", *waiters)):
        store.enqueue_job(make_job(job_id), T0, T0)
        store.begin_job(job_id, f"t-{job_id}", T0, LEASE)
        code = slots.acquire(job_id, [ONE], T0 + i, T0, LEASE, RESEND, PARK).code
        assert code == ("ok" if job_id == "h" else "wait")


def test_release_wakes_the_next_waiter(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    holder_and_waiters(store, slots, "w1", "w2")
    woken = slots.release("h", [ONE], T0 + 10, LEASE, RESEND)
    assert woken == [make_job("w1")]
    assert client.zrange("sl:slots:f:app-fn", 0, -1, withscores=True) == [("w1", T0 + 10 + LEASE)]
    assert client.zrange("sl:slots-wait:f:app-fn", 0, -1) == ["w2"]
    # Woken: any delivery may lease it now; the tick resends it if the send is lost.
    assert client.hget("sl:jobs:owner", "w1") == "woken"
    assert client.hget("sl:jobs:lease", "w1") == "0"
    assert client.zscore("sl:jobs:due", "w1") == T0 + 10 + RESEND
    assert store.begin_job("w1", "fresh", T0 + 11, LEASE) == make_job("w1")
    # The last waiter woken empties the list: the constraint leaves the waiting index.
    assert client.smembers("sl:slots:waiting") == {"f:app-fn"}
    slots.release("w1", [ONE], T0 + 20, LEASE, RESEND)
    assert client.exists("sl:slots-wait:f:app-fn") == 0
    assert client.smembers("sl:slots:waiting") == set()


def test_releasing_twice_is_harmless(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    holder_and_waiters(store, slots, "w1", "w2")
    assert len(slots.release("h", [ONE], T0 + 10, LEASE, RESEND)) == 1
    assert slots.release("h", [ONE], T0 + 10, LEASE, RESEND) == []
    assert client.zrange("sl:slots:f:app-fn", 0, -1) == ["w1"]
    assert client.zrange("sl:slots-wait:f:app-fn", 0, -1) == ["w2"]


def test_waiters_no_longer_parked_are_skipped(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    holder_and_waiters(store, slots, "gone", "running", "w")
    store.finish_job("gone", "x")  # its run was cancelled, say
    client.hset("sl:jobs:owner", "running", "live-token")  # resent and running again
    assert slots.release("h", [ONE], T0 + 10, LEASE, RESEND) == [make_job("w")]
    assert client.zcard("sl:slots-wait:f:app-fn") == 0
    assert client.hget("sl:jobs:owner", "running") == "live-token"


def test_room_for_several_wakes_several(store: Store, slots: SlotStore) -> None:
    holder_and_waiters(store, slots, "w1", "w2", "w3")
    woken = slots.release("h", [("f:app-fn", 3)], T0 + 10, LEASE, RESEND)
    assert [job.id for job in woken] == ["w1", "w2", "w3"]


def test_sweep_without_a_holder_prunes_dead_leases(store: Store, slots: SlotStore) -> None:
    holder_and_waiters(store, slots, "w1")
    assert slots.release("", [ONE], T0 + LEASE - 1, LEASE, RESEND) == []
    assert slots.release("", [ONE], T0 + LEASE, LEASE, RESEND) == [make_job("w1")]


def test_waiting_lists_constraints_with_their_limits(store: Store, slots: SlotStore) -> None:
    assert slots.waiting() == []
    holder_and_waiters(store, slots, "w1")
    assert slots.waiting() == [("f:app-fn", 1)]


def test_renew_extends_only_slots_still_held(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    holder_and_waiters(store, slots)
    assert slots.renew("h", ["f:app-fn"], T0 + 10_000, LEASE) == 1
    assert slots.renew("h", ["f:app-fn"], T0 + 10_000, LEASE) == 1
    assert client.zscore("sl:slots:f:app-fn", "h") == T0 + 10_000 + LEASE
    # The lease now outlives the original deadline: no sweep frees it.
    store.enqueue_job(make_job("w"), T0, T0)
    store.begin_job("w", "t-w", T0, LEASE)
    assert slots.acquire("w", [ONE], T0, T0 + LEASE, LEASE, RESEND, PARK).code == "wait"
    # Once pruned (the holder stalled past its lease), renewing never takes it back.
    slots.release("", [ONE], T0 + 10_000 + LEASE, LEASE, RESEND)
    assert client.zrange("sl:slots:f:app-fn", 0, -1) == ["w"]
    assert slots.renew("h", ["f:app-fn"], T0 + 10_000 + LEASE, LEASE) == 0
    assert client.zrange("sl:slots:f:app-fn", 0, -1) == ["w"]


def test_a_constraint_leaves_the_limits_once_its_wait_list_empties(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    """`slots:limits` holds a constraint (one per concurrency key value) only while jobs wait
    on it: key values come and go, the hash does not grow with them."""
    for value in ("a", "b", "c"):
        one: Constraint = (f"f:app-fn:{value}", 1)
        for job_id in (f"h{value}", f"w{value}"):
            store.enqueue_job(make_job(job_id), T0, T0)
            store.begin_job(job_id, f"t-{job_id}", T0, LEASE)
            slots.acquire(job_id, [one], T0, T0, LEASE, RESEND, PARK)
        assert client.hget("sl:slots:limits", one[0]) == "1"
        assert slots.release(f"h{value}", [one], T0 + 1, LEASE, RESEND) == [make_job(f"w{value}")]
        assert client.hexists("sl:slots:limits", one[0]) is False
        slots.release(f"w{value}", [one], T0 + 2, LEASE, RESEND)
    assert client.exists("sl:slots:limits", "sl:slots:waiting") == 0


def test_a_waiter_that_gets_its_slot_itself_unlists_the_constraint(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    holder_and_waiters(store, slots, "w1")
    client.zrem("sl:slots:f:app-fn", "h")  # the holder's slot is gone (its lease ran out)
    assert slots.acquire("w1", [ONE], T0 + 5, T0 + 5, LEASE, RESEND, PARK).code == "ok"
    assert client.exists("sl:slots:limits", "sl:slots:waiting") == 0
