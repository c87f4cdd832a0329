"""In-process Stepline functions (app `sdkx`) that call functions served by the official-SDK
test apps, for the end-to-end tests: the workers load this module beside
`tests.integration.functions` (`STEPLINE_FUNCTIONS`).
"""

from __future__ import annotations

import app.sdk as inngest

client = inngest.Inngest(app_id="sdkx")


@client.create_function(fn_id="call-sdk", trigger=inngest.TriggerEvent(event="sdkx/call-sdk"))
def call_sdk(ctx: inngest.ContextSync) -> object:
    """Invoke `<app>-child` (served by an SDK app over HTTP) by its ids; report its answer."""
    app_id = str(ctx.event.data["app"])
    try:
        out = ctx.step.invoke_by_id(
            "call",
            app_id=app_id,
            function_id=str(ctx.event.data.get("fn", "child")),
            data={"n": int(ctx.event.data.get("n", 0))},
        )
    except inngest.StepError as err:
        return {"error": str(err)}
    return {"sdk_child": out}
