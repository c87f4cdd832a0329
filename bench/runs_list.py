"""Latency of `GET /v1/runs` over 100,000 runs in Redis: each filter reads one Redis index
(and the history store, empty here: `bench.history_runs_list` fills it with 1,000,000).

    BENCH_REDIS_URL=redis://127.0.0.1:6379/14 python -m bench.runs_list [--runs 100000]

Creates the runs directly through the store (pipelined `create_run`, 20 functions, one a
millisecond), starts 10% and ends 10% of them, then times the list endpoint (Flask test
client, so HTTP parsing is included but not the network) for each kind of query: no filter,
by function, by status, by both, a time window, and page 50 of a cursor walk. Prints the
median and p95 of each in ms. Target (issue #5): < 100 ms. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from app.api import create_app
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.state.store import NewRun
from bench.harness import REDIS_URL, flush

T0 = 1_700_000_000_000
FUNCTIONS = 20
CHUNK = 2_000


class NoSender:
    def send_task(self, name: str, args: object = None, **options: object) -> None:
        return None


def seed(engine: Engine, runs: int) -> None:
    store = engine.store
    event = [{"name": "bench/run", "data": {}, "id": "", "ts": T0, "user": {}}]
    started = time.perf_counter()
    for base in range(0, runs, CHUNK):
        batch = [
            NewRun(
                run_id=f"run{i:08d}",
                function_id=f"bench-f{i % FUNCTIONS}",
                events=event,
                event_ids=[],
                created_at=T0 + i,
            )
            for i in range(base, min(base + CHUNK, runs))
        ]
        store.create_runs(batch)
    created = time.perf_counter() - started
    for i in range(0, runs, 10):
        store.mark_started(f"run{i:08d}", T0 + runs)
    for i in range(5, runs, 10):
        store.finish_run(f"run{i:08d}", "Completed", None, None, T0 + runs)
    print(f"seeded {runs} runs in {time.perf_counter() - started:.1f}s ({created:.1f}s pipelined)")


def timed(client: object, url: str, repeat: int) -> tuple[float, float, int]:
    samples = []
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.get_json()
        count = len(response.get_json()["data"])
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], count


def walk(client: object, pages: int) -> str:
    cursor = ""
    for _ in range(pages):
        body = client.get(f"/v1/runs?limit=100{cursor}").get_json()  # type: ignore[attr-defined]
        cursor = f"&cursor={body['metadata']['next_cursor']}"
    return cursor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    options = parser.parse_args()
    flush()
    history = f"sqlite:///{tempfile.mkdtemp(prefix='stepline-bench-')}/history.db"
    engine = Engine.create(
        Settings(redis_url=REDIS_URL, key_prefix="bench", history_url=history),
        sender=NoSender(),
        local=FunctionSet(),
    )
    seed(engine, options.runs)
    app = create_app(engine)
    client = app.test_client()
    middle = T0 + options.runs // 2
    queries = {
        "newest 100": "/v1/runs?limit=100",
        "function": "/v1/runs?limit=100&function_id=bench-f7",
        "status Running": "/v1/runs?limit=100&status=Running",
        "status Queued + function": "/v1/runs?limit=100&status=Queued&function_id=bench-f3",
        "time window": f"/v1/runs?limit=100&after={middle - 5_000}&before={middle}",
        "page 50 (cursor)": "/v1/runs?limit=100" + walk(client, 49),
    }
    print(f"GET /v1/runs over {options.runs} runs, {options.repeat} requests each (ms)")
    print(f"{'query':28} {'median':>8} {'p95':>8} {'rows':>5}")
    worst = 0.0
    for name, url in queries.items():
        med, p95, rows = timed(client, url, options.repeat)
        worst = max(worst, p95)
        print(f"{name:28} {med:8.2f} {p95:8.2f} {rows:5d}")
    print(f"worst p95 {worst:.2f} ms (target < 100 ms): {'ok' if worst < 100 else 'SLOW'}")
    engine.store.close()
    flush()


if __name__ == "__main__":
    main()
