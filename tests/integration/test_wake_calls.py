"""A concurrency-limited run's wake takes its slot in the wake's own round trip (issue 8,
point 5): lua/slots_acquire.lua queued in the MULTI that marks the sleep done and reads the
run (`Store.wake_runs`), never a call of its own. A wake that finds its constraint full parks
its job in the same wait list as before; woken again, the sleep's completion is not recorded
twice. Counted at the client, as tests/integration/test_suspend_calls.py counts a suspend.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.engine import Engine
from app.models import RunStatus
from tests.integration.recorder import Recorder, record_scripts, recorded_engine

CONSTRAINT = "f:starts-nap-limited"

Calls = list[tuple[str, bool]]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every script this process runs, in order: (name, queued in a pipeline?)."""
    return record_scripts(monkeypatch, lambda name, args, client: (name, client is not None))


@pytest.fixture
def engine(redis_url: str) -> Iterator[tuple[Engine, Recorder]]:
    yield from recorded_engine(redis_url)


def _client(e: Engine) -> redis.Redis:
    return redis.Redis.from_url(e.settings.redis_url, decode_responses=True)


def _sleeping_run(e: Engine, recorder: Recorder) -> tuple[str, str]:
    """A run of `nap-limited`, started and asleep: its id and its sleep job's."""
    before = {r.run_id for r in e.store.list_runs(100)}
    e.runner.ingest([{"name": "starts/nap-limited"}], e.now())
    assert recorder.drain(e.jobs.work) == ["done"]
    [run_id] = [r.run_id for r in e.store.list_runs(100) if r.run_id not in before]
    with _client(e) as client:
        [sleep_job] = [j for j in client.hkeys(e.store.keys.jobs) if j.startswith(run_id)]
    return run_id, sleep_job


def _standalone(calls: Calls, name: str) -> int:
    return sum(1 for each, piped in calls if each == name and not piped)


def _slots(e: Engine) -> tuple[list[str], list[str]]:
    prefix = e.store.keys.prefix
    with _client(e) as client:
        held = client.zrange(f"{prefix}:slots:{CONSTRAINT}", 0, -1)
        waiting = client.zrange(f"{prefix}:slots-wait:{CONSTRAINT}", 0, -1)
    return held, waiting


def _completed(e: Engine, run_id: str) -> None:
    state = e.store.load_run(run_id)
    assert state is not None and state.status == RunStatus.COMPLETED.value
    assert len(set(state.stack)) == len(state.stack)  # each step (the sleep too) once
    assert list(state.kinds.values()).count("Sleep") == 1
    view = e.store.get_run(run_id)
    assert view is not None and view.steps and all(s["status"] == "Completed" for s in view.steps)


def test_a_limited_wake_takes_its_slot_in_the_wake_round_trip(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    e, recorder = engine
    run_id, sleep_job = _sleeping_run(e, recorder)
    calls.clear()
    assert e.jobs.handle(sleep_job) == "done"
    _completed(e, run_id)
    # Its slot taken in the wake's pipeline (with the sleep's save), given back by its end.
    assert ("slots_acquire", True) in calls and ("save_step", True) in calls
    assert _standalone(calls, "slots_acquire") == 0
    assert _standalone(calls, "slots_release") == 0
    assert _slots(e) == ([], [])


def test_a_limited_wake_finding_its_slot_full_parks_and_runs_once_woken(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    e, recorder = engine
    run_id, sleep_job = _sleeping_run(e, recorder)
    slots = e.executor.slots.redis
    assert slots.acquire("holder", [(CONSTRAINT, 1)], 0, e.now(), 30_000, 60_000, 300_000).code
    calls.clear()
    assert e.jobs.handle(sleep_job) == "parked"
    assert _standalone(calls, "slots_acquire") == 0
    assert _slots(e) == (["holder"], [sleep_job])  # parked in the constraint's wait list
    with _client(e) as client:
        assert client.hget(e.store.keys.job_owners, sleep_job) == "parked"
    # The holder gives its slot back: the sleep job is woken (sent) and runs the run on; its
    # sleep, already marked done by the parked wake, is not recorded again.
    recorder.messages.clear()
    woken = slots.release("holder", [(CONSTRAINT, 1)], e.now(), 30_000, 60_000)
    assert [job.id for job in woken] == [sleep_job]
    e.executor.slots._send(woken)
    assert recorder.drain(e.jobs.work) == ["done"]
    _completed(e, run_id)
    assert _slots(e) == ([], [])
    with _client(e) as client:
        assert client.hgetall(e.store.keys.jobs) == {}


def test_limited_wakes_of_one_message_take_their_slots_in_its_one_wake_round_trip(
    engine: tuple[Engine, Recorder], calls: Calls
) -> None:
    """Two sleeps due together (one message): both wakes' slots in the one MULTI; the
    second finds the limit (1) full, parks, and is woken by the first run's end."""
    e, recorder = engine
    first, first_job = _sleeping_run(e, recorder)
    second, second_job = _sleeping_run(e, recorder)
    calls.clear()
    outcomes = e.jobs.handle_each([first_job, second_job])
    assert outcomes == {first_job: "done", second_job: "parked"}
    assert [name for name, piped in calls if name == "slots_acquire"] == ["slots_acquire"] * 2
    assert _standalone(calls, "slots_acquire") == 0
    assert recorder.sent == [second_job]  # woken by the first run's end
    assert recorder.drain(e.jobs.work) == ["done"]
    _completed(e, first)
    _completed(e, second)
    assert _slots(e) == ([], [])
