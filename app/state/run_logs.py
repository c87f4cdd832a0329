"""Verbs over a run's log lines: what `ctx.logger` logged while the run's in-process function
ran (the driver collects them per call, the executor stores them, the API shows them).

    <p>:{<run>}:logs        list  one JSON line each: ts (ms), level, message, step (name or
                                  null: logged outside a step body), step_id (hashed or null)
    <p>:{<run>}:logs-meta   hash  batch id -> lines stored; "dropped" -> lines over the cap

One write per call (lua/append_logs.lua, repeat-safe by batch id); a read is two commands.
Dropped from Redis with the run (app/state/archive.py passes both keys to
history_drop_run.lua), archived with it to the history store (`runs.logs`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from app.models import JSON
from app.state.scripts import _Script, read_script

if TYPE_CHECKING:
    from app.state.store import Store

MAX_LINES = 1_000
"""Lines kept per run; later ones are counted, not stored."""


@dataclass(frozen=True)
class RunLogKeys:
    prefix: str

    def logs(self, run_id: str) -> str:
        return f"{self.prefix}:{{{run_id}}}:logs"

    def meta(self, run_id: str) -> str:
        return f"{self.prefix}:{{{run_id}}}:logs-meta"


@dataclass
class RunLogs:
    lines: list[dict[str, JSON]] = field(default_factory=list)
    dropped: int = 0

    def to_json(self) -> dict[str, JSON]:
        return {"lines": list(self.lines), "dropped": self.dropped}


class RunLogStore:
    NAMES = ("append_logs",)

    def __init__(self, store: Store) -> None:
        self._client = store._client
        self.keys = RunLogKeys(store.keys.prefix)
        self._append = cast(
            _Script, self._client.register_script(read_script(store.lua_dir, "append_logs"))
        )

    def append(
        self,
        run_id: str,
        batch_id: str,
        lines: Sequence[dict[str, JSON]],
        max_lines: int = MAX_LINES,
    ) -> int:
        """Store `lines` (once per `batch_id`); returns how many were kept."""
        if not lines:
            return 0
        keys = [self.keys.logs(run_id), self.keys.meta(run_id)]
        body = [json.dumps(line, separators=(",", ":")) for line in lines]
        return int(self._append(keys, [batch_id, max_lines, *body]))

    def read(self, run_id: str) -> RunLogs:
        pipe = self._client.pipeline(transaction=False)
        pipe.lrange(self.keys.logs(run_id), 0, -1)
        pipe.hget(self.keys.meta(run_id), "dropped")
        raw, dropped = pipe.execute()
        return RunLogs([json.loads(line) for line in raw], int(dropped or 0))
