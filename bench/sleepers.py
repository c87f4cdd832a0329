"""Wakes at scale: many runs sleeping into the same 8-second window, beside Celery ETA tasks.

    python -m bench.sleepers [--runs 10000] [--window 8] [--lead SECONDS]

What is measured (issue 8, point 5: "10,000 runs sleeping into the same 8-second window"):

- Stepline: `--runs` events of `bench/nap`, sent in batches of 100 as fast as the engine takes
  them; each run sleeps *until* a due time carried in its event (`step.sleep_until`), then runs
  one step and ends. The due times are spread evenly over one window of `--window` s that
  opens `--lead` s (default 20 + runs / 60) after the first send, so every run is already
  asleep when the window opens and the wakes, not the starts, are what is measured. How long
  the starts took (first send to the last run asleep) is printed separately; when a run was
  still starting as the window opened, a warning says the figure does not measure one window.
  One `celery worker -c 2` and beat. Lateness: from a sleep's due time to the start of the
  step after it (run history).
- Baseline, same run: as many bare Celery ETA tasks, their ETAs spread over the same window
  (opening `--lead` s, at most 30 s, after the first send); lateness from ETA to the task's start.

For both: lateness p50/p99/max and the worker's RSS (worker + pool): before sending, its peak
until the window opens (starts, then every timer waiting) and its peak until every timer
fired. Printed, never asserted. Target (issue 8): Stepline p99 <= 500 ms with flat worker
memory (nothing held in worker memory until due).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.harness import bench_engine, flush, pct, rss_mib, wait_until, worker

SEND_BATCH = 100
BARE_LEAD_S = 30.0
"""The baseline's window opens at most this long after its first send (sending 10,000 ETA
tasks takes ~15 s here): the tasks wait in worker memory, so this also bounds its run time."""


@dataclass(frozen=True)
class Window:
    """`n` due times (ms since the epoch) spread evenly over `seconds` from `opens`."""

    opens: int
    seconds: float
    n: int

    def due(self, i: int) -> int:
        return self.opens + int(self.seconds * 1000 * i / self.n)

    @classmethod
    def after(cls, lead: float, seconds: float, n: int) -> Window:
        return cls(int(time.time() * 1000 + lead * 1000), seconds, n)


def send_all(n: int, send: Callable[[range], None]) -> None:
    """Calls send(indexes) in batches of SEND_BATCH."""
    for offset in range(0, n, SEND_BATCH):
        send(range(offset, min(n, offset + SEND_BATCH)))


class PeakRss:
    """Samples a worker's RSS every 0.5 s in a thread: `peak` is the highest seen, `waiting`
    the highest before `opens` (ms since the epoch: while every timer waits)."""

    def __init__(self, pid: int, opens: int) -> None:
        self.pid = pid
        self.opens = opens
        self.peak = 0.0
        self.waiting = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            rss = rss_mib(self.pid)
            self.peak = max(self.peak, rss)
            if time.time() * 1000 < self.opens:
                self.waiting = max(self.waiting, rss)

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.waiting, self.peak


@dataclass
class Result:
    late: list[int]
    rss_before: float
    rss_waiting: float
    """Peak RSS before the window opened (runs starting, then every timer waiting)."""
    rss_peak: float
    starts_s: float = 0.0
    """First send to the last run asleep (Stepline) / to the last task sent (Celery)."""
    margin_s: float = 0.0
    """The last run asleep (or task sent) to the window's opening: negative = too late."""
    by_second: dict[int, list[int]] | None = None
    """Stepline: lateness by second of the window its due time fell in (does it grow?)."""
    woke_s: float = 0.0
    """Stepline: the window's opening to the last wake."""
    cpu: WindowCpu | None = None
    """Stepline: each process's CPU (cores) from the window's opening to the last wake, and
    its wait for a CPU."""


def bare(n: int, window_s: float, lead_s: float, pid: int) -> Result:
    from bench.bare_celery import timer

    client = flush()
    before = rss_mib(pid)
    window = Window.after(lead_s, window_s, n)
    peak = PeakRss(pid, window.opens)
    first = time.time()

    def send(indexes: range) -> None:
        for i in indexes:
            due = window.due(i)
            timer.apply_async(args=[due], countdown=max(0.0, due / 1000 - time.time()))

    send_all(n, send)
    sent = time.time()
    wait_until(
        lambda: int(client.llen("bare:lateness")) >= n or bool(time.sleep(0.1)),
        timeout=lead_s + window_s + 600,
    )
    late = [int(x) for x in client.lrange("bare:lateness", 0, -1)]
    return Result(late, before, *peak.stop(), sent - first, window.opens / 1000 - sent)


def group_pids(pgrp: int) -> list[int]:
    """The processes of process group `pgrp` (a worker and its pool). Linux /proc only."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgrp
            ):
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def spy(pgrps: list[int], opens_ms: int, seconds: float, out: Path) -> None:
    """From the window's opening, for `seconds`, samples every process of these groups with
    py-spy (installed apart, never a dependency) into `out`/<pid>.txt (collapsed stacks)."""
    out.mkdir(parents=True, exist_ok=True)

    def run() -> None:
        time.sleep(max(0.0, opens_ms / 1000 - time.time()))
        for pid in [p for g in pgrps for p in group_pids(g)]:
            exe = Path(sys.executable).with_name("py-spy")
            args = ["record", "--format", "raw", "--nonblocking", "-r", "200", "-d"]
            subprocess.Popen(
                [str(exe), *args, str(int(seconds)), "-p", str(pid), "-o", str(out / f"{pid}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    threading.Thread(target=run, daemon=True).start()


def sched_ns(pid: int) -> tuple[int, int]:
    """(time on a CPU, time runnable but waiting for one), ns, of one process: the sum over
    its threads (/proc/<pid>/task/*/schedstat, Linux only; a thread that ended is missed)."""
    run = wait = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                ran, waited, _ = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            run, wait = run + int(ran), wait + int(waited)
    except OSError:
        pass
    return run, wait


class WindowCpu:
    """CPU time of each process (worker, its pool, beat, Redis) from the window's opening
    until `stop`: who is busy while the timers fall due, and how long each was ready to run
    but waited for a CPU (the machine's other load: a process "only 40 % busy" may have
    spent the rest waiting for a core, not for work)."""

    def __init__(self, pids: dict[str, int], opens_ms: int) -> None:
        self.pids = pids
        self.start: dict[str, tuple[int, int]] = {}
        self.started_at = 0.0
        self.shares: dict[str, float] = {}
        self.waits: dict[str, float] = {}
        self.cpu_s = 0.0
        """CPU seconds of all these processes together over the window."""

        def run() -> None:
            time.sleep(max(0.0, opens_ms / 1000 - time.time()))
            self.started_at = time.monotonic()
            self.start = {name: sched_ns(pid) for name, pid in self.pids.items()}

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._thread.join()
        wall = time.monotonic() - self.started_at
        end = {name: sched_ns(pid) for name, pid in self.pids.items()}
        for name in self.pids:
            ran = (end[name][0] - self.start[name][0]) / 1e9
            self.shares[name] = ran / wall
            self.waits[name] = (end[name][1] - self.start[name][1]) / 1e9 / wall
            self.cpu_s += ran


def load_average() -> str:
    """The machine's 1-, 5- and 15-minute load averages (other helpers' work included)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stepline(
    n: int,
    window_s: float,
    lead_s: float,
    procs: list[int],
    spy_into: tuple[list[int], Path] | None,
) -> Result:
    client = flush()
    engine = bench_engine(["bench.functions"])
    pid = procs[0]
    before = rss_mib(pid)
    window = Window.after(lead_s, window_s, n)
    peak = PeakRss(pid, window.opens)
    pool = sorted(p for p in group_pids(pid) if p != pid)
    pids = {"worker": pid, **{f"pool {i + 1}": p for i, p in enumerate(pool)}}
    pids |= {"beat": procs[1], "redis": int(client.info("server")["process_id"])}
    cpu = WindowCpu(pids, window.opens)
    if spy_into:
        spy(spy_into[0], window.opens, window_s + 4, spy_into[1])
    first = time.time()
    ids: list[str] = []

    def send(indexes: range) -> None:
        events = [{"name": "bench/nap", "data": {"until": window.due(i)}} for i in indexes]
        ids.extend(engine.runner.ingest(events, engine.now()))

    send_all(n, send)
    completed = engine.store.keys.metric("runs_completed_total")

    def done() -> bool:
        if sum(int(v) for v in client.hvals(completed)) >= n:
            return True
        time.sleep(0.2)
        return False

    wait_until(done, timeout=lead_s + window_s + 900)
    cpu.stop()
    rss_waiting, rss_peak = peak.stop()
    late: list[int] = []
    asleep: list[int] = []
    woke: list[int] = []
    by_second: dict[int, list[int]] = {}
    for event_id in ids:
        for run_id in engine.store.event_run_ids(event_id):
            view = engine.store.get_run(run_id)
            assert view is not None
            steps = {s["name"]: s for s in view.steps}
            due = int(steps["nap"]["due_at"])
            late.append(int(steps["woke"]["started_at"]) - due)
            asleep.append(int(steps["nap"]["started_at"]))
            woke.append(int(steps["woke"]["started_at"]))
            by_second.setdefault((due - window.opens) // 1000, []).append(late[-1])
    last_asleep = max(asleep) / 1000
    margin = window.opens / 1000 - last_asleep
    return Result(
        late,
        before,
        rss_waiting,
        rss_peak,
        last_asleep - first,
        margin,
        by_second,
        (max(woke) - window.opens) / 1000,
        cpu,
    )


def show(label: str, result: Result) -> None:
    late = result.late
    print(
        f"{label:22s} lateness p50 {pct(late, 50):7.0f} ms  p99 {pct(late, 99):7.0f} ms"
        f"  max {max(late):7d} ms   worker RSS {result.rss_before:4.0f} -> waiting"
        f" {result.rss_waiting:4.0f} -> peak {result.rss_peak:4.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=8.0, help="seconds the due times span")
    parser.add_argument(
        "--lead", type=float, default=0.0, help="first send to window, s (0: 20 + runs / 60)"
    )
    parser.add_argument(
        "--spy", type=Path, help="py-spy every worker and beat process during the window into DIR"
    )
    args = parser.parse_args()
    lead = args.lead or 20 + args.runs / 60
    loads = [load_average()]
    with worker("bench.bare_celery", "bare") as procs:
        b = bare(args.runs, args.window, min(lead, BARE_LEAD_S), procs[0].pid)
    env = {"STEPLINE_FUNCTIONS": "bench.functions"}
    with worker("tasks", "stepline", extra_env=env, beat=True) as procs:
        spy_into = ([p.pid for p in procs], args.spy) if args.spy else None
        s = stepline(args.runs, args.window, lead, [p.pid for p in procs], spy_into)
    loads.append(load_average())
    print(
        f"{args.runs} timers due within one {args.window:.0f}-s window"
        f" (load average {loads[0]} at the start, {loads[1]} at the end):"
    )
    show("bare Celery ETA", b)
    show("Stepline sleeps", s)
    print(
        f"  Celery: {args.runs} ETA tasks sent in {b.starts_s:.1f} s,"
        f" {b.margin_s:.1f} s before its window opened;"
        f" Stepline: {args.runs} runs started and asleep in {s.starts_s:.1f} s"
        f" ({args.runs / s.starts_s:.0f} runs/s), {s.margin_s:.1f} s before the window opened"
    )
    print(
        f"  Stepline: last wake {s.woke_s:.1f} s after the window opened"
        f" ({args.runs / max(s.woke_s, args.window):.0f} wakes/s over the window and after);"
        " lateness by second of due time:"
    )
    if s.cpu is not None:
        busy = ", ".join(f"{name} {share:.0%}" for name, share in s.cpu.shares.items())
        waits = ", ".join(f"{name} {share:.0%}" for name, share in s.cpu.waits.items())
        print(f"    CPU of a core from the window's opening to the last wake: {busy}")
        print(f"    ready to run but waiting for a CPU, same span: {waits}")
        print(
            f"    CPU of these processes together: {s.cpu.cpu_s:.1f} s,"
            f" {s.cpu.cpu_s * 1000 / args.runs:.2f} ms per wake"
        )
    for second, late in sorted((s.by_second or {}).items()):
        print(
            f"    due in second {second}: {len(late):5d} wakes, p50 {pct(late, 50):6.0f} ms,"
            f" p99 {pct(late, 99):6.0f} ms, max {max(late):6d} ms"
        )
    if s.margin_s < 0 or b.margin_s < 0:
        print("  WARNING: the window opened before every timer was set: raise --lead")


if __name__ == "__main__":
    main()
