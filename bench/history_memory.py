"""Redis bytes and keys per finished run: right after the runs end, and after the hot window.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/14 python -m bench.history_memory [--runs 1000]

Runs `--runs` in-process runs of 3 steps each (the issue's "completed 3-step run") on a real
worker and beat, then measures what the finished runs cost Redis: the growth of `used_memory`
and of the key count over the idle state before the events were sent, divided by the number of
runs. It measures again once every run has been archived and the hot window
(`STEPLINE_HOT_WINDOW_SECONDS`, shortened here to `--hot-window` seconds: longer than the
runs take, so that the first measure sees them all) has passed, so
that Redis has dropped the runs and their events. Target (issue #13): < 200 bytes per run
after the hot window. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.harness import REDIS_URL, bench_engine, flush, wait_until, worker


def footprint(client: Any) -> tuple[int, int]:
    """(used_memory bytes, number of keys) of the benchmark database."""
    return int(client.info("memory")["used_memory"]), int(client.dbsize())


def key_bytes(client: Any) -> int:
    """MEMORY USAGE summed over Stepline's keys (exact where used_memory is noisy)."""
    return sum(int(client.memory_usage(key) or 0) for key in client.scan_iter("sl:*", count=1000))


def settle(client: Any) -> tuple[int, int]:
    """The footprint once it stops moving (the worker's last writes landed)."""
    last = footprint(client)
    for _ in range(20):
        time.sleep(0.25)
        now = footprint(client)
        if now[1] == last[1] and abs(now[0] - last[0]) < 1024:
            return now
        last = now
    return last


def completed(client: Any) -> int:
    """Runs of the benchmark function completed so far (the engine's counter: it counts runs
    that have already left Redis too)."""
    time.sleep(0.2)
    return int(client.hget("sl:metric:runs_completed_total", "bench-steps") or 0)


def archived_and_dropped(client: Any) -> bool:
    """Nothing waits for the archiver and nothing archived waits to be dropped."""
    time.sleep(0.2)
    queues = ("history:runs", "history:events", "history:drop-runs", "history:drop-events")
    return not any(client.zcard(f"sl:{queue}") for queue in queues)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--hot-window", type=float, default=120.0)
    args = parser.parse_args()
    client = flush()
    env = {
        "STEPLINE_FUNCTIONS": "bench.functions",
        "STEPLINE_HOT_WINDOW_SECONDS": str(args.hot_window),
    }
    with worker("tasks", "stepline", extra_env=env, beat=True):
        engine = bench_engine(["bench.functions"])
        base_mem, base_keys = settle(client)
        base_bytes = key_bytes(client)
        engine.runner.ingest(
            [{"name": "bench/steps", "data": {"n": args.steps}} for _ in range(args.runs)],
            engine.now(),
        )
        wait_until(lambda: completed(client) >= args.runs, timeout=1200)
        mem, keys = settle(client)
        if client.zcard("sl:runs") < args.runs:
            print("  (some runs were already dropped: raise --hot-window)")
        per_run = (mem - base_mem) / args.runs
        print(f"{args.runs} finished runs of {args.steps} steps, right after they ended:")
        print(
            f"  {per_run:8.0f} bytes/run (used_memory)  "
            f"{(key_bytes(client) - base_bytes) / args.runs:8.0f} bytes/run (MEMORY USAGE of "
            f"sl:* keys)  {(keys - base_keys) / args.runs:6.2f} keys/run"
        )
        if getattr(engine, "archiver", None) is None:
            print("  (no history store: runs stay in Redis until STEPLINE_RETENTION_DAYS)")
            return
        started = time.monotonic()
        wait_until(lambda: archived_and_dropped(client), timeout=600)
        mem, keys = settle(client)
        after = (mem - base_mem) / args.runs
        print(
            f"after the hot window of {args.hot_window:g} s (dropped within "
            f"{time.monotonic() - started:.1f} s):"
        )
        exact = (key_bytes(client) - base_bytes) / args.runs
        print(
            f"  {after:8.0f} bytes/run (used_memory)  {exact:8.0f} bytes/run (MEMORY USAGE of "
            f"sl:* keys)  {(keys - base_keys) / args.runs:6.2f} keys/run"
            f"   (target < 200 bytes: {'ok' if max(after, exact) < 200 else 'OVER'})"
        )
        families: dict[str, int] = {}
        for raw in client.scan_iter(count=1000):
            parts = raw.decode().split(":")
            family = ":".join(parts[:2]) if parts[0] == "sl" else parts[0]
            families[family] = families.get(family, 0) + 1
        left = ", ".join(f"{name} ({n})" for name, n in sorted(families.items()))
        print(f"  keys left: {left}")
    _ = REDIS_URL


if __name__ == "__main__":
    main()
