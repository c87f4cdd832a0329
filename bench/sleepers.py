"""Wakes at scale: many runs sleeping into the same few seconds, beside Celery ETA tasks.

    python -m bench.sleepers [--runs 10000] [--sleep 30] [--send-seconds 8]

Stepline: `--runs` events sent within about `--send-seconds`, each starting a run of
`bench/nap` (sleep `--sleep` s, then one step); one `celery worker -c 2` and beat. Lateness is
from a sleep's due time to the start of the step after it (run history). Baseline, same run:
as many bare Celery ETA tasks, each due `--sleep` s after it was sent, sent over the same
spread; lateness from ETA to start. For both: lateness p50/p99/max and the worker's RSS
(worker + pool) before sending, and its peak while the timers wait. Printed, never asserted.
Target (issue 8): Stepline p99 <= 500 ms with flat worker memory.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

from bench.harness import bench_engine, flush, pct, rss_mib, wait_until, worker

SEND_BATCH = 100


def spread(n: int, seconds: float, send: Callable[[int], None]) -> None:
    """Calls send(count) in batches of SEND_BATCH, paced to finish in about `seconds`."""
    start = time.monotonic()
    for offset in range(0, n, SEND_BATCH):
        target = start + seconds * offset / n
        pause = target - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        send(min(SEND_BATCH, n - offset))


class PeakRss:
    """Samples a worker's RSS every 0.5 s in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def bare(n: int, sleep_s: float, send_s: float, pid: int) -> tuple[list[int], float, float]:
    from bench.bare_celery import timer

    client = flush()
    before = rss_mib(pid)
    peak = PeakRss(pid)

    def send(count: int) -> None:
        for _ in range(count):
            due = int(time.time() * 1000 + sleep_s * 1000)
            timer.apply_async(args=[due], countdown=sleep_s)

    spread(n, send_s, send)
    wait_until(
        lambda: int(client.llen("bare:lateness")) >= n or bool(time.sleep(0.1)),
        timeout=sleep_s + send_s + 600,
    )
    late = [int(x) for x in client.lrange("bare:lateness", 0, -1)]
    return late, before, peak.stop()


def stepline(
    n: int, sleep_s: float, send_s: float, pid: int
) -> tuple[list[int], float, float, float]:
    client = flush()
    engine = bench_engine(["bench.functions"])
    before = rss_mib(pid)
    peak = PeakRss(pid)
    ms = int(sleep_s * 1000)
    ids: list[str] = []

    def send(count: int) -> None:
        ids.extend(
            engine.runner.ingest(
                [{"name": "bench/nap", "data": {"ms": ms}} for _ in range(count)], engine.now()
            )
        )

    spread(n, send_s, send)
    completed = engine.store.keys.metric("runs_completed_total")

    def done() -> bool:
        if sum(int(v) for v in client.hvals(completed)) >= n:
            return True
        time.sleep(0.2)
        return False

    wait_until(done, timeout=sleep_s + send_s + 900)
    rss_peak = peak.stop()
    late: list[int] = []
    dues: list[int] = []
    for event_id in ids:
        for run_id in engine.store.event_run_ids(event_id):
            view = engine.store.get_run(run_id)
            assert view is not None
            steps = {s["name"]: s for s in view.steps}
            late.append(int(steps["woke"]["started_at"]) - int(steps["nap"]["due_at"]))
            dues.append(int(steps["nap"]["due_at"]))
    return late, before, rss_peak, (max(dues) - min(dues)) / 1000


def show(label: str, late: list[int], before: float, peak: float) -> None:
    print(
        f"{label:22s} lateness p50 {pct(late, 50):7.0f} ms  p99 {pct(late, 99):7.0f} ms"
        f"  max {max(late):7d} ms   worker RSS {before:5.0f} -> peak {peak:5.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--sleep", type=float, default=30.0)
    parser.add_argument("--send-seconds", type=float, default=8.0)
    args = parser.parse_args()
    with worker("bench.bare_celery", "bare") as procs:
        b = bare(args.runs, args.sleep, args.send_seconds, procs[0].pid)
    env = {"STEPLINE_FUNCTIONS": "bench.functions"}
    with worker("tasks", "stepline", extra_env=env, beat=True) as procs:
        s = stepline(args.runs, args.sleep, args.send_seconds, procs[0].pid)
    print(f"{args.runs} timers of {args.sleep:.0f} s sent within ~{args.send_seconds:.0f} s:")
    show("bare Celery ETA", *b)
    show("Stepline sleeps", *s[:3])
    print(f"  (Stepline's sleeps fell due over {s[3]:.1f} s: each starts when its run starts)")


if __name__ == "__main__":
    main()
