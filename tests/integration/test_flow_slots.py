"""Concurrency, throttle and priority end to end: real `celery worker` processes (two of
them where contention matters) running tests/integration/slot_functions.py.

Every test fails if its option were ignored: user code records each step's start and end
in Redis, and the tests check overlaps and start orders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.cluster import FUNCTIONS, Cluster
from tests.integration.slot_functions import spans

pytestmark = pytest.mark.e2e

SLOT_FUNCTIONS = f"{FUNCTIONS},tests.integration.slot_functions"


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Two worker processes (2 pool processes each) and beat."""
    c = Cluster(redis_url, tmp_path, STEPLINE_FUNCTIONS=SLOT_FUNCTIONS)
    c.start_worker("w1")
    c.start_worker("w2")
    c.start_beat()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end at t closes before a start at t)."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def all_ended(cluster: Cluster, event_ids: list[str], timeout: float = 60) -> None:
    def done() -> bool:
        runs = [run for event_id in event_ids for run in cluster.runs_of(event_id)]
        return len(runs) == len(event_ids) and all(run.status == "Completed" for run in runs)

    cluster.wait_for(done, timeout, f"{len(event_ids)} runs to complete")


def test_concurrency_two_never_runs_more_than_two_steps_at_once(
    cluster: Cluster, r: redis.Redis
) -> None:
    events = [cluster.send("slots/limited", {"label": f"r{i}", "delay": 0.3}) for i in range(10)]
    all_ended(cluster, events, timeout=90)
    recorded = spans(r, "limited")
    assert len(recorded) == 20  # 10 runs x 2 steps, each body once
    overlap = max_overlap([(start, end) for _, start, end in recorded])
    assert overlap <= 2
    assert overlap == 2  # the limit is used, not just respected


def test_a_busy_key_does_not_block_another_key(cluster: Cluster, r: redis.Redis) -> None:
    events = [cluster.send("slots/keyed", {"user": "busy", "delay": 2.0}) for _ in range(3)]
    events.append(cluster.send("slots/keyed", {"user": "free", "delay": 0.1}))
    all_ended(cluster, events)
    recorded = spans(r, "keyed")
    busy = sorted((start, end) for user, start, end in recorded if user == "busy")
    [(free_start, _)] = [(start, end) for user, start, end in recorded if user == "free"]
    assert max_overlap(busy) == 1  # one at a time per key
    assert free_start < busy[1][0]  # "free" did not queue behind "busy"


def test_sleeping_runs_do_not_hold_slots(cluster: Cluster, r: redis.Redis) -> None:
    napper = cluster.send("slots/nap", {"label": "napper", "nap": 10})
    cluster.wait_for(lambda: spans(r, "nap"), 30, "the napper's first step")
    quick = [cluster.send("slots/nap", {"label": f"q{i}", "delay": 0.5}) for i in range(2)]
    all_ended(cluster, [napper, *quick])
    recorded = {label: (start, end) for label, start, end in spans(r, "nap")}
    assert max_overlap([recorded["q0"], recorded["q1"]]) == 1  # the limit holds
    after_start = recorded["napper:after"][0]
    # Both quick runs ran while the napper slept (limit 1, so it held no slot meanwhile).
    assert recorded["q0"][1] < after_start and recorded["q1"][1] < after_start


def test_throttle_spreads_run_starts(cluster: Cluster, r: redis.Redis) -> None:
    events = [cluster.send("slots/throttled", {"label": f"t{i}"}) for i in range(6)]
    all_ended(cluster, events, timeout=60)
    starts = sorted(start for _, start, _ in spans(r, "throttled"))
    assert len(starts) == 6
    # Limit 2 per 2 s, burst 1: three may go back to back, then one per second (GCRA: the
    # n-th start after the burst comes at least n seconds after the first start).
    since_first = [start - starts[0] for start in starts]
    for n, offset in enumerate(since_first[3:], start=1):
        assert offset > n - 0.2, since_first


def test_a_high_priority_run_queued_last_starts_first(cluster: Cluster, r: redis.Redis) -> None:
    blocker = cluster.send("slots/prio", {"label": "blocker", "gate": "go"})
    cluster.wait_for(
        lambda: r.zcard("sl:slots:f:slots-prioritized") == 1, 30, "the blocker to hold the slot"
    )
    lows = [cluster.send("slots/prio", {"label": f"low{i}"}) for i in range(3)]
    high = cluster.send("slots/prio", {"label": "high", "prio": 600})
    cluster.wait_for(
        lambda: r.zcard("sl:slots-wait:f:slots-prioritized") == 4, 30, "four parked runs"
    )
    r.set("slots:gate:go", "1")
    all_ended(cluster, [blocker, *lows, high])
    started = [label for label, _, _ in sorted(spans(r, "prio"), key=lambda s: s[1])]
    assert started[:2] == ["blocker", "high"]
    # The others in the order their runs were created (FIFO).
    created = sorted((run.created_at, run.run_id) for eid in lows for run in cluster.runs_of(eid))
    by_run = {run.run_id: f"low{i}" for i, eid in enumerate(lows) for run in cluster.runs_of(eid)}
    assert started[2:] == [by_run[run_id] for _, run_id in created]


def test_a_killed_holder_leaks_no_slot(redis_url: str, tmp_path: Path, r: redis.Redis) -> None:
    """kill -9 of the worker executing the only slot's holder: its slot lease runs out and
    both the holder (redelivered) and the run parked behind it complete on another worker."""
    c = Cluster(redis_url, tmp_path, STEPLINE_FUNCTIONS=SLOT_FUNCTIONS)
    try:
        doomed = c.start_worker("doomed")
        c.start_beat()
        blocker = c.send("slots/prio", {"label": "blocker", "gate": "go"})
        c.wait_for(lambda: r.zcard("sl:slots:f:slots-prioritized") == 1, 30, "a slot holder")
        waiter = c.send("slots/prio", {"label": "waiter"})
        c.wait_for(lambda: r.zcard("sl:slots-wait:f:slots-prioritized") == 1, 30, "a waiter")
        c.kill(doomed)
        r.set("slots:gate:go", "1")
        c.start_worker("rescuer")
        all_ended(c, [blocker, waiter], timeout=60)
        # The last job gives its slot back just after its run is marked completed.
        c.wait_for(lambda: r.zcard("sl:slots:f:slots-prioritized") == 0, 10, "no slot held")
    finally:
        c.stop()
