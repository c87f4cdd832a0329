"""The HTTP half of Connect (workers that dial out to Stepline; the WebSocket half is
`app.gateway`):

    POST /v0/connect/start   StartRequest -> StartResponse: a connection id, session tokens
                             and the gateway's WebSocket URL for a worker about to connect
    POST /v0/connect/flush   SDKResponse -> FlushResponse: a reply the worker could not get
                             acknowledged over its WebSocket (connection lost, no ack in time)

Bodies are protobuf (`Content-Type: application/protobuf`); errors answer JSON as everywhere
else. Both are `sdk` routes (`app.api.auth`), as `/fn/register`: in production mode they need
`Authorization: Bearer <hashed signing key>`; the gateway then trusts the session tokens handed
out here.
"""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request
from ulid import ULID

from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.errors import error_response
from app.errors import BadRequest
from app.gateway import messages
from app.gateway.proto import connect_pb2 as pb
from app.state.connect import SESSION_TTL_MS, ConnectStore

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger("stepline.api.connect")

bp = Blueprint("connect", __name__)

GATEWAY_GROUP = "stepline"
"""The one gateway group a start response names (workers may ask to exclude it after a
failure; with one group there is nowhere else to send them, so it is handed out again)."""
PROTOBUF = "application/protobuf"
_STORE = "stepline.connect"


def _store() -> ConnectStore:
    store = current_app.extensions.get(_STORE)
    if store is None:
        store = current_app.extensions[_STORE] = ConnectStore(current_engine().store)
    return store


def gateway_endpoint(settings: Settings, host_header: str) -> str:
    """`STEPLINE_GATEWAY_URL`, else the gateway port on the host the worker reached us at."""
    if settings.gateway_url:
        return settings.gateway_url
    host = urllib.parse.urlsplit(f"//{host_header}").hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{settings.gateway_port}/v0/connect"


def _protobuf(message: pb.StartResponse | pb.FlushResponse) -> Response:
    return Response(message.SerializeToString(), status=200, mimetype=PROTOBUF)


@bp.post("/v0/connect/start")
@requires(Access.SDK, media_types=(PROTOBUF,))
def start() -> Response | tuple[Response, int]:
    engine = current_engine()
    try:
        messages.decode(pb.StartRequest, request.get_data())
    except messages.DecodeError:
        return error_response(BadRequest("the body must be a protobuf connect.v1.StartRequest"))
    connection_id = str(ULID())
    session_token, sync_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    _store().open_session(connection_id, session_token, sync_token, SESSION_TTL_MS)
    endpoint = gateway_endpoint(engine.settings, request.host)
    log.info("connect start connection_id=%s gateway=%s", connection_id, endpoint)
    return _protobuf(
        pb.StartResponse(
            connection_id=connection_id,
            gateway_endpoint=endpoint,
            gateway_group=GATEWAY_GROUP,
            session_token=session_token,
            sync_token=sync_token,
        )
    )


@bp.post("/v0/connect/flush")
@requires(Access.SDK, media_types=(PROTOBUF,))
def flush() -> Response | tuple[Response, int]:
    try:
        response = messages.decode(pb.SDKResponse, request.get_data())
    except messages.DecodeError:
        return error_response(BadRequest("the body must be a protobuf connect.v1.SDKResponse"))
    if not response.request_id:
        return error_response(BadRequest("the SDKResponse has no request_id", field="request_id"))
    outcome = _store().save_reply(messages.reply_from_proto(response))
    log.info("connect flush request_id=%s outcome=%s", response.request_id, outcome)
    return _protobuf(pb.FlushResponse(request_id=response.request_id))
