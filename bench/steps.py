"""Steps/s and per-step overhead of in-process runs, beside bare Celery hops, in one run.

    python bench/steps.py [--repeat 3]

Prints, as medians over the repeats:
- bare Celery: hops/s of 50 concurrent chains x 10 tasks that each enqueue their successor,
  and ms per hop of one chain of 100;
- Stepline: steps/s of 50 concurrent runs x 10 steps, and ms per step of one run of 100
  steps (run start to end, from the run record);
- the ratios. Targets (issue #2): steps/s >= 2x the bare hop rate; < 1 ms per step.
"""

from __future__ import annotations

import argparse
import time

from bench.harness import all_completed, bench_engine, flush, median, wait_until, worker


def bare_concurrent(chains: int, hops: int) -> float:
    from bench.bare_celery import hop

    client = flush()
    start = time.perf_counter()
    for c in range(chains):
        hop.delay(f"c{c}", hops)
    wait_until(lambda: int(client.get("bare:done") or 0) >= chains)
    return chains * hops / (time.perf_counter() - start)


def bare_sequential(hops: int) -> float:
    from bench.bare_celery import hop

    client = flush()
    start = time.perf_counter()
    hop.delay("seq", hops)
    wait_until(lambda: int(client.get("bare:done") or 0) >= 1)
    return (time.perf_counter() - start) * 1000 / hops


def stepline_concurrent(runs: int, steps: int) -> float:
    flush()
    engine = bench_engine(["bench.functions"])
    start = time.perf_counter()
    ids = engine.runner.ingest(
        [{"name": "bench/steps", "data": {"n": steps}} for _ in range(runs)], engine.now()
    )

    wait_until(lambda: all_completed(engine, ids))
    return runs * steps / (time.perf_counter() - start)


def stepline_sequential(steps: int) -> tuple[float, float]:
    flush()
    engine = bench_engine(["bench.functions"])
    start = time.perf_counter()
    [event_id] = engine.runner.ingest([{"name": "bench/steps", "data": {"n": steps}}], engine.now())
    holder: dict[str, object] = {}

    def done() -> bool:
        for run_id in engine.store.event_run_ids(event_id):
            view = engine.store.get_run(run_id)
            if view is not None and view.status == "Completed":
                holder["view"] = view
                return True
        return False

    wait_until(done)
    wall = (time.perf_counter() - start) * 1000 / steps
    view = holder["view"]
    inside = (view.ended_at - view.started_at) / steps  # type: ignore[attr-defined]
    return inside, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bare_rate, bare_hop, sl_rate, sl_step, sl_wall = [], [], [], [], []
    with worker("bench.bare_celery", "bare"):
        for _ in range(args.repeat):
            bare_rate.append(bare_concurrent(50, 10))
            bare_hop.append(bare_sequential(100))
    with worker(
        "tasks", "stepline", extra_env={"STEPLINE_FUNCTIONS": "bench.functions"}, beat=True
    ):
        for _ in range(args.repeat):
            sl_rate.append(stepline_concurrent(50, 10))
            inside, wall = stepline_sequential(100)
            sl_step.append(inside)
            sl_wall.append(wall)
    b_rate, b_hop, s_rate = median(bare_rate), median(bare_hop), median(sl_rate)
    print(f"bare Celery   50 chains x 10 hops : {b_rate:8.0f} hops/s")
    print(f"bare Celery   1 chain x 100 hops  : {b_hop:8.2f} ms/hop")
    print(
        f"Stepline      50 runs x 10 steps  : {s_rate:8.0f} steps/s"
        f"   ratio {s_rate / b_rate:.2f}x bare hops (target >= 2x)"
    )
    print(
        f"Stepline      1 run x 100 steps   : {median(sl_step):8.2f} ms/step inside the run"
        f" (target < 1 ms), {median(sl_wall):.2f} ms/step end to end"
    )


if __name__ == "__main__":
    main()
