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
from collections.abc import Callable, Sequence
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
EVENT = [{"name": "bench/run", "data": {"n": 1}, "id": "", "ts": T0, "user": {}}]


class NoSender:
    def send_task(self, name: str, args: object = None, **options: object) -> None:
        return None


def status_of(i: int) -> str:
    r = i % 20
    return "Failed" if r < 3 else "Cancelled" if r == 3 else "Completed"


def run_row(i: int) -> dict[str, Any]:
    created = T0 + i
    status = status_of(i)
    return {
        "run_id": f"run{i:08d}",
        "function_id": f"bench-f{i % FUNCTIONS}",
        "status": status,
        "created_at": created,
        "started_at": created + 1,
        "ended_at": created + 50,
        "event_ids": [f"evt{i:08d}"],
        "events": EVENT,
        "output": {"n": i} if status == "Completed" else None,
        "error": {"name": "Error", "message": f"boom {i}"} if status == "Failed" else None,
        "archived_at": created + 60,
    }


def bulk_load(
    engine: sa.Engine,
    count: int,
    tables: Sequence[tuple[sa.Table, Callable[[int], dict[str, Any]]]],
) -> None:
    """Empty the history tables, then load `count` rows into each table from its maker (a
    column the maker leaves out is NULL): COPY on PostgreSQL, batched inserts on SQLite."""
    started = time.perf_counter()
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    for table, make in tables:
        columns = [c.name for c in table.columns]
        if engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
                with cursor.copy(sql) as copy:  # type: ignore[attr-defined]
                    for i in range(count):
                        row = make(i)
                        copy.write_row(
                            [
                                json.dumps(row.get(c))
                                if isinstance(row.get(c), dict | list)
                                else row.get(c)
                                for c in columns
                            ]
                        )
                raw.commit()
            finally:
                raw.close()
        else:
            with engine.begin() as connection:
                for base in range(0, count, CHUNK):
                    rows = [make(i) for i in range(base, min(base + CHUNK, count))]
                    connection.execute(sa.insert(table), rows)
    if engine.dialect.name == "postgresql":  # what autovacuum does soon after a load
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table, _ in tables:
                connection.exec_driver_sql(f"VACUUM ANALYZE {table.name}")
    if engine.dialect.name == "sqlite":
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    took = time.perf_counter() - started
    names = " and ".join(f"{count} {table.name}" for table, _ in tables)
    print(f"loaded {names} into {engine.dialect.name} in {took:.1f}s")


def load(engine: sa.Engine, count: int) -> None:
    bulk_load(engine, count, [(runs, run_row)])


def timed(client: Any, url: str, repeat: int) -> tuple[float, float, dict[str, Any]]:
    """GET `url` `repeat` times: median and p95 (ms) and the last answer's body."""
    samples: list[float] = []
    body: dict[str, Any] = {}
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)], body


class Loaded:
    """The history store at HISTORY_URL with `runs` rows bulk-loaded by `load` (unless
    `reuse`), and an API over it whose Redis holds 100 live runs made by `live(i)`."""

    def __init__(
        self,
        runs: int,
        reuse: bool,
        load: Callable[[sa.Engine, int], None],
        live: Callable[[int], NewRun],
    ) -> None:
        flush()
        self.history = open_history(HISTORY_URL)
        self.history.upgrade()
        self.engine: sa.Engine = sa.create_engine(normalize_url(HISTORY_URL))
        if not reuse:
            load(self.engine, runs)
        self.app_engine = Engine.create(
            Settings(redis_url=REDIS_URL, key_prefix="bench", history_url=HISTORY_URL),
            sender=NoSender(),
            local=FunctionSet(),
        )
        self.app_engine.store.create_runs([live(i) for i in range(100)])
        self.client = create_app(self.app_engine).test_client()

    def close(self) -> None:
        self.app_engine.store.close()
        self.history.close()
        self.engine.dispose()
        flush()


def walk(client: Any, url: str, pages: int) -> str:
    """The URL of page `pages + 1` of `url` (its last page, when it has fewer)."""
    cursor = ""
    for _ in range(pages):
        after = client.get(url + cursor).get_json()["metadata"]["next_cursor"]
        if after is None:
            break
        cursor = f"&cursor={after}"
    return url + cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--no-load", action="store_true", help="reuse the rows already there")
    options = parser.parse_args()
    loaded = Loaded(
        options.runs,
        options.no_load,
        load,
        lambda i: NewRun(
            run_id=f"live{i:04d}",
            function_id=f"bench-f{i % FUNCTIONS}",
            events=[],
            event_ids=[],
            created_at=T0 + options.runs + i,
        ),
    )
    client, engine = loaded.client, loaded.engine
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
        med, p95, body = timed(client, url, options.repeat)
        rows = len(body["data"])
        worst = max(worst, p95)
        print(f"{name:30} {med:8.2f} {p95:8.2f} {rows:5d}")
    print(f"worst p95 {worst:.2f} ms (target < 100 ms): {'ok' if worst < 100 else 'SLOW'}")
    loaded.close()


if __name__ == "__main__":
    main()
