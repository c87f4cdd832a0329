"""Redis bytes and keys per finished run: right after the runs end, and after the hot window.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/14 python -m bench.history_memory [--runs 1000]

Runs `--runs` in-process runs of 3 steps each (the issue's "completed 3-step run") on a real
worker and beat, then measures what the finished runs cost Redis: the growth of `used_memory`
and of the key count over the idle state before the events were sent, divided by the number of
runs. It measures again once every run has been archived and the hot window
(`STEPLINE_HOT_WINDOW_SECONDS`, shortened here to `--hot-window` seconds) has passed, so
that Redis has dropped the runs and their events. Target (issue #13): < 200 bytes per run
after the hot window. Printed, not asserted.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.harness import REDIS_URL, all_completed, bench_engine, flush, wait_until, worker


def footprint(client: Any) -> tuple[int, int]:
    """(used_memory bytes, number of keys) of the benchmark database."""
    return int(client.info("memory")["used_memory"]), int(client.dbsize())


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--hot-window", type=float, default=5.0)
    args = parser.parse_args()
    client = flush()
    env = {
        "STEPLINE_FUNCTIONS": "bench.functions",
        "STEPLINE_HOT_WINDOW_SECONDS": str(args.hot_window),
    }
    with worker("tasks", "stepline", extra_env=env, beat=True):
        engine = bench_engine(["bench.functions"])
        base_mem, base_keys = settle(client)
        ids = engine.runner.ingest(
            [{"name": "bench/steps", "data": {"n": args.steps}} for _ in range(args.runs)],
            engine.now(),
        )
        wait_until(lambda: all_completed(engine, ids), timeout=600)
        mem, keys = settle(client)
        per_run = (mem - base_mem) / args.runs
        print(f"{args.runs} finished runs of {args.steps} steps, right after they ended:")
        print(f"  {per_run:8.0f} bytes/run  {(keys - base_keys) / args.runs:6.2f} keys/run")
        history = getattr(engine, "history", None)
        if history is None:
            print("  (no history store: runs stay in Redis until STEPLINE_RETENTION_DAYS)")
            return
        started = time.monotonic()
        wait_until(lambda: not any(engine.store.event_run_ids(i) for i in ids), timeout=600)
        wait_until(lambda: engine.store.get_event(ids[-1]) is None, timeout=600)
        mem, keys = settle(client)
        after = (mem - base_mem) / args.runs
        print(
            f"after the hot window of {args.hot_window:g} s (dropped within "
            f"{time.monotonic() - started:.1f} s):"
        )
        print(
            f"  {after:8.0f} bytes/run  {(keys - base_keys) / args.runs:6.2f} keys/run"
            f"   (target < 200 bytes: {'ok' if after < 200 else 'OVER'})"
        )
        leftovers = sorted({k.decode().split(":")[1] for k in client.scan_iter(count=1000)})
        print(f"  key families left: {', '.join(leftovers)}")
    _ = REDIS_URL


if __name__ == "__main__":
    main()
