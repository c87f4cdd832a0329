"""Matching an event against many pending waits: 100 vs 100,000 indexed pauses.

    python -m bench.pauses [--pauses 100000]

Each pause waits for `bench/paid` with `event.data.order == async.data.order`, a different
order per run. Prints the time to process one matching event (find candidates through the
equality index, evaluate, consume) at both sizes; with the index it does not grow with the
number of pending pauses.
"""

from __future__ import annotations

import argparse
import time

from bench.harness import REDIS_URL, flush


def setup(count: int):  # type: ignore[no-untyped-def]
    from app import expressions
    from app.config import Settings
    from app.engine import Engine
    from app.executor import pause_id
    from app.functions import FunctionSet
    from app.models import Pause
    from app.state.store import NewRun

    flush()
    settings = Settings.from_env().replace(redis_url=REDIS_URL)
    engine = Engine.create(settings, sender=_NoSend(), local=FunctionSet())
    now = engine.now()
    for i in range(count):
        run_id = f"01BENCHRUN{i:016d}"
        trigger = {"name": "bench/order", "data": {"order": f"o{i}"}, "id": f"e{i}", "ts": now}
        engine.store.create_run(
            NewRun(
                run_id=run_id,
                function_id="bench-wait",
                events=[trigger],
                event_ids=[f"e{i}"],
                created_at=now,
            )
        )
        engine.store.mark_started(run_id, now)
        prepared = expressions.prepare_pause("event.data.order == async.data.order", trigger)
        engine.store.save_pause(
            Pause(
                id=pause_id(run_id, "wait"),
                run_id=run_id,
                step="wait",
                step_name="wait",
                kind="WaitForEvent",
                event="bench/paid",
                expression=prepared.expression,
                index_path=prepared.index_path,
                index_value=prepared.index_value,
                trigger_event=trigger,
                expires_at=now + 3_600_000,
                created_at=now,
            )
        )
    return engine


class _NoSend:
    """The benchmark measures matching; resumed runs' jobs are recorded, not sent."""

    def send_task(self, name: str, args: object = None, **options: object) -> None:
        return None


def measure(engine, count: int, samples: int = 50) -> float:  # type: ignore[no-untyped-def]
    timings = []
    for k in range(samples):
        order = f"o{(k * 7919) % count}"
        [event_id] = engine.runner.ingest(
            [{"name": "bench/paid", "data": {"order": order}}], engine.now()
        )
        start = time.perf_counter()
        engine.runner.process_event(event_id, engine.now())
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return timings[len(timings) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pauses", type=int, default=100_000)
    args = parser.parse_args()
    for count in (100, args.pauses):
        engine = setup(count)
        pending = engine.store.count_pauses()
        print(
            f"{pending:7d} pending pauses: {measure(engine, count):6.2f} ms per matching event"
            f" (median of 50)"
        )


if __name__ == "__main__":
    main()
