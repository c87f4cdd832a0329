"""lua/suspend.lua: a run stops until later (a sleep, planned steps, a retry, a yield) in one
step: its steps recorded, their jobs queued and the job that ran it finished, under that job's
lease; safe to repeat."""

from __future__ import annotations

import json
from typing import Any

import redis

from app.models import JobKind
from app.state.records import QueuedJob, SlotRelease
from app.state.slots import SlotStore
from app.state.store import Store
from tests.lua.conftest import T0, make_job, make_pause

LEASE = 30_000


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


def test_a_sleep_records_its_step_queues_its_timer_and_finishes_the_job(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    assert store.suspend(run, "01RUN:start", "tok", [_sleep()]) == ("suspended", [True])

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
    first = store.suspend(run, "01RUN:start", "tok", [_plan("a"), _plan("b")], ["a", "b"])
    assert first == ("suspended", [True, True])
    before = _snapshot(client)
    # redis-py re-sends the same EVALSHA after a lost reply: same answer, nothing written
    # (so the caller sends the jobs' messages it did not get to send).
    again = store.suspend(run, "01RUN:start", "tok", [_plan("a"), _plan("b")], ["a", "b"])
    assert again == first
    assert _snapshot(client) == before


def test_a_repeat_of_a_call_that_found_its_job_queued_answers_that_too(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    store.enqueue_job(_plan("a")[2].job, T0, T0 + 5_000)  # queued already (an earlier pass)
    assert store.suspend(run, "01RUN:start", "tok", [_plan("a")]) == ("suspended", [False])
    before = _snapshot(client)
    assert store.suspend(run, "01RUN:start", "tok", [_plan("a")]) == ("suspended", [False])
    assert _snapshot(client) == before


def test_the_same_token_with_other_follow_ups_is_no_repeat(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    assert store.suspend(run, "01RUN:start", "tok", [_plan("a")])[0] == "suspended"
    before = _snapshot(client)
    assert store.suspend(run, "01RUN:start", "tok", [_plan("b")]) == ("lost", [])
    assert store.suspend(run, "01RUN:start", "tok", [_plan("a"), _plan("b")]) == ("lost", [])
    assert store.suspend(run, "01RUN:start", "other", [_plan("a")]) == ("lost", [])
    assert _snapshot(client) == before


def test_parallel_steps_are_pending_and_each_has_its_job(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    code = store.suspend(run, "01RUN:start", "tok", [_plan("a"), _sleep(step="b")], ["a", "b"])
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
    assert store.suspend(run, "01RUN:start", "tok", [_sleep()]) == ("lost", [])
    assert _snapshot(client) == before


def test_a_job_finished_elsewhere_is_lost_and_nothing_is_written(
    store: Store, run: str, client: redis.Redis
) -> None:
    _running(store, run)
    store.finish_job("01RUN:start", "other")
    before = _snapshot(client)
    assert store.suspend(run, "01RUN:start", "tok", [_sleep()]) == ("lost", [])
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
    assert store.suspend(run, "01RUN:start", "tok", [_sleep()]) == ("suspended", [True])
    assert client.hkeys("sl:jobs") == ["01RUN:sleep:nap"]


def test_an_ended_run_queues_nothing(store: Store, run: str, client: redis.Redis) -> None:
    _running(store, run)
    assert store.finish_run(run, "Cancelled", None, None, T0 + 1)
    before = _snapshot(client)
    assert store.suspend(run, "01RUN:start", "tok", [_sleep()]) == ("ended", [])
    assert _snapshot(client) == before


def test_a_missing_run_is_left_alone(store: Store, client: redis.Redis) -> None:
    store.enqueue_job(make_job("01NONE:start", "01NONE"), T0, T0)
    store.begin_job("01NONE:start", "tok", T0, LEASE)
    before = _snapshot(client)
    assert store.suspend("01NONE", "01NONE:start", "tok", [_sleep("01NONE")]) == ("missing", [])
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
    assert store.suspend(run, "01RUN:start", "tok", [("", None, planned)]) == (
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
    code = store.suspend(run, "01RUN:start", "tok", [_wait(pause)], pause=pause)
    assert code == ("suspended", [True])
    assert store.get_pause("p1") == pause
    assert client.zscore("sl:pauses:expiry", "p1") == pause.expires_at
    assert client.smembers("sl:pscan:app/paid") == {"p1"}
    assert client.smembers("sl:{01RUN}:pauses") == {"p1"}
    assert client.hkeys("sl:jobs") == [f"01RUN:timeout:{pause.step}"]
    before = _snapshot(client)
    again = store.suspend(run, "01RUN:start", "tok", [_wait(pause)], pause=pause)
    assert again == code  # a lost reply re-sent
    assert _snapshot(client) == before


def test_a_wait_whose_pause_exists_still_suspends(
    store: Store, run: str, client: redis.Redis
) -> None:
    """An earlier pass over the same reply saved the pause (e.g. its job was redelivered)."""
    _running(store, run)
    pause = make_pause("p1", run)
    assert store.save_pause(pause)
    code = store.suspend(run, "01RUN:start", "tok", [_wait(pause)], pause=pause)
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
    code = store.suspend(
        run, "01RUN:start", "tok", [_wait(pause)], pause=pause, correlation_mode="fail"
    )
    assert code == ("conflict", [])
    assert _snapshot(client) == before
    # Taking the name over (onConflict: "replace") suspends.
    code = store.suspend(
        run, "01RUN:start", "tok", [_wait(pause)], pause=pause, correlation_mode="replace"
    )
    assert code == ("suspended", [True])
    assert client.hget("sl:pcorr", "sig") == "p1"


# --- with a slot release: a limited job gives its concurrency slots back as it stops --------
SLOT = "f:app-fn"


def test_a_suspend_with_a_release_gives_the_slot_back_and_wakes_the_next_waiter(
    store: Store, run: str, client: redis.Redis
) -> None:
    """One call suspends the run and gives the job's slot back, waking the waiter that now
    fits (as slots_release.lua would, after): the waiter comes back to be sent. A repeat
    after a lost reply answers "suspended" again and takes or wakes nothing more."""
    slots = SlotStore.over(store)
    _running(store, run)
    assert slots.acquire("01RUN:start", [(SLOT, 1)], T0, T0, LEASE, 60_000, 300_000).code == "ok"
    store.enqueue_job(make_job("other:start", "other", kind=JobKind.START), T0, T0 + 1_000)
    assert slots.acquire("other:start", [(SLOT, 1)], T0 + 1, T0, LEASE, 60_000, 300_000).code == (
        "wait"
    )
    release = SlotRelease([(SLOT, 1)], T0 + 5, LEASE, 60_000)
    got = store.suspend_run(run, "01RUN:start", "tok", [_sleep()], release=release)
    assert (got.code, got.created, got.released) == ("suspended", [True], True)
    assert [job.id for job in got.woken] == ["other:start"]
    assert client.zrange(f"sl:slots:{SLOT}", 0, -1) == ["other:start"]
    assert client.hget("sl:jobs:owner", "other:start") == "woken"
    assert client.exists(f"sl:slots-wait:{SLOT}") == 0
    assert client.smembers("sl:slots:waiting") == set()
    before = _snapshot(client)
    again = store.suspend_run(run, "01RUN:start", "tok", [_sleep()], release=release)
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
    got = store.suspend_run(run, "01RUN:start", "tok", [_sleep()], release=release)
    assert (got.code, got.released, got.woken) == ("lost", False, [])
    assert client.zrange(f"sl:slots:{SLOT}", 0, -1) == ["01RUN:start"]
