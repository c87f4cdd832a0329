"""lua/set_pending.lua and lua/set_disable_immediate.lua."""

from __future__ import annotations

import redis

from app.state.store import Store


def test_replaces_the_set_and_sets_die(store: Store, run: str, client: redis.Redis) -> None:
    store.set_pending(run, ["a", "b"])
    store.set_pending(run, ["c", "d", "e"])
    store.set_pending(run, ["c", "d", "e"])
    assert client.smembers("sl:{01RUN}:pending") == {"c", "d", "e"}
    state = store.load_run(run)
    assert state is not None and state.disable_immediate_execution


def test_empty_list_only_empties_the_set(store: Store, run: str, client: redis.Redis) -> None:
    store.set_pending(run, ["a"])
    store.set_pending(run, [])
    assert client.exists("sl:{01RUN}:pending") == 0
    state = store.load_run(run)
    assert state is not None and state.disable_immediate_execution


def test_missing_run_is_left_alone(store: Store, client: redis.Redis) -> None:
    store.set_pending("nope", ["a"])
    store.set_disable_immediate("nope", True)
    assert client.exists("sl:{nope}:pending", "sl:{nope}:run") == 0


def test_set_disable_immediate(store: Store, run: str) -> None:
    for value in (True, True, False, False):
        store.set_disable_immediate(run, value)
        state = store.load_run(run)
        assert state is not None and state.disable_immediate_execution is value
