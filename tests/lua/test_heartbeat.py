"""lua/heartbeat.lua through LivenessStore: records, a late repeat, forgetting silent ones."""

from __future__ import annotations

import json

import redis

from app.state.liveness import LivenessStore
from app.state.store import Store
from tests.lua.conftest import T0


def record(pid: int, now: int) -> str:
    return json.dumps({"pid": pid, "last_seen": now})


def test_a_heartbeat_stores_the_record_and_its_time(store: Store, client: redis.Redis) -> None:
    live = LivenessStore(store)
    assert live.heartbeat("worker@h:1", record(1, T0), T0, T0 - 3_600_000) == 0
    assert live.records() == {"worker@h:1": record(1, T0)}
    assert client.zscore(live.keys.procs_seen, "worker@h:1") == T0


def test_a_repeat_is_harmless_and_a_late_one_never_rolls_back(store: Store) -> None:
    live = LivenessStore(store)
    live.heartbeat("worker@h:1", record(1, T0 + 5000), T0 + 5000, 0)
    assert live.heartbeat("worker@h:1", record(1, T0 + 5000), T0 + 5000, 0) == 0  # repeat
    assert live.heartbeat("worker@h:1", record(1, T0), T0, 0) == -1  # arrived late
    assert live.records() == {"worker@h:1": record(1, T0 + 5000)}


def test_processes_silent_since_before_the_cutoff_are_forgotten(
    store: Store, client: redis.Redis
) -> None:
    live = LivenessStore(store)
    live.heartbeat("worker@h:1", record(1, T0), T0, 0)
    live.heartbeat("beat@h:2", record(2, T0 + 10), T0 + 10, 0)
    forgotten = live.heartbeat("worker@h:3", record(3, T0 + 20), T0 + 20, T0 + 10)
    assert forgotten == 1
    assert set(live.records()) == {"beat@h:2", "worker@h:3"}
    assert client.zrange(live.keys.procs_seen, 0, -1) == ["beat@h:2", "worker@h:3"]
