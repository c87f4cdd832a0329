"""Fixtures for the history store tests: each test runs against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.history.records import ArchivedRun, ArchivedStep
from app.history.store import HistoryStore, open_history

T0 = 1_700_000_000_000


@pytest.fixture
def history(history_url: str) -> Iterator[HistoryStore]:
    store = open_history(history_url)
    yield store
    store.close()


def archived(run_id: str = "01RUN", **kw: Any) -> ArchivedRun:
    """A finished run of two steps: a step.run memoized first, and a sleep."""
    fields: dict[str, Any] = {
        "run_id": run_id,
        "function_id": "app-fn",
        "status": "Completed",
        "created_at": T0,
        "started_at": T0 + 5,
        "ended_at": T0 + 50,
        "event_ids": ["01EVT"],
        "events": [{"name": "app/go", "data": {"n": 1}, "id": "", "ts": T0, "user": {}}],
        "output": {"total": 3},
        "steps": [
            ArchivedStep(
                "s1hash",
                {
                    "id": "s1hash",
                    "name": "charge",
                    "kind": "StepRun",
                    "status": "Completed",
                    "attempts": 1,
                    "started_at": T0 + 6,
                    "ended_at": T0 + 9,
                    "order": 0,
                },
                memoized=True,
                memo={"data": 3},
                stack_index=0,
            ),
            ArchivedStep(
                "s2hash",
                {
                    "id": "s2hash",
                    "name": "nap",
                    "kind": "Sleep",
                    "status": "Completed",
                    "attempts": 0,
                    "due_at": T0 + 40,
                    "order": 1,
                },
                memoized=True,
                memo=None,
                stack_index=1,
            ),
        ],
    }
    fields.update(kw)
    return ArchivedRun(**fields)
