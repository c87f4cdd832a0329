"""`GET /v1/workers`: who is alive to run jobs, and whether the queue is moving.

    data.workers   every worker heard from in the last hour: host, pid, pool, concurrency,
                   queues, the jobs it runs now, its last heartbeat and whether it is alive
    data.beat      beat's last tick, alive or not
    data.queue     jobs queued (timers included), held by a worker, overdue (their send-by
                   time passed: nobody started them), and how long the oldest has been overdue;
                   `queues`: each Celery queue's jobs waiting for a worker (due, nobody holds
                   them) and the oldest one's age, from our job records (app/state/diagnosis.py
                   `waiting`; Celery's lists carry no times)
    data.warnings  what stops runs: no live worker, beat silent, overdue jobs with no worker

Read from the heartbeats (app/liveness.py) and the job records (app/state/diagnosis.py); the
Workers page of the UI polls it.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify

from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.runs import iso
from app.liveness import liveness
from app.models import JSON, Job
from app.state.diagnosis import Diagnosis, Waiting

bp = Blueprint("workers", __name__)


@bp.get("/v1/workers")
@requires(Access.OPERATOR)
def list_workers() -> Response:
    engine = current_engine()
    now = engine.now()
    live = liveness(engine.store, now)
    diagnosis = Diagnosis(engine.store)
    stats = diagnosis.queue_stats(now)
    waiting = diagnosis.waiting(now, int(engine.settings.redeliver_seconds * 1000))
    body: dict[str, JSON] = live.to_json()
    warnings = list(live.problems())
    if stats.overdue and live.workers_alive == 0:
        warnings.append(f"{stats.overdue} jobs are overdue and no worker is alive to run them")
    oldest = stats.oldest_overdue_at
    body["queue"] = {
        "jobs": stats.jobs,
        "held": stats.leased,
        "overdue": stats.overdue,
        "oldest_overdue_at": iso(oldest),
        "oldest_overdue_seconds": None if oldest is None else (now - oldest) / 1000,
        "queues": _queues(waiting, engine.queue.names(), engine.queue.queue_of, now),
    }
    body["warnings"] = warnings
    body["fetched_at"] = iso(now)
    return jsonify({"data": body})


def _queues(
    waiting: Waiting, names: list[str], queue_of: Callable[[Job], str], now: int
) -> list[JSON]:
    """Per Celery queue: how many jobs wait for a worker, and since when the oldest does."""
    oldest: dict[str, int] = {}
    counts = dict.fromkeys(names, 0)
    for item in waiting.jobs:  # oldest first
        name = queue_of(item.job)
        counts[name] = counts.get(name, 0) + 1
        oldest.setdefault(name, item.since)
    return [
        {
            "name": name,
            "waiting": count,
            "complete": waiting.complete,
            "oldest_waiting_at": iso(oldest.get(name)),
            "oldest_waiting_seconds": (
                None if name not in oldest else max(0, now - oldest[name]) / 1000
            ),
        }
        for name, count in counts.items()
    ]
