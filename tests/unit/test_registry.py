"""The registry's per-task view against a real Redis: one version check per task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.models import FunctionConfig, Trigger
from app.registry import Registry
from app.state.store import Store

NOW = 1_700_000_000_000


def fn(slug: str, event: str) -> FunctionConfig:
    return FunctionConfig(id=f"a-{slug}", name=slug, app_id="a", triggers=[Trigger(event=event)])


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    s = Store(redis_url, prefix="rg")
    yield s
    s.close()


def test_a_pinned_task_reads_the_version_once(store: Store) -> None:
    registry = Registry(store)
    store.save_app("a", None, [fn("one", "app/one")], NOW)
    with registry.pinned():
        assert [f.id for f in registry.triggered_by("app/one")] == ["a-one"]
        # Another process registers meanwhile: this task keeps the view it began with.
        store.save_app("a", None, [fn("one", "app/one"), fn("two", "app/one")], NOW)
        with registry.pinned():  # nested (an inline job) reuses it
            assert [f.id for f in registry.triggered_by("app/one")] == ["a-one"]
        assert [f.id for f in registry.all()] == ["a-one"]
        # A function the view lacks is still read through by id.
        assert registry.get("a-two") is not None
    # The next task checks the version again and sees the change.
    with registry.pinned():
        assert sorted(f.id for f in registry.triggered_by("app/one")) == ["a-one", "a-two"]


def test_unpinned_reads_check_the_version_each_time(store: Store) -> None:
    registry = Registry(store)
    store.save_app("a", None, [fn("one", "app/one")], NOW)
    assert [f.id for f in registry.all()] == ["a-one"]
    store.save_app("a", None, [fn("two", "app/two")], NOW)
    assert [f.id for f in registry.all()] == ["a-two"]


def test_a_cached_view_does_not_survive_redis_losing_its_data(store: Store) -> None:
    """Redis loses everything (FLUSHDB, a restart without persistence) and the app syncs
    again from a new URL: a process that cached the old view must not keep calling the old
    URL because the new registration happens to bring the same version back."""
    registry = Registry(store)
    old = fn("one", "app/one").model_copy(update={"driver": "http", "url": "http://a:1/api"})
    store.save_app("a", "http://a:1/api", [old], NOW)
    assert (registry.get("a-one") or old).url == "http://a:1/api"
    store._client.delete(*store._client.keys("rg:*"))  # everything of this store
    new = old.model_copy(update={"url": "http://a:2/api"})
    store.save_app("a", "http://a:2/api", [new], NOW)
    found = registry.get("a-one")
    assert found is not None and found.url == "http://a:2/api"


def test_learning_many_runs_lets_calls_app_answer_from_memory(store: Store) -> None:
    """Beat routes a release of due timers of runs it never created: `learn_runs` reads
    their functions in one round trip, and `calls_app` then answers without Redis (here:
    after the runs' records are gone)."""
    registry = Registry(store)
    app_fn = fn("remote", "app/r").model_copy(update={"driver": "http", "url": "http://a:1/api"})
    store.save_app("a", "http://a:1/api", [fn("local", "app/l"), app_fn], NOW)
    client = store._client
    client.hset(store.keys.run("r1").meta, "function_id", "a-local")
    client.hset(store.keys.run("r2").meta, "function_id", "a-remote")
    registry.learn_runs(["r1", "r2", "r1", "gone"])
    client.delete(store.keys.run("r1").meta, store.keys.run("r2").meta)
    assert registry.calls_app("r1") is False
    assert registry.calls_app("r2") is True
    assert registry.calls_app("gone") is False  # not remembered: read, and the run is gone
