"""app.flow.slots without Redis: reading the options, constraint names, priority, and the
free path of functions that use none of them."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import redis

import app.sdk as inngest
from app.config import Settings
from app.flow.slots import (
    NO_GRANT,
    ConcurrencyRule,
    FlowRules,
    Slots,
    ThrottleRule,
    constraint_name,
    key_hash,
    priority_factor,
    rules_of,
)
from app.models import FunctionConfig, Job, JobKind, Trigger
from app.queue import Queue
from app.state.store import RunState, Store

EVENT: dict[str, Any] = {"name": "app/x", "data": {"user": "u1", "prio": 5}, "id": "e", "ts": 1}


def config(**options: Any) -> FunctionConfig:
    return FunctionConfig(
        id="app-fn", name="fn", app_id="app", triggers=[Trigger(event="app/x")], options=options
    )


def test_rules_read_the_registered_shapes() -> None:
    rules = rules_of(
        {
            "concurrency": [
                {"limit": 5, "key": "event.data.user", "scope": "account"},
                {"limit": 2},
                {"limit": 9},  # a third constraint is not allowed: ignored
            ],
            "throttle": {"limit": 10, "period": "1m", "burst": 2, "key": "event.data.user"},
            "priority": {"run": "event.data.prio"},
        }
    )
    assert rules == FlowRules(
        concurrency=(
            ConcurrencyRule(5, "event.data.user", "account"),
            ConcurrencyRule(2, None, "fn"),
        ),
        throttle=ThrottleRule(10, 60_000, 2, "event.data.user"),
        priority="event.data.prio",
    )


def test_rules_defaults_and_unusable_values() -> None:
    rules = rules_of(
        {
            "concurrency": {"limit": 0},  # 0: no limit
            "throttle": {"limit": 0, "period": "2s"},  # limit 0 counts as 1, burst 0
        }
    )
    assert rules.concurrency == ()
    assert rules.throttle == ThrottleRule(1, 2_000, 0, None)
    assert rules_of({"throttle": {"limit": 1, "period": "soon"}}).throttle is None
    assert rules_of({"concurrency": [{"limit": 3, "scope": "galaxy"}]}).concurrency == (
        ConcurrencyRule(3, None, "fn"),
    )


def test_sdk_options_round_trip() -> None:
    client = inngest.Inngest(app_id="t")
    fn = client.create_function(
        fn_id="f",
        trigger=inngest.TriggerEvent(event="app/x"),
        concurrency=[inngest.Concurrency(limit=2, key="event.data.user", scope="env")],
        throttle=inngest.Throttle(limit=2, period=datetime.timedelta(seconds=2)),
        priority=inngest.Priority(run="event.data.prio"),
    )(lambda ctx: None)
    rules = rules_of(fn.config()[0].options)
    assert rules.concurrency == (ConcurrencyRule(2, "event.data.user", "env"),)
    assert rules.throttle == ThrottleRule(2, 2_000, 1, None)  # the SDK's default burst is 1
    assert rules.priority == "event.data.prio"


def test_gcra_parameters() -> None:
    rule = ThrottleRule(limit=2, period_ms=2_000, burst=0)
    assert (rule.interval_ms, rule.tolerance_ms) == (1_000, 1_000)
    rule = ThrottleRule(limit=10, period_ms=60_000, burst=5)
    assert (rule.interval_ms, rule.tolerance_ms) == (6_000, 84_000)


def test_constraint_names_per_scope_and_key_value() -> None:
    assert constraint_name(ConcurrencyRule(1), "app-fn", EVENT) == "f:app-fn"
    keyed = constraint_name(ConcurrencyRule(1, "event.data.user"), "app-fn", EVENT)
    assert keyed == f"f:app-fn:{key_hash('event.data.user', EVENT)}"
    other = {**EVENT, "data": {"user": "u2"}}
    assert keyed != constraint_name(ConcurrencyRule(1, "event.data.user"), "app-fn", other)
    env = constraint_name(ConcurrencyRule(1, "event.data.user", "env"), "app-fn", EVENT)
    account = constraint_name(ConcurrencyRule(1, "event.data.user", "account"), "other", EVENT)
    assert env.startswith("e:env:") and account.startswith("a:account:")
    assert env.split(":")[-1] == account.split(":")[-1]


def test_key_values_hash_by_value() -> None:
    assert key_hash("event.data.user", EVENT) == key_hash('"u1"', EVENT)
    assert key_hash("event.data.prio", EVENT) == key_hash("5", EVENT)
    # A missing field or a broken expression share one `<invalid>` queue.
    assert key_hash("event.data.nope", EVENT) == key_hash("(((", EVENT)


@pytest.mark.parametrize(
    ("expr", "data", "factor"),
    [
        ("event.data.p", {"p": 120}, 120),
        ("event.data.p", {"p": -30}, -30),
        ("event.data.p", {"p": 10**9}, 43_200),
        ("event.data.p", {"p": -(10**9)}, -43_200),
        ("event.data.p", {"p": 2.5}, 0),
        ("event.data.p", {"p": True}, 0),
        ("event.data.p", {"p": "60"}, 0),
        ("event.data.p", {}, 0),
        ("event.data.vip ? 600 : 0", {"vip": True}, 600),
        (None, {"p": 1}, 0),
    ],
)
def test_priority_factor(expr: str | None, data: dict[str, Any], factor: int) -> None:
    assert priority_factor(expr, {"name": "x", "data": data}) == factor


class NoSender:
    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        raise AssertionError("nothing may be sent")


def test_functions_without_options_never_touch_redis() -> None:
    """Port 1 has no Redis: any command would raise. Priority alone needs no slot either."""
    client = redis.Redis(host="127.0.0.1", port=1, decode_responses=True)
    store = Store.from_client(client)
    settings = Settings(redis_url="redis://127.0.0.1:1/0")
    slots = Slots(store, Queue(store, NoSender(), settings), settings)
    state = RunState("01RUN", "app-fn", "Queued", [EVENT], {}, [], False, 1, None, None)
    job = Job(id="01RUN:start", kind=JobKind.START, run_id="01RUN")
    for fn in (config(), config(priority={"run": "event.data.prio"}), config(retries=1)):
        grant = slots.acquire(fn, state, job, 1)
        assert grant is NO_GRANT
        grant.release(2)
    assert slots.keeper.held() == {}
