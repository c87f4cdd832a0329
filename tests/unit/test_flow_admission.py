"""Admission (app/flow/admission.py) against a real Redis, wired as `Engine.create` wires it.

Celery is replaced by a recorder of `send_task` calls and time is a parameter: events are
processed with an explicit `now`, timer jobs are run by calling their handlers with the
admission's clock pinned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.config import Settings
from app.engine import Engine
from app.errors import Conflict
from app.flow.admission import Admission
from app.flow.options import check_options, key_hash
from app.functions import FunctionSet
from app.models import JSON, FunctionConfig, Job, JobKind, RunStatus, Trigger
from app.replay import replay, rerun
from app.state.store import RunView

T0 = 1_700_000_000_000


@dataclass
class Recorder:
    sent: list[tuple[str, str]] = field(default_factory=list)

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append((name, str((args or [""])[0])))

    def jobs(self, kind: str) -> list[str]:
        return [job_id for name, job_id in self.sent if name == f"stepline.{kind}"]


@dataclass
class World:
    engine: Engine
    sender: Recorder
    now: int = T0

    @property
    def admission(self) -> Admission:
        assert self.engine.admission is not None
        return self.engine.admission

    def register(self, *functions: FunctionConfig) -> None:
        self.engine.store.save_app("app", None, list(functions), T0)

    def send(self, name: str, data: dict[str, JSON] | None = None, at: int | None = None) -> str:
        """Ingest and process one event at `at` (default: the world's now)."""
        now = self.now if at is None else at
        [event_id] = self.engine.runner.ingest([{"name": name, "data": data or {}}], now)
        self.engine.runner.process_event(event_id, now)
        return event_id

    def runs(self, function_id: str) -> list[RunView]:
        return list(reversed(self.engine.store.list_runs(100, function_id=function_id)))

    def outcomes(self, event_id: str) -> list[str]:
        return [str(o["outcome"]) for o in self.admission.flow.event_outcomes(event_id)]

    def fire(self, job_id: str, kind: JobKind, at: int) -> None:
        self.admission.clock = lambda: at
        job = Job(id=job_id, kind=kind)
        handler = {
            JobKind.DEBOUNCE: self.admission.run_debounce,
            JobKind.BATCH: self.admission.run_batch,
        }[kind]
        self.engine.runner.start_held(handler(job))  # admission decides, the runner creates

    def timeout(self, run_id: str, which: str, at: int, generation: int = 0) -> None:
        self.admission.clock = lambda: at
        job = Job(
            id=f"{run_id}:timeout:{which}:{generation}",
            kind=JobKind.CANCEL,
            run_id=run_id,
            step=which,
            attempt=generation,
        )
        self.admission.run_timeout(job)

    def job_ids(self, prefix: str) -> list[str]:
        client = self.engine.store._client
        return sorted(
            str(job) for job in client.hkeys(self.engine.store.keys.jobs) if job.startswith(prefix)
        )


@pytest.fixture
def world(redis_url: str) -> Iterator[World]:
    settings = Settings(redis_url=redis_url, key_prefix="fa")
    sender = Recorder()
    engine = Engine.create(settings, sender=sender, local=FunctionSet())
    yield World(engine, sender)
    engine.store.close()


def fn(slug: str, event: str = "app/go", **options: JSON) -> FunctionConfig:
    return FunctionConfig(
        id=f"app-{slug}",
        name=slug,
        app_id="app",
        triggers=[Trigger(event=event)],
        options=dict(options),
    )


# --- option checks and keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"rateLimit": {"limit": -1, "period": "1m"}}, "rateLimit.limit", ">= 1"),
        ({"rateLimit": {"limit": 1, "period": "5 minutes"}}, "rateLimit.period", "malformed"),
        ({"rateLimit": {"limit": 1, "period": "2d"}}, "rateLimit.period", "at most 1d"),
        ({"rateLimit": {"limit": 1}}, "rateLimit.period", "required"),
        ({"rateLimit": {"limit": 1, "period": "1m", "key": "event.("}}, "rateLimit.key", "invalid"),
        ({"idempotency": "event.data.id +"}, "idempotency", "invalid expression"),
        ({"debounce": {"period": "8d"}}, "debounce.period", "at most 1w"),
        ({"debounce": {"period": "500ms"}}, "debounce.period", "at least 1s"),
        ({"batchEvents": {"maxSize": 0, "timeout": "1s"}}, "batchEvents.maxSize", "from 1 to 100"),
        ({"batchEvents": {"maxSize": 5, "if": "event.x =="}}, "batchEvents.if", "invalid"),
        ({"cancel": [{"event": ""}]}, "cancel[0].event", "non-empty"),
        ({"cancel": [{"event": "a"}] * 6}, "cancel", "at most 5"),
        (
            {"cancel": [{"event": "a", "timeout": "2024-13-01T00:00:00Z"}]},
            "cancel[0].timeout",
            "time",
        ),
        ({"timeouts": {"start": "0s"}}, "timeouts.start", "at least 1s"),
        ({"singleton": {"mode": "queue"}}, "singleton.mode", "'skip' or 'cancel'"),
        ({"singleton": {"mode": "skip", "key": "event.data."}}, "singleton.key", "invalid"),
        ({"concurrency": [{"limit": -2}]}, "concurrency[0].limit", ">= 0"),
        ({"concurrency": [{"limit": 1}] * 3}, "concurrency", "at most 2"),
        ({"concurrency": [{"limit": 1, "scope": "world"}]}, "concurrency[0].scope", "fn, env"),
        ({"concurrency": [{"limit": 1, "key": "event.("}]}, "concurrency[0].key", "invalid"),
        ({"throttle": {"limit": 0, "period": "1s"}}, "throttle.limit", ">= 1"),
        ({"throttle": {"limit": 1, "period": "5 minutes"}}, "throttle.period", "malformed"),
        ({"throttle": {"limit": 1, "period": "1s", "burst": -1}}, "throttle.burst", ">= 0"),
        ({"priority": {"run": "event.data.p +"}}, "priority.run", "invalid"),
    ],
)
def test_check_options_names_the_option(options: dict[str, JSON], field: str, words: str) -> None:
    problems = check_options(options)
    assert problems, options
    path, problem = problems[0]
    assert path == field
    assert words in problem


def test_check_options_accepts_valid_options() -> None:
    options: dict[str, JSON] = {
        "rateLimit": {"limit": 10, "period": "1m", "key": "event.data.user"},
        "idempotency": "event.data.id",
        "debounce": {"period": "5s", "key": "event.data.k", "timeout": "1m"},
        "batchEvents": {"maxSize": 100, "timeout": "5s", "key": "event.data.k", "if": "true"},
        "cancel": [{"event": "app/stop", "if": "async.data.id == event.data.id", "timeout": "1h"}],
        "timeouts": {"start": "10s", "finish": "1h"},
        "singleton": {"key": "event.data.u", "mode": "cancel"},
        "concurrency": [{"limit": 5}, {"limit": 1, "key": "event.data.u", "scope": "account"}],
        "throttle": {"limit": 2, "period": "2s", "burst": 1, "key": "event.data.u"},
        "priority": {"run": "event.data.vip ? 120 : 0"},
    }
    assert check_options(options) == []


def test_key_hash() -> None:
    event: dict[str, JSON] = {"name": "a", "data": {"u": "x", "ok": False, "n": 1}}
    assert key_hash(None, event, on_error="invalid") == "-"
    same = key_hash("event.data.u", event, on_error="invalid")
    assert (
        same == key_hash("'x'", event, on_error="invalid") != key_hash("'y'", event, on_error="off")
    )
    assert key_hash("event.data.ok", event, on_error="invalid") is None  # false: option off
    assert key_hash("event.data.missing", event, on_error="off") is None
    invalid = key_hash("event.data.missing", event, on_error="invalid")
    assert (
        invalid
        == key_hash("event.data.other", event, on_error="invalid")
        == key_hash("'<invalid>'", event, on_error="invalid")
    )


# --- rate limit ---------------------------------------------------------------------------


def test_rate_limit_skips_excess_events_and_says_why(world: World) -> None:
    world.register(fn("rl", rateLimit={"limit": 10, "period": "1m"}))  # burst 1: 2 at once
    events = [world.send("app/go", {"i": i}) for i in range(5)]
    assert len(world.runs("app-rl")) == 2
    assert [world.outcomes(e) for e in events] == [[], [], ["rate_limited"]] + [
        ["rate_limited"]
    ] * 2
    [record] = world.admission.flow.event_outcomes(events[2])
    assert record["function_id"] == "app-rl" and record["retry_at"] == T0 + 6_000
    assert "rate limit of 10 per 1m" in str(record["message"])
    # Processing an admitted event again counts nothing and starts nothing.
    world.engine.runner.process_event(events[0], T0 + 1)
    assert len(world.runs("app-rl")) == 2
    later = world.send("app/go", at=T0 + 6_000)
    assert world.outcomes(later) == [] and len(world.runs("app-rl")) == 3


def test_rate_limit_key_false_means_unlimited(world: World) -> None:
    world.register(fn("rk", rateLimit={"limit": 1, "period": "1m", "key": "event.data.limited"}))
    for _ in range(3):
        world.send("app/go", {"limited": False})
    world.send("app/go", {"limited": "a"})
    world.send("app/go", {"limited": "a"})
    assert len(world.runs("app-rk")) == 4


# --- idempotency ----------------------------------------------------------------------------


def test_idempotency_key_allows_one_run_per_key(world: World) -> None:
    world.register(fn("idem", idempotency="event.data.order"))
    first = world.send("app/go", {"order": "o1"})
    second = world.send("app/go", {"order": "o1"})
    other = world.send("app/go", {"order": "o2"})
    runs = world.runs("app-idem")
    assert len(runs) == 2
    assert world.outcomes(first) == [] and world.outcomes(other) == []
    assert world.outcomes(second) == ["idempotent"]
    [record] = world.admission.flow.event_outcomes(second)
    assert record["run_id"] == runs[0].run_id
    world.engine.runner.process_event(first, T0 + 5)  # a repeat is not "idempotent"
    assert world.outcomes(first) == []


# --- debounce -------------------------------------------------------------------------------


def test_debounce_starts_one_run_with_the_last_event(world: World) -> None:
    world.register(fn("deb", debounce={"period": "2s"}))
    events = [world.send("app/go", {"i": i}, at=T0 + i * 500) for i in range(3)]
    assert world.runs("app-deb") == []
    assert all(world.outcomes(e) == ["debounced"] for e in events)
    [timer] = world.job_ids("debounce:")
    world.fire(timer, JobKind.DEBOUNCE, at=T0 + 2_000)  # due moved: re-arms
    assert world.runs("app-deb") == []
    [rearmed] = [j for j in world.job_ids("debounce:") if j != timer]
    world.fire(rearmed, JobKind.DEBOUNCE, at=T0 + 3_000)
    [run] = world.runs("app-deb")
    assert run.event_ids == [events[2]]
    state = world.engine.store.load_run(run.run_id)
    assert state is not None and state.events[0]["data"] == {"i": 2}
    world.fire(rearmed, JobKind.DEBOUNCE, at=T0 + 3_100)  # redelivered: same run
    assert len(world.runs("app-deb")) == 1


def test_debounce_timeout_caps_the_wait(world: World) -> None:
    world.register(fn("dto", debounce={"period": "2s", "timeout": "3s"}))
    for i in range(5):
        world.send("app/go", {"i": i}, at=T0 + i * 1_000)
    [timer] = world.job_ids("debounce:")
    world.fire(timer, JobKind.DEBOUNCE, at=T0 + 2_000)
    [rearmed] = [j for j in world.job_ids("debounce:") if j != timer]
    due = world.engine.store._client.zscore(world.engine.store.keys.jobs_due, rearmed)
    assert due == T0 + 3_000
    world.fire(rearmed, JobKind.DEBOUNCE, at=T0 + 3_000)
    [run] = world.runs("app-dto")
    assert len(run.event_ids) == 1


# --- batching -------------------------------------------------------------------------------


def test_batches_fill_then_time_out(world: World) -> None:
    world.register(fn("bat", batchEvents={"maxSize": 3, "timeout": "5s"}))
    events = [world.send("app/go", {"i": i}) for i in range(7)]
    assert world.runs("app-bat") == []
    assert all(world.outcomes(e) == ["batched"] for e in events)
    full = world.sender.jobs("batch")
    assert len(full) == 2 and all(job.endswith(":full") for job in full)
    for job_id in full:
        world.fire(job_id, JobKind.BATCH, at=T0 + 10)
    timers = [j for j in world.job_ids("batch:") if not j.endswith(":full")]
    for job_id in timers:
        world.fire(job_id, JobKind.BATCH, at=T0 + 5_000)
    runs = world.runs("app-bat")
    assert [len(run.event_ids) for run in runs] == [3, 3, 1]
    assert [e for run in runs for e in run.event_ids] == events
    state = world.engine.store.load_run(runs[0].run_id)
    assert state is not None and [e["data"]["i"] for e in state.events] == [0, 1, 2]


def test_batch_if_false_runs_the_event_alone(world: World) -> None:
    world.register(fn("bif", batchEvents={"maxSize": 3, "timeout": "5s", "if": "event.data.b"}))
    world.send("app/go", {"b": False})
    world.send("app/go", {"b": True})
    assert len(world.runs("app-bif")) == 1


# --- singleton ------------------------------------------------------------------------------


def test_singleton_skip_until_the_run_ends(world: World) -> None:
    world.register(fn("one", singleton={"mode": "skip"}))
    world.send("app/go")
    skipped = world.send("app/go")
    [run] = world.runs("app-one")
    assert world.outcomes(skipped) == ["singleton_skipped"]
    state = world.engine.store.load_run(run.run_id)
    assert state is not None
    world.engine.executor.lifecycle.finish(state, RunStatus.COMPLETED, None, None, T0 + 5)
    world.send("app/go", at=T0 + 6)
    assert len(world.runs("app-one")) == 2


def test_singleton_cancel_replaces_the_running_run(world: World) -> None:
    world.register(fn("rep", singleton={"mode": "cancel", "key": "event.data.u"}))
    world.send("app/go", {"u": "a"})
    world.send("app/go", {"u": "b"})
    world.send("app/go", {"u": "a"}, at=T0 + 1)
    first, other, second = world.runs("app-rep")
    assert first.status == "Cancelled" and "replaced by run" in str(first.error)
    assert other.status == "Queued" and second.status == "Queued"


# --- cancellation ---------------------------------------------------------------------------


def test_cancel_event_cancels_the_matching_run(world: World) -> None:
    cancel = [{"event": "app/stop", "if": "async.data.id == event.data.id", "timeout": "1h"}]
    world.register(fn("can", cancel=cancel))
    world.send("app/go", {"id": 1})
    world.send("app/go", {"id": 2})
    world.send("app/stop", {"id": 2}, at=T0 + 10)
    one, two = world.runs("app-can")
    assert (one.status, two.status) == ("Queued", "Cancelled")


def test_cancel_event_older_than_the_run_is_ignored(world: World) -> None:
    world.register(fn("old", cancel=[{"event": "app/stop"}]))
    [stop] = world.engine.runner.ingest([{"name": "app/stop"}], T0 - 10)
    world.send("app/go")
    world.engine.runner.process_event(stop, T0 + 5)
    assert world.runs("app-old")[0].status == "Queued"


# --- timeouts -------------------------------------------------------------------------------


def test_start_timeout_cancels_a_run_that_did_not_start(world: World) -> None:
    world.register(fn("ts", timeouts={"start": "10s"}))
    world.send("app/go")
    [run] = world.runs("app-ts")
    assert world.job_ids(f"{run.run_id}:timeout") == [f"{run.run_id}:timeout:start:0"]
    world.timeout(run.run_id, "start", at=T0 + 5_000)  # early (clock skew): re-armed
    assert f"{run.run_id}:timeout:start:1" in world.job_ids(f"{run.run_id}:timeout")
    world.timeout(run.run_id, "start", at=T0 + 10_000, generation=1)
    view = world.engine.store.get_run(run.run_id)
    assert view is not None and view.status == "Cancelled"
    assert view.error == {"name": "FunctionTimeout", "message": "run did not start within 10s"}


def test_start_timeout_leaves_a_started_run_alone(world: World) -> None:
    world.register(fn("ts2", timeouts={"start": "10s"}))
    world.send("app/go")
    [run] = world.runs("app-ts2")
    world.engine.store.mark_started(run.run_id, T0 + 1_000)
    world.timeout(run.run_id, "start", at=T0 + 10_000)
    view = world.engine.store.get_run(run.run_id)
    assert view is not None and view.status == "Running"


def test_finish_timeout_counts_from_the_start(world: World) -> None:
    world.register(fn("tf", timeouts={"finish": "30s"}))
    world.send("app/go")
    [run] = world.runs("app-tf")
    world.timeout(run.run_id, "finish", at=T0 + 30_000)  # not started yet: wait a period more
    assert f"{run.run_id}:timeout:finish:1" in world.job_ids(f"{run.run_id}:timeout")
    world.engine.store.mark_started(run.run_id, T0 + 40_000)
    world.timeout(run.run_id, "finish", at=T0 + 60_000, generation=1)  # started + 20 s
    assert f"{run.run_id}:timeout:finish:2" in world.job_ids(f"{run.run_id}:timeout")
    world.timeout(run.run_id, "finish", at=T0 + 70_000, generation=2)
    view = world.engine.store.get_run(run.run_id)
    assert view is not None and view.status == "Cancelled"
    assert view.error == {"name": "FunctionTimeout", "message": "run did not finish within 30s"}


def test_timeout_removed_from_the_function_is_a_no_op(world: World) -> None:
    world.register(fn("tr", timeouts={"start": "1s"}))
    world.send("app/go")
    [run] = world.runs("app-tr")
    world.register(fn("tr"))
    world.timeout(run.run_id, "start", at=T0 + 5_000)
    view = world.engine.store.get_run(run.run_id)
    assert view is not None and view.status == "Queued"


# --- invoke, no-match, bulk cancel ----------------------------------------------------------


def test_rate_limited_invoke_fails_the_invoker_at_once(world: World) -> None:
    world.register(fn("child", rateLimit={"limit": 1, "period": "1m"}))
    for n in range(2):
        data: dict[str, JSON] = {
            "_inngest": {"fn_id": "app-child", "correlation_id": f"parent.step{n}"}
        }
        [event_id] = world.engine.runner.ingest(
            [{"name": "inngest/function.invoked", "data": data}], T0, internal=True
        )
        world.engine.runner.process_event(event_id, T0)
    assert len(world.runs("app-child")) == 1
    finished = [
        r.event
        for r in world.engine.store.list_events(20)
        if r.event["name"] == "inngest/function.finished"
    ]
    assert len(finished) == 1
    assert finished[0]["data"]["correlation_id"] == "parent.step1"
    assert finished[0]["data"]["error"]["message"] == "invoked function is rate limited"


def test_invoked_functions_are_not_debounced(world: World) -> None:
    world.register(fn("dchild", debounce={"period": "10s"}))
    data: dict[str, JSON] = {"_inngest": {"fn_id": "app-dchild", "correlation_id": "p.s"}}
    [event_id] = world.engine.runner.ingest(
        [{"name": "inngest/function.invoked", "data": data}], T0, internal=True
    )
    world.engine.runner.process_event(event_id, T0)
    assert len(world.runs("app-dchild")) == 1


def test_no_match_is_recorded(world: World) -> None:
    filtered = fn("filt")
    filtered.triggers[0].expression = "event.data.vip == true"
    world.register(filtered)
    event_id = world.send("app/go", {"vip": False})
    assert world.outcomes(event_id) == ["no_match"]


def test_bulk_cancel_cancels_live_runs_in_the_window(world: World) -> None:
    world.register(fn("bulk"))
    for i in range(5):
        world.send("app/go", {"i": i}, at=T0 + i * 1_000)
    runs = world.runs("app-bulk")
    world.engine.store.finish_run(runs[2].run_id, "Completed", None, None, T0 + 10_000)
    admission = world.admission
    assert admission.bulk_cancel("app-bulk", T0 + 1_000, T0 + 4_000, T0 + 20_000) == 2
    statuses = [r.status for r in world.runs("app-bulk")]
    assert statuses == ["Queued", "Cancelled", "Completed", "Cancelled", "Queued"]
    matched = admission.bulk_cancel(
        "app-bulk", None, None, T0 + 21_000, if_expr="event.data.i == 4"
    )
    assert matched == 1
    assert world.runs("app-bulk")[0].status == "Queued"


# --- validation where functions come in -------------------------------------------------------


def test_sdk_refuses_invalid_options_naming_function_and_option() -> None:
    import datetime

    import app.sdk as inngest
    from app.errors import InvalidFunction

    client = inngest.Inngest(app_id="v")
    with pytest.raises(InvalidFunction) as caught:
        client.create_function(
            fn_id="f",
            trigger=inngest.TriggerEvent(event="a"),
            rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(days=2)),
        )(lambda ctx: None)
    assert caught.value.field == "rate_limit.period"
    assert "'v-f'" in caught.value.message and "at most 1d" in caught.value.message
    with pytest.raises(InvalidFunction) as caught:
        client.create_function(
            fn_id="g",
            trigger=inngest.TriggerEvent(event="a"),
            cancel=inngest.Cancel(event="b", if_exp="async.data.x =="),
        )(lambda ctx: None)
    assert caught.value.field == "cancel[0].if_exp"


def test_registration_keeps_valid_functions_and_reports_invalid_ones() -> None:
    from app.sync import read_registration

    def function(fn_id: str, **options: JSON) -> dict[str, JSON]:
        return {"id": fn_id, "triggers": [{"event": "a"}], **options}

    body: dict[str, JSON] = {
        "appName": "shop",
        "url": "http://shop/api/inngest",
        "functions": [
            function("shop-ok", rateLimit={"limit": 5, "period": "1m"}),
            function("shop-neg", rateLimit={"limit": -5, "period": "1m"}),
            function("shop-dur", debounce={"period": "5 minutes"}),
            function("shop-expr", idempotency="event.data.("),
        ],
    }
    registration = read_registration(body, headers={})
    assert [config.id for config in registration.functions] == ["shop-ok"]
    fields = [error.field for error in registration.errors]
    assert fields == [
        "functions[1].rateLimit.limit",
        "functions[2].debounce.period",
        "functions[3].idempotency",
    ]
    assert all(
        f"'shop-{name}'" in error.message
        for name, error in zip(("neg", "dur", "expr"), registration.errors, strict=True)
    )


# --- integers beyond int64, and keys that fail (issue 9, defect 2) ----------------------------

BIG = 2**70 + 1


def test_a_big_integer_elsewhere_leaves_every_key_to_its_own_field(world: World) -> None:
    """It used to make every key `<invalid>`: one shared rate-limit bucket, singleton and
    idempotency off."""
    world.register(
        fn("brl", rateLimit={"limit": 1, "period": "1m", "key": "event.data.customer"}),
        fn("bone", singleton={"mode": "skip", "key": "event.data.customer"}),
        fn("bidem", idempotency="event.data.order"),
    )
    sent = [
        world.send("app/go", {"customer": c, "order": o, "big": BIG, "deep": [{"n": -BIG}]})
        for c, o in (("a", "o1"), ("b", "o2"), ("a", "o1"))
    ]
    assert len(world.runs("app-brl")) == 2  # a, b; the second a is rate limited
    assert len(world.runs("app-bone")) == 2  # the second a is skipped: a's run is live
    assert len(world.runs("app-bidem")) == 2  # o1 twice: one run
    assert sorted(world.outcomes(sent[2])) == ["idempotent", "rate_limited", "singleton_skipped"]
    assert world.outcomes(sent[0]) == world.outcomes(sent[1]) == []  # no key failed


def test_a_key_over_a_big_integer_is_exact(world: World) -> None:
    world.register(fn("bkey", rateLimit={"limit": 1, "period": "1m", "key": "event.data.id"}))
    first = world.send("app/go", {"id": BIG})
    neighbour = world.send("app/go", {"id": BIG - 1})  # the same double, another key
    again = world.send("app/go", {"id": BIG})
    assert len(world.runs("app-bkey")) == 2
    assert (world.outcomes(first), world.outcomes(neighbour)) == ([], [])
    assert world.outcomes(again) == ["rate_limited"]


def test_cancel_if_matches_beside_big_integers(world: World) -> None:
    cancel = [{"event": "app/stop", "if": "async.data.id == event.data.id", "timeout": "1h"}]
    world.register(fn("bcan", cancel=cancel))
    world.send("app/go", {"id": 1, "big": BIG})
    world.send("app/go", {"id": BIG})
    world.send("app/stop", {"id": 1, "big": -BIG}, at=T0 + 10)
    world.send("app/stop", {"id": BIG}, at=T0 + 10)
    assert [run.status for run in world.runs("app-bcan")] == ["Cancelled", "Cancelled"]


def test_a_key_that_fails_is_recorded_beside_the_decision(world: World) -> None:
    world.register(
        fn("kerl", rateLimit={"limit": 1, "period": "1m", "key": "event.data.missing"}),
        fn("keone", event="app/one", singleton={"mode": "skip", "key": "event.data.missing"}),
    )
    admitted = world.send("app/go", {"x": 1})
    dropped = world.send("app/go", {"x": 2})  # the same shared `<invalid>` bucket
    assert world.outcomes(admitted) == ["key_error"]
    assert sorted(world.outcomes(dropped)) == ["key_error", "rate_limited"]
    record = next(
        o for o in world.admission.flow.event_outcomes(dropped) if o["outcome"] == "key_error"
    )
    assert record["function_id"] == "app-kerl"
    message = str(record["message"])
    assert "rateLimit.key" in message and "event.data.missing" in message
    assert "'missing'" in message and "shared <invalid> bucket" in message
    single = world.send("app/one")
    [record] = world.admission.flow.event_outcomes(single)
    assert record["outcome"] == "key_error" and "singleton.key" in str(record["message"])
    assert "off for this event" in str(record["message"])
    assert len(world.runs("app-kerl")) == 1 and len(world.runs("app-keone")) == 1


# --- rerun and replay -----------------------------------------------------------------------


def _end(world: World, run_id: str, at: int) -> None:
    state = world.engine.store.load_run(run_id)
    assert state is not None
    error = {"name": "Error", "message": "failed"}
    assert world.engine.executor.lifecycle.finish(state, RunStatus.FAILED, None, error, at)


def test_rerun_and_replay_get_cancellation_pauses_and_timeouts(world: World) -> None:
    cancel = [{"event": "app/stop", "if": "async.data.id == event.data.id"}]
    world.register(fn("copy", cancel=cancel, timeouts={"start": "1m", "finish": "1h"}))
    world.send("app/go", {"id": 7})
    [original] = world.runs("app-copy")
    _end(world, original.run_id, T0 + 50)
    reads, runner = world.engine.reads, world.engine.runner
    again = rerun(reads, runner, original.run_id, T0 + 100).run_id
    replayed = replay(reads, runner, original.run_id, T0 + 100).run_id
    for new in (again, replayed):
        assert world.job_ids(f"{new}:") == [
            f"{new}:start",
            f"{new}:timeout:finish:0",
            f"{new}:timeout:start:0",
        ]
    # The rerun listens to its cancel event, as a run of the event would.
    world.send("app/stop", {"id": 7}, at=T0 + 200)
    assert world.engine.store.get_run(again).status == "Cancelled"  # type: ignore[union-attr]
    # The replay misses its start deadline (60 s after it was created).
    world.timeout(replayed, "start", T0 + 100 + 60_000)
    assert world.engine.store.get_run(replayed).status == "Cancelled"  # type: ignore[union-attr]


def test_rerun_of_a_singleton_waits_for_the_live_run(world: World) -> None:
    world.register(fn("solo", singleton={"mode": "skip"}))
    world.send("app/go")
    [live] = world.runs("app-solo")
    reads, runner = world.engine.reads, world.engine.runner
    with pytest.raises(Conflict, match=f"run {live.run_id} has not finished"):
        rerun(reads, runner, live.run_id, T0 + 1)
    assert len(world.runs("app-solo")) == 1
    _end(world, live.run_id, T0 + 5)
    made = rerun(reads, runner, live.run_id, T0 + 10)
    # The rerun holds the lock now: an event's run is skipped while it lives.
    skipped = world.send("app/go", at=T0 + 11)
    assert world.outcomes(skipped) == ["singleton_skipped"]
    assert [run.run_id for run in world.runs("app-solo")] == [live.run_id, made.run_id]


def test_rerun_of_a_singleton_in_cancel_mode_replaces_the_live_run(world: World) -> None:
    world.register(fn("swap", singleton={"mode": "cancel"}))
    world.send("app/go")
    [live] = world.runs("app-swap")
    made = rerun(world.engine.reads, world.engine.runner, live.run_id, T0 + 1)
    first, second = world.runs("app-swap")
    assert first.status == "Cancelled" and "replaced by run" in str(first.error)
    assert (second.run_id, second.status) == (made.run_id, "Queued")


class BrokerDown:
    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        raise ConnectionError("broker unreachable")


def test_a_rerun_whose_send_fails_is_started_by_the_tick(world: World, redis_url: str) -> None:
    """The run and its start job are written in one step: if the process dies (here: the
    broker refuses the send) right after, the tick still starts the run."""
    world.register(fn("crash"))
    world.send("app/go")
    [original] = world.runs("app-crash")
    settings = Settings(redis_url=redis_url, key_prefix="fa")
    down = Engine.create(settings, sender=BrokerDown(), local=FunctionSet())
    try:
        with pytest.raises(ConnectionError):
            rerun(down.reads, down.runner, original.run_id, T0 + 10)
    finally:
        down.store.close()
    _, made = world.runs("app-crash")
    assert made.status == "Queued"
    world.engine.queue.release_due(T0 + 10 + 60_000)
    assert f"{made.run_id}:start" in world.sender.jobs("start")
