"""lua/save_app.lua: an app's functions replaced atomically, the registry version bumped."""

from __future__ import annotations

import redis

from app.models import FunctionConfig, Trigger
from app.state.store import Store
from tests.lua.conftest import T0


def fn(app_id: str, name: str, event: str = "app/go") -> FunctionConfig:
    return FunctionConfig(
        id=f"{app_id}-{name}", name=name, app_id=app_id, triggers=[Trigger(event=event)]
    )


def test_saves_and_reads_functions(store: Store) -> None:
    assert store.registry_version() == 0
    assert store.save_app("a", None, [fn("a", "x"), fn("a", "y")], T0) is True
    assert store.registry_version() == 1
    assert store.list_functions() == [fn("a", "x"), fn("a", "y")]
    assert store.get_function("a-x") == fn("a", "x")
    assert store.get_function("nope") is None
    [app] = store.list_apps()
    assert app["id"] == "a" and app["url"] is None
    assert app["functions"] == ["a-x", "a-y"] and app["synced_at"] == T0


def test_unchanged_sync_changes_nothing_but_the_sync_time(store: Store) -> None:
    store.save_app("a", "http://a", [fn("a", "x"), fn("a", "y")], T0)
    assert store.save_app("a", "http://a", [fn("a", "y"), fn("a", "x")], T0 + 1) is False
    assert store.registry_version() == 1
    assert store.list_apps()[0]["synced_at"] == T0 + 1
    # A different url is a change.
    assert store.save_app("a", "http://b", [fn("a", "x"), fn("a", "y")], T0 + 2) is True
    assert store.registry_version() == 2


def test_replaces_the_apps_functions_only(store: Store, client: redis.Redis) -> None:
    store.save_app("a", None, [fn("a", "x"), fn("a", "y")], T0)
    store.save_app("b", None, [fn("b", "z")], T0)
    assert store.save_app("a", None, [fn("a", "y", "app/other"), fn("a", "w")], T0) is True
    assert [f.id for f in store.list_functions()] == ["a-w", "a-y", "b-z"]
    assert store.get_function("a-y") == fn("a", "y", "app/other")
    assert client.smembers("sl:app-fns:a") == {"a-w", "a-y"}
    assert store.registry_version() == 3

    assert store.save_app("a", None, [], T0) is True
    assert [f.id for f in store.list_functions()] == ["b-z"]
    assert [app["id"] for app in store.list_apps()] == ["a", "b"]
