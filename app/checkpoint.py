"""Checkpointing: steps a TS SDK reports while one call runs several of them (PROTOCOL.md 10.2).

The executor turns checkpointing on for a call by sending `ctx.fn_id` and `ctx.qi_id`
(`Executor._checkpoint_id`: discovery calls of SDK functions, first attempt, nothing pending).
The SDK then runs steps one after another inside that call and, after each, POSTs

    /v1/checkpoint/<run id>/async {run_id, fn_id, qi_id, request_id, generation_id,
                                   request_started_at, steps: [<StepRun op>, ...], ts}

`apply` saves each reported step exactly as a 206 reply's `StepRun` would be saved (first write
wins, history record, stack); the call ends with a 206 holding the next op (a sleep, a wait, a
step error...) or `RunComplete`. So a run of N synchronous steps costs one call, not N + 1.

Answers: 200 saved; 409 the run is ended or gone (the SDK stops: "stale dispatch"); 400 a body
or op that cannot be used. An op Stepline does not implement (e.g. `DeferAdd`) fails the run at
once and answers 409, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.drivers.http_reply import read_ops
from app.errors import BadRequest
from app.executor import Executor
from app.models import JSON
from app.state.store import Store


@dataclass
class Applied:
    outcome: Literal["saved", "ended"]
    saved: int = 0
    """Steps this request memoized (a repeat of an earlier checkpoint saves none)."""


def apply(
    store: Store,
    executor: Executor,
    run_id: str,
    body: JSON,
    now: int,
    sdk: str | None = None,
) -> Applied:
    """Save the steps of one checkpoint request; raises `BadRequest` for an unusable body."""
    if not isinstance(body, dict):
        raise BadRequest("the checkpoint body must be a JSON object")
    if body.get("run_id") not in (None, run_id):
        raise BadRequest("run_id in the body differs from the one in the path", field="run_id")
    steps = body.get("steps")
    if not isinstance(steps, list):
        raise BadRequest("steps must be an array of ops", field="steps")
    result = read_ops(f"checkpoint of run {run_id}", steps, sdk)
    if result.kind == "error":
        error = result.error or {}
        if error.get("code") == "unsupported_opcode":
            executor.fail_run(run_id, error, now)
            return Applied("ended")
        raise BadRequest(str(error.get("message") or "unusable steps"), field="steps")
    for op in result.ops:
        if op.op != "StepRun":
            raise BadRequest(f"a checkpoint reports finished steps, not {op.op}", field="steps")
    saved = 0
    for op in result.ops:
        info: dict[str, JSON] = {
            "name": op.name,
            "kind": "StepRun",
            "status": "Completed",
            "started_at": now,
            "ended_at": now,
            "attempts": 1,
            "error": None,
        }
        stored = store.save_step(run_id, op.id, {"data": op.data}, info, now)
        if stored.status == "ended":
            return Applied("ended", saved)
        saved += stored.status == "created"
    return Applied("saved", saved)
