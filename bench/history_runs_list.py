"""Latency of `GET /v1/runs` with 1,000,000 archived runs in the history store, each filter.

    BENCH_HISTORY_URL=postgresql://postgres@127.0.0.1:5432/stepline_bench \\
        python -m bench.history_runs_list [--runs 1000000]

Bulk-loads the rows straight into the `runs` table (PostgreSQL: COPY; SQLite: executemany),
not through the engine: 20 functions, one run a millisecond, 80% Completed, 15% Failed, 5%
Cancelled. Redis (BENCH_REDIS_URL) holds a few live runs, so every request merges both
stores as in production. Then times the list endpoint (Flask test client: HTTP parsing
included, not the network) for each kind of query and prints the median and p95 in ms.
Target (issue #13): p95 < 100 ms. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import sqlalchemy as sa

from app.api import create_app
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.history.schema import metadata, runs
from app.history.store import normalize_url, open_history
from app.state.store import NewRun
from bench.harness import REDIS_URL, flush

HISTORY_URL = os.environ.get(
    "BENCH_HISTORY_URL", "postgresql://postgres@127.0.0.1:5432/stepline_bench"
)
T0 = 1_700_000_000_000
FUNCTIONS = 20
CHUNK = 50_000
EVENT = json.dumps([{"name": "bench/run", "data": {"n": 1}, "id": "", "ts": T0, "user": {}}])


class NoSender:
    def send_task(self, name: str, args: object = None, **options: object) -> None:
        return None


def status_of(i: int) -> str:
    r = i % 20
    return "Failed" if r < 3 else "Cancelled" if r == 3 else "Completed"


def row(i: int) -> tuple[Any, ...]:
    created = T0 + i
    output = "null" if status_of(i) != "Completed" else json.dumps({"n": i})
    error = (
        json.dumps({"name": "Error", "message": f"boom {i}"}) if status_of(i) == "Failed" else None
    )
    return (
        f"run{i:08d}",
        f"bench-f{i % FUNCTIONS}",
        status_of(i),
        created,
        created + 1,
        created + 50,
        json.dumps([f"evt{i:08d}"]),
        EVENT,
        output,
        error,
        None,
        None,
        created + 60,
    )


COLUMNS = [c.name for c in runs.columns]


def load(engine: sa.Engine, count: int) -> None:
    started = time.perf_counter()
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(f"COPY runs ({', '.join(COLUMNS)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for i in range(count):
                    copy.write_row(row(i))
            raw.commit()
            cursor.execute("ANALYZE runs")
            raw.commit()
        finally:
            raw.close()
    else:
        insert = sa.insert(runs)
        with engine.begin() as connection:
            for base in range(0, count, CHUNK):
                connection.execute(
                    insert,
                    [
                        dict(zip(COLUMNS, _decoded(row(i)), strict=True))
                        for i in range(base, min(base + CHUNK, count))
                    ],
                )
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        with engine.connect() as connection:  # fold the load's write-ahead log into the file
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"loaded {count} runs into {engine.dialect.name} in {time.perf_counter() - started:.1f}s")


def _decoded(values: tuple[Any, ...]) -> list[Any]:
    out = list(values)
    for index in (6, 7, 8, 9):
        out[index] = None if out[index] is None else json.loads(out[index])
    return out


def timed(client: Any, url: str, repeat: int) -> tuple[float, float, int]:
    samples, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.get_json()
        rows = len(response.get_json()["data"])
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)], rows


def walk(client: Any, url: str, pages: int) -> str:
    cursor = ""
    for _ in range(pages):
        body = client.get(url + cursor).get_json()
        cursor = f"&cursor={body['metadata']['next_cursor']}"
    return url + cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--no-load", action="store_true", help="reuse the rows already there")
    options = parser.parse_args()
    flush()
    history = open_history(HISTORY_URL)
    history.upgrade()
    engine: sa.Engine = sa.create_engine(normalize_url(HISTORY_URL))
    if not options.no_load:
        load(engine, options.runs)
    app_engine = Engine.create(
        Settings(redis_url=REDIS_URL, key_prefix="bench", history_url=HISTORY_URL),
        sender=NoSender(),
        local=FunctionSet(),
    )
    live = [
        NewRun(
            run_id=f"live{i:04d}",
            function_id=f"bench-f{i % FUNCTIONS}",
            events=[],
            event_ids=[],
            created_at=T0 + options.runs + i,
        )
        for i in range(100)
    ]
    app_engine.store.create_runs(live)
    client = create_app(app_engine).test_client()
    middle = T0 + options.runs // 2
    queries = {
        "newest 100": "/v1/runs?limit=100",
        "function": "/v1/runs?limit=100&function_id=bench-f7",
        "status Failed": "/v1/runs?limit=100&status=Failed",
        "status Cancelled + function": "/v1/runs?limit=100&status=Cancelled&function_id=bench-f3",
        "status Queued (live only)": "/v1/runs?limit=100&status=Queued",
        "time window": f"/v1/runs?limit=100&after={middle - 5_000}&before={middle}",
        "old time window + function": (
            f"/v1/runs?limit=100&function_id=bench-f9&after={T0 + 1000}&before={T0 + 60_000}"
        ),
        "page 50 (cursor)": walk(client, "/v1/runs?limit=100", 49),
        "page 50, status Failed": walk(client, "/v1/runs?limit=100&status=Failed", 49),
    }
    print(
        f"GET /v1/runs over {options.runs} archived runs ({engine.dialect.name}) "
        f"+ 100 live, {options.repeat} requests each (ms)"
    )
    print(f"{'query':30} {'median':>8} {'p95':>8} {'rows':>5}")
    worst = 0.0
    for name, url in queries.items():
        med, p95, rows = timed(client, url, options.repeat)
        worst = max(worst, p95)
        print(f"{name:30} {med:8.2f} {p95:8.2f} {rows:5d}")
    print(f"worst p95 {worst:.2f} ms (target < 100 ms): {'ok' if worst < 100 else 'SLOW'}")
    app_engine.store.close()
    history.close()
    engine.dispose()
    flush()


if __name__ == "__main__":
    main()
