"""Are the workers and beat alive? Each reports a heartbeat; `/health`, `/metrics` and the UI
read them.

    Process      one worker's or beat's record: who (host, pid), what (pool, concurrency,
                 queues), doing what (the jobs it runs now), heard when (last heartbeat), and
                 how often it promised to report (`every_ms`): the record a Workers page shows
    Heartbeat    what a process calls on its own schedule (`beat(now, jobs)`); writes at most
                 once per interval (lua/heartbeat.lua), so calling it on every beat tick costs
                 one comparison
    liveness()   every process heard from in the last FORGET_MS, judged at `now`

A process is alive while its last heartbeat is at most `MISSES` intervals old: a worker that
is `kill -9`'d, frozen or cut off from Redis goes red within three intervals. Beat's heartbeat
is written from its tick, so beat's "last heartbeat" is its last tick (to the interval).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from app.state.liveness import LivenessStore
from app.state.store import Store

log = logging.getLogger("stepline.liveness")

MISSES = 3
"""Heartbeats a process may miss before it counts as gone."""
FORGET_MS = 3_600_000
"""A process silent for an hour is dropped from the records."""
MAX_JOBS_LISTED = 50

Kind = Literal["worker", "beat"]


@dataclass(frozen=True)
class Process:
    id: str
    kind: Kind
    host: str
    pid: int
    started_at: int
    """ms since epoch."""
    last_seen: int
    """ms since epoch: the last heartbeat (for beat: its last tick)."""
    every_ms: int
    """The process's heartbeat interval."""
    pool: str = ""
    """Celery pool ("prefork", "threads", "solo"); "" for beat."""
    concurrency: int = 0
    queues: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    """Ids of the jobs it runs now (at most MAX_JOBS_LISTED)."""
    job_count: int = 0

    def alive(self, now: int) -> bool:
        return now - self.last_seen <= MISSES * self.every_ms

    def age_seconds(self, now: int) -> float:
        return max(0, now - self.last_seen) / 1000

    def to_json(self, now: int) -> dict[str, object]:
        return {**asdict(self), "alive": self.alive(now), "age_seconds": self.age_seconds(now)}


@dataclass(frozen=True)
class Liveness:
    now: int
    processes: list[Process]

    @property
    def workers(self) -> list[Process]:
        return [p for p in self.processes if p.kind == "worker"]

    @property
    def beats(self) -> list[Process]:
        return [p for p in self.processes if p.kind == "beat"]

    @property
    def workers_alive(self) -> int:
        return sum(1 for p in self.workers if p.alive(self.now))

    @property
    def beat_alive(self) -> bool:
        return any(p.alive(self.now) for p in self.beats)

    @property
    def last_tick(self) -> int | None:
        """Beat's last tick (ms), whichever beat ticked last; None if none was ever heard."""
        return max((p.last_seen for p in self.beats), default=None)

    def problems(self) -> list[str]:
        found = []
        if not self.beat_alive:
            found.append(
                "beat is not running: sleeps, retries, crons and crash recovery are stopped"
                if self.last_tick is None
                else f"beat has not ticked for {(self.now - self.last_tick) / 1000:.0f} s: "
                "sleeps, retries, crons and crash recovery are stopped"
            )
        if self.workers_alive == 0:
            found.append("no worker is running: no run makes progress")
        return found

    def to_json(self) -> dict[str, object]:
        tick = self.last_tick
        return {
            "workers": {
                "alive": self.workers_alive,
                "known": len(self.workers),
                "items": [p.to_json(self.now) for p in self.workers],
            },
            "beat": {
                "alive": self.beat_alive,
                "last_tick": tick,
                "age_seconds": None if tick is None else max(0, self.now - tick) / 1000,
                "items": [p.to_json(self.now) for p in self.beats],
            },
            "problems": self.problems(),
        }


def liveness(store: Store, now: int) -> Liveness:
    processes = []
    for raw in LivenessStore(store).records().values():
        try:
            processes.append(Process(**json.loads(raw)))
        except (TypeError, ValueError):
            continue  # a record of another version: ignored until it beats again
    processes.sort(key=lambda p: (p.kind, p.host, p.pid))
    return Liveness(now, processes)


class Heartbeat:
    """A process's heartbeat: `beat(now, jobs)` writes its record when an interval passed."""

    def __init__(
        self,
        store: Store,
        kind: Kind,
        every_seconds: float,
        now: int,
        *,
        pool: str = "",
        concurrency: int = 0,
        queues: Sequence[str] = (),
    ) -> None:
        self._store = LivenessStore(store)
        self._every_ms = max(1, int(every_seconds * 1000))
        self._last = 0
        host, pid = socket.gethostname(), os.getpid()
        self.process = Process(
            id=f"{kind}@{host}:{pid}",
            kind=kind,
            host=host,
            pid=pid,
            started_at=now,
            last_seen=now,
            every_ms=self._every_ms,
            pool=pool,
            concurrency=concurrency,
            queues=list(queues),
        )

    def beat(self, now: int, jobs: Sequence[str] = (), *, force: bool = False) -> bool:
        """Write the record if an interval passed since the last one (or `force`)."""
        if not force and now - self._last < self._every_ms:
            return False
        self._last = now
        record = {
            **asdict(self.process),
            "last_seen": now,
            "jobs": list(jobs)[:MAX_JOBS_LISTED],
            "job_count": len(jobs),
        }
        body = json.dumps(record, separators=(",", ":"))
        self._store.heartbeat(self.process.id, body, now, now - FORGET_MS)
        return True


def run_in_thread(
    heartbeat: Heartbeat, jobs: Callable[[], Sequence[str]], clock: Callable[[], int]
) -> threading.Event:
    """Beat every interval in a daemon thread until the returned event is set (a worker's
    main process: its jobs run in pool processes, `jobs` lists them from Celery's state)."""
    stop = threading.Event()
    every = heartbeat.process.every_ms / 1000

    def loop() -> None:
        while not stop.is_set():
            try:
                heartbeat.beat(clock(), jobs(), force=True)
            except Exception as exc:  # the next beat tries again; red if Redis stays away
                log.warning("heartbeat not written: %s", exc)
            stop.wait(every)

    threading.Thread(target=loop, name="stepline-heartbeat", daemon=True).start()
    return stop
