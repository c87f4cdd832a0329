"""`ctx.step.ai`: AI model calls made by the engine (the official SDK's `step.ai.infer`).

`infer` builds the same `AIGateway` opcode as the official Python SDK 0.5.19 (opts `type`,
`url`, `headers`, `auth_key`, `format`, `body`, from the adapter). Stepline's engine does not
make AIGateway calls yet, so the run fails at once with an `UnsupportedOpcodeError` naming
`step.ai.infer` (PROTOCOL.md 10.3, 10.4); it never silently skips the call.

Any object with the official adapter methods works, e.g. the official SDK's
`inngest.experimental.ai.openai.Adapter(auth_key=..., model=...)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from app.models import JSON

if TYPE_CHECKING:
    from app.sdk.steps import StepReplay

AI_GATEWAY_OP = "AIGateway"


class BaseAdapter(Protocol):
    """What `infer` needs of a model adapter (the official `inngest.experimental.ai`'s)."""

    def auth_key(self) -> str: ...

    def format(self) -> str: ...

    def headers(self) -> dict[str, str]: ...

    def on_call(self, body: dict[str, object]) -> None: ...

    def url_infer(self) -> str: ...


def infer_opts(adapter: BaseAdapter, body: dict[str, Any]) -> dict[str, JSON]:
    """The AIGateway op's opts, as the official SDK builds them (the adapter may edit `body`)."""
    adapter.on_call(body)
    return {
        "auth_key": adapter.auth_key(),
        "body": body,
        "format": adapter.format(),
        "headers": adapter.headers(),
        "type": "step.ai.infer",
        "url": adapter.url_infer(),
    }


class AISync:
    """`ctx.step.ai` for synchronous handlers."""

    def __init__(self, replay: StepReplay) -> None:
        self._replay = replay

    def infer(
        self, step_id: str, *, adapter: BaseAdapter, body: dict[str, Any]
    ) -> dict[str, object]:
        """Ask the engine to call the model (fails the run today: see the module docstring)."""
        return self._replay.unsupported(AI_GATEWAY_OP, step_id, infer_opts(adapter, body))


class AI:
    """`ctx.step.ai` for `async def` handlers: `await ctx.step.ai.infer(...)`."""

    def __init__(self, replay: StepReplay) -> None:
        self._sync = AISync(replay)

    async def infer(
        self, step_id: str, *, adapter: BaseAdapter, body: dict[str, Any]
    ) -> dict[str, object]:
        return self._sync.infer(step_id, adapter=adapter, body=body)
