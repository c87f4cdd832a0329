"""Verbs of the operations surface over the store's Redis: metrics.

    OpsStore(store)        shares the store's client, keys and scripts (no new connection)
    incr_metric / observe_metric / read_metrics / queue_gauges     Redis-backed metrics

(Retention is the history store's: see app/retention.py.)
"""

from __future__ import annotations

from app.state.store import Store


class OpsStore:
    def __init__(self, store: Store) -> None:
        self._client = store._client
        self._keys = store.keys
        self._scripts = store._scripts

    # --- metrics --------------------------------------------------------------------------
    def incr_metric(self, name: str, label: str, amount: int = 1) -> None:
        """Add `amount` to counter `name` for `label` (shared by every process)."""
        self._client.hincrby(self._keys.metric(name), label, amount)

    def observe_metric(self, name: str, label: str, value: float, bucket: str) -> None:
        """Count one observation of histogram `name` for `label`: its (non-cumulative)
        `bucket`, its count and its sum, in one transaction."""
        self.observe_many(name, [(label, value, bucket)])

    def observe_many(self, name: str, observations: list[tuple[str, float, str]]) -> None:
        """Several (label, value, bucket) observations of histogram `name` in one round trip."""
        if not observations:
            return
        key = self._keys.metric(name)
        pipe = self._client.pipeline(transaction=True)
        for label, value, bucket in observations:
            pipe.hincrby(key, f"{label}|{bucket}", 1)
            pipe.hincrby(key, f"{label}|count", 1)
            pipe.hincrbyfloat(key, f"{label}|sum", value)
        pipe.execute()

    def read_metrics(self, names: list[str]) -> dict[str, dict[str, str]]:
        """Each metric's hash (label -> value), in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._keys.metric(name))
        return dict(zip(names, pipe.execute(), strict=True))

    def queue_gauges(self, now: int) -> dict[str, int]:
        """jobs: every queued job; due: jobs whose send-by time has passed; scheduled: jobs
        waiting for a later time (timers, retry backoffs, redelivery deadlines); pauses."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hlen(self._keys.jobs)
        pipe.zcount(self._keys.jobs_due, "-inf", now)
        pipe.zcount(self._keys.jobs_due, f"({now}", "+inf")
        pipe.zcard(self._keys.pause_expiry)
        jobs, due, scheduled, pauses = pipe.execute()
        return {
            "jobs": int(jobs),
            "due": int(due),
            "scheduled": int(scheduled),
            "pauses": int(pauses),
        }
