"""lua/finish_run.lua: end a run once, dropping its pauses and queued jobs."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from app.state.events import event_item
from app.state.records import RunEnd, SlotRelease
from app.state.slots import SlotStore
from app.state.store import NewEvent, Store
from tests.lua.conftest import T0, make_job, make_pause, new_run, race


def test_finishes_once(store: Store, run: str) -> None:
    assert store.finish_run(run, "Completed", {"ok": [1]}, None, T0 + 5) is True
    assert store.finish_run(run, "Failed", None, {"message": "late"}, T0 + 6) is False

    view = store.get_run(run)
    assert view is not None
    assert (view.status, view.output, view.error, view.ended_at) == (
        "Completed",
        {"ok": [1]},
        None,
        T0 + 5,
    )
    state = store.load_run(run)
    assert state is not None and state.status == "Completed"


def test_missing_run_is_not_finished(store: Store, client: redis.Redis) -> None:
    assert store.finish_run("nope", "Cancelled", None, None, T0) is False
    assert client.exists("sl:{nope}:run") == 0


def test_needs_an_ended_status(store: Store, run: str) -> None:
    with pytest.raises(ValueError):
        store.finish_run(run, "Running", None, None, T0)


def test_drops_the_runs_pauses_and_jobs(store: Store, run: str, client: redis.Redis) -> None:
    store.create_run(new_run("01OTHER"))
    store.save_pause(make_pause("p1", index_path="async.data.id", index_value="7"))
    store.save_pause(make_pause("p2", correlation_id="01RUN.step"))
    store.save_pause(make_pause("p3", event=""))
    store.save_pause(
        make_pause("q1", run_id="01OTHER", index_path="async.data.id", index_value="8")
    )
    store.enqueue_job(make_job("j1"), T0, T0 + 100)
    store.enqueue_job(make_job("j2"), T0, T0 + 100)
    store.enqueue_job(make_job("k1", run_id="01OTHER"), T0, T0 + 100)
    store.begin_job("j2", "worker", T0, 30_000)
    store.set_pending(run, ["x"])

    assert store.finish_run(run, "Cancelled", None, None, T0) is True

    for pause_id in ("p1", "p2", "p3"):
        assert store.get_pause(pause_id) is None
    assert store.count_pauses() == 1
    assert store.pause_index_paths("app/paid") == ["async.data.id"]
    assert store.pause_by_correlation("01RUN.step") is None
    assert [
        p.id
        for p in store.find_pauses("app/paid", [("async.data.id", "7"), ("async.data.id", "8")])
    ] == ["q1"]
    assert client.exists("sl:{01RUN}:pauses", "sl:{01RUN}:pending") == 0

    assert store.count_jobs() == 1
    assert store.begin_job("j1", "t", T0, 1000) == "gone"
    assert store.begin_job("j2", "t", T0 + 60_000, 1000) == "gone"
    assert store.enqueue_job(make_job("j1"), T0, T0) is False
    assert client.exists("sl:job-done:j1", "sl:job-done:j2") == 2
    assert client.zrange("sl:jobs:due", 0, -1) == ["k1"]
    assert client.zrange("sl:jobs:by-run", 0, -1) == ["01OTHER|k1"]
    for key in ("sl:jobs:owner", "sl:jobs:lease"):
        assert client.hlen(key) == 0

    # Repeating it is harmless and changes nothing.
    assert store.finish_run(run, "Cancelled", None, None, T0) is False
    assert store.count_jobs() == 1 and store.count_pauses() == 1


def test_exactly_one_of_eight_racers_finishes(store: Store, run: str) -> None:
    store.save_pause(make_pause("p1"))
    store.enqueue_job(make_job("j1"), T0, T0)
    results = race(8, lambda i: store.finish_run(run, "Completed", i, None, T0 + i))
    assert results.count(True) == 1
    view = store.get_run(run)
    assert view is not None and view.output == results.index(True)
    assert store.count_pauses() == 0 and store.count_jobs() == 0


def test_a_stale_snapshot_is_refused(store: Store, run: str) -> None:
    scripts = store._scripts
    # The caller saw no jobs, but one was enqueued since.
    store.enqueue_job(make_job("j1"), T0, T0)
    assert scripts.finish_run(
        run, "Completed", "null", "null", T0, [], [], function_id="app-fn"
    ) == ("changed", "", [])
    # Nor pauses.
    store.save_pause(make_pause("p1"))
    assert scripts.finish_run(
        run, "Completed", "null", "null", T0, [], ["j1"], function_id="app-fn"
    ) == ("changed", "", [])
    state = store.load_run(run)
    assert state is not None and state.status == "Queued"
    # The Store re-reads and succeeds.
    assert store.finish_run(run, "Completed", None, None, T0) is True


# --- lifecycle events stored with the run's end (one call) ---------------------------------


def lifecycle(internal_id: str, name: str, **data: object) -> NewEvent:
    event = {"name": name, "data": data, "id": "01RUN", "ts": T0, "user": {}}
    return NewEvent(internal_id, event, "", bool(data.get("correlation_id")))


def test_lifecycle_events_and_their_job_come_with_the_end(
    store: Store, run: str, client: redis.Redis
) -> None:
    events = [lifecycle("01L1", "inngest/function.finished"), lifecycle("01L2", "x/failed")]
    ended, job = store.end_run(run, "Failed", None, {"message": "x"}, T0, events, T0 + 99)
    assert ended and job is not None and job.id == "event:01L1"
    assert store.get_event("01L1") is not None and store.get_event("01L2") is not None
    claimed = store.begin_job(job.id, "tok", T0, 1_000)
    assert not isinstance(claimed, str) and claimed.events == ["01L1", "01L2"]
    assert client.zscore("sl:jobs:due", job.id) is not None
    # A second end stores nothing.
    later = [lifecycle("01L3", "inngest/function.finished")]
    assert store.end_run(run, "Completed", 1, None, T0 + 1, later, T0 + 99) == (False, None)
    assert store.get_event("01L3") is None


def test_a_repeated_end_answers_the_first_outcome(
    store: Store, run: str, client: redis.Redis
) -> None:
    """A lost reply re-sent (same token, same events): "finished" with the same job, and
    nothing written twice."""
    scripts = store._scripts
    items = [event_item(store.keys, lifecycle("01L1", "inngest/function.finished"), T0)]

    def call() -> tuple[str, str]:
        return scripts.finish_run(
            run, "Completed", "1", "null", T0, [], [], function_id="app-fn",
            token="01L1", events=items, send_by=T0 + 99,
        )  # fmt: skip

    assert call() == ("finished", "event:01L1", [])
    raw = redis.Redis(connection_pool=client.connection_pool, decode_responses=False)
    before = {key: raw.dump(key) for key in client.keys("*")}
    assert call() == ("finished", "event:01L1", [])
    assert {key: raw.dump(key) for key in client.keys("*")} == before
    other = scripts.finish_run(
        run, "Completed", "1", "null", T0, [], [], function_id="app-fn", token="other"
    )
    assert other == ("ended", "", [])


def test_lifecycle_events_nothing_listens_to_get_no_job(store: Store, run: str) -> None:
    store.save_app("a", None, [], T0)  # an index exists, with no trigger
    events = [lifecycle("01L1", "inngest/function.finished")]
    assert store.end_run(run, "Completed", 1, None, T0, events, T0 + 99) == (True, None)
    assert store.get_event("01L1") is not None
    # An invoked run's finish is processed whatever the index says (its parent waits).
    store.create_run(new_run("01KID"))
    kid = [lifecycle("01L2", "inngest/function.finished", correlation_id="01P.s")]
    ended, job = store.end_run("01KID", "Completed", 1, None, T0, kid, T0 + 99)
    assert ended and job is not None


def test_a_dropped_job_takes_its_failure_count_along(
    store: Store, run: str, client: redis.Redis
) -> None:
    """A job whose handler raised, then whose run ended (cancelled, failed for good): its
    count in `jobs:failures` goes with it instead of staying for ever."""
    job = make_job("j1", run_id=run)
    store.enqueue_job(job, T0, T0)
    store.begin_job("j1", "t1", T0, 30_000)
    assert store.fail_job("j1", "t1", T0, 1_000, 60_000) == 1
    assert client.hkeys("sl:jobs:failures") == ["j1"]
    assert store.finish_run(run, "Cancelled", None, None, T0 + 5) is True
    assert client.exists("sl:jobs:failures") == 0


def test_a_guessed_snapshot_ends_the_run_when_it_is_the_truth(
    store: Store, run: str, client: redis.Redis
) -> None:
    store.enqueue_job(make_job("j1"), T0, T0 + 100)
    store.begin_job("j1", "worker", T0, 30_000)
    # The guess (the caller's own job, no pauses) is used as the snapshot: no read first.
    assert store.end_run(run, "Completed", 1, None, T0, guess=("app-fn", ["j1"])) == (True, None)
    assert store.count_jobs() == 0
    assert client.exists("sl:job-done:j1") == 1
    # A repeat (a lost reply re-sent, or the caller again) answers "ended" and writes nothing.
    assert store.end_run(run, "Completed", 1, None, T0, guess=("app-fn", ["j1"])) == (False, None)


def test_a_wrong_guess_is_refused_and_the_snapshot_read(
    store: Store, run: str, client: redis.Redis
) -> None:
    store.enqueue_job(make_job("j1"), T0, T0 + 100)
    store.enqueue_job(make_job("timeout"), T0 + 9_000, T0 + 9_000)  # a job the guess misses
    store.save_pause(make_pause("p1", index_path="async.data.id", index_value="7"))
    assert store.end_run(run, "Cancelled", None, None, T0, guess=("app-fn", ["j1"]))[0] is True
    assert store.count_jobs() == 0
    assert store.get_pause("p1") is None
    assert client.exists("sl:job-done:j1", "sl:job-done:timeout") == 2


def test_the_last_steps_are_saved_with_the_end(store: Store, run: str, client: redis.Redis) -> None:
    """A run's last in-process steps and its end: one call (a step already saved with the
    same memo is left as it is). Sent again after a lost reply it answers the first outcome
    and writes nothing twice (each duration counted once)."""
    store.save_step(run, "a", {"data": 1}, {"name": "a"}, T0)
    items = [event_item(store.keys, lifecycle("01L1", "inngest/function.finished"), T0)]
    steps = [("a", '{"data":1}', '{"name":"\\"a\\""}'), ("b", '{"data":2}', '{"n":"2"}')]

    def call() -> tuple[str, str]:
        return store._scripts.finish_run(
            run, "Completed", "2", "null", T0, [], [], function_id="app-fn", token="01L1",
            events=items, steps=steps, durations=[("0.005", 0.001), ("0.05", 0.02)],
        )  # fmt: skip

    assert call() == ("finished", "event:01L1", [])
    state = store.load_run(run)
    assert state is not None and state.status == "Completed"
    assert state.stack == ["a", "b"] and state.steps == {"a": {"data": 1}, "b": {"data": 2}}
    assert state.kinds == {}
    assert client.hget("sl:{01RUN}:history", "b") is not None
    hist = "sl:metric:step_duration_seconds"
    assert client.hget(hist, "app-fn|count") == "1" and client.hget(hist, "app-fn|0.05") == "1"
    raw = redis.Redis(connection_pool=client.connection_pool, decode_responses=False)
    before = {key: raw.dump(key) for key in client.keys("*")}
    assert call() == ("finished", "event:01L1", [])
    assert {key: raw.dump(key) for key in client.keys("*")} == before


def test_a_last_step_with_another_memo_ends_nothing(
    store: Store, run: str, client: redis.Redis
) -> None:
    """Another execution saved that step first: it carries the run on; nothing is written."""
    store.save_step(run, "a", {"data": 1}, {}, T0)
    raw = redis.Redis(connection_pool=client.connection_pool, decode_responses=False)
    before = {key: raw.dump(key) for key in client.keys("*")}
    steps = [("b", {"data": 2}, {}), ("a", {"data": 9}, {})]
    ended = store.end_run(run, "Completed", 1, None, T0, steps=steps, observed=[None, None])
    assert ended == (False, None)
    assert {key: raw.dump(key) for key in client.keys("*")} == before
    # With the same memo, the run ends and only the new step is saved.
    assert store.end_run(run, "Completed", 1, None, T0, steps=[("a", {"data": 1}, {})])[0]
    state = store.load_run(run)
    assert state is not None and state.stack == ["a"] and state.status == "Completed"


# --- with a slot release: the ending job's concurrency slots go back in the same call -------
SLOT = "f:app-fn"


def _end(job_id: str = "j1", **kw: Any) -> RunEnd:
    release = SlotRelease([(SLOT, 1)], T0 + 5, 30_000, 60_000)
    return RunEnd("01RUN", "app-fn", job_id, "Completed", 1, None, T0 + 5, release=release, **kw)


def test_the_end_gives_the_slot_back_and_wakes_the_next_waiter(
    store: Store, run: str, client: redis.Redis
) -> None:
    """The call that ends the run gives its job's slot back and wakes the waiter that now
    fits (as slots_release.lua would, after it): one call. Alone and pipelined alike; a
    repeat (same token) answers "finished" and takes or wakes nothing more."""
    slots = SlotStore.over(store)
    store.enqueue_job(make_job("j1"), T0, T0 + 100)
    store.begin_job("j1", "worker", T0, 30_000)
    assert slots.acquire("j1", [(SLOT, 1)], T0, T0, 30_000, 60_000, 300_000).code == "ok"
    store.enqueue_job(make_job("other:start", "other"), T0, T0 + 1_000)
    assert slots.acquire("other:start", [(SLOT, 1)], T0 + 1, T0, 30_000, 60_000, 300_000).code == (
        "wait"
    )
    [ended] = store.end_runs([_end()])
    assert (ended.code, ended.released) == ("finished", True)
    assert [job.id for job in ended.woken] == ["other:start"]
    assert client.zrange(f"sl:slots:{SLOT}", 0, -1) == ["other:start"]
    assert client.hget("sl:jobs:owner", "other:start") == "woken"
    assert client.smembers("sl:slots:waiting") == set()
    # Another end of the same run: "ended", nothing released or woken again.
    snapshot = {key: client.dump(key) for key in client.keys("sl:*")}
    again = store.end_alone(_end(), guess=True)
    assert (again.code, again.released, again.woken) == ("ended", False, [])
    assert {key: client.dump(key) for key in client.keys("sl:*")} == snapshot


def test_a_repeated_end_with_a_release_answers_finished_and_frees_nothing_more(
    store: Store, run: str, client: redis.Redis
) -> None:
    """A lost reply re-sent (same token, same events): "finished" again; the release runs
    again but finds its slot gone and nobody left to wake."""
    slots = SlotStore.over(store)
    assert slots.acquire("j1", [(SLOT, 1)], T0, T0, 30_000, 60_000, 300_000).code == "ok"
    items = [event_item(store.keys, lifecycle("01L1", "inngest/function.finished"), T0)]
    release = SlotRelease([(SLOT, 1)], T0 + 5, 30_000, 60_000)

    def call() -> tuple[str, str, list[str]]:
        return store._scripts.finish_run(
            run, "Completed", "1", "null", T0, [], [], function_id="app-fn",
            token="01L1", events=items, send_by=T0 + 99, release=release, release_job="j1",
        )  # fmt: skip

    assert call() == ("finished", "event:01L1", [])
    assert client.zcard(f"sl:slots:{SLOT}") == 0
    before = {key: client.dump(key) for key in client.keys("sl:*")}
    assert call() == ("finished", "event:01L1", [])
    assert {key: client.dump(key) for key in client.keys("sl:*")} == before


def test_an_end_not_written_gives_no_slot_back(store: Store, run: str, client: redis.Redis) -> None:
    """The run had ended already: nothing written, the slot not given back here (the caller
    gives it back on its own, as before)."""
    slots = SlotStore.over(store)
    assert slots.acquire("j1", [(SLOT, 1)], T0, T0, 30_000, 60_000, 300_000).code == "ok"
    assert store.finish_run(run, "Cancelled", None, None, T0 + 1) is True
    ended = store.end_alone(_end(), guess=True)
    assert (ended.code, ended.released, ended.woken) == ("ended", False, [])
    assert client.zrange(f"sl:slots:{SLOT}", 0, -1) == ["j1"]
