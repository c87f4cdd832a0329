"""lua/delete_run.lua, lua/delete_event.lua and app/retention.py: finished runs and events
are deleted once older than the retention, in bounded batches; live runs never are."""

from __future__ import annotations

import redis

from app import retention
from app.state.ops import OpsStore
from app.state.store import Store
from tests.lua.conftest import T0, make_job, make_pause, new_run

DAY = retention.DAY_MS


def _event(store: Store, internal_id: str, at: int) -> None:
    store.store_event({"name": "app/go", "data": {}, "id": "", "ts": at}, internal_id, at, 1000)


def _finished(store: Store, run_id: str, ended_at: int, status: str = "Completed") -> None:
    store.create_run(new_run(run_id, event_ids=["e1"]))
    store.mark_started(run_id, T0)
    store.save_step(run_id, "s1", {"data": 1}, {"name": "one"}, T0)
    store.finish_run(run_id, status, None, None, ended_at)


def test_delete_run_removes_its_keys_and_every_index_entry(
    store: Store, client: redis.Redis
) -> None:
    _finished(store, "01OLD", T0)
    assert OpsStore(store).ended_runs_before(T0, 10) == ["01OLD"]
    assert OpsStore(store).delete_run("01OLD", T0) is True
    assert client.keys("sl:{01OLD}*") == []
    for key in (
        "sl:runs",
        "sl:runs:fn:app-fn",
        "sl:runs:st:Completed",
        "sl:runs:st:Completed:fn:app-fn",
        "sl:runs:ended",
    ):
        assert client.zscore(key, "01OLD") is None, key
    assert store.get_run("01OLD") is None
    assert OpsStore(store).delete_run("01OLD", T0) is False  # twice is harmless


def test_delete_run_keeps_live_and_recent_runs(store: Store) -> None:
    store.create_run(new_run("01LIVE"))
    _finished(store, "01NEW", T0 + 10)
    assert OpsStore(store).delete_run("01LIVE", T0 + 100) is False
    assert OpsStore(store).delete_run("01NEW", T0) is False  # ended after the cutoff
    assert store.get_run("01LIVE") is not None and store.get_run("01NEW") is not None


def test_delete_run_refuses_a_stale_read(store: Store) -> None:
    _finished(store, "01OLD", T0)
    scripts = store._scripts
    assert scripts.delete_run("01OLD", "app-fn", "Failed", T0) == "changed"
    assert scripts.delete_run("01OLD", "other", "Completed", T0) == "changed"
    assert scripts.delete_run("01OLD", "app-fn", "Completed", T0) == "deleted"
    assert scripts.delete_run("01OLD", "", "", T0) == "missing"


def test_delete_event(store: Store, client: redis.Redis) -> None:
    _event(store, "e1", T0)
    client.sadd("sl:event-runs:e1", "01RUN")
    assert OpsStore(store).events_before(T0, 10) == ["e1"]
    assert OpsStore(store).delete_event("e1", T0 - 1) is False  # received after that cutoff
    assert OpsStore(store).delete_event("e1", T0) is True
    assert client.exists("sl:event:e1", "sl:event-runs:e1") == 0
    assert client.zscore("sl:events", "e1") is None
    assert OpsStore(store).delete_event("e1", T0) is False


def test_purge_deletes_only_what_is_older_than_the_retention(store: Store) -> None:
    keep = 7 * DAY
    for i in range(5):
        _finished(store, f"01OLD{i}", T0 + i, "Failed" if i % 2 else "Completed")
        _event(store, f"old{i}", T0 + i)
    _finished(store, "01RECENT", T0 + 3 * DAY)
    _event(store, "recent", T0 + 3 * DAY)
    store.create_run(new_run("01LIVE"))  # created at T0 and never ended: kept for ever
    now = T0 + keep + 2  # the cutoff is T0 + 2: runs/events 0..2 are due
    purged = retention.purge(store, now, keep, batch=2)
    assert (purged.runs, purged.events) == (3, 3)
    remaining = {view.run_id for view in store.list_runs(100)}
    assert remaining == {"01OLD3", "01OLD4", "01RECENT", "01LIVE"}
    assert [e.internal_id for e in store.list_events(100)] == ["recent", "old4", "old3"]
    later = retention.purge(store, T0 + 3 * DAY + keep, keep)
    assert (later.runs, later.events) == (3, 3)
    assert {view.run_id for view in store.list_runs(100)} == {"01LIVE"}


def test_purge_is_bounded_per_call(store: Store) -> None:
    for i in range(7):
        _finished(store, f"01R{i}", T0)
    purged = retention.purge(store, T0 + DAY, DAY, batch=2, max_batches=2)
    assert purged.runs == 4  # the rest waits for the next call
    assert retention.purge(store, T0 + DAY, DAY, batch=2, max_batches=2).runs == 3


def test_a_cancelled_run_with_pauses_and_jobs_is_deleted_clean(
    store: Store, client: redis.Redis
) -> None:
    store.create_run(new_run())
    store.save_pause(make_pause("p1"))
    store.enqueue_job(make_job("j1"), T0, T0)
    store.finish_run("01RUN", "Cancelled", None, None, T0)
    retention.purge(store, T0 + DAY, DAY)
    assert client.keys("sl:{01RUN}*") == []
    assert store.count_pauses() == 0 and store.count_jobs() == 0


def test_zero_days_keeps_everything(store: Store) -> None:
    from app.config import Settings

    _finished(store, "01A", T0)
    assert retention.apply(store, Settings(retention_days=0), T0 + 1000 * DAY).runs == 0
    assert retention.apply(store, Settings(retention_days=1), T0 + DAY).runs == 1


def test_engine_tick_runs_retention_at_most_once_a_minute(redis_url: str) -> None:
    from app.config import Settings
    from app.engine import Engine
    from app.functions import FunctionSet
    from tests.api.conftest import Recorder

    engine = Engine.create(
        Settings(redis_url=redis_url, key_prefix="sl", retention_days=1.0),
        sender=Recorder(),
        local=FunctionSet(),
    )
    try:
        _finished(engine.store, "01A", T0)
        engine.tick(T0 + DAY - 1)  # not old enough yet
        assert engine.store.get_run("01A") is not None
        engine.tick(T0 + DAY + 1)  # old enough, but the last purge was under a minute ago
        assert engine.store.get_run("01A") is not None
        engine.tick(T0 + DAY + retention.INTERVAL_MS)
        assert engine.store.get_run("01A") is None
    finally:
        engine.store.close()
