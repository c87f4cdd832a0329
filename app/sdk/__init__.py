"""Stepline's native Python SDK: the official `inngest` SDK's surface, run in-process.

Moving a function between the two is one import::

    import app.sdk as inngest   # instead of: import inngest

    client = inngest.Inngest(app_id="shop")

    @client.create_function(fn_id="send-receipt", trigger=inngest.TriggerEvent(event="shop/paid"))
    def send_receipt(ctx: inngest.ContextSync) -> str:
        order = ctx.step.run("load-order", load_order, ctx.event.data["order_id"])
        ctx.step.sleep("cool-off", datetime.timedelta(minutes=5))
        return ctx.step.run("email", send_email, order)

List the module in `STEPLINE_FUNCTIONS` and Stepline's workers run it (app/drivers/inprocess).
"""

from app.models import JSON
from app.sdk.client import Inngest
from app.sdk.context import Context, ContextSync
from app.sdk.errors import NonRetriableError, RetryAfterError, StepError
from app.sdk.event import Event
from app.sdk.function import Function
from app.sdk.options import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    ParallelMode,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from app.sdk.serializer import PydanticSerializer, Serializer
from app.sdk.steps import Step, StepSync

__all__ = [
    "JSON",
    "Batch",
    "Cancel",
    "Concurrency",
    "Context",
    "ContextSync",
    "Debounce",
    "Event",
    "Function",
    "Inngest",
    "NonRetriableError",
    "ParallelMode",
    "Priority",
    "PydanticSerializer",
    "RateLimit",
    "RetryAfterError",
    "Serializer",
    "Singleton",
    "Step",
    "StepError",
    "StepSync",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
]
