"""How late sleeps wake up: 50 runs sleeping 2 s (Stepline) beside 50 bare Celery ETA tasks.

    python -m bench.timers

Stepline's lateness is the time from a sleep's due time to the start of the step after it
(from the run history); Celery's is the time from a task's ETA to its start. Short sleeps
like these ride Celery ETAs too; sleeps longer than STEPLINE_ETA_MAX_SECONDS wait in the Redis
timer set, released by beat, so this also runs with that threshold at 1 s.
Target (issue #2): a sleep wakes within 1 s of its due time.
"""

from __future__ import annotations

import statistics
import time

from bench.harness import REDIS_URL, flush, wait_until, worker

N = 50
SLEEP_MS = 2000


def bare() -> list[int]:
    from bench.bare_celery import timer

    client = flush()
    due = int(time.time() * 1000) + SLEEP_MS
    for _ in range(N):
        timer.apply_async(args=[due], countdown=SLEEP_MS / 1000)
    wait_until(lambda: int(client.llen("bare:lateness")) >= N)
    return [int(x) for x in client.lrange("bare:lateness", 0, -1)]


def stepline() -> list[int]:
    from app.config import Settings
    from app.engine import Engine
    from app.functions import load_functions

    flush()
    settings = Settings.from_env().replace(redis_url=REDIS_URL)
    engine = Engine.create(settings, local=load_functions(["bench.functions"]))
    ids = engine.runner.ingest(
        [{"name": "bench/nap", "data": {"ms": SLEEP_MS}} for _ in range(N)], engine.now()
    )
    late: list[int] = []

    def done() -> bool:
        late.clear()
        for event_id in ids:
            for run_id in engine.store.event_run_ids(event_id):
                view = engine.store.get_run(run_id)
                if view is None or view.status != "Completed":
                    time.sleep(0.05)
                    return False
                steps = {s["name"]: s for s in view.steps}
                late.append(int(steps["woke"]["started_at"]) - int(steps["nap"]["due_at"]))
        return len(late) == N

    wait_until(done)
    return late


def pct(values: list[int], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    with worker("bench.bare_celery", "bare"):
        b = bare()
    env = {"STEPLINE_FUNCTIONS": "bench.functions"}
    with worker("tasks", "stepline", extra_env=env, beat=True):
        s_eta = stepline()
    with worker("tasks", "stepline", extra_env={**env, "STEPLINE_ETA_MAX_SECONDS": "1"}, beat=True):
        s_timer = stepline()
    for label, values in (
        ("bare Celery ETA", b),
        ("Stepline (ETA)", s_eta),
        ("Stepline (Redis timers + beat)", s_timer),
    ):
        print(
            f"{label:32s} lateness p50 {pct(values, 50):6.0f} ms   p99 {pct(values, 99):6.0f} ms"
            f"   max {max(values):6d} ms"
        )


if __name__ == "__main__":
    main()
