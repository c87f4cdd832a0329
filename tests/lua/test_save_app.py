"""lua/save_app.lua: an app's functions replaced atomically, the registry version bumped;
registrations over HTTP refused, in the same call, when another app owns a function."""

from __future__ import annotations

import pytest
import redis

from app.errors import Conflict
from app.models import FunctionConfig, Trigger
from app.state.store import Store
from tests.lua.conftest import T0


def fn(app_id: str, name: str, event: str = "app/go") -> FunctionConfig:
    return FunctionConfig(
        id=f"{app_id}-{name}", name=name, app_id=app_id, triggers=[Trigger(event=event)]
    )


def test_saves_and_reads_functions(store: Store) -> None:
    assert store.registry_version() == ""
    assert store.save_app("a", None, [fn("a", "x"), fn("a", "y")], T0, sync_id="s1") is True
    assert store.registry_version() == "s1"
    assert store.list_functions() == [fn("a", "x"), fn("a", "y")]
    assert store.get_function("a-x") == fn("a", "x")
    assert store.get_function("nope") is None
    [app] = store.list_apps()
    assert app["id"] == "a" and app["url"] is None
    assert app["functions"] == ["a-x", "a-y"] and app["synced_at"] == T0


def test_unchanged_sync_changes_nothing_but_the_sync_time(store: Store) -> None:
    store.save_app("a", "http://a", [fn("a", "x"), fn("a", "y")], T0)
    version = store.registry_version()
    assert store.save_app("a", "http://a", [fn("a", "y"), fn("a", "x")], T0 + 1) is False
    assert store.registry_version() == version
    assert store.list_apps()[0]["synced_at"] == T0 + 1
    # A different url is a change.
    assert store.save_app("a", "http://b", [fn("a", "x"), fn("a", "y")], T0 + 2) is True
    assert store.registry_version() not in ("", version)


def test_replaces_the_apps_functions_only(store: Store, client: redis.Redis) -> None:
    store.save_app("a", None, [fn("a", "x"), fn("a", "y")], T0)
    store.save_app("b", None, [fn("b", "z")], T0)
    changed = store.save_app("a", None, [fn("a", "y", "app/other"), fn("a", "w")], T0, sync_id="s3")
    assert changed is True
    assert [f.id for f in store.list_functions()] == ["a-w", "a-y", "b-z"]
    assert store.get_function("a-y") == fn("a", "y", "app/other")
    assert client.smembers("sl:app-fns:a") == {"a-w", "a-y"}
    assert store.registry_version() == "s3"

    assert store.save_app("a", None, [], T0) is True
    assert [f.id for f in store.list_functions()] == ["b-z"]
    assert [app["id"] for app in store.list_apps()] == ["a", "b"]


# --- registrations over HTTP (takeover=False): ownership checked in the same call ----------


def http_fn(app_id: str, name: str, url: str = "http://a") -> FunctionConfig:
    return fn(app_id, name).model_copy(update={"driver": "http", "url": f"{url}?fnId={name}"})


def test_a_function_of_another_app_is_refused_and_nothing_written(
    store: Store, client: redis.Redis
) -> None:
    store.save_app("a", "http://a", [http_fn("a", "x")], T0, takeover=False)
    before = {key: client.dump(key) for key in client.keys("sl:*")}
    taken = http_fn("a", "x", "http://b").model_copy(update={"app_id": "b"})
    with pytest.raises(Conflict, match="already belongs to app 'a'") as refused:
        store.save_app("b", "http://b", [http_fn("b", "y"), taken], T0 + 1, takeover=False)
    assert refused.value.field == "functions"
    assert {key: client.dump(key) for key in client.keys("sl:*")} == before
    # The engine's own in-process functions may take over (takeover=True, the default).
    assert store.save_app("b", None, [taken], T0 + 2) is True
    assert store.get_function("a-x") == taken


def test_an_app_served_in_process_cannot_be_claimed_over_http(store: Store) -> None:
    store.save_app("local", None, [fn("local", "x")], T0)
    with pytest.raises(Conflict, match="in-process"):
        store.save_app("local", "http://evil", [http_fn("local", "y")], T0, takeover=False)
    assert [f.id for f in store.list_functions()] == ["local-x"]
    assert store.list_apps()[0]["url"] is None


def test_a_taken_over_function_is_not_deleted_by_its_old_app(store: Store) -> None:
    store.save_app("a", "http://a", [http_fn("a", "x"), http_fn("a", "y")], T0, takeover=False)
    local = fn("a", "x").model_copy(update={"app_id": "local"})
    store.save_app("local", None, [local], T0)
    # App a syncs again without a-x: a-x now belongs to `local` and must survive.
    store.save_app("a", "http://a", [http_fn("a", "y")], T0 + 1, takeover=False)
    assert store.get_function("a-x") == local


def test_a_repeated_call_answers_the_first_outcome(store: Store, client: redis.Redis) -> None:
    """redis-py re-sends a script whose reply was lost: the repeat (same sync id) must answer
    `modified` as the first call did, and change nothing."""
    functions = [http_fn("a", "x"), http_fn("a", "y")]
    assert store.save_app("a", "http://a", functions, T0, sync_id="s1", takeover=False) is True
    version = store.registry_version()
    again = store.save_app("a", "http://a", functions, T0 + 5, sync_id="s1", takeover=False)
    assert again is True
    assert store.registry_version() == version
    assert store.list_apps()[0]["synced_at"] == T0
    assert client.hget("sl:app-syncs", "a") == "s1 1"
    # A new registration of the same payload is a new sync: not modified.
    assert store.save_app("a", "http://a", functions, T0 + 9, sync_id="s2") is False
    assert store.save_app("a", "http://a", functions, T0 + 9, sync_id="s2") is False
    assert client.hget("sl:app-syncs", "a") == "s2 0"


def test_the_version_is_never_reused_after_redis_lost_its_data(
    store: Store, client: redis.Redis
) -> None:
    """Processes cache the functions under the version: after a wipe (FLUSHDB, a restart
    without persistence) the same registration must not produce the version they cached."""
    store.save_app("a", "http://a:1", [http_fn("a", "x", "http://a:1")], T0, takeover=False)
    cached = store.registry_version()
    client.delete(*client.keys("sl:*"))
    assert store.registry_version() == ""
    store.save_app("a", "http://a:2", [http_fn("a", "x", "http://a:2")], T0, takeover=False)
    assert store.registry_version() not in ("", cached)
