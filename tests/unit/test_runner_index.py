"""Pause matching through the index, on a real Redis with 2,000 pending indexed pauses.

What is under test is that the runner asks the store for the event's own index values and
evaluates only those candidates (bench/pauses.py measures 100,000).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app import expressions
from app.config import Settings
from app.expressions import prepare_pause
from app.models import JSON, Pause
from app.queue import Queue
from app.registry import Registry
from app.runner import Runner
from app.state.store import NewRun, Store

NOW = 1_700_000_000_000
PENDING = 2_000
EXPRESSION = "event.data.order_id == async.data.order_id && async.data.paid == true"


class NullSender:
    """Resumed runs' jobs are recorded in Redis; sending them to Celery is not under test."""

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        return None


@pytest.fixture
def loaded(redis_url: str) -> Iterator[tuple[Runner, Store]]:
    store = Store(redis_url)
    for i in range(PENDING):
        run_id = f"r{i:06d}"
        trigger: dict[str, JSON] = {"name": "shop/order.created", "data": {"order_id": f"o-{i}"}}
        store.create_run(NewRun(run_id, "shop-wait", [trigger], [f"t{i}"], NOW))
        prepared = prepare_pause(EXPRESSION, trigger)
        assert prepared.index_path == "async.data.order_id"
        store.save_pause(
            Pause(
                id=f"p{i:06d}",
                run_id=run_id,
                step="wait",
                step_name="wait",
                kind="WaitForEvent",
                event="shop/order.paid",
                expression=prepared.expression,
                index_path=prepared.index_path,
                index_value=prepared.index_value,
                trigger_event=trigger,
                trigger_event_id=f"t{i}",
                expires_at=NOW + 60_000,
                created_at=NOW,
            )
        )
    settings = Settings(redis_url=redis_url)
    queue = Queue(store, NullSender(), settings)
    yield Runner(store, queue, Registry(store), settings), store
    store.close()


def _count_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = expressions.evaluate

    def counting(expr: str, variables: dict[str, JSON]) -> bool:
        calls.append(expr)
        return real(expr, variables)

    monkeypatch.setattr(expressions, "evaluate", counting)
    return calls


def _deliver(runner: Runner, store: Store, event_id: str, data: dict[str, JSON]) -> None:
    event: dict[str, JSON] = {
        "name": "shop/order.paid",
        "data": data,
        "id": event_id,
        "ts": NOW,
        "user": {},
    }
    store.store_event(event, event_id, NOW + 1_000, 60_000)
    runner.process_event(event_id, NOW + 1_000)


def test_one_event_evaluates_only_its_candidates(
    loaded: tuple[Runner, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store = loaded
    calls = _count_evaluations(monkeypatch)
    _deliver(runner, store, "e1", {"order_id": "o-1242", "paid": True})
    assert len(calls) == 1
    state = store.load_run("r001242")
    assert state is not None
    memo = state.steps["wait"]
    assert isinstance(memo, dict)
    assert memo["data"] == {"order_id": "o-1242", "paid": True}
    assert store.get_pause("p001242") is None
    assert store.count_pauses() == PENDING - 1
    assert store.begin_job("r001242:resume:wait", "t", NOW, 1000) != "gone"


def test_non_matching_values_evaluate_nothing(
    loaded: tuple[Runner, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store = loaded
    calls = _count_evaluations(monkeypatch)
    _deliver(runner, store, "e2", {"order_id": "o-unknown", "paid": True})
    _deliver(runner, store, "e3", {"paid": True})  # no order_id at all
    assert calls == []


def test_candidate_that_fails_the_rest_of_the_expression_stays(
    loaded: tuple[Runner, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store = loaded
    calls = _count_evaluations(monkeypatch)
    _deliver(runner, store, "e4", {"order_id": "o-7", "paid": False})
    assert len(calls) == 1
    assert store.get_pause("p000007") is not None
