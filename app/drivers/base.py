"""What every driver speaks: a call request in, opcodes (or a final result, or an error) out.

A driver turns one call of a function into a `CallResult`. It never touches Redis; the executor
hands it everything it needs (memoized steps, the stack) and a `checkpoint` callback through
which an in-process driver persists a finished `step.run` before running on.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from typing import Literal, Protocol

from app.models import JSON, FunctionConfig

OpName = Literal[
    "StepRun",
    "StepError",
    "StepFailed",
    "StepPlanned",
    "Sleep",
    "WaitForEvent",
    "InvokeFunction",
    "WaitForSignal",
    "Gateway",
    "AIGateway",
]


@dataclass
class Op:
    """One opcode reported by a function, as in the Inngest protocol.

    `id` is the hashed step id, `name` the user's step id. `opts` as the SDKs send them:
    Sleep carries its wake time in `name`-independent form in `opts["until"]` (ISO-8601) or
    `opts["duration"]`; WaitForEvent `{"event", "if", "timeout"}`; InvokeFunction
    `{"function_id", "payload": {"data", "v"}, "timeout"}`; WaitForSignal `{"signal", "timeout",
    "conflict"}`; Gateway (step.fetch) `{"url", "method", "headers", "body"}`; AIGateway
    (step.ai.infer) `{"url", "headers", "auth_key", "format", "body"}`.
    """

    op: OpName
    id: str
    name: str
    opts: dict[str, JSON] = field(default_factory=dict)
    data: JSON = None
    error: dict[str, JSON] | None = None
    no_retry: bool = False
    retry_at_ms: int | None = None


@dataclass
class CallRequest:
    function: FunctionConfig
    run_id: str
    event: dict[str, JSON]
    events: list[dict[str, JSON]]
    steps: dict[str, JSON]
    """Memoized results by hashed step id, in the wrappers of PROTOCOL.md 2.4."""
    stack: list[str]
    """Hashed ids of completed steps, in completion order."""
    attempt: int
    max_attempts: int
    target: str | None = None
    """Hashed id of the one step to execute (after StepPlanned); None for discovery."""
    checkpoint_id: str | None = None
    """Set when the SDK may run several steps in this call and report each one as it finishes
    (TS checkpointing, PROTOCOL.md 10.2): sent as `ctx.qi_id`, with `ctx.fn_id`."""
    disable_immediate_execution: bool = False
    kinds: dict[str, str] = field(default_factory=dict)
    """Recorded opcode name (StepRun, Sleep, WaitForEvent, InvokeFunction) of memoized steps,
    where known: a replay meeting a step of another kind at the same id is nondeterminism."""


@dataclass
class CheckpointResult:
    proceed: bool
    """False: stop after this step (run cancelled, budget spent); the driver returns the op."""
    memo: JSON = None
    """The value stored for the step; first write wins, so it may differ from what was sent."""


class Checkpoint(Protocol):
    def __call__(self, op: Op) -> CheckpointResult: ...


@dataclass
class CallResult:
    """What one call produced.

    - kind "complete": the function returned `output`.
    - kind "ops": it reported `ops` (a finished step, a planned step, a sleep ...).
    - kind "error": the function (not a step) raised `error` ({name, message, stack});
      `retriable` False for NonRetriableError; `retry_at_ms` from RetryAfterError.
    - kind "complete" may carry `ops` too: finished steps reported in the same reply before the
      run's end (a checkpointing SDK's `[StepRun, ..., RunComplete]`), saved before finishing.
    """

    kind: Literal["complete", "ops", "error"]
    output: JSON = None
    ops: list[Op] = field(default_factory=list)
    error: dict[str, JSON] | None = None
    retriable: bool = True
    retry_at_ms: int | None = None
    logs: list[dict[str, JSON]] = field(default_factory=list)
    """In-process calls: the `ctx.logger` lines the call logged ({ts, level, message, step,
    step_id}), at most `MAX_CALL_LOG_LINES` (then one line saying how many more)."""


MAX_CALL_LOG_LINES = 200
MAX_LOG_LINE_CHARS = 2_000


class Driver(Protocol):
    def call(self, request: CallRequest, checkpoint: Checkpoint) -> CallResult: ...


# --- opcodes Stepline does not implement -------------------------------------------------------

UNSUPPORTED_OPS: dict[str, str] = {
    "deferadd": "defer() from createDefer (inngest/experimental)",
    "deferabort": "aborting a defer() (inngest/experimental)",
    "discoveryrequest": "checkpointing in sync mode (durable endpoints)",
    "stepnotfound": "targeted step execution (the SDK could not find the step it was asked to run:"
    " was it renamed or removed?)",
}
"""Opcodes the SDKs send that Stepline does not implement yet (matched case-insensitively), with
the SDK feature that emits each. A call reporting one fails its run at once, never retried: a
retry would meet the same op again (PROTOCOL.md 10.4)."""


def stepline_version() -> str:
    try:
        return importlib.metadata.version("stepline")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def unsupported_op(op: str, sdk: str | None = None) -> CallResult:
    """The non-retriable error of a call that reported opcode `op` (`sdk`: who sent it, e.g.
    "js:v4.24.0"), naming the SDK feature and this Stepline's version."""
    feature = UNSUPPORTED_OPS.get(op.lower())
    what = f"{feature} ({op} opcode)" if feature else f"opcode {op!r}"
    sender = f" reported by {sdk}" if sdk else ""
    version = stepline_version()
    error: dict[str, JSON] = {
        "name": "UnsupportedOpcodeError",
        "message": f"{what}{sender} is not supported by Stepline {version}: the run fails "
        "instead of retrying. Remove that step or run this function on Inngest.",
        "stack": None,
        "code": "unsupported_opcode",
        "opcode": op,
        "feature": feature,
        "stepline_version": version,
    }
    return CallResult("error", error=error, retriable=False)
