"""The archiver's scripts: queued with the finish (lua/finish_run.lua) and the event store
(lua/store_event.lua); lua/history_claim.lua, lua/history_archived.lua,
lua/history_drop_run.lua and lua/history_drop_event.lua. Each is also called twice, as
redis-py re-sends a script whose reply was lost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.models import Job, JobKind
from app.state.archive import ArchiveStore
from app.state.store import Store
from tests.lua.conftest import T0, new_run

LEASE = 30_000
HOT = 600_000


@pytest.fixture
def archive(store: Store) -> Iterator[ArchiveStore]:
    yield ArchiveStore(store)


def finished(store: Store, run_id: str, at: int = T0 + 10, **kw: object) -> str:
    store.create_run(new_run(run_id, **kw))  # type: ignore[arg-type]
    store.mark_started(run_id, T0 + 1)
    store.save_step(run_id, "s1", {"data": 1}, {"name": "one", "kind": "StepRun"}, T0 + 2)
    assert store.finish_run(run_id, "Completed", {"ok": 1}, None, at)
    return run_id


def test_a_finish_queues_the_run_once_at_its_end_time(
    store: Store, client: redis.Redis, archive: ArchiveStore
) -> None:
    finished(store, "01RUN", at=T0 + 10)
    assert client.zrange("sl:history:runs", 0, -1, withscores=True) == [("01RUN", T0 + 10)]
    assert not store.finish_run("01RUN", "Failed", None, None, T0 + 20)
    assert client.zrange("sl:history:runs", 0, -1, withscores=True) == [("01RUN", T0 + 10)]
    store.create_run(new_run("01LIVE"))
    assert archive.backlog(T0 + 10) == (1, 0)
    assert archive.backlog(T0 + 9) == (0, 0)


def test_a_stored_event_is_queued_once(store: Store, client: redis.Redis) -> None:
    event = {"name": "app/go", "data": {}, "id": "u1", "ts": T0, "user": {}}
    assert store.store_event(event, "01E1", T0, 5000) == ("01E1", True)
    assert store.store_event(event, "01E2", T0 + 1, 5000) == ("01E1", False)
    assert store.store_event({**event, "id": ""}, "01E3", T0 + 2, 5000) == ("01E3", True)
    assert client.zrange("sl:history:events", 0, -1, withscores=True) == [
        ("01E1", T0),
        ("01E3", T0 + 2),
    ]


def test_a_claim_leases_due_ids_and_a_repeat_answers_the_same(
    store: Store, client: redis.Redis, archive: ArchiveStore
) -> None:
    for i, at in enumerate((T0 + 1, T0 + 2, T0 + 3, T0 + 100)):
        finished(store, f"R{i}", at=at)
    assert archive.claim_runs("t1", T0 + 50, LEASE, 2) == ["R0", "R1"]
    assert archive.claim_runs("t1", T0 + 51, LEASE, 2) == ["R0", "R1"]  # lost reply re-sent
    assert client.zscore("sl:history:runs", "R0") == T0 + 50 + LEASE
    assert archive.claim_runs("t2", T0 + 50, LEASE, 5) == ["R2"]
    assert archive.claim_runs("t3", T0 + 50, LEASE, 5) == []
    # The lease runs out (the archiver died): the ids come back to the next claimer.
    assert archive.claim_runs("t4", T0 + 50 + LEASE, LEASE, 5) == ["R3", "R0", "R1", "R2"]


def test_archived_ids_leave_the_queue_for_the_drop_set_once(
    store: Store, client: redis.Redis, archive: ArchiveStore
) -> None:
    finished(store, "R0")
    finished(store, "R1")
    assert archive.claim_runs("t1", T0 + 50, LEASE, 10) == ["R0", "R1"]
    assert archive.archived_runs("t1", ["R0", "R1"], T0 + 50 + HOT) == 2
    assert archive.archived_runs("t1", ["R0", "R1"], T0 + 99 + HOT) == 2  # repeat
    assert client.zcard("sl:history:runs") == 0
    assert client.zrange("sl:history:drop-runs", 0, -1, withscores=True) == [
        ("R0", T0 + 50 + HOT),
        ("R1", T0 + 50 + HOT),
    ]
    assert client.exists("sl:history:claim:t1") == 0


def test_read_runs_gives_the_whole_finished_run(store: Store, archive: ArchiveStore) -> None:
    finished(store, "R0", correlation_id="c1")
    store.record_step("R0", "s2", {"name": "two", "kind": "Sleep", "status": "Running"})
    store.create_run(new_run("LIVE"))
    [run] = archive.read_runs(["R0", "LIVE", "GONE"])
    assert (run.run_id, run.status, run.output, run.error) == ("R0", "Completed", {"ok": 1}, None)
    assert (run.created_at, run.started_at, run.ended_at) == (T0, T0 + 1, T0 + 10)
    assert (run.event_ids, run.correlation_id) == (["01EVT"], "c1")
    assert run.events == new_run().events
    one, two = run.steps
    assert (one.step_id, one.memoized, one.memo, one.stack_index) == ("s1", True, {"data": 1}, 0)
    assert one.record is not None and one.record["name"] == "one"
    assert (two.step_id, two.memoized, two.stack_index) == ("s2", False, None)


def test_drop_run_waits_for_its_time_then_removes_everything_of_the_run(
    store: Store, client: redis.Redis, archive: ArchiveStore
) -> None:
    finished(store, "R0", event_ids=["E1", "E2"])
    store.create_run(new_run("R1", event_ids=["E1"]))
    client.set("sl:job-done:R0:start", "1", px=86_400_000)
    assert not archive.drop_runs(["R0"], T0 + 10**9)  # not archived yet: kept
    archive.claim_runs("t", T0 + 10, LEASE, 10)
    archive.archived_runs("t", ["R0"], T0 + HOT)
    assert not archive.drop_runs(["R0"], T0 + HOT - 1)
    assert client.exists("sl:{R0}:run") == 1

    assert archive.drop_runs(["R0"], T0 + HOT)
    assert archive.drop_runs(["R0"], T0 + HOT)  # a repeat answers the same
    assert [k for k in client.scan_iter("sl:{R0}:*")] == []
    for index in (
        "sl:runs",
        "sl:runs:fn:app-fn",
        "sl:runs:st:Completed",
        "sl:runs:st:Completed:fn:app-fn",
        "sl:runs:ended",
        "sl:history:drop-runs",
    ):
        assert client.zscore(index, "R0") is None, index
    assert client.smembers("sl:event-runs:E1") == {"R1"}
    assert client.exists("sl:event-runs:E2") == 0
    assert client.exists("sl:job-done:R0:start") == 0
    assert client.zscore("sl:runs", "R1") is not None


def test_a_live_run_in_the_drop_set_is_never_dropped(
    store: Store, client: redis.Redis, archive: ArchiveStore
) -> None:
    store.create_run(new_run("R0"))
    client.zadd("sl:history:drop-runs", {"R0": T0})
    assert not archive.drop_runs(["R0"], T0 + HOT)
    assert store.get_run("R0") is not None


def test_drop_event_waits_for_its_processing_job(
    store: Store, client: redis.Redis, archive: ArchiveStore
) -> None:
    event = {"name": "app/go", "data": {}, "id": "", "ts": T0, "user": {}}
    store.store_event(event, "E1", T0, 5000)
    store.create_run(new_run("R1", event_ids=["E1"]))
    store.enqueue_job(Job(id="event:E1", kind=JobKind.EVENT, event_id="E1"), T0, T0)
    assert archive.claim_events("t", T0, LEASE, 10) == ["E1"]
    archive.archived_events("t", ["E1"], T0 + HOT)

    assert archive.drop_event("E1", T0 + HOT - 1, T0 + 2 * HOT) == "kept"
    assert archive.drop_event("E1", T0 + HOT, T0 + 2 * HOT) == "waiting"
    assert client.zscore("sl:history:drop-events", "E1") == T0 + 2 * HOT
    assert store.get_event("E1") is not None

    token = store.begin_job("event:E1", "w", T0, LEASE)
    assert not isinstance(token, str)
    store.finish_job("event:E1", "w")
    assert client.exists("sl:job-done:event:E1") == 1
    assert archive.drop_event("E1", T0 + 2 * HOT, T0 + 3 * HOT) == "dropped"
    assert archive.drop_event("E1", T0 + 2 * HOT, T0 + 3 * HOT) == "dropped"  # repeat
    assert store.get_event("E1") is None
    assert client.zscore("sl:events", "E1") is None
    assert client.zcard("sl:history:drop-events") == 0
    assert client.exists("sl:job-done:event:E1") == 0
    assert client.smembers("sl:event-runs:E1") == {"R1"}  # the live run keeps its link


def test_dropping_takes_the_keys_kept_only_for_the_run_and_its_event(
    store: Store, client: redis.Redis, archive: ArchiveStore
) -> None:
    """The event-derived idempotency key and the dedupe keys of ids Stepline made go with the
    run and the event; a dedupe key of an id a user sent stays its 24 hours."""
    own = {"name": "app/go", "data": {}, "id": "E1", "ts": T0, "user": {}}  # id = internal id
    sent = {"name": "app/go", "data": {}, "id": "user-7", "ts": T0, "user": {}}
    finished_event = {
        "name": "inngest/function.finished",
        "data": {},
        "id": "R1:finished",
        "ts": T0,
        "user": {},
    }
    store.store_event(own, "E1", T0, 86_400_000)
    store.store_event(sent, "E2", T0, 86_400_000)
    store.store_event(finished_event, "E3", T0, 86_400_000)
    store.create_run(new_run("R1", event_ids=["E1"], idempotency_key="app-fn:E1"))
    store.create_run(new_run("R2", event_ids=["E2"], idempotency_key="app-fn:custom"))
    for run_id in ("R1", "R2"):
        assert store.finish_run(run_id, "Completed", None, None, T0 + 10)
    archive.claim_runs("t", T0 + 10, LEASE, 10)
    archive.archived_runs("t", ["R1", "R2"], T0 + HOT)
    archive.claim_events("u", T0 + 10, LEASE, 10)
    archive.archived_events("u", ["E1", "E2", "E3"], T0 + HOT)
    assert client.get("sl:idem:app-fn:E1") == "R1"

    assert archive.drop_runs(["R1", "R2"], T0 + HOT) == 2
    assert client.exists("sl:idem:app-fn:E1") == 0
    assert client.get("sl:idem:app-fn:custom") == "R2"  # the function's own key: its 24 h
    for event_id in ("E1", "E2", "E3"):
        assert archive.drop_event(event_id, T0 + HOT, T0 + 2 * HOT) == "dropped"
    assert client.exists("sl:event-dedupe:E1") == 0
    assert client.exists("sl:event-dedupe:R1:finished") == 0
    assert client.get("sl:event-dedupe:user-7") == "E2"
