"""lua/suspend.lua: a run stops until later (a sleep, planned steps, a retry, a yield, a wait,
an invoke) in one step: the in-process steps before the stop saved, its steps recorded, their
jobs queued (an invoke's event stored with its job) and the job that ran it finished, under
that job's lease; safe to repeat."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from app.models import JobKind
from app.runner import new_event
from app.state.records import BrokerMessage, QueuedJob, SlotRelease
from app.state.slots import SlotStore
from app.state.store import Store
from tests.lua.conftest import T0, make_job, make_pause

LEASE = 30_000


def _suspend(store: Store, *args: Any, **kw: Any) -> tuple[str, list[bool]]:
    """`Store.suspend`'s code and created jobs."""
    done = store.suspend(*args, **kw)
    return done.code, done.created


def _running(store: Store, run: str, job_id: str = "01RUN:start", token: str = "tok") -> None:
    """The run's job `job_id`, queued and leased to `token`."""
    store.enqueue_job(make_job(job_id, run, kind=JobKind.START), T0, T0 + 1_000)
    assert store.begin_job(job_id, token, T0, LEASE) != "busy"


def _sleep(run: str = "01RUN", step: str = "nap", wake: int = T0 + 60_000) -> Any:
    info = {"name": "nap", "kind": "Sleep", "status": "Sleeping", "due_at": wake}
    job = make_job(f"{run}:sleep:{step}", run, kind=JobKind.SLEEP, step=step)
    return (step, info, QueuedJob(job=job, send_by=wake, due_at=wake, soon=False))


def _plan(step: str, run: str = "01RUN") -> Any:
    info = {"name": step, "kind": "StepRun", "status": "Planned"}
    job = make_job(f"{run}:plan:{step}", run, step=step)
    return (step, info, QueuedJob(job=job, send_by=T0 + 5_000, due_at=T0, soon=True))


def _snapshot(client: redis.Redis) -> dict[str, Any]:
    return {key: client.dump(key) for key in sorted(client.keys("sl:*"))}


def _contents(client: redis.Redis) -> dict[str, Any]:
    """Every key's value and TTL (a hash that outgrew its compact encoding may DUMP its
    fields in another order after a mere read: incremental rehashing)."""
    read = {
        "string": client.get,
        "hash": client.hgetall,
        "set": client.smembers,
        "list": lambda key: client.lrange(key, 0, -1),
        "zset": lambda key: client.zrange(key, 0, -1, withscores=True),
    }
    return {
        key: (read[client.type(key)](key), client.pttl(key) > 0)
        for key in sorted(client.keys("sl:*"))
    }


def test_a_sleep_records_its_step_queues_its_timer_and_finishes_the_job(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    assert _suspend(store, run, "01RUN:start", "tok", [_sleep()]) == ("suspended", [True])

    # The job that ran the call is gone, tombstoned; the timer waits until its wake time.
    assert client.hkeys("sl:jobs") == ["01RUN:sleep:nap"]
    assert client.zrange("sl:jobs:due", 0, -1, withscores=True) == [
        ("01RUN:sleep:nap", T0 + 60_000)
    ]
    assert client.zrange("sl:jobs:by-run", 0, -1) == ["01RUN|01RUN:sleep:nap"]
    assert client.hlen("sl:jobs:owner") == 0 and client.hlen("sl:jobs:lease") == 0
    assert client.exists("sl:job-done:01RUN:start") == 1
    record = json.loads(client.hget("sl:jobs", "01RUN:sleep:nap") or "{}")
    assert (record["kind"], record["step"], record["due_at"]) == ("sleep", "nap", T0 + 60_000)
    view = store.get_run(run)
    assert view is not None
    assert view.steps == [
        {
            "id": "nap",
            "name": "nap",
            "kind": "Sleep",
            "status": "Sleeping",
            "due_at": T0 + 60_000,
            "order": 0,
        }
    ]
    # The finished job is never queued again (its tombstone), as finish_job leaves it.
    assert store.enqueue_job(make_job("01RUN:start", run), T0, T0) is False


def test_a_repeat_after_a_lost_reply_answers_the_first_outcome_and_changes_nothing(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    first = _suspend(store, run, "01RUN:start", "tok", [_plan("a"), _plan("b")], ["a", "b"])
    assert first == ("suspended", [True, True])
    before = _snapshot(client)
    # redis-py re-sends the same EVALSHA after a lost reply: same answer, nothing written
    # (so the caller sends the jobs' messages it did not get to send).
    again = _suspend(store, run, "01RUN:start", "tok", [_plan("a"), _plan("b")], ["a", "b"])
    assert again == first
    assert _snapshot(client) == before


def test_a_repeat_of_a_call_that_found_its_job_queued_answers_that_too(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    store.enqueue_job(_plan("a")[2].job, T0, T0 + 5_000)  # queued already (an earlier pass)
    assert _suspend(store, run, "01RUN:start", "tok", [_plan("a")]) == ("suspended", [False])
    before = _snapshot(client)
    assert _suspend(store, run, "01RUN:start", "tok", [_plan("a")]) == ("suspended", [False])
    assert _snapshot(client) == before


def test_the_same_token_with_other_follow_ups_is_no_repeat(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    assert _suspend(store, run, "01RUN:start", "tok", [_plan("a")])[0] == "suspended"
    before = _snapshot(client)
    assert _suspend(store, run, "01RUN:start", "tok", [_plan("b")]) == ("lost", [])
    assert _suspend(store, run, "01RUN:start", "tok", [_plan("a"), _plan("b")]) == ("lost", [])
    assert _suspend(store, run, "01RUN:start", "other", [_plan("a")]) == ("lost", [])
    assert _snapshot(client) == before


def test_parallel_steps_are_pending_and_each_has_its_job(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    code = _suspend(store, run, "01RUN:start", "tok", [_plan("a"), _sleep(step="b")], ["a", "b"])
    assert code == ("suspended", [True, True])
    assert client.smembers("sl:{01RUN}:pending") == {"a", "b"}
    assert client.hget("sl:{01RUN}:run", "die") == "1"
    assert sorted(client.hkeys("sl:jobs")) == ["01RUN:plan:a", "01RUN:sleep:b"]
    view = store.get_run(run)
    assert view is not None
    assert [(s["id"], s["status"], s["order"]) for s in view.steps] == [
        ("a", "Planned", 0),
        ("b", "Sleeping", 1),
    ]


def test_a_job_another_delivery_leased_is_lost_and_nothing_is_written(
    store: Store, run: str, client: redis.Redis
) -> None:
    """Our lease ran out and another delivery took the job over: it carries the run on."""
    _running(store, run)
    assert store.begin_job("01RUN:start", "other", T0 + LEASE, LEASE) != "busy"
    before = _snapshot(client)
    assert _suspend(store, run, "01RUN:start", "tok", [_sleep()]) == ("lost", [])
    assert _snapshot(client) == before


def test_a_job_finished_elsewhere_is_lost_and_nothing_is_written(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    store.finish_job("01RUN:start", "other")
    before = _snapshot(client)
    assert _suspend(store, run, "01RUN:start", "tok", [_sleep()]) == ("lost", [])
    assert _snapshot(client) == before


def test_a_lease_the_tick_cleared_is_still_ours(
    store: Store, run: str, client: redis.Redis
) -> None:
    """The tick clears an expired lease before the job is sent again: until another delivery
    takes it, the first one keeps it (as renew_job does)."""
    _running(store, run)
    released = store.release_due(T0 + LEASE, 60_000, 10)
    assert [job.id for job in released] == ["01RUN:start"]
    assert client.hget("sl:jobs:owner", "01RUN:start") is None
    assert _suspend(store, run, "01RUN:start", "tok", [_sleep()]) == ("suspended", [True])
    assert client.hkeys("sl:jobs") == ["01RUN:sleep:nap"]


def test_an_ended_run_queues_nothing(store: Store, run: str, client: redis.Redis) -> None:
    _running(store, run)
    assert store.finish_run(run, "Cancelled", None, None, T0 + 1)
    before = _snapshot(client)
    assert _suspend(store, run, "01RUN:start", "tok", [_sleep()]) == ("ended", [])
    assert _snapshot(client) == before


def test_a_missing_run_is_left_alone(store: Store, client: redis.Redis) -> None:
    store.enqueue_job(make_job("01NONE:start", "01NONE"), T0, T0)
    store.begin_job("01NONE:start", "tok", T0, LEASE)
    before = _snapshot(client)
    assert _suspend(store, "01NONE", "01NONE:start", "tok", [_sleep("01NONE")]) == ("missing", [])
    assert _snapshot(client) == before


def test_a_follow_up_that_ran_recently_is_not_queued_again(
    store: Store, run: str, client: redis.Redis
) -> None:
    """A yield (no step recorded) whose job id ran within the tombstone TTL."""
    _running(store, run)
    yielded = make_job("01RUN:yield:0", run)
    store.enqueue_job(yielded, T0, T0)
    store.finish_job(yielded.id, "x")
    planned = QueuedJob(job=yielded, send_by=T0 + 5_000, due_at=T0, soon=True)
    assert _suspend(store, run, "01RUN:start", "tok", [("", None, planned)]) == (
        "suspended",
        [False],
    )
    assert client.hlen("sl:jobs") == 0
    assert client.hlen("sl:{01RUN}:history") == 0


def _wait(pause: Any, run: str = "01RUN") -> Any:
    info = {"name": "wait", "kind": "WaitForEvent", "status": "Waiting", "due_at": pause.expires_at}
    job = make_job(f"{run}:timeout:{pause.step}", run, kind=JobKind.PAUSE_TIMEOUT)
    planned = QueuedJob(job=job, send_by=pause.expires_at, due_at=pause.expires_at, soon=False)
    return (pause.step, info, planned)


def test_a_wait_saves_its_pause_with_its_timeout_and_finishes_the_job(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    pause = make_pause("p1", run)
    code = _suspend(store, run, "01RUN:start", "tok", [_wait(pause)], pause=pause)
    assert code == ("suspended", [True])
    assert store.get_pause("p1") == pause
    assert client.zscore("sl:pauses:expiry", "p1") == pause.expires_at
    assert client.smembers("sl:pscan:app/paid") == {"p1"}
    assert client.smembers("sl:{01RUN}:pauses") == {"p1"}
    assert client.hkeys("sl:jobs") == [f"01RUN:timeout:{pause.step}"]
    before = _snapshot(client)
    again = _suspend(store, run, "01RUN:start", "tok", [_wait(pause)], pause=pause)
    assert again == code  # a lost reply re-sent
    assert _snapshot(client) == before


def test_a_wait_whose_pause_exists_still_suspends(
    store: Store, run: str, client: redis.Redis
) -> None:
    """An earlier pass over the same reply saved the pause (e.g. its job was redelivered)."""
    _running(store, run)
    pause = make_pause("p1", run)
    assert store.save_pause(pause)
    code = _suspend(store, run, "01RUN:start", "tok", [_wait(pause)], pause=pause)
    assert code == ("suspended", [True])
    assert client.hkeys("sl:jobs") == [f"01RUN:timeout:{pause.step}"]


def test_a_signal_name_another_pause_holds_writes_nothing(
    store: Store, run: str, client: redis.Redis
) -> None:
    # Run 01OTHER waits for signal "sig" (its pending pause p0 holds the name).
    client.hset("sl:pcorr", "sig", "p0")
    client.zadd("sl:pauses:expiry", {"p0": T0 + 60_000})
    _running(store, run)
    pause = make_pause("p1", run, kind="WaitForSignal", event="", correlation_id="sig")
    before = _snapshot(client)
    code = _suspend(
        store, run, "01RUN:start", "tok", [_wait(pause)], pause=pause, correlation_mode="fail"
    )
    assert code == ("conflict", [])
    assert _snapshot(client) == before
    # Taking the name over (onConflict: "replace") suspends.
    code = _suspend(
        store, run, "01RUN:start", "tok", [_wait(pause)], pause=pause, correlation_mode="replace"
    )
    assert code == ("suspended", [True])
    assert client.hget("sl:pcorr", "sig") == "p1"


# --- with a slot release: a limited job gives its concurrency slots back as it stops --------
SLOT = "f:app-fn"


def _holding_the_slot_a_waiter_wants(store: Store, run: str) -> None:
    """The run's start job, leased to "tok", holds the one slot of SLOT; job other:start
    waits for it (parked)."""
    slots = SlotStore.over(store)
    _running(store, run)
    assert slots.acquire("01RUN:start", [(SLOT, 1)], T0, T0, LEASE, 60_000, 300_000).code == "ok"
    store.enqueue_job(make_job("other:start", "other", kind=JobKind.START), T0, T0 + 1_000)
    assert slots.acquire("other:start", [(SLOT, 1)], T0 + 1, T0, LEASE, 60_000, 300_000).code == (
        "wait"
    )


def test_a_suspend_with_a_release_gives_the_slot_back_and_wakes_the_next_waiter(
    store: Store, run: str, client: redis.Redis
) -> None:
    """One call suspends the run and gives the job's slot back, waking the waiter that now
    fits (as slots_release.lua would, after): the waiter comes back to be sent. A repeat
    after a lost reply answers "suspended" again and takes or wakes nothing more."""
    _holding_the_slot_a_waiter_wants(store, run)
    release = SlotRelease([(SLOT, 1)], T0 + 5, LEASE, 60_000)
    got = store.suspend(run, "01RUN:start", "tok", [_sleep()], release=release)
    assert (got.code, got.created, got.released) == ("suspended", [True], True)
    assert [job.id for job in got.woken] == ["other:start"]
    assert client.zrange(f"sl:slots:{SLOT}", 0, -1) == ["other:start"]
    assert client.hget("sl:jobs:owner", "other:start") == "woken"
    assert client.exists(f"sl:slots-wait:{SLOT}") == 0
    assert client.smembers("sl:slots:waiting") == set()
    before = _snapshot(client)
    again = store.suspend(run, "01RUN:start", "tok", [_sleep()], release=release)
    assert (again.code, again.created, again.woken) == ("suspended", [True], [])
    assert _snapshot(client) == before


def test_a_suspend_that_writes_nothing_releases_nothing(
    store: Store, run: str, client: redis.Redis
) -> None:
    """Lost (another delivery holds the job): nothing written, the slot is not given back
    here (the caller gives it back on its own, as before)."""
    slots = SlotStore.over(store)
    _running(store, run)
    assert slots.acquire("01RUN:start", [(SLOT, 1)], T0, T0, LEASE, 60_000, 300_000).code == "ok"
    assert store.lease_job("01RUN:start", "other", T0 + LEASE + 1, LEASE) != "busy"
    release = SlotRelease([(SLOT, 1)], T0 + 5, LEASE, 60_000)
    got = store.suspend(run, "01RUN:start", "tok", [_sleep()], release=release)
    assert (got.code, got.released, got.woken) == ("lost", False, [])
    assert client.zrange(f"sl:slots:{SLOT}", 0, -1) == ["01RUN:start"]


def _steps(*names: str) -> list[Any]:
    """In-process steps that ran before the stop: (step, memo, info), as the executor has them."""
    return [
        (name, {"data": i}, {"name": name, "kind": "StepRun", "status": "Completed"})
        for i, name in enumerate(names)
    ]


def test_steps_before_a_sleep_are_saved_with_it(
    store: Store, run: str, client: redis.Redis
) -> None:
    """N in-process steps and the sleep after them: one call (no `save_steps` before it)."""
    _running(store, run)
    done = store.suspend(
        run,
        "01RUN:start",
        "tok",
        [_sleep()],
        steps=_steps("a", "b", "c"),
        observed=[("0.005", 0.001)] * 3,
        function_id="app-fn",
    )
    assert (done.code, done.created, done.event_job) == ("suspended", [True], None)
    assert client.lrange("sl:{01RUN}:stack", 0, -1) == ["a", "b", "c"]
    assert client.hgetall("sl:{01RUN}:steps") == {
        "a": '{"data":0}',
        "b": '{"data":1}',
        "c": '{"data":2}',
    }
    assert client.hget("sl:metric:step_duration_seconds", "app-fn|count") == "3"
    view = store.get_run(run)
    assert view is not None
    assert [(s["id"], s["status"]) for s in view.steps] == [
        ("a", "Completed"),
        ("b", "Completed"),
        ("c", "Completed"),
        ("nap", "Sleeping"),
    ]
    assert client.hkeys("sl:jobs") == ["01RUN:sleep:nap"]
    # A lost reply re-sent: the first outcome, nothing written (no step saved twice, no
    # duration counted twice).
    before = _snapshot(client)
    again = store.suspend(
        run,
        "01RUN:start",
        "tok",
        [_sleep()],
        steps=_steps("a", "b", "c"),
        observed=[("0.005", 0.001)] * 3,
        function_id="app-fn",
    )
    assert again == done
    assert _snapshot(client) == before


def test_a_step_another_execution_saved_otherwise_writes_nothing(
    store: Store, run: str, client: redis.Redis
) -> None:
    """Another execution got to step b first with another result: it carries the run on."""
    _running(store, run)
    [saved] = store.save_steps(run, [("b", {"data": "theirs"}, {})])
    assert saved.status == "created"
    before = _snapshot(client)
    done = store.suspend(run, "01RUN:start", "tok", [_sleep()], steps=_steps("a", "b"))
    assert (done.code, done.created) == ("different", [])
    assert _snapshot(client) == before
    # The same memos (an earlier pass of this execution) are no obstacle.
    store.save_steps(run, [("a", {"data": 0}, {})])
    client.hset("sl:{01RUN}:steps", "b", '{"data":1}')
    done = store.suspend(run, "01RUN:start", "tok", [_sleep()], steps=_steps("a", "b"))
    assert done.code == "suspended"


def _invoke(run: str = "01RUN", internal_id: str = "01INV") -> tuple[Any, Any, Any]:
    """An invoke's pause, its history record and timeout job, and its event."""
    pause = make_pause("p-inv", run, kind="InvokeFunction", event="", correlation_id="01RUN.c")
    raw = {
        "name": "inngest/function.invoked",
        "id": "invoke:01RUN.c",
        "data": {"_inngest": {"fn_id": "app-child", "correlation_id": "01RUN.c"}},
        "ts": T0,
    }
    return pause, _wait(pause, run), new_event(raw, internal_id, T0, internal=True)


def test_an_invoke_stores_its_event_with_its_job_in_the_suspend(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    pause, wait, event = _invoke()
    args: Any = (run, "01RUN:start", "tok", [wait])
    kw: Any = {"pause": pause, "events": [event], "now": T0, "dedupe_ttl_ms": 60_000}
    done = store.suspend(*args, send_by=T0 + 5_000, **kw)
    assert (done.code, done.created) == ("suspended", [True])
    assert done.event_job is not None and done.event_job.id == "event:01INV"
    assert done.event_job.events == ["01INV"]
    assert store.get_pause("p-inv") == pause
    record = store.get_event("01INV")
    assert record is not None and record.event["name"] == "inngest/function.invoked"
    assert sorted(client.hkeys("sl:jobs")) == ["01RUN:timeout:step-p-inv", "event:01INV"]
    assert client.zscore("sl:jobs:due", "event:01INV") == T0 + 5_000
    # A lost reply re-sent: the same answer (its job to send), no second event, no second job.
    before = _snapshot(client)
    again = store.suspend(*args, send_by=T0 + 5_000, **kw)
    assert again == done
    assert _snapshot(client) == before
    # The invoke replayed by another delivery (a new internal id): its pause is there, its
    # event deduplicated on its id: nothing stored, no job.
    _running(store, run, "01RUN:edge", "tok2")
    pause, wait, event = _invoke(internal_id="01INV2")
    kw["events"] = [event]
    replay = store.suspend(run, "01RUN:edge", "tok2", [wait], send_by=T0 + 5_000, **kw)
    assert (replay.code, replay.event_job) == ("suspended", None)
    assert store.get_event("01INV2") is None
    assert sorted(client.hkeys("sl:jobs")) == ["01RUN:timeout:step-p-inv", "event:01INV"]


def test_an_invoke_pushes_its_jobs_message_once(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    pause, wait, event = _invoke()
    message = BrokerMessage("test-queue", '{"job": "event:01INV"}')
    args: Any = (run, "01RUN:start", "tok", [wait])
    kw: Any = {"pause": pause, "events": [event], "now": T0, "dedupe_ttl_ms": 60_000}
    done = store.suspend(*args, send_by=T0 + 5_000, message=message, **kw)
    assert (done.code, done.event_job) == ("suspended", None)  # its message went with it
    assert client.lrange("test-queue", 0, -1) == ['{"job": "event:01INV"}']
    assert client.hexists("sl:jobs", "event:01INV")
    again = store.suspend(*args, send_by=T0 + 5_000, message=message, **kw)
    assert again == done
    assert client.llen("test-queue") == 1


def test_an_invoke_whose_run_ended_stores_no_event(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    assert store.finish_run(run, "Cancelled", None, None, T0 + 1)
    pause, wait, event = _invoke()
    before = _snapshot(client)
    done = store.suspend(
        run, "01RUN:start", "tok", [wait], pause=pause, events=[event], now=T0, send_by=T0
    )
    assert (done.code, done.event_job) == ("ended", None)
    assert _snapshot(client) == before


def _lookback_wait(store: Store, run: str, **kw: Any) -> Any:
    """A wait for app/paid with a 5-minute lookback (the run's trigger is event 01TRIG)."""
    pause = make_pause("p1", run, lookback_ms=300_000, trigger_event_id="01TRIG")
    done = store.suspend(
        run,
        "01RUN:start",
        "tok",
        [_wait(pause)],
        pause=pause,
        now=T0,
        lookback=(T0 - 300_000, "01TRIG"),
        **kw,
    )
    return pause, done


def test_a_lookback_wait_with_no_recent_event_suspends_in_one_call(
    store: Store, run: str, client: redis.Redis
) -> None:
    """Nothing of its name in the window (the run's own trigger and older events aside):
    nothing can match, the wait suspends as any wait; an event after it finds the pause."""
    store.index_recent_event("app/paid", "01OLD", T0 - 300_001)
    store.index_recent_event("app/paid", "01TRIG", T0 - 1_000)
    _running(store, run)
    pause, done = _lookback_wait(store, run)
    assert (done.code, done.created, done.recent) == ("suspended", [True], [])
    assert store.get_pause("p1") == pause
    assert client.hkeys("sl:jobs") == [f"01RUN:timeout:{pause.step}"]
    before = _snapshot(client)
    _, again = _lookback_wait(store, run)
    assert again == done
    assert _snapshot(client) == before


def test_a_lookback_wait_with_recent_events_keeps_its_job_to_match_them(
    store: Store, run: str, client: redis.Redis
) -> None:
    store.index_recent_event("app/paid", "01NEWER", T0 - 1_000)
    store.index_recent_event("app/paid", "01OLDER", T0 - 200_000)
    _running(store, run)
    pause, done = _lookback_wait(store, run)
    assert (done.code, done.created) == ("look", [True])
    assert done.recent == ["01OLDER", "01NEWER"]  # oldest first
    # The pause, its history record and timeout job are written; the job is still leased.
    assert store.get_pause("p1") == pause
    assert sorted(client.hkeys("sl:jobs")) == ["01RUN:start", f"01RUN:timeout:{pause.step}"]
    assert client.hget("sl:jobs:owner", "01RUN:start") == "tok"
    view = store.get_run(run)
    assert view is not None and [s["status"] for s in view.steps] == ["Waiting"]
    # A repeat (lost reply, or a redelivery replaying the wait) writes nothing new (its
    # history record merged again, the same fields) and answers the events again.
    before, steps = _snapshot(client), view.steps
    _, again = _lookback_wait(store, run)
    assert (again.code, again.created, again.recent) == ("look", [False], done.recent)
    after = _snapshot(client)
    history = "sl:{01RUN}:history"
    assert {k: v for k, v in after.items() if k != history} == {
        k: v for k, v in before.items() if k != history
    }
    view = store.get_run(run)
    assert view is not None and view.steps == steps


def test_waits_and_an_invoke_among_parallel_steps_are_saved_together(
    store: Store, run: str, client: redis.Redis
) -> None:
    """Parallel steps: a wait for an event, an invoke and a planned step, with the pending
    set, in one call; a repeat after a lost reply changes nothing."""
    _running(store, run)
    wait = make_pause("p1", run)
    invoke, invoke_wait, event = _invoke()
    args: Any = (run, "01RUN:start", "tok", [_wait(wait), invoke_wait, _plan("a")])
    kw: Any = {
        "pending": [wait.step, invoke.step, "a"],
        "pauses": [wait, invoke],
        "events": [event],
        "now": T0,
        "dedupe_ttl_ms": 60_000,
        "send_by": T0 + 5_000,
    }
    done = store.suspend(*args, **kw)
    assert (done.code, done.created) == ("suspended", [True, True, True])
    assert done.event_job is not None and done.event_job.id == "event:01INV"
    assert store.get_pause("p1") == wait and store.get_pause("p-inv") == invoke
    assert client.smembers("sl:{01RUN}:pauses") == {"p1", "p-inv"}
    assert client.smembers("sl:{01RUN}:pending") == {wait.step, invoke.step, "a"}
    assert sorted(client.hkeys("sl:jobs")) == [
        "01RUN:plan:a",
        f"01RUN:timeout:{invoke.step}",
        f"01RUN:timeout:{wait.step}",
        "event:01INV",
    ]
    before = _contents(client)
    assert store.suspend(*args, **kw) == done
    assert _contents(client) == before


def test_several_pauses_never_take_a_signal_name_or_a_lookback(store: Store, run: str) -> None:
    _running(store, run)
    one, two = make_pause("p1", run), make_pause("p2", run)
    with pytest.raises(ValueError):
        store.suspend(
            run, "01RUN:start", "tok", [], pause=one, pauses=[two], correlation_mode="fail"
        )


def test_an_invoke_with_a_release_answers_its_event_job_and_the_woken_waiter(
    store: Store, run: str, client: redis.Redis
) -> None:
    """A limited job that stops on an invoke: the invoke's event and job, and the slot given
    back with the waiter it wakes, in one call; each part of the answer in its place."""
    _holding_the_slot_a_waiter_wants(store, run)
    pause, wait, event = _invoke()
    release = SlotRelease([(SLOT, 1)], T0 + 5, LEASE, 60_000)
    args: Any = (run, "01RUN:start", "tok", [wait])
    kw: Any = {
        "pause": pause,
        "events": [event],
        "now": T0,
        "dedupe_ttl_ms": 60_000,
        "send_by": T0 + 5_000,
        "release": release,
    }
    done = store.suspend(*args, **kw)
    assert (done.code, done.created, done.released) == ("suspended", [True], True)
    assert done.event_job is not None and done.event_job.id == "event:01INV"
    assert [job.id for job in done.woken] == ["other:start"]
    assert client.zrange(f"sl:slots:{SLOT}", 0, -1) == ["other:start"]
    again = store.suspend(*args, **kw)
    assert (again.code, again.created, again.event_job, again.woken) == (
        "suspended",
        [True],
        done.event_job,
        [],
    )
