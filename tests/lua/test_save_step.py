"""lua/save_step.lua: first write wins, stack, pending set, history merge."""

from __future__ import annotations

import pytest
import redis

from app.models import JSON
from app.state.records import SlotAcquire
from app.state.slots import SlotStore
from app.state.store import SaveResult, Store
from tests.lua.conftest import T0, make_job, new_run, race


def test_first_write_is_stored_and_stacked(store: Store, run: str) -> None:
    result = store.save_step(run, "a", {"data": 1}, {"name": "A"}, T0)
    assert result == SaveResult("created", {"data": 1}, 0)
    store.save_step(run, "b", None, {}, T0)

    state = store.load_run(run)
    assert state is not None
    assert state.stack == ["a", "b"]
    assert state.steps == {"a": {"data": 1}, "b": None}


def test_repeat_is_identical_and_a_different_value_loses(
    store: Store, run: str, client: redis.Redis
) -> None:
    store.save_step(run, "a", {"data": 1}, {}, T0)
    assert store.save_step(run, "a", {"data": 1}, {}, T0) == SaveResult("identical", {"data": 1}, 0)
    assert store.save_step(run, "a", {"data": 2}, {}, T0) == SaveResult("different", {"data": 1}, 0)
    assert client.lrange("sl:{01RUN}:stack", 0, -1) == ["a"]


def test_exactly_one_of_eight_racers_creates(store: Store, run: str) -> None:
    results = race(8, lambda i: store.save_step(run, "a", {"data": i}, {"by": i}, T0))
    created = [r for r in results if r.status == "created"]
    assert len(created) == 1
    assert all(
        r.status == "different" and r.memo == created[0].memo
        for r in results
        if r.status != "created"
    )
    state = store.load_run(run)
    assert state is not None
    assert state.stack == ["a"] and state.steps["a"] == created[0].memo


def test_ended_or_missing_run_refuses(store: Store, run: str, client: redis.Redis) -> None:
    assert store.save_step("nope", "a", 1, {}, T0) == SaveResult("ended", None, 0)
    assert client.exists("sl:{nope}:steps", "sl:{nope}:stack", "sl:{nope}:run") == 0

    store.finish_run(run, "Cancelled", None, None, T0)
    assert store.save_step(run, "a", 1, {}, T0) == SaveResult("ended", None, 0)
    assert client.hlen("sl:{01RUN}:steps") == 0


def test_pending_count_and_die_flag(store: Store, run: str) -> None:
    store.set_pending(run, ["a", "b"])
    state = store.load_run(run)
    assert state is not None and state.disable_immediate_execution

    assert store.save_step(run, "a", 1, {}, T0).pending == 1
    state = store.load_run(run)
    assert state is not None and state.disable_immediate_execution
    assert store.save_step(run, "a", 1, {}, T0).pending == 1  # identical repeat
    assert store.save_step(run, "b", 2, {}, T0).pending == 0
    state = store.load_run(run)
    assert state is not None and not state.disable_immediate_execution


def test_a_step_outside_the_pending_set_keeps_die(store: Store, run: str) -> None:
    store.set_disable_immediate(run, True)
    store.save_step(run, "a", 1, {}, T0)
    state = store.load_run(run)
    assert state is not None and state.disable_immediate_execution


def test_values_round_trip_exactly(store: Store, run: str, client: redis.Redis) -> None:
    memo = {"data": {"empty": [], "obj": {}, "big": 12345678901234567, "f": 0.1, "s": "é/😀"}}
    info = {"name": "s", "nums": [], "big": 2**60, "err": None, "nested": {"l": [[]]}}
    assert store.save_step(run, "a", memo, info, T0).status == "created"
    state = store.load_run(run)
    assert state is not None and state.steps["a"] == memo
    assert client.hget("sl:{01RUN}:steps", "a") == (
        '{"data":{"empty":[],"obj":{},"big":12345678901234567,"f":0.1,'
        '"s":"\\u00e9/\\ud83d\\ude00"}}'
    )
    view = store.get_run(run)
    assert view is not None
    assert view.steps == [{**info, "order": 0, "id": "a", "memo": memo}]


def test_history_merges_into_records_in_first_seen_order(store: Store, run: str) -> None:
    store.record_step(run, "b", {"name": "B", "kind": "StepRun", "attempts": 1})
    store.save_step(run, "a", 1, {"name": "A", "kind": "Sleep"}, T0)
    store.save_step(run, "b", 2, {"attempts": 2, "ended_at": T0, "order": 99}, T0)
    # The losing or repeated saves merge nothing.
    store.save_step(run, "a", 1, {"name": "changed"}, T0)

    view = store.get_run(run)
    assert view is not None
    assert view.steps == [
        {
            "id": "b",
            "name": "B",
            "kind": "StepRun",
            "attempts": 2,
            "ended_at": T0,
            "order": 0,
            "memo": 2,
        },
        {"id": "a", "name": "A", "kind": "Sleep", "order": 1, "memo": 1},
    ]


def test_load_run_returns_only_stacked_steps(store: Store, run: str) -> None:
    store.save_step(run, "a", {"data": "x"}, {}, T0)
    store.record_step(run, "b", {"name": "B"})
    state = store.load_run(run)
    assert state is not None
    assert state.steps == {"a": {"data": "x"}} and state.stack == ["a"]


def test_load_run_carries_the_recorded_kind_of_each_step(store: Store, run: str) -> None:
    store.save_step(run, "a", {"data": 1}, {"name": "a", "kind": "StepRun"}, T0)
    store.save_step(run, "b", None, {"name": "b", "kind": "Sleep"}, T0)
    state = store.load_run(run)
    assert state is not None and state.kinds == {"a": "StepRun", "b": "Sleep"}


# --- several consecutive steps in one call (Store.save_steps) ---------------------------------
def run_keys(client: redis.Redis) -> dict[str, object]:
    return {
        "steps": client.hgetall("sl:{01RUN}:steps"),
        "stack": client.lrange("sl:{01RUN}:stack", 0, -1),
        "history": client.hgetall("sl:{01RUN}:history"),
        "meta": client.hgetall("sl:{01RUN}:run"),
    }


def test_consecutive_steps_are_saved_in_order_in_one_call(store: Store, run: str) -> None:
    batch = [(s, {"data": i}, {"name": s.upper()}) for i, s in enumerate(["a", "b", "c"])]
    assert store.save_steps(run, batch) == [
        SaveResult("created", {"data": 0}, 0),
        SaveResult("created", {"data": 1}, 0),
        SaveResult("created", {"data": 2}, 0),
    ]
    state = store.load_run(run)
    assert state is not None
    assert state.stack == ["a", "b", "c"]
    assert state.steps == {"a": {"data": 0}, "b": {"data": 1}, "c": {"data": 2}}


def test_a_repeated_batch_after_a_lost_reply_answers_identical_and_writes_nothing(
    store: Store, run: str, client: redis.Redis
) -> None:
    batch = [(s, {"data": i}, {"name": s}) for i, s in enumerate(["a", "b", "c"])]
    store.save_steps(run, batch)
    before = run_keys(client)
    again = store.save_steps(run, batch)
    assert [r.status for r in again] == ["identical"] * 3
    assert [r.memo for r in again] == [{"data": 0}, {"data": 1}, {"data": 2}]
    assert run_keys(client) == before


def test_a_batch_stops_at_the_first_step_another_writer_won(
    store: Store, run: str, client: redis.Redis
) -> None:
    store.save_step(run, "b", {"data": "theirs"}, {}, T0)
    batch = [(s, {"data": s}, {}) for s in ["a", "b", "c"]]
    assert store.save_steps(run, batch) == [
        SaveResult("created", {"data": "a"}, 0),
        SaveResult("different", {"data": "theirs"}, 0),
    ]
    # "c" was computed from a memo that lost: never stored.
    assert client.lrange("sl:{01RUN}:stack", 0, -1) == ["b", "a"]
    assert not client.hexists("sl:{01RUN}:steps", "c")


def test_a_batch_for_an_ended_run_writes_nothing(
    store: Store, run: str, client: redis.Redis
) -> None:
    client.hset("sl:{01RUN}:run", "status", "Completed")
    assert store.save_steps(run, [("a", 1, {}), ("b", 2, {})]) == [SaveResult("ended", None, 0)]
    assert client.hlen("sl:{01RUN}:steps") == 0


def test_a_wake_saves_the_sleep_and_reads_the_run_in_one_go(store: Store, run: str) -> None:
    """`wake_run` (a sleep's end): the save_step of the sleep and `load_run`, one round trip;
    sent again after a lost reply it answers "identical" with the same state."""
    store.save_step(run, "a", {"data": 1}, {}, T0)
    saved, state, _ = store.wake_run(run, "nap", {"status": "Completed", "ended_at": T0})
    assert saved == SaveResult("created", None, 0)
    assert state is not None and state == store.load_run(run)
    assert state.stack == ["a", "nap"] and state.steps == {"a": {"data": 1}, "nap": None}
    again, state_again, _ = store.wake_run(run, "nap", {"status": "Completed", "ended_at": T0 + 5})
    assert again == SaveResult("identical", None, 0)
    assert state_again == state


def test_a_wake_of_an_ended_or_missing_run_refuses(store: Store, run: str) -> None:
    assert store.wake_run("nope", "nap", {}) == (SaveResult("ended", None, 0), None, None)
    store.finish_run(run, "Cancelled", None, None, T0)
    saved, state, _ = store.wake_run(run, "nap", {})
    assert saved == SaveResult("ended", None, 0)
    assert state is not None and state.status == "Cancelled" and "nap" not in state.steps


def test_a_created_steps_duration_is_counted_once(
    store: Store, run: str, client: redis.Redis
) -> None:
    hist = "sl:metric:step_duration_seconds"
    steps: list[tuple[str, JSON, dict[str, JSON]]] = [("a", 1, {}), ("b", 2, {})]
    observed = [("0.005", 0.004), ("0.05", 0.03)]
    first = store.save_steps(run, steps, "app-fn", observed)
    assert [r.status for r in first] == ["created", "created"]
    # A repeated call (its first reply lost) answers "identical" and counts nothing again.
    again = store.save_steps(run, steps, "app-fn", observed)
    assert [r.status for r in again] == ["identical", "identical"]
    counts = client.hgetall(hist)
    assert {k: v for k, v in counts.items() if not k.endswith("|sum")} == {
        "app-fn|0.005": "1",
        "app-fn|0.05": "1",
        "app-fn|count": "2",
    }
    assert float(counts["app-fn|sum"]) == pytest.approx(0.034)
    # Without a function id (or for a step without a duration) nothing is counted.
    store.save_step(run, "c", 3, {}, T0, observed=("0.005", 0.001))
    store.save_step(run, "d", 4, {}, T0, function_id="app-fn")
    assert client.hget(hist, "app-fn|count") == "2"
    # A step whose save loses to another memo is not counted either.
    assert (
        store.save_step(run, "a", 9, {}, T0, function_id="app-fn", observed=("0.005", 1.0)).status
        == "different"
    )
    assert client.hget(hist, "app-fn|count") == "2"


def test_wakes_of_many_runs_in_one_round_trip(store: Store, run: str, client: redis.Redis) -> None:
    """`wake_runs`: each run's sleep saved and its state read, one MULTI for all; an ended
    or missing run among them refuses alone; repeated (a lost reply) each answers
    "identical"."""
    other, _ = store.create_run(new_run("02RUN"))
    ended, _ = store.create_run(new_run("03RUN"))
    store.finish_run(ended, "Cancelled", None, None, T0)
    info: dict[str, JSON] = {"status": "Completed", "ended_at": T0}
    wakes = [(run, "nap", info), ("nope", "nap", info), (ended, "nap", info), (other, "z", info)]
    first = store.wake_runs(wakes)
    assert [saved.status for saved, _, _ in first] == ["created", "ended", "ended", "created"]
    assert first[1][1] is None and first[2][1] is not None and first[2][1].status == "Cancelled"
    assert first[0][1] == store.load_run(run) and first[3][1] == store.load_run(other)
    again = store.wake_runs(wakes)
    assert [saved.status for saved, _, _ in again] == ["identical", "ended", "ended", "identical"]
    assert [state for _, state, _ in again] == [state for _, state, _ in first]


def test_wakes_take_their_slots_in_the_same_multi_and_a_repeat_answers_the_same(
    store: Store, run: str, client: redis.Redis
) -> None:
    """`wake_runs` with `acquires`: a limited run's woken job takes its slot (or is parked)
    in the wake's MULTI (lua/slots_acquire.lua); sent again (a lost reply) each answers its
    first outcome: the held slot counts as its own, the parked job stays listed once."""
    SlotStore.over(store)  # registers the slot scripts on the store's loader
    other, _ = store.create_run(new_run("02RUN"))
    for job_id in ("a:sleep", "b:sleep"):
        store.enqueue_job(make_job(job_id), T0, T0)
    info: dict[str, JSON] = {"status": "Completed", "ended_at": T0}
    wakes = [(run, "nap", info), (other, "nap", info)]
    acquires: list[SlotAcquire | None] = [
        SlotAcquire(job_id, [("f:x", 1)], score, T0, 30_000, 60_000, 300_000)
        for job_id, score in (("a:sleep", 1), ("b:sleep", 2))
    ]
    for _ in range(2):
        woken = store.wake_runs(wakes, acquires)
        assert [got for _, _, got in woken] == [("ok", []), ("wait", [])]
        assert [state is not None and state.stack == ["nap"] for _, state, _ in woken] == [
            True,
            True,
        ]
        assert client.zrange("sl:slots:f:x", 0, -1) == ["a:sleep"]
        assert client.zrange("sl:slots-wait:f:x", 0, -1) == ["b:sleep"]
        assert client.hget("sl:jobs:owner", "b:sleep") == "parked"
    # Without an acquire, a wake takes no slot (and answers None for it).
    [(_, _, got)] = store.wake_runs([(run, "nap", info)], [None])
    assert got is None


def test_a_pipeline_of_scripts_is_one_round_trip_and_survives_a_script_flush(
    store: Store, run: str, client: redis.Redis
) -> None:
    """No SCRIPT EXISTS before each pipeline of scripts; a server that lost its scripts
    (restart, SCRIPT FLUSH) answers NOSCRIPT, and the pipeline is loaded and run again."""

    def exists_calls() -> int:
        stats = client.info("commandstats")
        return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))

    client.script_flush()
    info: dict[str, JSON] = {"status": "Completed"}
    [(saved, state, _)] = store.wake_runs([(run, "nap", info)])
    assert saved.status == "created" and state is not None and state.stack == ["nap"]
    job = make_job("j1")
    store.enqueue_job(job, T0, T0)
    calls = exists_calls()
    leased = store.lease_jobs(["j1", "j2"], "tok", T0, 1_000)
    assert leased[1] == "gone" and not isinstance(leased[0], str) and leased[0].job == job
    assert exists_calls() == calls
