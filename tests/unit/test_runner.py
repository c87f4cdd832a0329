"""The runner against a real Redis: ingest, triggering, invoke correlation, pause matching.

The Celery hop is replaced by a recorder of `send_task` calls; time is always a parameter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from app import expressions
from app.config import Settings
from app.expressions import prepare_pause
from app.models import JSON, FunctionConfig, JobKind, Pause, RunStatus, Trigger, event_job
from app.queue import Queue
from app.registry import Registry
from app.runner import MAX_START_AHEAD_MS, Runner, normalize_event, seeded_ids, wire_event
from app.state.store import NewRun, Store

NOW = 1_700_000_000_000


@dataclass
class Recorder:
    """Stands in for Celery: records what would have been sent."""

    sent: list[tuple[str, list[str]]] = field(default_factory=list)

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append((name, list(args or [])))

    def job_ids(self, task: str) -> list[str]:
        return [args[0] for name, args in self.sent if name == task]


@dataclass
class World:
    store: Store
    queue: Queue
    registry: Registry
    runner: Runner
    sender: Recorder
    settings: Settings

    def register(self, *functions: FunctionConfig, app_id: str = "app") -> None:
        self.store.save_app(app_id, None, list(functions), NOW)

    def fresh_runner(self) -> Runner:
        """Another process over the same Redis (a second worker or beat)."""
        return Runner(self.store, self.queue, Registry(self.store), self.settings)


def make_world(redis_url: str) -> World:
    settings = Settings(redis_url=redis_url, key_prefix="rt")
    store = Store(redis_url, prefix="rt")
    sender = Recorder()
    queue = Queue(store, sender, settings)
    registry = Registry(store)
    return World(store, queue, registry, Runner(store, queue, registry, settings), sender, settings)


@pytest.fixture
def world(redis_url: str) -> Iterator[World]:
    w = make_world(redis_url)
    yield w
    w.store.close()


def fn(slug: str, *triggers: Trigger) -> FunctionConfig:
    return FunctionConfig(id=f"app-{slug}", name=slug, app_id="app", triggers=list(triggers))


def runs_of(world: World, event_id: str) -> list[str]:
    return world.store.event_run_ids(event_id)


# --- ingest ---------------------------------------------------------------------------------


def test_normalize_event_defaults() -> None:
    event = normalize_event({"name": "a/b"}, "01INTERNAL", NOW)
    assert event == {"name": "a/b", "data": {}, "id": "01INTERNAL", "ts": NOW, "user": {}}
    kept = normalize_event(
        {"name": "a/b", "data": None, "id": "u1", "ts": 5, "user": {"x": 1}, "v": "2"}, "i", NOW
    )
    assert kept == {"name": "a/b", "data": {}, "id": "u1", "ts": 5, "user": {"x": 1}, "v": "2"}


def test_normalize_strips_inngest_metadata_from_external_events_only() -> None:
    raw: dict[str, JSON] = {"name": "a/b", "data": {"x": 1, "_inngest": {"fn_id": "evil"}}}
    assert normalize_event(raw, "i", NOW)["data"] == {"x": 1}
    assert normalize_event(raw, "i", NOW, internal=True)["data"] == raw["data"]
    assert raw["data"] == {"x": 1, "_inngest": {"fn_id": "evil"}}  # input untouched


def test_wire_event() -> None:
    assert wire_event({"name": "n", "data": {"a": 1}, "id": "x", "ts": 1, "user": {}}) == {
        "name": "n",
        "data": {"a": 1},
        "id": "x",
        "ts": 1,
        "user": {},
    }
    assert wire_event({"name": "n", "id": "x", "ts": 1, "v": "1"})["v"] == "1"


def test_ingest_stores_and_queues_each_new_event(world: World) -> None:
    ids = world.runner.ingest([{"name": "a/one"}, {"name": "a/two", "id": "mine"}], NOW)
    assert len(ids) == 2 and ids[0] != ids[1]
    first = world.store.get_event(ids[0])
    second = world.store.get_event(ids[1])
    assert first is not None and second is not None
    assert first.event["id"] == ids[0]  # empty user id -> the internal id
    assert second.event["id"] == "mine"
    assert first.received_at == NOW
    # One job per request processes all its events.
    assert world.sender.job_ids("stepline.event") == [f"event:{ids[0]}"]
    job = world.store.begin_job(f"event:{ids[0]}", "t", NOW, 1000)
    assert not isinstance(job, str) and job.events == ids


def test_ingest_dedupes_by_user_id(world: World) -> None:
    [first] = world.runner.ingest([{"name": "a/b", "id": "same", "data": {"n": 1}}], NOW)
    [again] = world.runner.ingest([{"name": "a/b", "id": "same", "data": {"n": 2}}], NOW + 1000)
    assert again == first
    assert world.sender.job_ids("stepline.event") == [f"event:{first}"]
    record = world.store.get_event(first)
    assert record is not None and record.event["data"] == {"n": 1}


def test_ingest_dedupe_window_is_the_setting(redis_url: str) -> None:
    world = make_world(redis_url)
    world.settings = Settings(redis_url=redis_url, key_prefix="rt", event_dedupe_seconds=60)
    world.fresh_runner().ingest([{"name": "a/b", "id": "same"}], NOW)
    ttl = world.store._client.pttl(world.store.keys.event_dedupe("same"))
    assert 59_000 < ttl <= 60_000


def test_seeded_ids_are_deterministic() -> None:
    seed = "1700000000000,AAECAwQFBgcICQ=="
    ids = seeded_ids(seed, 3)
    assert ids is not None and len(set(ids)) == 3
    assert seeded_ids(seed, 3) == ids
    assert seeded_ids("garbage", 2) is None
    assert seeded_ids("1,bm90IDEwIGJ5dGVz", 1) is None  # entropy is not 10 bytes


def test_seeded_ingest_dedupes_sdk_retries(world: World) -> None:
    seed = "1700000000000,AAECAwQFBgcICQ=="
    first = world.runner.ingest([{"name": "a/b"}, {"name": "a/c"}], NOW, id_seed=seed)
    again = world.runner.ingest([{"name": "a/b"}, {"name": "a/c"}], NOW + 5, id_seed=seed)
    assert first == again
    assert world.sender.job_ids("stepline.event") == [f"event:{first[0]}"]


# --- triggering -----------------------------------------------------------------------------


def test_process_event_schedules_every_matching_function_once(world: World) -> None:
    world.register(
        fn("exact", Trigger(event="shop/order.created")),
        fn("wild", Trigger(event="shop/*")),
        fn("two-triggers", Trigger(event="shop/order.*"), Trigger(event="shop/order.created")),
        fn("expr-yes", Trigger(event="shop/order.created", expression="event.data.total > 10")),
        fn("expr-no", Trigger(event="shop/order.created", expression="event.data.total > 99")),
        fn("other", Trigger(event="shop/order.deleted")),
        fn("cron", Trigger(cron="* * * * *")),
    )
    [event_id] = world.runner.ingest([{"name": "shop/order.created", "data": {"total": 20}}], NOW)
    world.runner.process_event(event_id, NOW)
    run_ids = runs_of(world, event_id)
    functions = sorted(
        view.function_id for view in (world.store.get_run(r) for r in run_ids) if view
    )
    assert functions == ["app-exact", "app-expr-yes", "app-two-triggers", "app-wild"]
    assert sorted(world.sender.job_ids("stepline.start")) == sorted(f"{r}:start" for r in run_ids)

    state = world.store.load_run(run_ids[0])
    assert state is not None
    record = world.store.get_event(event_id)
    assert record is not None
    assert state.events == [wire_event(record.event)]


def test_process_event_twice_creates_no_second_run(world: World) -> None:
    world.register(fn("f", Trigger(event="a/b")))
    [event_id] = world.runner.ingest([{"name": "a/b"}], NOW)
    world.runner.process_event(event_id, NOW)
    world.fresh_runner().process_event(event_id, NOW + 10)
    assert len(runs_of(world, event_id)) == 1
    assert len(set(world.sender.job_ids("stepline.start"))) == 1


def test_runs_triggered_by_lifecycle_events(world: World) -> None:
    world.register(
        fn(
            "on-failure",
            Trigger(
                event="inngest/function.failed", expression="event.data.function_id == 'app-f'"
            ),
        )
    )
    failed: dict[str, JSON] = {
        "name": "inngest/function.failed",
        "id": "run-1",
        "data": {"function_id": "app-f", "run_id": "run-1", "error": {"message": "boom"}},
    }
    [event_id] = world.runner.ingest([failed], NOW, internal=True)
    world.runner.process_event(event_id, NOW)
    [run_id] = runs_of(world, event_id)
    view = world.store.get_run(run_id)
    assert view is not None and view.function_id == "app-on-failure"


def test_unknown_event_id_is_harmless(world: World) -> None:
    world.runner.process_event("01NOPE", NOW)


def test_schedule_is_idempotent_per_key(world: World) -> None:
    f = fn("f", Trigger(event="a/b"))
    world.register(f)
    event = normalize_event({"name": "a/b"}, "E1", NOW)
    run_id, created = world.runner.schedule(f, [event], ["E1"], NOW)
    again, created_again = world.runner.schedule(f, [event], ["E1"], NOW + 1)
    assert created and not created_again and again == run_id
    other, created_other = world.runner.schedule(f, [event], ["E1"], NOW, idempotency_key="k2")
    assert created_other and other != run_id


# --- invoke ---------------------------------------------------------------------------------


def _parent_with_invoke_pause(world: World, correlation_id: str) -> Pause:
    parent = fn("parent", Trigger(event="a/parent"))
    world.register(parent, fn("child", Trigger(event="a/never")))
    run_id, _ = world.runner.schedule(
        parent, [normalize_event({"name": "a/parent"}, "P1", NOW)], ["P1"], NOW
    )
    pause = Pause(
        id=f"pause-{correlation_id}",
        run_id=run_id,
        step="stephash",
        step_name="call-child",
        kind="InvokeFunction",
        event="inngest/function.finished",
        correlation_id=correlation_id,
        trigger_event={"name": "a/parent"},
        expires_at=NOW + 3_600_000,
        created_at=NOW,
    )
    assert world.store.save_pause(pause)
    return pause


def _invoked(fn_id: str, correlation_id: str) -> dict[str, JSON]:
    return {
        "name": "inngest/function.invoked",
        "id": f"invoke:{correlation_id}",
        "data": {"x": 1, "_inngest": {"fn_id": fn_id, "correlation_id": correlation_id}},
    }


def test_invoked_schedules_exactly_the_target_with_correlation(world: World) -> None:
    world.register(
        fn("child", Trigger(event="a/never")),
        fn("bystander", Trigger(event="inngest/function.invoked")),
    )
    [event_id] = world.runner.ingest([_invoked("app-child", "R.H")], NOW, internal=True)
    world.runner.process_event(event_id, NOW)
    [run_id] = runs_of(world, event_id)
    state = world.store.load_run(run_id)
    assert state is not None
    assert state.function_id == "app-child"
    assert state.correlation_id == "R.H"
    assert state.events[0]["data"] == {
        "x": 1,
        "_inngest": {"fn_id": "app-child", "correlation_id": "R.H"},
    }


def test_forged_invoke_from_outside_schedules_nothing(world: World) -> None:
    world.register(fn("child", Trigger(event="a/never")))
    [event_id] = world.runner.ingest([_invoked("app-child", "R.H")], NOW)  # external
    world.runner.process_event(event_id, NOW)
    assert runs_of(world, event_id) == []


def test_invoke_finish_resumes_parent_with_result(world: World) -> None:
    pause = _parent_with_invoke_pause(world, "PR.H")
    finished: dict[str, JSON] = {
        "name": "inngest/function.finished",
        "id": "child:finished",
        "data": {"function_id": "app-child", "correlation_id": "PR.H", "result": {"ok": 1}},
    }
    [event_id] = world.runner.ingest([finished], NOW + 10, internal=True)
    world.runner.process_event(event_id, NOW + 10)
    world.runner.process_event(event_id, NOW + 11)  # harmless twice
    state = world.store.load_run(pause.run_id)
    assert state is not None and state.steps == {"stephash": {"data": {"ok": 1}}}
    assert world.sender.job_ids("stepline.edge") == [f"{pause.run_id}:resume:stephash"]
    assert world.store.get_pause(pause.id) is None


def test_invoke_finish_with_error_resumes_with_error(world: World) -> None:
    pause = _parent_with_invoke_pause(world, "PR.E")
    error = {"name": "Error", "message": "child failed"}
    finished: dict[str, JSON] = {
        "name": "inngest/function.finished",
        "id": "child:finished",
        "data": {"correlation_id": "PR.E", "error": error},
    }
    [event_id] = world.runner.ingest([finished], NOW, internal=True)
    world.runner.process_event(event_id, NOW)
    state = world.store.load_run(pause.run_id)
    assert state is not None and state.steps == {"stephash": {"error": error}}
    view = world.store.get_run(pause.run_id)
    assert view is not None and view.steps[0]["status"] == "Failed"


def test_invoke_of_unknown_function_fails_the_caller(world: World) -> None:
    pause = _parent_with_invoke_pause(world, "PR.X")
    [event_id] = world.runner.ingest([_invoked("app-missing", "PR.X")], NOW, internal=True)
    world.runner.process_event(event_id, NOW)
    world.runner.process_event(event_id, NOW)  # the error event is sent once
    event_jobs = world.sender.job_ids("stepline.event")
    assert len(event_jobs) == 2  # the invoked event, then one finished event
    finished_id = event_jobs[1].removeprefix("event:")
    record = world.store.get_event(finished_id)
    assert record is not None and record.event["name"] == "inngest/function.finished"
    data = record.event["data"]
    assert isinstance(data, dict)
    assert data["correlation_id"] == "PR.X"
    assert data["error"] == {
        "name": "FunctionNotFound",
        "message": "function 'app-missing' is not registered",
    }
    world.runner.process_event(finished_id, NOW + 1)
    state = world.store.load_run(pause.run_id)
    assert state is not None
    assert state.steps["stephash"] == {"error": data["error"]}


def test_expired_invoke_pause_is_left_to_its_timeout(world: World) -> None:
    pause = _parent_with_invoke_pause(world, "PR.T")
    finished: dict[str, JSON] = {
        "name": "inngest/function.finished",
        "data": {"correlation_id": "PR.T", "result": 1},
    }
    later = pause.expires_at + 1
    [event_id] = world.runner.ingest([finished], later, internal=True)
    world.runner.process_event(event_id, later)
    assert world.store.get_pause(pause.id) is not None


def test_invoke_pause_is_not_resumed_by_plain_pause_matching(world: World) -> None:
    pause = _parent_with_invoke_pause(world, "PR.P")
    # A finished event of some other run, without this correlation id.
    finished: dict[str, JSON] = {"name": "inngest/function.finished", "data": {"result": 1}}
    [event_id] = world.runner.ingest([finished], NOW, internal=True)
    world.runner.process_event(event_id, NOW)
    assert world.store.get_pause(pause.id) is not None


# --- wait for event -------------------------------------------------------------------------


TRIGGER_EVENT: dict[str, JSON] = {
    "name": "shop/order.created",
    "data": {"order_id": "o-1"},
    "id": "T1",
    "ts": NOW,
    "user": {},
}


def _waiting_run(
    world: World, expr: str | None, *, step: str = "w1", created_at: int = NOW, **extra: Any
) -> Pause:
    f = fn("waiter", Trigger(event="shop/order.created"))
    world.register(f)
    run_id, _ = world.runner.schedule(f, [TRIGGER_EVENT], ["T1"], NOW)
    prepared = prepare_pause(expr, TRIGGER_EVENT)
    fields: dict[str, Any] = {
        "id": f"{run_id}-{step}",
        "run_id": run_id,
        "step": step,
        "step_name": "wait-for-payment",
        "kind": "WaitForEvent",
        "event": "shop/order.paid",
        "expression": prepared.expression,
        "index_path": prepared.index_path,
        "index_value": prepared.index_value,
        "trigger_event": TRIGGER_EVENT,
        "trigger_event_id": "T1",
        "expires_at": NOW + 60_000,
        "created_at": created_at,
    }
    fields.update(extra)
    pause = Pause.model_validate(fields)
    assert world.store.save_pause(pause)
    return pause


def _send(world: World, event: dict[str, JSON], now: int = NOW + 1_000) -> str:
    [event_id] = world.runner.ingest([event], now)
    world.runner.process_event(event_id, now)
    return event_id


def test_matching_event_resumes_with_the_event(world: World) -> None:
    pause = _waiting_run(world, "event.data.order_id == async.data.order_id")
    assert pause.index_path == "async.data.order_id"
    _send(world, {"name": "shop/order.paid", "data": {"order_id": "o-2"}})
    assert world.store.get_pause(pause.id) is not None
    event_id = _send(world, {"name": "shop/order.paid", "data": {"order_id": "o-1"}, "v": "1"})
    state = world.store.load_run(pause.run_id)
    assert state is not None
    assert state.steps["w1"] == {
        "name": "shop/order.paid",
        "data": {"order_id": "o-1"},
        "id": event_id,
        "ts": NOW + 1_000,
        "user": {},
        "v": "1",
    }
    assert world.sender.job_ids("stepline.edge") == [f"{pause.run_id}:resume:w1"]
    view = world.store.get_run(pause.run_id)
    assert view is not None
    [step] = view.steps
    assert (step["id"], step["status"], step["ended_at"]) == ("w1", "Completed", NOW + 1_000)


def test_pause_without_expression_takes_the_first_event_of_its_name(world: World) -> None:
    pause = _waiting_run(world, None)
    _send(world, {"name": "shop/order.refunded", "data": {}})
    assert world.store.get_pause(pause.id) is not None
    _send(world, {"name": "shop/order.paid", "data": {"anything": True}})
    assert world.store.get_pause(pause.id) is None


def test_unindexed_expression_is_still_matched(world: World) -> None:
    pause = _waiting_run(world, "async.data.amount > 10 || async.data.vip == true")
    assert pause.index_path is None
    _send(world, {"name": "shop/order.paid", "data": {"amount": 5}})
    assert world.store.get_pause(pause.id) is not None
    _send(world, {"name": "shop/order.paid", "data": {"amount": 50}})
    assert world.store.get_pause(pause.id) is None


def test_only_one_resume_wins(world: World) -> None:
    pause = _waiting_run(world, None)
    first = world.runner.resume(pause, {"n": 1}, NOW)
    second = world.fresh_runner().resume(pause, {"n": 2}, NOW)
    assert (first, second) == (True, False)
    state = world.store.load_run(pause.run_id)
    assert state is not None and state.steps["w1"] == {"n": 1}
    assert world.sender.job_ids("stepline.edge") == [f"{pause.run_id}:resume:w1"]


def test_resume_with_parallel_steps_pending_queues_no_discovery(world: World) -> None:
    pause = _waiting_run(world, None)
    world.store.set_pending(pause.run_id, ["w1", "other-step"])
    assert world.runner.resume(pause, None, NOW)
    assert world.sender.job_ids("stepline.edge") == []


@pytest.mark.parametrize(
    ("overrides", "now"),
    [
        ({"trigger_event_id": "__EVENT__"}, NOW + 1_000),  # the run's own trigger
        ({"created_at": NOW + 7_000}, NOW + 1_000),  # pause newer than the event + 5 s
        ({"expires_at": NOW + 500}, NOW + 1_000),  # expired
    ],
)
def test_pauses_an_event_must_not_resume(world: World, overrides: dict[str, Any], now: int) -> None:
    event: dict[str, JSON] = {"name": "shop/order.paid", "data": {"order_id": "o-1"}}
    seed = "1700000000000,AAECAwQFBgcICQ=="
    [event_id] = seeded_ids(seed, 1) or [""]
    if overrides.get("trigger_event_id") == "__EVENT__":
        overrides = {"trigger_event_id": event_id}
    pause = _waiting_run(world, "event.data.order_id == async.data.order_id", **overrides)
    assert world.runner.ingest([event], now, id_seed=seed) == [event_id]
    world.runner.process_event(event_id, now)
    assert world.store.get_pause(pause.id) is not None


def test_pause_created_within_five_seconds_after_the_event_still_matches(world: World) -> None:
    pause = _waiting_run(world, None, created_at=NOW + 4_000)
    _send(world, {"name": "shop/order.paid"}, now=NOW)
    assert world.store.get_pause(pause.id) is None


def test_cancel_pause_calls_the_canceller(world: World) -> None:
    cancelled: list[str] = []

    def cancel(run_id: str, now: int) -> bool:
        cancelled.append(run_id)
        return True

    world.runner.canceller = cancel
    pause = _waiting_run(world, None, kind="Cancel", event="shop/order.cancelled")
    # An event received before the run was created cannot cancel it.
    old_id = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"  # an id from the future: only receipt time counts
    world.store.store_event(
        normalize_event({"name": "shop/order.cancelled"}, old_id, NOW - 1), old_id, NOW - 1, 1000
    )
    world.runner.process_event(old_id, NOW)
    assert cancelled == []
    _send(world, {"name": "shop/order.cancelled"})
    assert cancelled == [pause.run_id]
    assert world.store.get_pause(pause.id) is None


def test_cancel_event_from_a_sender_whose_clock_runs_behind_still_cancels(world: World) -> None:
    """The SDK's seed header makes the internal id from the sender's clock: an hour behind,
    its ULID sorts before the run's, yet the event was received after the run was created."""
    cancelled: list[str] = []

    def cancel(run_id: str, now: int) -> bool:
        cancelled.append(run_id)
        return True

    world.runner.canceller = cancel
    pause = _waiting_run(world, None, kind="Cancel", event="shop/order.cancelled")
    seed = f"{NOW - 3_600_000},AAECAwQFBgcICQ=="
    [event_id] = world.runner.ingest([{"name": "shop/order.cancelled"}], NOW + 1_000, id_seed=seed)
    assert event_id < pause.run_id  # the sender's clock says the event is older than the run
    world.runner.process_event(event_id, NOW + 1_000)
    assert cancelled == [pause.run_id]
    assert world.store.get_pause(pause.id) is None


def test_matching_evaluates_only_indexed_candidates(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many indexed pauses pending, an event evaluates only the ones under its value."""
    f = fn("waiter", Trigger(event="shop/order.created"))
    world.register(f)
    pauses = []
    for i in range(300):
        trigger: dict[str, JSON] = {"name": "shop/order.created", "data": {"order_id": f"o-{i}"}}
        run_id, _ = world.runner.schedule(f, [trigger], [f"T{i}"], NOW)
        prepared = prepare_pause("event.data.order_id == async.data.order_id", trigger)
        pause = Pause(
            id=f"p{i}",
            run_id=run_id,
            step="w",
            step_name="wait",
            kind="WaitForEvent",
            event="shop/order.paid",
            expression=prepared.expression,
            index_path=prepared.index_path,
            index_value=prepared.index_value,
            trigger_event=trigger,
            trigger_event_id=f"T{i}",
            expires_at=NOW + 60_000,
            created_at=NOW,
        )
        world.store.save_pause(pause)
        pauses.append(pause)
    calls: list[str] = []
    real = expressions.evaluate

    def counting(expr: str, variables: dict[str, JSON]) -> bool:
        calls.append(expr)
        return real(expr, variables)

    monkeypatch.setattr(expressions, "evaluate", counting)
    _send(world, {"name": "shop/order.paid", "data": {"order_id": "o-123"}})
    assert calls == ['"o-123" == async.data.order_id']
    assert world.store.get_pause("p123") is None
    assert world.store.get_pause("p124") is not None


def test_run_idempotency_key_is_per_function(world: World) -> None:
    a, b = fn("a", Trigger(event="x/y")), fn("b", Trigger(event="x/y"))
    world.register(a, b)
    store_run = world.store.create_run(
        NewRun("R0", "app-a", [], ["E"], NOW, idempotency_key="app-a:E")
    )
    assert store_run == ("R0", True)
    run_a, created_a = world.runner.schedule(a, [], ["E"], NOW)
    run_b, created_b = world.runner.schedule(b, [], ["E"], NOW)
    assert (run_a, created_a) == ("R0", False)
    assert created_b and run_b != "R0"


def test_an_event_sent_for_the_future_starts_its_runs_then(world: World) -> None:
    world.register(fn("later", Trigger(event="app/remind")))
    due = NOW + 3_600_000
    event_id = _send(world, {"name": "app/remind", "data": {}, "ts": due})
    [run_id] = runs_of(world, event_id)
    assert f"{run_id}:start" not in world.sender.job_ids("stepline.start")  # not sent yet
    start = f"{run_id}:start"
    assert start not in [job.id for job in world.store.release_due(due - 1, 60_000, 10)]
    assert start in [job.id for job in world.store.release_due(due, 60_000, 10)]


def test_a_run_waits_at_most_a_year_for_its_events_ts(world: World) -> None:
    """An event dated 2099 (it did not come through `/e`, which refuses it) must not leave a
    Queued run in Redis for 75 years: its run starts a year on at the latest."""
    world.register(fn("far", Trigger(event="app/far")))
    event_id = _send(world, {"name": "app/far", "data": {}, "ts": 4_102_444_799_999})
    [run_id] = runs_of(world, event_id)
    start = f"{run_id}:start"
    latest = NOW + 1_000 + MAX_START_AHEAD_MS
    assert start not in [job.id for job in world.store.release_due(latest - 1, 60_000, 10)]
    assert start in [job.id for job in world.store.release_due(latest, 60_000, 10)]


def test_an_event_a_little_ahead_of_our_clock_starts_at_once(world: World) -> None:
    world.register(fn("now", Trigger(event="app/now")))
    event_id = _send(world, {"name": "app/now", "data": {}, "ts": NOW + 1_500})
    [run_id] = runs_of(world, event_id)
    assert f"{run_id}:start" in world.sender.job_ids("stepline.start")


# --- lifecycle events (issue 9, defect 5) ---------------------------------------------------


def test_a_user_event_with_the_run_id_never_swallows_function_failed(world: World) -> None:
    """Engine events have their own dedupe namespace, and a run's end stores its lifecycle
    events with their job in the same call: `on_failure` always gets its event."""
    from app.lifecycle import Lifecycle

    world.register(
        fn("work", Trigger(event="app/work")),
        fn(
            "on-failure",
            Trigger(
                event="inngest/function.failed",
                expression="event.data.function_id == 'app-work'",
            ),
        ),
    )
    [event_id] = world.runner.ingest([{"name": "app/work"}], NOW)
    world.runner.process_event(event_id, NOW)
    [run_id] = runs_of(world, event_id)
    # A user event whose id is the run id (the id function.failed carries).
    world.runner.ingest([{"name": "app/other", "id": run_id}], NOW)
    state = world.store.load_run(run_id)
    assert state is not None
    lifecycle = Lifecycle(world.store, world.runner, world.queue)
    assert lifecycle.finish(state, RunStatus.FAILED, None, {"message": "boom"}, NOW + 1)
    failed = [
        record
        for record in world.store.list_events(50)
        if record.event["name"] == "inngest/function.failed"
    ]
    assert len(failed) == 1 and failed[0].event["id"] == run_id
    # Its job was sent (function.finished, which nothing listens to here, needs none);
    # processing it starts the on_failure run.
    assert f"event:{failed[0].internal_id}" in world.sender.job_ids("stepline.event")
    world.runner.process_event(failed[0].internal_id, NOW + 2)
    runs = [world.store.get_run(r) for r in runs_of(world, failed[0].internal_id)]
    assert [r.function_id for r in runs if r is not None] == ["app-on-failure"]
    # A repeat of the finish stores nothing more.
    assert not lifecycle.finish(state, RunStatus.FAILED, None, {"message": "boom"}, NOW + 3)
    assert (
        len(
            [r for r in world.store.list_events(50) if r.event["name"] == "inngest/function.failed"]
        )
        == 1
    )


def test_in_a_worker_an_event_job_returns_its_in_process_runs_start_jobs(world: World) -> None:
    world.register(
        fn("one", Trigger(event="app/go")),
        fn("two", Trigger(event="app/go")),
        FunctionConfig(
            id="app-sdk",
            name="sdk",
            app_id="app",
            triggers=[Trigger(event="app/go")],
            driver="http",
            url="http://127.0.0.1:9/api",
        ),
    )
    world.runner.works_here = True
    ids = world.runner.ingest([{"name": "app/go"}, {"name": "app/go"}], NOW)
    [job_id] = world.sender.job_ids("stepline.event")
    job = event_job(ids)
    assert job.id == job_id
    here = world.runner.process_events(job, NOW)
    runs = [r for event_id in ids for r in runs_of(world, event_id)]
    assert len(runs) == 6
    by_id = {r: world.store.get_run(r) for r in runs}
    in_process = sorted(r for r, view in by_id.items() if view and view.function_id != "app-sdk")
    # Both in-process runs of both events come back to the task's work list, not sent; the
    # SDK app's runs go to the queue.
    assert sorted(j.run_id for j in here) == in_process
    assert all(j.kind is JobKind.START for j in here)
    sent = world.sender.job_ids("stepline.start")
    assert sorted(j.split(":")[0] for j in sent) == sorted(set(runs) - set(in_process))
    # Each returned job was recorded first (a crash before it runs loses nothing), and its
    # run's state as created is in hand for its first execution.
    for returned in here:
        assert not world.store.enqueue_job(returned, NOW, NOW)  # exists already
        state = world.runner.fresh.take(returned.run_id)
        assert state is not None and state == world.store.load_run(returned.run_id)
    # The next task starts clean.
    world.runner.process_events(job, NOW)
    assert world.runner.fresh.take(here[0].run_id) is None


def test_outside_a_worker_process_events_sends_every_start(world: World) -> None:
    world.register(fn("one", Trigger(event="app/go")))
    [event_id] = world.runner.ingest([{"name": "app/go"}], NOW)
    assert world.runner.process_event(event_id, NOW) == []
    [run_id] = runs_of(world, event_id)
    assert world.sender.job_ids("stepline.start") == [f"{run_id}:start"]
