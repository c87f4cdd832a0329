"""The Connect wire format (protobuf, generated in `proto/`) to and from Stepline's records.

Every WebSocket frame is a binary `ConnectMessage {kind, payload}`; `payload` is another message
encoded, chosen by `kind` (PROTOCOL.md 10.5). The HTTP routes `/v0/connect/start` and `/flush`
exchange `StartRequest`/`StartResponse` and `SDKResponse`/`FlushResponse`.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from app.gateway.proto import connect_pb2 as pb
from app.models import ConnectReply, ConnectRequest

__all__ = [
    "DecodeError",
    "decode",
    "encode",
    "executor_request",
    "reply_from_proto",
]

M = TypeVar("M", bound=Message)

_STATUSES = {
    pb.SDKResponseStatus.DONE: "done",
    pb.SDKResponseStatus.NOT_COMPLETED: "not_completed",
    pb.SDKResponseStatus.ERROR: "error",
}


def encode(kind: int, payload: Message | None = None) -> bytes:
    """A `ConnectMessage` frame of `kind` carrying `payload`."""
    body = b"" if payload is None else payload.SerializeToString()
    return pb.ConnectMessage(kind=kind, payload=body).SerializeToString()  # type: ignore[arg-type]


def decode(message_type: type[M], raw: bytes) -> M:
    """`raw` parsed as `message_type`; raises `DecodeError` for bytes that are not one."""
    message = message_type()
    message.ParseFromString(raw)
    return message


def executor_request(request: ConnectRequest, lease_id: str) -> pb.GatewayExecutorRequestData:
    """What a worker receives for a call: the HTTP call's JSON body and where it goes."""
    return pb.GatewayExecutorRequestData(
        request_id=request.request_id,
        app_name=request.app_id,
        function_slug=request.function_slug,
        step_id=request.step_id,
        request_payload=request.payload.encode("utf-8"),
        run_id=request.run_id,
        lease_id=lease_id,
        job_id=request.request_id,
    )


def reply_from_proto(response: pb.SDKResponse) -> ConnectReply:
    """A worker's `SDKResponse` (over the WebSocket or `/v0/connect/flush`) as a record."""
    return ConnectReply(
        request_id=response.request_id,
        status=_STATUSES.get(response.status, "error"),
        body=response.body.decode("utf-8", errors="replace"),
        no_retry=response.no_retry,
        retry_after=response.retry_after if response.HasField("retry_after") else None,
        sdk_version=response.sdk_version,
        request_version=response.request_version,
    )
