"""Verbs over the liveness records of workers and beat (`app/liveness.py` writes and reads
them; `/health`, `/metrics` and the UI show them).

    <p>:procs        hash  process id -> record JSON (host, pid, pool, jobs, last heartbeat ...)
    <p>:procs:seen   zset  process id, score last heartbeat (ms): forgetting long-silent ones

One write per heartbeat (lua/heartbeat.lua); reads are one HGETALL.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.state.store import Store


@dataclass(frozen=True)
class LivenessKeys:
    prefix: str

    @property
    def procs(self) -> str:
        return f"{self.prefix}:procs"

    @property
    def procs_seen(self) -> str:
        return f"{self.prefix}:procs:seen"


class LivenessStore:
    NAMES = ("heartbeat",)

    def __init__(self, store: Store) -> None:
        self._client = store._client
        self.keys = LivenessKeys(store.keys.prefix)
        self._lua = store.lua
        self._lua.load(self.NAMES)
        self._heartbeat = self._lua.script("heartbeat")

    def heartbeat(self, process_id: str, record: str, now: int, forget_before: int) -> int:
        """Store `record` as the process's latest; returns how many silent processes were
        forgotten (-1: a newer heartbeat of this process is already stored)."""
        keys = [self.keys.procs, self.keys.procs_seen]
        return int(self._heartbeat(keys, [process_id, record, now, forget_before]))

    def records(self) -> dict[str, str]:
        """Process id -> record JSON of every process heard from recently."""
        return dict(self._client.hgetall(self.keys.procs))
