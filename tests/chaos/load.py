"""The chaos suite's load and its checks.

`Load` sends `chaos/work` events (tests/chaos/functions.py) to the web API from a few
threads, each send retried with the same body (same event `id`) until it answers 200, as the
SDKs do; every answer is recorded. `check` then proves the promise:

- every event answered 200 has its run, and every run completes with the right output;
- no step result is committed twice (each step once in the run's stack);
- the concurrency limit was never exceeded (overlap of the step bodies' spans);
- no answer was a 5xx other than 503 (an outage is "retry later", never an error).

A fault (a killed process, a frozen or restarted Redis) is injected while the load runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import redis

from tests.chaos import functions
from tests.integration.cluster import Cluster

EVENT_KEY = "chaos-key"
ENDED = ("Completed", "Failed", "Cancelled")


@dataclass
class Load:
    cluster: Cluster
    count: int
    senders: int = 4
    tag: str = "load"
    accepted: dict[int, str] = field(default_factory=dict)
    """k -> internal event id of each `chaos/work` event answered 200."""
    answers: Counter[str] = field(default_factory=Counter)
    """Every answer by status ("200", "503", ...) or transport error ("ConnectError")."""
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for n in range(self.senders):
            ks = range(n, self.count, self.senders)
            thread = threading.Thread(target=self._send_all, args=(ks,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), f"sends still failing: {self}"

    def wait_accepted(self, n: int, timeout: float = 60) -> None:
        self.cluster.wait_for(lambda: len(self.accepted) >= n, timeout, f"{n} events accepted")

    def _send_all(self, ks: range) -> None:
        with httpx.Client(timeout=15) as http:
            for k in ks:
                body = [{"id": f"{self.tag}-{k}", "name": "chaos/work", "data": {"k": k}}]
                self.accepted[k] = self._send(http, body)[0]
                if k % 3 == 0:  # some waits are matched, the others time out
                    go = [{"id": f"{self.tag}-go-{k}", "name": "chaos/go", "data": {"k": k}}]
                    self._send(http, go)

    def _send(self, http: httpx.Client, body: list[dict[str, object]]) -> list[str]:
        """POST until 200, the same body every time (the SDKs' retry)."""
        url = f"{self.cluster.web_url}/e/{EVENT_KEY}"
        while True:
            try:
                answer = http.post(url, json=body)
                outcome = str(answer.status_code)
                if answer.status_code >= 400:  # every failure is JSON naming the problem
                    assert "error" in answer.json(), answer.text
            except httpx.TransportError as exc:
                answer, outcome = None, type(exc).__name__
            with self._lock:
                self.answers[outcome] += 1
            if answer is not None and answer.status_code == 200:
                ids: list[str] = answer.json()["ids"]
                return ids
            time.sleep(0.1)

    def __str__(self) -> str:
        return f"{len(self.accepted)}/{self.count} accepted, answers {dict(self.answers)}"


def check(load: Load, ledger: redis.Redis, timeout: float = 120) -> None:
    """Wait for every accepted event's run to end, then check the promise (see the module)."""
    cluster, store = load.cluster, load.cluster.engine.store
    assert len(load.accepted) == load.count, str(load)

    def unfinished() -> list[int]:
        left = []
        for k, event_id in load.accepted.items():
            runs = [store.get_run(rid) for rid in store.event_run_ids(event_id)]
            if not runs or any(r is None or r.status not in ENDED for r in runs):
                left.append(k)
        return left

    def all_ended() -> bool:
        return not unfinished()

    try:
        cluster.wait_for(all_ended, timeout, "every accepted event's run to end")
    except AssertionError as exc:
        left = unfinished()
        no_run = [k for k in left if not store.event_run_ids(load.accepted[k])]
        raise AssertionError(
            f"{len(left)} runs unfinished ({len(no_run)} accepted events have no run: "
            f"{[explain(load, k) for k in no_run[:5]]}); {load}\n{exc}"
        ) from None
    reran = 0
    for k, event_id in sorted(load.accepted.items()):
        run_ids = store.event_run_ids(event_id)
        assert len(run_ids) == 1, f"event k={k} has {len(run_ids)} runs"
        view = store.get_run(run_ids[0])
        assert view is not None
        assert (view.status, view.output) == ("Completed", functions.expected_output(k)), (
            f"run of k={k}: {view.status} {view.output} {view.error}"
        )
        state = store.load_run(run_ids[0])
        assert state is not None
        assert len(state.stack) == len(set(state.stack)) == len(functions.STEPS), (
            f"run of k={k}: stack {state.stack}"
        )
        for step in ("a", "b"):
            ran = int(ledger.get(f"chaos:exec:{run_ids[0]}:{step}") or 0)
            assert ran >= 1, f"run of k={k}: step {step} never ran"
            reran += ran - 1
    assert max_overlap(ledger) <= functions.LIMIT, "the concurrency limit was exceeded"
    bad = {status: n for status, n in load.answers.items() if status.startswith("5")}
    assert set(bad) <= {"503"}, f"answers other than 200/503: {dict(load.answers)}"
    print(f"chaos: {load}; step bodies run again: {reran}; max overlap {max_overlap(ledger)}")


def explain(load: Load, k: int) -> str:
    """Where an accepted event without a run got stuck: stored? its processing job queued,
    or done (tombstone)?"""
    client = redis.Redis.from_url(load.cluster.engine.settings.redis_url, decode_responses=True)
    event_id = load.accepted[k]
    prefix = load.cluster.engine.settings.key_prefix
    job_id = f"event:{event_id}"
    stored = load.cluster.engine.store.get_event(event_id) is not None
    queued = bool(client.hexists(f"{prefix}:jobs", job_id))
    done = bool(client.exists(f"{prefix}:job-done:{job_id}"))
    client.close()
    return f"k={k} event stored={stored} job queued={queued} job done={done}"


def max_overlap(ledger: redis.Redis) -> int:
    """The most step bodies of `chaos/work` that ever ran at the same time."""
    edges: list[tuple[float, int]] = []
    for raw in ledger.lrange("chaos:spans", 0, -1):
        start, end = json.loads(raw)
        edges += [(float(start), 1), (float(end), -1)]
    edges.sort(key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same time
    top = now = 0
    for _, delta in edges:
        now += delta
        top = max(top, now)
    return top
