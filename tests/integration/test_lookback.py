"""`wait_for_event(..., lookback=...)` end to end (app/lookback.py), through real `celery
worker`/beat processes: an event received before the wait is stored matches when it falls in
the lookback window, and only then."""

from __future__ import annotations

import secrets
import time

import pytest

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.e2e


def _target_processed(cluster: Cluster, k: str) -> str:
    """Send the event the run will wait for and wait until it has been processed (indexed):
    it is then too early for any wait stored afterwards, without lookback."""
    event_id = cluster.send("e2e/lookback-target", {"k": k})
    store = cluster.engine.store
    now = cluster.engine.now()

    def indexed() -> bool:
        return any(
            r.internal_id == event_id
            for r in store.recent_events("e2e/lookback-target", now - 60_000, now + 60_000)
        )

    cluster.wait_for(indexed, what="the event to be processed")
    return event_id


def test_an_event_received_before_the_wait_matches_within_the_lookback(cluster: Cluster) -> None:
    k = secrets.token_hex(4)
    cluster.send("e2e/lookback-target", {"k": "someone-else"})
    _target_processed(cluster, k)
    run = cluster.run_of(cluster.send("e2e/lookback", {"k": k, "lookback": 60, "timeout": 30}))
    assert run.status == "Completed"
    assert run.output == {"k": k}
    (wait,) = run.steps
    assert wait["status"] == "Completed"


def test_without_lookback_the_earlier_event_is_missed(cluster: Cluster) -> None:
    k = secrets.token_hex(4)
    _target_processed(cluster, k)
    run = cluster.run_of(cluster.send("e2e/lookback", {"k": k, "timeout": 1}))
    assert run.status == "Completed"
    assert run.output is None  # timed out: the event came before the wait


def test_an_event_older_than_the_lookback_is_not_matched(cluster: Cluster) -> None:
    k = secrets.token_hex(4)
    _target_processed(cluster, k)
    time.sleep(2.5)  # the event is now older than the 2 s window (real time, not a race)
    run = cluster.run_of(cluster.send("e2e/lookback", {"k": k, "lookback": 2, "timeout": 1}))
    assert run.status == "Completed"
    assert run.output is None


def test_an_event_after_the_wait_still_matches_once(cluster: Cluster) -> None:
    k = secrets.token_hex(4)
    event_id = cluster.send("e2e/lookback", {"k": k, "lookback": 60, "timeout": 30})
    cluster.wait_for(
        lambda: any(
            s.get("status") == "Waiting" for r in cluster.runs_of(event_id) for s in r.steps
        ),
        what="the run to wait",
    )
    cluster.send("e2e/lookback-target", {"k": k, "n": 1})
    cluster.send("e2e/lookback-target", {"k": k, "n": 2})
    run = cluster.run_of(event_id)
    assert run.status == "Completed"
    assert run.output in ({"k": k, "n": 1}, {"k": k, "n": 2})  # processed concurrently
    (wait,) = run.steps
    assert wait["status"] == "Completed"
