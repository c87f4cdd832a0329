"""`ctx.step.ai`: AI model calls made by the engine (the official SDK's `step.ai.infer`).

`infer` builds the same `AIGateway` opcode as the official Python SDK 0.5.19 (opts `type`,
`url`, `headers`, `auth_key`, `format`, `body`, from the adapter). The engine makes the request
(`app.outbound`, under the address policy of app URLs) and memoizes the provider's JSON answer,
which `infer` returns; a non-2xx answer is a step error, retried like any other
(PROTOCOL.md 10.3).

Any object with the official adapter methods works, e.g. the official SDK's
`inngest.experimental.ai.openai.Adapter(auth_key=..., model=...)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast

from app.models import JSON, StepKind

if TYPE_CHECKING:
    from app.sdk.steps import StepReplay


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
        """Have the engine call the model; its JSON answer (memoized: asked once per run)."""
        step = self._replay.start(StepKind.AI_GATEWAY, step_id, infer_opts(adapter, body))
        return cast(dict[str, object], step.value)


class AI:
    """`ctx.step.ai` for `async def` handlers: `await ctx.step.ai.infer(...)`."""

    def __init__(self, replay: StepReplay) -> None:
        self._sync = AISync(replay)

    async def infer(
        self, step_id: str, *, adapter: BaseAdapter, body: dict[str, Any]
    ) -> dict[str, object]:
        return self._sync.infer(step_id, adapter=adapter, body=body)
