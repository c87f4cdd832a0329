"""Archive throughput beside run throughput, in one run: can the archiver keep up?

    BENCH_HISTORY_URL=postgresql://postgres@127.0.0.1:5432/stepline_bench \\
        python -m bench.archive [--runs 1000] [--repeat 3]

Prints, as medians (and min-max) over the repeats:
- run rate: runs/s of `--runs` concurrent 3-step in-process runs on a worker (prefork -c 2),
  first without beat (so no ARCHIVE job is ever sent: the archiver is off), then with beat
  (archiving as in production, into the history store) - the cost of archiving to the run path;
- how long after the last run ended the history store had every run (with beat);
- archive rate: runs/s one archiver process moves from Redis to the history store, on a
  backlog of `--backlog` finished 3-step runs (each with its trigger event) made directly in
  Redis, archived in a loop of `Archiver.archive_once`.
The archiver keeps up when its rate is above the fastest run rate. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import sqlalchemy as sa

from app.config import Settings
from app.history.archiver import Archiver
from app.history.schema import metadata
from app.history.schema import runs as runs_table
from app.history.store import open_history
from app.state.archive import ArchiveStore
from app.state.store import NewRun, Store
from bench.harness import REDIS_URL, bench_engine, flush, wait_until, worker

HISTORY_URL = os.environ.get(
    "BENCH_HISTORY_URL", "postgresql://postgres@127.0.0.1:5432/stepline_bench"
)
STEPS = 3


def empty_history() -> None:
    history = open_history(HISTORY_URL)
    history.upgrade()
    with history.engine.begin() as connection:  # type: ignore[attr-defined]
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    history.close()


def archived_count(history: Any) -> int:
    with history.engine.connect() as connection:
        query = sa.select(sa.func.count()).select_from(runs_table)
        return int(connection.execute(query).scalar_one())


def completed(client: Any) -> int:
    """Runs of the benchmark function completed so far: one HGET of the engine's counter, so
    polling costs the workers nothing (reading 1,000 runs' states would)."""
    time.sleep(0.01)
    return int(client.hget("sl:metric:runs_completed_total", "bench-steps") or 0)


def run_rate(runs: int) -> tuple[float, float]:
    """(runs/s, seconds from the last run's end until all were archived; 0 if not waited)."""
    flush()
    empty_history()
    engine = bench_engine(["bench.functions"])
    engine.settings = engine.settings.replace(history_url=HISTORY_URL)
    client = engine.store._client
    start = time.perf_counter()
    engine.runner.ingest(
        [{"name": "bench/steps", "data": {"n": STEPS}} for _ in range(runs)], engine.now()
    )
    wait_until(lambda: completed(client) >= runs, timeout=600)
    ended = time.perf_counter()
    rate = runs / (ended - start)
    history = open_history(HISTORY_URL)
    try:
        if os.environ.get("_BENCH_BEAT") == "1":
            wait_until(lambda: archived_count(history) >= runs, timeout=600)
            return rate, time.perf_counter() - ended
        return rate, 0.0
    finally:
        history.close()


def backlog(store: Store, runs: int) -> None:
    """`runs` finished runs of 3 steps with their trigger events, made directly in Redis."""
    now = int(time.time() * 1000)
    for base in range(0, runs, 1000):
        batch = range(base, min(base + 1000, runs))
        for i in batch:
            event = {"name": "bench/steps", "data": {"n": STEPS}, "id": "", "ts": now, "user": {}}
            store.store_event(event, f"evt{i:07d}", now, 60_000)
        store.create_runs(
            [
                NewRun(f"run{i:07d}", "bench-steps", [event], [f"evt{i:07d}"], now)  # type: ignore[list-item]
                for i in batch
            ]
        )
        for i in batch:
            run_id = f"run{i:07d}"
            store.mark_started(run_id, now)
            for step in range(STEPS):
                info = {
                    "name": f"s{step}",
                    "kind": "StepRun",
                    "status": "Completed",
                    "started_at": now,
                    "ended_at": now,
                    "attempts": 1,
                }
                store.save_step(run_id, f"h{step}", {"data": step}, info, now)
            store.finish_run(run_id, "Completed", STEPS, None, now)


def archive_rate(runs: int) -> float:
    flush()
    empty_history()
    store = Store(REDIS_URL, prefix="sl")
    backlog(store, runs)
    history = open_history(HISTORY_URL)
    archiver = Archiver(ArchiveStore(store), history, Settings(redis_url=REDIS_URL))
    start = time.perf_counter()
    done = 0
    while True:
        moved = archiver.archive_once(int(time.time() * 1000))
        if not moved:
            break
        done += moved
    took = time.perf_counter() - start
    assert archived_count(history) == runs, "not every run was archived"
    history.close()
    store.close()
    return runs / took


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f}  ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = {"STEPLINE_FUNCTIONS": "bench.functions", "STEPLINE_HISTORY_URL": HISTORY_URL}
    off: list[float] = []
    on: list[float] = []
    lag: list[float] = []
    with worker("tasks", "stepline", extra_env=env, beat=False):
        for _ in range(args.repeat):
            off.append(run_rate(args.runs)[0])
    os.environ["_BENCH_BEAT"] = "1"
    with worker("tasks", "stepline", extra_env=env, beat=True):
        for _ in range(args.repeat):
            rate, behind = run_rate(args.runs)
            on.append(rate)
            lag.append(behind)
    rates = [archive_rate(args.backlog) for _ in range(args.repeat)]
    print(f"history store: {open_history(HISTORY_URL).url}")
    print(
        f"run rate, archiver off (no beat)   : {spread(off)} runs/s  ({args.runs} x {STEPS} steps)"
    )
    print(
        f"run rate, archiver on              : {spread(on)} runs/s  "
        f"({statistics.median(on) / statistics.median(off):.2f}x of off)"
    )
    print(
        f"all archived after the last run by : {statistics.median(lag):8.1f} s  "
        f"({min(lag):.1f}-{max(lag):.1f})"
    )
    fastest = max(statistics.median(off), statistics.median(on))
    print(
        f"archive rate, one archiver process : {spread(rates)} runs/s  ({args.backlog} runs "
        f"with events; {statistics.median(rates) / fastest:.1f}x the fastest run rate)"
    )


if __name__ == "__main__":
    main()
