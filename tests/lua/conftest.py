"""Fixtures for the script tests: a Store on the test Redis, and small builders."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from app.models import Job, JobKind, Pause
from app.state.scripts import StartAdmit
from app.state.store import NewRun, Store

T0 = 1_700_000_000_000
"""A fixed "now" (ms): time is always a parameter in these tests."""


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    s = Store(redis_url, prefix="sl")
    yield s
    s.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def new_run(run_id: str = "01RUN", function_id: str = "app-fn", **kw: Any) -> NewRun:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "function_id": function_id,
        "events": [{"name": "app/go", "data": {"n": 1}, "id": "", "ts": T0, "user": {}}],
        "event_ids": ["01EVT"],
        "created_at": T0,
    }
    fields.update(kw)
    return NewRun(**fields)


def make_pause(pause_id: str = "p1", run_id: str = "01RUN", **kw: Any) -> Pause:
    fields: dict[str, Any] = {
        "id": pause_id,
        "run_id": run_id,
        "step": f"step-{pause_id}",
        "step_name": "wait",
        "kind": "WaitForEvent",
        "event": "app/paid",
        "expires_at": T0 + 60_000,
        "created_at": T0,
    }
    fields.update(kw)
    return Pause(**fields)


def make_job(job_id: str = "j1", run_id: str = "01RUN", **kw: Any) -> Job:
    return Job(id=job_id, kind=kw.pop("kind", JobKind.EDGE), run_id=run_id, **kw)


@pytest.fixture
def run(store: Store) -> str:
    """A created run (status Queued) with id 01RUN."""
    run_id, created = store.create_run(new_run())
    assert created
    return run_id


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Call fn(0..n-1) from n threads released together; return their results in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


SLOT = "f:app-fn"
"""The one concurrency constraint of `make_admit`."""

THROTTLE: dict[str, Any] = {
    "throttle": "app-fn",
    "interval_ms": 1000,
    "tolerance_ms": 0,
    "slack_ms": 60_000,
    "horizon_ms": 10_000,
    "ticket_slack_ms": 3_600_000,
}
"""A throttle of one start a second (no burst), as `make_admit(**THROTTLE)` takes it."""


def make_admit(limit: int = 1, score: int = T0, **throttle: Any) -> StartAdmit:
    """A start's admission under SLOT (`limit` at a time; `throttle`: StartAdmit's throttle
    fields), as lua/create_run.lua and lua/start_run.lua take it."""
    return StartAdmit(
        score=score,
        constraints=[(SLOT, limit)],
        slot_lease_ms=30_000,
        resend_ms=60_000,
        park_ms=300_000,
        **throttle,
    )
