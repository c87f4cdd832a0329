"""Pause matching at scale, without Redis: 100,000 pending indexed pauses, one event.

The store here is an in-memory stand-in honouring the `Store` contract for the calls the runner
makes while matching (`find_pauses` never scans indexed pauses). What is under test is that
the runner asks for the event's own index values and evaluates only those candidates.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from app import expressions
from app.config import Settings
from app.expressions import canonical_json, prepare_pause
from app.models import JSON, Job, Pause
from app.queue import Queue
from app.registry import Registry
from app.runner import Runner
from app.state.store import ConsumeResult, EventRecord, Store

NOW = 1_700_000_000_000
PENDING = 100_000
EXPRESSION = "event.data.order_id == async.data.order_id && async.data.paid == true"


class MemoryStore(Store):
    """Just enough of the store for `Runner.process_event`."""

    def __init__(self) -> None:
        self.events: dict[str, EventRecord] = {}
        self.pauses: dict[str, Pause] = {}
        self.index: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.paths: dict[str, set[str]] = defaultdict(set)
        self.scan: dict[str, set[str]] = defaultdict(set)
        self.memos: dict[tuple[str, str], JSON] = {}
        self.jobs: dict[str, Job] = {}

    def add_pause(self, pause: Pause) -> None:
        self.pauses[pause.id] = pause
        if pause.index_path and pause.index_value is not None:
            self.index[(pause.event, pause.index_path, pause.index_value)].add(pause.id)
            self.paths[pause.event].add(pause.index_path)
        else:
            self.scan[pause.event].add(pause.id)

    def registry_version(self) -> int:
        return 0

    def list_functions(self) -> list[Any]:
        return []

    def store_event(
        self, event: dict[str, JSON], internal_id: str, now: int, dedupe_ttl_ms: int
    ) -> tuple[str, bool]:
        self.events[internal_id] = EventRecord(internal_id, now, event)
        return internal_id, True

    def get_event(self, internal_id: str) -> EventRecord | None:
        return self.events.get(internal_id)

    def pause_index_paths(self, event_name: str) -> list[str]:
        return sorted(self.paths[event_name])

    def find_pauses(
        self, event_name: str, lookups: list[tuple[str, str]], limit: int = 1000
    ) -> list[Pause]:
        ids: set[str] = set(self.scan[event_name])
        for path, value in lookups:
            ids |= self.index.get((event_name, path, value), set())
        return [self.pauses[i] for i in sorted(ids)][:limit]

    def consume_pause(
        self, pause_id: str, memo: JSON, now: int, resume: Job | None = None, send_by: int = 0
    ) -> ConsumeResult:
        pause = self.pauses.pop(pause_id, None)
        if pause is None:
            return ConsumeResult(False, None)
        assert pause.index_path is not None and pause.index_value is not None
        self.index[(pause.event, pause.index_path, pause.index_value)].discard(pause_id)
        self.memos[(pause.run_id, pause.step)] = memo
        resumed = resume is not None and self.enqueue_job(resume, now, send_by)
        return ConsumeResult(True, pause, 0, resumed)

    def record_step(self, run_id: str, step: str, info: dict[str, JSON]) -> None:
        return None

    def enqueue_job(self, job: Job, due_at: int, send_by: int) -> bool:
        created = job.id not in self.jobs
        self.jobs.setdefault(job.id, job)
        return created


class NullSender:
    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        return None


@pytest.fixture(scope="module")
def loaded() -> tuple[Runner, MemoryStore]:
    store = MemoryStore()
    template = prepare_pause(EXPRESSION, {"data": {"order_id": "o-0"}})
    assert template.index_path == "async.data.order_id"
    for i in range(PENDING):
        # What prepare_pause gives for trigger order o-<i> (checked for one below), built
        # directly: compiling 100,000 distinct expressions is not what this test measures.
        store.add_pause(
            Pause(
                id=f"p{i:06d}",
                run_id=f"r{i:06d}",
                step="wait",
                step_name="wait",
                kind="WaitForEvent",
                event="shop/order.paid",
                expression=f'"o-{i}" == async.data.order_id && async.data.paid == true',
                index_path="async.data.order_id",
                index_value=canonical_json(f"o-{i}"),
                trigger_event={"data": {"order_id": f"o-{i}"}},
                trigger_event_id=f"t{i}",
                expires_at=NOW + 60_000,
                created_at=NOW,
            )
        )
    sample = prepare_pause(EXPRESSION, {"data": {"order_id": "o-77"}})
    assert (sample.expression, sample.index_value) == (
        store.pauses["p000077"].expression,
        store.pauses["p000077"].index_value,
    )
    settings = Settings()
    queue = Queue(store, NullSender(), settings)
    return Runner(store, queue, Registry(store), settings), store


def _count_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = expressions.evaluate

    def counting(expr: str, variables: dict[str, JSON]) -> bool:
        calls.append(expr)
        return real(expr, variables)

    monkeypatch.setattr(expressions, "evaluate", counting)
    return calls


def _deliver(runner: Runner, store: MemoryStore, event_id: str, data: dict[str, JSON]) -> None:
    event: dict[str, JSON] = {
        "name": "shop/order.paid",
        "data": data,
        "id": event_id,
        "ts": NOW,
        "user": {},
    }
    store.store_event(event, event_id, NOW + 1_000, 0)
    runner.process_event(event_id, NOW + 1_000)


def test_one_event_evaluates_only_its_candidates(
    loaded: tuple[Runner, MemoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store = loaded
    calls = _count_evaluations(monkeypatch)
    _deliver(runner, store, "e1", {"order_id": "o-4242", "paid": True})
    assert len(calls) == 1
    memo = store.memos[("r004242", "wait")]
    assert isinstance(memo, dict)
    assert memo["data"] == {"order_id": "o-4242", "paid": True}
    assert "p004242" not in store.pauses
    assert len(store.pauses) == PENDING - 1
    assert "r004242:resume:wait" in store.jobs


def test_non_matching_values_evaluate_nothing(
    loaded: tuple[Runner, MemoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store = loaded
    calls = _count_evaluations(monkeypatch)
    _deliver(runner, store, "e2", {"order_id": "o-unknown", "paid": True})
    _deliver(runner, store, "e3", {"paid": True})  # no order_id at all
    assert calls == []


def test_candidate_that_fails_the_rest_of_the_expression_stays(
    loaded: tuple[Runner, MemoryStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, store = loaded
    calls = _count_evaluations(monkeypatch)
    _deliver(runner, store, "e4", {"order_id": "o-7", "paid": False})
    assert len(calls) == 1
    assert "p000007" in store.pauses
