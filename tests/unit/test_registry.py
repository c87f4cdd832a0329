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
