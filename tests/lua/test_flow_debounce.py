"""lua/flow_debounce.lua and flow_debounce_fire.lua: one run per quiet period, last event wins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.models import JSON
from app.state.flow import FlowStore, flow_item_id
from app.state.store import Store
from tests.lua.conftest import T0, race

PERIOD = 2_000


@pytest.fixture
def flow(store: Store) -> Iterator[FlowStore]:
    yield FlowStore(store)


def ev(n: int, ts: int) -> dict[str, JSON]:
    return {"name": "app/x", "data": {"n": n}, "id": f"u{n}", "ts": ts, "user": {}}


def push(flow: FlowStore, n: int, now: int, timeout: int = 0, key: str = "-") -> str:
    result = flow.debounce(
        "app-fn",
        key,
        f"e{n}",
        ev(n, now),
        now,
        period_ms=PERIOD,
        timeout_ms=timeout,
        new_id=f"D{n}",
    )
    return f"{result.code}:{result.debounce_id}:{result.due}"


def timer_jobs(client: redis.Redis) -> dict[str, float]:
    return {job: score for job, score in client.zrange("sl:jobs:due", 0, -1, withscores=True)}


def test_first_event_creates_a_debounce_and_its_timer(flow: FlowStore, client: redis.Redis) -> None:
    assert push(flow, 1, T0) == f"created:D1:{T0 + PERIOD}"
    assert client.get("sl:flow:debounce:app-fn:-") == "D1"
    assert timer_jobs(client) == {"debounce:D1:0": T0 + PERIOD}
    assert flow_item_id("debounce:D1:0") == "D1"


def test_later_events_replace_the_event_and_push_the_due_time(
    flow: FlowStore, client: redis.Redis
) -> None:
    push(flow, 1, T0)
    assert push(flow, 2, T0 + 500) == f"updated:D1:{T0 + 500 + PERIOD}"
    assert timer_jobs(client) == {"debounce:D1:0": T0 + PERIOD}  # re-armed when it fires
    assert client.hget("sl:flow:debounce-item:D1", "event_id") == "e2"


def test_out_of_order_event_is_ignored(flow: FlowStore, client: redis.Redis) -> None:
    push(flow, 2, T0 + 100)
    result = flow.debounce(
        "app-fn", "-", "e1", ev(1, T0), T0 + 200, period_ms=PERIOD, timeout_ms=0, new_id="X"
    )
    assert result.code == "ignored"
    assert client.hget("sl:flow:debounce-item:D2", "event_id") == "e2"


def test_timer_re_arms_when_due_moved_then_fires_with_the_last_event(
    flow: FlowStore, client: redis.Redis
) -> None:
    push(flow, 1, T0)
    push(flow, 2, T0 + 1_500)
    early = flow.fire_debounce("D1", T0 + PERIOD)
    assert early.code == "rescheduled" and early.due == T0 + 1_500 + PERIOD
    assert timer_jobs(client)["debounce:D1:1"] == T0 + 1_500 + PERIOD
    fired = flow.fire_debounce("D1", T0 + 1_500 + PERIOD)
    assert fired.code == "fired"
    assert (fired.function_id, fired.event_id) == ("app-fn", "e2")
    assert fired.event is not None and fired.event["data"] == {"n": 2}
    assert client.exists("sl:flow:debounce:app-fn:-") == 0


def test_firing_again_answers_the_same_event(flow: FlowStore) -> None:
    push(flow, 1, T0)
    first = flow.fire_debounce("D1", T0 + PERIOD)
    again = flow.fire_debounce("D1", T0 + PERIOD + 10)
    assert first.code == again.code == "fired"
    assert first.event_id == again.event_id == "e1"


def test_event_after_the_fire_starts_a_new_debounce(flow: FlowStore) -> None:
    push(flow, 1, T0)
    flow.fire_debounce("D1", T0 + PERIOD)
    assert push(flow, 2, T0 + PERIOD + 1).startswith("created:D2:")


def test_timeout_caps_the_wait(flow: FlowStore) -> None:
    push(flow, 1, T0, timeout=3_000)
    assert push(flow, 2, T0 + 1_500, timeout=3_000) == f"updated:D1:{T0 + 3_000}"
    assert push(flow, 3, T0 + 2_500, timeout=3_000) == f"updated:D1:{T0 + 3_000}"
    assert flow.fire_debounce("D1", T0 + 3_000).event_id == "e3"


def test_keys_debounce_separately(flow: FlowStore) -> None:
    assert push(flow, 1, T0, key="a").startswith("created:D1")
    assert push(flow, 2, T0, key="b").startswith("created:D2")


def test_missing_debounce_is_gone(flow: FlowStore) -> None:
    assert flow.fire_debounce("nope", T0).code == "gone"


def test_events_racing_the_fire_join_it_or_one_new_debounce(flow: FlowStore) -> None:
    """Redis serialises the fire with the events: one before it re-arms the timer (the fired
    event is then the newest), one after it opens a new debounce. Nothing is dropped."""
    push(flow, 0, T0)

    def act(i: int) -> str:
        if i == 0:
            return flow.fire_debounce("D0", T0 + PERIOD).code
        return push(flow, i, T0 + PERIOD)

    results = race(6, act)
    joined = [r.split(":")[1] for r in results[1:]]
    assert set(joined) - {"D0"} in (set(), {next(iter(set(joined) - {"D0"}), "")})
    assert len(set(joined) - {"D0"}) <= 1
    final = flow.fire_debounce("D0", T0 + 10 * PERIOD)
    assert final.code == "fired"
    if results[0] == "fired":
        assert final.event_id == "e0" or "D0" in joined
