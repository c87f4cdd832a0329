"""`POST /v1/cancellations`: cancel every queued or running run of a function created in a
time window (`{function_id, started_after?, started_before?, if?}`), as Inngest's bulk cancel.

Flow control's `Admission.bulk_cancel` does the work: it reads the function's Queued and
Running indexes in bounded pages (a function with many finished runs costs nothing extra) and
cancels each run through the executor, exactly as `DELETE /v1/runs/<id>` would.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from app import expressions
from app.api import params
from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.runs import iso
from app.errors import BadRequest, NotFound

log = logging.getLogger("stepline.api")

bp = Blueprint("cancellations", __name__)

BATCH = 100


@bp.post("/v1/cancellations")
@requires(Access.OPERATOR)
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
    cancelled = engine.admission.bulk_cancel(
        function_id, after, before, engine.now(), if_expr=if_expr or None, page_size=BATCH
    )
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


def _time(body: dict[str, object], name: str) -> int | None:
    value = body.get(name)
    return None if value is None or value == "" else params.parse_time(value, name)
