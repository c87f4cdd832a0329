"""Cron claims and cursors (plain commands, no script), and ping."""

from __future__ import annotations

import redis

from app.state.store import Store
from tests.lua.conftest import T0, race


def test_exactly_one_claimer(store: Store, client: redis.Redis) -> None:
    results = race(8, lambda i: store.claim_cron("app-fn", T0, 60_000))
    assert results.count(True) == 1
    assert store.claim_cron("app-fn", T0 + 60_000, 60_000) is True
    assert store.claim_cron("other", T0, 60_000) is True
    assert 0 < client.pttl(f"sl:cron-claim:app-fn:{T0}") <= 60_000


def test_cursor(store: Store) -> None:
    assert store.cron_cursor("app-fn") is None
    store.set_cron_cursor("app-fn", T0)
    store.set_cron_cursor("app-fn", T0 + 60_000)
    assert store.cron_cursor("app-fn") == T0 + 60_000


def test_ping(store: Store) -> None:
    assert store.ping() is True
    down = Store("redis://127.0.0.1:1/0")
    assert down.ping() is False
