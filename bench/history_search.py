"""Latency of search (`GET /v1/runs?filter=`, `GET /v1/events?name=&filter=`) over 1,000,000
archived runs and 1,000,000 archived events, each kind of filter, next to the unfiltered list.

    BENCH_HISTORY_URL=postgresql://postgres@127.0.0.1:5432/stepline_bench \\
        python -m bench.history_search [--runs 1000000] [--no-load]
    BENCH_HISTORY_URL=sqlite:////tmp/bench-search.db python -m bench.history_search

Bulk-loads rows straight into the tables as `bench/history_runs_list.py` does (PostgreSQL:
COPY, then the migration's GIN indexes are there; SQLite: executemany), with varied trigger
data: 1,000 customers, 5 regions, amounts 0..996; 80% Completed (output {"n": i}), 15% Failed
(error "boom <i % 50>"), 5% Cancelled. Redis (BENCH_REDIS_URL) holds 100 live runs, so each
request merges both stores as in production. Times each request through the Flask test client
and prints median and p95 (ms), rows answered and whether the page was partial. Target (issue
#14): p95 < 200 ms. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from app.history.schema import events, runs
from app.state.store import NewRun
from bench.history_runs_list import Loaded, bulk_load, status_of, timed

HISTORY_URL = os.environ.get(
    "BENCH_HISTORY_URL", "postgresql://postgres@127.0.0.1:5432/stepline_bench"
)
T0 = 1_700_000_000_000
FUNCTIONS = 20
CHUNK = 50_000
REGIONS = ("eu", "us", "apac", "latam", "mea")


def event_of(i: int) -> dict[str, Any]:
    return {
        "name": f"shop/{'order' if i % 4 else 'refund'}",
        "data": {"n": i, "customer": f"c{i % 1000}", "region": REGIONS[i % 5], "amount": i % 997},
        "id": "",
        "ts": T0 + i,
        "user": {},
    }


def run_row(i: int) -> dict[str, Any]:
    created, status = T0 + i, status_of(i)
    return {
        "run_id": f"run{i:08d}",
        "function_id": f"bench-f{i % FUNCTIONS}",
        "status": status,
        "created_at": created,
        "started_at": created + 1,
        "ended_at": created + 50,
        "event_ids": [f"evt{i:08d}"],
        "events": [event_of(i)],
        "output": {"n": i} if status == "Completed" else None,
        "error": {"name": "Error", "message": f"boom {i % 50}"} if status == "Failed" else None,
        "original_run_id": None,
        "correlation_id": None,
        "archived_at": created + 60,
    }


def event_row(i: int) -> dict[str, Any]:
    event = event_of(i)
    return {
        "internal_id": f"evt{i:08d}",
        "name": event["name"],
        "event_id": None,
        "received_at": T0 + i,
        "ts": T0 + i,
        "event": event,
    }


def load(engine: sa.Engine, count: int) -> None:
    bulk_load(engine, count, [(runs, run_row), (events, event_row)])


def runs_url(expr: str, extra: str = "") -> str:
    return f"/v1/runs?limit=100&filter={quote(expr)}{extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-load", action="store_true", help="reuse the rows already there")
    options = parser.parse_args()
    loaded = Loaded(
        options.runs,
        options.no_load,
        load,
        lambda i: NewRun(
            run_id=f"live{i:04d}",
            function_id=f"bench-f{i % FUNCTIONS}",
            events=[event_of(options.runs + i)],
            event_ids=[],
            created_at=T0 + options.runs + i,
        ),
    )
    client, engine = loaded.client, loaded.engine
    old = f"{T0 + 200_000}"  # a window of 100,000 runs, 80% of the table ago
    queries = {
        "no filter (baseline)": "/v1/runs?limit=100",
        "filter: true": runs_url("true"),
        "customer == (1 in 1000)": runs_url('event.data.customer == "c42"'),
        "region == (1 in 5)": runs_url('event.data.region == "eu"'),
        "amount > 900": runs_url("event.data.amount > 900"),
        "amount > 900 && status": runs_url('event.data.amount > 900 && status == "Completed"'),
        "amount >= 995 (rare range)": runs_url("event.data.amount >= 995"),
        "event.name ==": runs_url('event.name == "shop/refund"'),
        "status == (CEL)": runs_url('status == "Cancelled"'),
        "function_id == (CEL)": runs_url('function_id == "bench-f7"'),
        "status && function (CEL)": runs_url('status == "Cancelled" && function_id == "bench-f3"'),
        "time range (CEL)": runs_url(
            f"created_at >= {T0 + 200_000} && created_at < {T0 + 300_000}"
        ),
        "time range (params) + data": runs_url(
            'event.data.customer == "c42"', f"&after={old}&before={T0 + 300_000}"
        ),
        "error == (1 in 100)": runs_url('error.message == "boom 20"'),
        "error contains (1 in 20)": runs_url('error.message.contains("boom 2")'),
        "error contains (none)": runs_url('error.message.contains("boom 7")'),
        "in + startsWith": runs_url(
            'event.data.region in ["eu", "us"] && event.data.customer.startsWith("c99")'
        ),
        "no match at all": runs_url('event.data.customer == "nobody"'),
        "customer == + function": runs_url('event.data.customer == "c42"', "&function_id=bench-f2"),
        "output.n == (one run)": runs_url("output.n == 500005"),
        "output.n > (range)": runs_url(f"output.n > {options.runs - 2_000}"),
        "CEL only: n % 1000 == 0": runs_url("event.data.n % 1000 == 0"),
        "events: name": "/v1/events?limit=100&name=shop/refund",
        "events: name + filter": "/v1/events?limit=100&name=shop/order&filter="
        + quote('event.data.customer == "c42"'),
        "events: name + range": "/v1/events?limit=100&name=shop/order&filter="
        + quote("event.data.amount > 900"),
        "events: name == (CEL) + data": "/v1/events?limit=100&filter="
        + quote('event.name == "shop/refund" && event.data.region == "eu"'),
        "events: time range (CEL)": "/v1/events?limit=100&filter="
        + quote(f"received_at >= {T0 + 200_000} && received_at < {T0 + 300_000}"),
    }
    print(
        f"search over {options.runs} archived runs and events ({engine.dialect.name}) "
        f"+ 100 live runs, {options.repeat} requests each (ms)"
    )
    print(f"{'query':30} {'median':>8} {'p95':>8} {'rows':>5} {'partial':>8}")
    worst = 0.0
    baseline = 0.0
    for name, url in queries.items():
        med, p95, body = timed(client, url, options.repeat)
        rows, partial = len(body["data"]), bool(body["metadata"].get("partial"))
        baseline = baseline or med
        worst = max(worst, p95)
        print(
            f"{name:30} {med:8.2f} {p95:8.2f} {rows:5d} {partial!s:>8}"
            f"   x{med / baseline:5.1f} baseline"
        )
    print(f"worst p95 {worst:.2f} ms (target < 200 ms): {'ok' if worst < 200 else 'SLOW'}")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    loaded.close()


if __name__ == "__main__":
    main()
