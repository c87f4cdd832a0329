"""Signals: `step.waitForSignal` / `step.wait_for_signal` pauses, resumed by name.

A wait for signal `name` is a pause with correlation id `signal:<name>` and no event. Names are
unique among pending waits (`lua/save_pause.lua`, mode "fail" or "replace"), so sending a
signal is one lookup in the correlation index and one atomic consume: exactly one run resumes,
once. The step's result is `{"signal": name, "data": data}`; a wait that times out gets null.

    POST /v1/signals {"signal": name, "data": ...}
      -> 200 {"data": {"run_id": ...}}     a waiting run was resumed
      -> 404                                no run is waiting (or its wait expired)
"""

from __future__ import annotations

from app.models import JSON
from app.runner import Runner
from app.state.store import Store

PREFIX = "signal:"
ATTEMPTS = 3
"""Lookups before answering 404: a pause found but lost to another consumer is gone from the
index when we look again, unless a new wait took the name meanwhile."""


def correlation(name: str) -> str:
    return PREFIX + name


def send(store: Store, runner: Runner, name: str, data: JSON, now: int) -> str | None:
    """Resume the run waiting for signal `name` with `data`; its run id, or None when no run
    is waiting (none ever, already resumed, or the wait expired)."""
    for _ in range(ATTEMPTS):
        pause = store.pause_by_correlation(correlation(name))
        if pause is None or pause.kind != "WaitForSignal" or pause.expires_at <= now:
            return None
        if runner.resume(pause, {"data": {"signal": name, "data": data}}, now):
            return pause.run_id
    return None
