"""lua/flow_singleton.lua and flow_singleton_release.lua: one live run per singleton key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.state.flow import SINGLETON_GRACE_MS, FlowStore
from app.state.store import Store
from tests.lua.conftest import T0, new_run, race


@pytest.fixture
def flow(store: Store) -> Iterator[FlowStore]:
    yield FlowStore(store)


def acquire(flow: FlowStore, schedule: str, run_id: str, mode: str = "skip", now: int = T0) -> str:
    decision = flow.acquire_singleton("app-fn", "-", schedule, run_id, mode, now)  # type: ignore[arg-type]
    return f"{decision.code}:{decision.run_id}:{decision.other}"


def test_first_run_takes_the_lock(flow: FlowStore, client: redis.Redis) -> None:
    assert acquire(flow, "e1", "R1") == "start:R1:"
    assert client.hget("sl:flow:singleton:app-fn:-", "run_id") == "R1"
    assert client.get("sl:flow:singleton-run:R1") == "sl:flow:singleton:app-fn:-"


def test_skip_while_the_holder_runs(flow: FlowStore, store: Store) -> None:
    store.create_run(new_run("R1", event_ids=[]))
    acquire(flow, "e1", "R1")
    assert acquire(flow, "e2", "R2", now=T0 + 10 * SINGLETON_GRACE_MS) == "skip::R1"


def test_decision_is_recorded_per_schedule(flow: FlowStore, store: Store) -> None:
    store.create_run(new_run("R1", event_ids=[]))
    assert acquire(flow, "e1", "R1") == "start:R1:"
    # The same schedule again (event processed twice) gets the same answer, not a skip.
    assert acquire(flow, "e1", "R9") == "start:R1:"
    assert acquire(flow, "e2", "R2") == "skip::R1"
    assert acquire(flow, "e2", "R3") == "skip::R1"


def test_ended_holder_frees_the_lock(flow: FlowStore, store: Store) -> None:
    store.create_run(new_run("R1", event_ids=[]))
    acquire(flow, "e1", "R1")
    store.finish_run("R1", "Completed", None, None, T0 + 5)
    assert acquire(flow, "e2", "R2") == "start:R2:"


def test_holder_without_run_is_live_only_for_the_grace(flow: FlowStore) -> None:
    acquire(flow, "e1", "R1")  # its run is never created (a crash)
    assert acquire(flow, "e2", "R2", now=T0 + 1) == "skip::R1"
    assert acquire(flow, "e3", "R3", now=T0 + SINGLETON_GRACE_MS) == "start:R3:"


def test_cancel_mode_replaces_the_live_holder(flow: FlowStore, store: Store) -> None:
    store.create_run(new_run("R1", event_ids=[]))
    acquire(flow, "e1", "R1", mode="cancel")
    assert acquire(flow, "e2", "R2", mode="cancel") == "start:R2:R1"
    assert acquire(flow, "e2", "R2", mode="cancel") == "start:R2:R1"  # repeat: same answer


def test_release_frees_only_its_own_lock(
    flow: FlowStore, store: Store, client: redis.Redis
) -> None:
    store.create_run(new_run("R1", event_ids=[]))
    acquire(flow, "e1", "R1", mode="cancel")
    acquire(flow, "e2", "R2", mode="cancel")
    assert flow.release_singleton("R1") is False  # R2 holds it now
    assert client.hget("sl:flow:singleton:app-fn:-", "run_id") == "R2"
    assert flow.release_singleton("R2") is True
    assert client.exists("sl:flow:singleton:app-fn:-") == 0
    assert flow.release_singleton("R2") is False  # twice is harmless
    assert acquire(flow, "e3", "R3") == "start:R3:"


def test_racing_schedules_start_exactly_one(flow: FlowStore) -> None:
    results = race(8, lambda i: acquire(flow, f"e{i}", f"R{i}"))
    assert sum(r.startswith("start") for r in results) == 1
