"""`POST /v1/cancellations`: cancel every queued or running run of a function created in a
time window (`{function_id, started_after?, started_before?, if?}`), as Inngest's bulk cancel.

Flow control's `Admission.bulk_cancel` does it when the engine has one; otherwise
`bulk_cancel` here reads the function's Queued and Running indexes in bounded pages (a
function with many finished runs costs nothing extra) and cancels each run through the
executor, exactly as `DELETE /v1/runs/<id>` would.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify

from app import expressions
from app.api import params
from app.api.context import current_engine
from app.api.runs import iso
from app.errors import BadRequest, NotFound
from app.models import RunStatus

if TYPE_CHECKING:
    from app.engine import Engine

log = logging.getLogger("stepline.api")

bp = Blueprint("cancellations", __name__)

BATCH = 100


@bp.post("/v1/cancellations")
def create_cancellation() -> Response:
    body = params.body()
    function_id = body.get("function_id")
    if not isinstance(function_id, str) or not function_id:
        raise BadRequest("function_id is required (a function id)", field="function_id")
    after = _time(body, "started_after")
    before = _time(body, "started_before")
    if after is not None and before is not None and after >= before:
        raise BadRequest("started_after must be before started_before", field="started_after")
    if_expr = body.get("if")
    if if_expr is not None and not isinstance(if_expr, str):
        raise BadRequest("if must be an expression (string)", field="if")
    if if_expr:
        try:
            expressions.compile_expression(if_expr)
        except BadRequest as exc:
            raise BadRequest(exc.message, field="if") from exc
    engine = current_engine()
    if engine.store.get_function(function_id) is None:
        raise NotFound(f"function {function_id} not found", field="function_id")
    admission = _admission(engine)
    if admission is not None:
        cancelled = int(
            admission.bulk_cancel(
                function_id,
                0 if after is None else after,
                params.MAX_MS + 1 if before is None else before,
                engine.now(),
                if_expr=if_expr or None,
            )
        )
    else:
        cancelled = bulk_cancel(engine, function_id, after, before, if_expr=if_expr or None)
    log.info(
        "bulk cancel function=%s cancelled=%d",
        function_id,
        cancelled,
        extra={"function": function_id, "cancelled": cancelled},
    )
    return jsonify(
        {
            "data": {
                "function_id": function_id,
                "started_after": iso(after),
                "started_before": iso(before),
                "cancelled": cancelled,
            }
        }
    )


def bulk_cancel(
    engine: Engine,
    function_id: str,
    created_after: int | None,
    created_before: int | None,
    *,
    if_expr: str | None = None,
    batch: int | None = None,
) -> int:
    """Cancel the function's queued and running runs created in [after, before); returns how
    many this call ended. Pages follow positions, so runs leaving an index meanwhile (ended,
    or started: then they are found in the Running pass) never make it loop."""
    cancelled = 0
    for status in (RunStatus.QUEUED, RunStatus.RUNNING):
        position = None
        while True:
            page = engine.store.page_runs(
                batch or BATCH,
                function_id=function_id,
                status=status.value,
                created_after=created_after,
                created_before=created_before,
                after=position,
            )
            for view in page.items:
                if if_expr and not _matches(engine, view.run_id, if_expr):
                    continue
                if engine.executor.cancel(view.run_id, engine.now()):
                    cancelled += 1
            if page.next is None:
                break
            position = page.next
    return cancelled


def _matches(engine: Engine, run_id: str, if_expr: str) -> bool:
    state = engine.store.load_run(run_id)
    if state is None or not state.events:
        return False
    return bool(expressions.evaluate(if_expr, {"event": state.events[0]}))


def _admission(engine: Engine) -> Any:
    """Flow control's admission stage, wherever the engine keeps it (None without one)."""
    for owner in (engine, engine.runner, engine.executor):
        admission = getattr(owner, "admission", None)
        if callable(getattr(admission, "bulk_cancel", None)):
            return admission
    return None


def _time(body: dict[str, object], name: str) -> int | None:
    value = body.get(name)
    return None if value is None or value == "" else params.parse_time(value, name)
