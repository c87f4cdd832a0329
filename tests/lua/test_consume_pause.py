"""lua/consume_pause.lua: exactly one resumer of a pause wins."""

from __future__ import annotations

import redis

from app.models import Job, JobKind
from app.state.store import ConsumeResult, Store
from tests.lua.conftest import T0, make_pause, race

EVENT = {"name": "app/paid", "data": {"id": "7"}, "id": "", "ts": T0, "user": {}}


def assert_no_trace_of(client: redis.Redis, pause_id: str) -> None:
    assert client.exists(f"sl:pause:{pause_id}") == 0
    assert client.zscore("sl:pauses:expiry", pause_id) is None
    assert not client.sismember("sl:{01RUN}:pauses", pause_id)
    assert client.keys("sl:pidx*") == [] and client.keys("sl:pscan:*") == []
    assert client.hlen("sl:pcorr") == 0


def test_winner_memoizes_and_deletes_the_pause(store: Store, run: str, client: redis.Redis) -> None:
    pause = make_pause("p1", index_path="async.data.id", index_value="7", correlation_id="c1")
    store.save_pause(pause)

    assert store.consume_pause("p1", EVENT, T0) == ConsumeResult(True, pause, 0)
    state = store.load_run(run)
    assert state is not None
    assert state.stack == [pause.step] and state.steps[pause.step] == EVENT
    assert_no_trace_of(client, "p1")
    assert store.pause_index_paths("app/paid") == []

    # Calling again (a retry, or the timeout) loses and writes nothing.
    assert store.consume_pause("p1", EVENT, T0) == ConsumeResult(False, None, 0)
    assert store.consume_pause("p1", None, T0) == ConsumeResult(False, None, 0)
    state = store.load_run(run)
    assert state is not None and state.stack == [pause.step]


def test_exactly_one_of_eight_racers_wins(store: Store, run: str, client: redis.Redis) -> None:
    pause = make_pause("p1", index_path="async.data.id", index_value="7")
    store.save_pause(pause)
    store.save_pause(make_pause("p2", index_path="async.data.id", index_value="8"))

    # Seven events and the timeout race for the same pause.
    memos = [{**EVENT, "id": f"e{i}"} for i in range(7)] + [None]
    results = race(8, lambda i: store.consume_pause("p1", memos[i], T0))
    winners = [i for i, r in enumerate(results) if r.won]
    assert len(winners) == 1
    state = store.load_run(run)
    assert state is not None
    assert state.stack == [pause.step] and state.steps[pause.step] == memos[winners[0]]
    assert store.get_pause("p1") is None
    # The other pause under the same path keeps its index.
    assert store.pause_index_paths("app/paid") == ["async.data.id"]
    found = store.find_pauses("app/paid", [("async.data.id", "8")])
    assert [p.id for p in found] == ["p2"]


def test_a_memoized_step_loses_even_with_identical_bytes(
    store: Store, run: str, client: redis.Redis
) -> None:
    pause = make_pause("p1")
    store.save_pause(pause)
    store.save_step(run, pause.step, EVENT, {}, T0)

    assert store.consume_pause("p1", EVENT, T0) == ConsumeResult(False, pause, 0)
    assert_no_trace_of(client, "p1")  # the stale pause is gone
    state = store.load_run(run)
    assert state is not None and state.stack == [pause.step]


def test_returns_the_pending_count(store: Store, run: str) -> None:
    p1, p2 = make_pause("p1"), make_pause("p2")
    store.save_pause(p1)
    store.save_pause(p2)
    store.set_pending(run, [p1.step, p2.step])

    assert store.consume_pause("p1", EVENT, T0).pending == 1
    state = store.load_run(run)
    assert state is not None and state.disable_immediate_execution
    assert store.consume_pause("p2", None, T0) == ConsumeResult(True, p2, 0)
    state = store.load_run(run)
    assert state is not None and not state.disable_immediate_execution


def test_an_ended_run_loses(store: Store, run: str, client: redis.Redis) -> None:
    pause = make_pause("p1")
    store.save_pause(pause)
    # A run ended without dropping its pauses (state written by hand).
    client.hset("sl:{01RUN}:run", "status", "Cancelled")
    assert store.consume_pause("p1", EVENT, T0) == ConsumeResult(False, pause, 0)
    assert client.hlen("sl:{01RUN}:steps") == 0
    assert_no_trace_of(client, "p1")


def test_a_changed_pause_is_read_again(store: Store, run: str) -> None:
    pause = make_pause("p1")
    store.save_pause(pause)
    from app.state.store import _pause_ref

    stale = _pause_ref(pause, pause.model_copy(update={"created_at": 1}).model_dump_json())
    assert store._scripts.consume_pause(stale, pause.step, "null") == ("changed", 0, False)
    assert store.get_pause("p1") == pause


def test_the_winner_creates_the_resume_job_atomically(store: Store, run: str) -> None:
    pause = make_pause("p1")
    store.save_pause(pause)
    job = Job(id=f"{run}:resume:{pause.step}", kind=JobKind.EDGE, run_id=run)
    won = store.consume_pause("p1", EVENT, T0, resume=job, send_by=T0 + 60_000)
    assert won.won and won.resumed
    assert store.begin_job(job.id, "t", T0, 1000) == job
    assert store.consume_pause("p1", None, T0, resume=job, send_by=T0) == ConsumeResult(
        False, None, 0
    )
