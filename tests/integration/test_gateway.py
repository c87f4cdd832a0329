"""The gateway's side of the Connect protocol, edge by edge: a real gateway (in a thread of this
process) on the test Redis, and a client that speaks the protocol with the generated protobuf
messages. The official SDKs' workers are tested against it in test_connect.py."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from app.config import Settings
from app.gateway import messages
from app.gateway.proto import connect_pb2 as pb
from app.gateway.server import serve_gateway
from app.models import ConnectRequest
from app.state.connect import ConnectStore
from app.state.store import Store
from tests.sdk_apps.harness import free_port

PROTOCOL = "v0.connect.inngest.com"
FUNCTION = {
    "id": "gw-fn",
    "name": "fn",
    "triggers": [{"event": "gw/go"}],
    "steps": {"step": {"runtime": {"type": "ws", "url": "wss://connect?fnId=gw-fn&stepId=step"}}},
}


@dataclass
class Running:
    url: str
    store: Store
    connect: ConnectStore


@pytest.fixture
def gateway(redis_url: str) -> Iterator[Running]:
    settings = Settings(redis_url=redis_url, connect_lease_seconds=4, connect_heartbeat_seconds=2)
    port = free_port()
    loop = asyncio.new_event_loop()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        await serve_gateway(settings, "127.0.0.1", port, stop[0])

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    store = Store(redis_url)
    try:
        yield Running(f"ws://127.0.0.1:{port}/v0/connect", store, ConnectStore(store))
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=20)
        store.close()


def frame(ws: ClientConnection, timeout: float = 5) -> pb.ConnectMessage:
    return messages.decode(pb.ConnectMessage, ws.recv(timeout=timeout, decode=False))


def session(gw: Running, connection_id: str = "01HCONN") -> tuple[str, pb.AuthData]:
    gw.connect.open_session(connection_id, "sess", "sync", 60_000)
    return connection_id, pb.AuthData(session_token="sess", sync_token="sync")


def hello(
    gw: Running,
    *,
    functions: Any = (FUNCTION,),
    manual: bool = False,
    max_concurrency: int | None = None,
    instance: str = "box-1",
) -> tuple[ClientConnection, pb.ConnectMessage]:
    """Open a socket, answer the hello; returns the socket and the gateway's next frame."""
    connection_id, auth = session(gw, f"01HCONN{instance.upper().replace('-', '')}")
    ws = connect(gw.url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    assert frame(ws).kind == pb.GATEWAY_HELLO
    data = pb.WorkerConnectRequestData(
        connection_id=connection_id,
        instance_id=instance,
        auth_data=auth,
        apps=[pb.AppConfiguration(app_name="gw", functions=json.dumps(list(functions)).encode())],
        worker_manual_readiness_ack=manual,
        sdk_language="test",
        sdk_version="v0",
    )
    if max_concurrency is not None:
        data.max_worker_concurrency = max_concurrency
    ws.send(messages.encode(pb.WORKER_CONNECT, data))
    return ws, frame(ws)


def submit(gw: Running, request_id: str) -> None:
    request = ConnectRequest(
        request_id=request_id,
        app_id="gw",
        function_slug="gw-fn",
        step_id="step",
        run_id="01RUN",
        payload='{"ctx": {}}',
    )
    assert gw.connect.submit(request, f"L-{request_id}", int(time.time() * 1000), 4000).state == (
        "sent"
    )


def closed_with(ws: ClientConnection, timeout: float = 5) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=timeout)
    return ws.close_code, ws.close_reason


def test_only_the_connect_path_is_served(gateway: Running) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(gateway.url.replace("/v0/connect", "/elsewhere"), subprotocols=[PROTOCOL])  # type: ignore[list-item]
    assert info.value.response.status_code == 404


def test_the_subprotocol_is_required(gateway: Running) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(gateway.url)
    assert info.value.response.status_code == 400


def test_an_unknown_session_is_refused(gateway: Running) -> None:
    ws = connect(gateway.url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    assert frame(ws).kind == pb.GATEWAY_HELLO
    data = pb.WorkerConnectRequestData(
        connection_id="01HNOPE",
        instance_id="box",
        auth_data=pb.AuthData(session_token="forged", sync_token="x"),
        apps=[pb.AppConfiguration(app_name="gw", functions=b"[]")],
    )
    ws.send(messages.encode(pb.WORKER_CONNECT, data))
    assert closed_with(ws) == (1008, "connect_authentication_failed")


def test_the_first_message_must_be_worker_connect(gateway: Running) -> None:
    ws = connect(gateway.url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    frame(ws)
    ws.send(messages.encode(pb.WORKER_HEARTBEAT))
    assert closed_with(ws) == (1008, "connect_worker_hello_invalid_msg")


def test_an_invalid_function_fails_the_sync(gateway: Running) -> None:
    broken = {**FUNCTION, "triggers": []}
    ws, reply = hello(gateway, functions=[broken])
    assert reply.kind == pb.SYNC_FAILED
    error = messages.decode(pb.SystemError, reply.payload)
    assert "gw-fn" in error.message and "triggers" in error.message
    assert closed_with(ws) == (1008, "connect_sync_failed")


def test_a_call_goes_to_the_worker_and_its_reply_to_the_executor(gateway: Running) -> None:
    ws, ready = hello(gateway)
    assert ready.kind == pb.GATEWAY_CONNECTION_READY
    intervals = messages.decode(pb.GatewayConnectionReadyData, ready.payload)
    assert (intervals.heartbeat_interval, intervals.extend_lease_interval) == ("2s", "1s")
    function = gateway.store.get_function("gw-fn")
    assert function is not None and function.driver == "connect"
    ws.send(messages.encode(pb.WORKER_HEARTBEAT))
    assert frame(ws).kind == pb.GATEWAY_HEARTBEAT

    submit(gateway, "r1")
    call = frame(ws)
    assert call.kind == pb.GATEWAY_EXECUTOR_REQUEST
    request = messages.decode(pb.GatewayExecutorRequestData, call.payload)
    assert (request.request_id, request.app_name, request.function_slug) == ("r1", "gw", "gw-fn")
    assert (request.step_id, request.request_payload) == ("step", b'{"ctx": {}}')

    renew = pb.WorkerRequestExtendLeaseData(request_id="r1", lease_id=request.lease_id)
    ws.send(messages.encode(pb.WORKER_REQUEST_EXTEND_LEASE, renew))
    ack = messages.decode(pb.WorkerRequestExtendLeaseAckData, frame(ws).payload)
    assert ack.request_id == "r1" and ack.HasField("new_lease_id")
    ws.send(messages.encode(pb.WORKER_REQUEST_EXTEND_LEASE, renew))  # the old id: lost
    nack = messages.decode(pb.WorkerRequestExtendLeaseAckData, frame(ws).payload)
    assert not nack.HasField("new_lease_id")

    answer = pb.SDKResponse(request_id="r1", status=pb.SDKResponseStatus.DONE, body=b'"ok"')
    ws.send(messages.encode(pb.WORKER_REPLY, answer))
    acked = frame(ws)
    assert acked.kind == pb.WORKER_REPLY_ACK
    assert messages.decode(pb.WorkerReplyAckData, acked.payload).request_id == "r1"
    reply = gateway.connect.wait_reply("r1", 1)
    assert reply is not None and (reply.status, reply.body) == ("done", '"ok"')
    ws.close()


def test_manual_readiness_and_pause(gateway: Running) -> None:
    ws, _ = hello(gateway, manual=True)
    submit(gateway, "r1")
    with pytest.raises(TimeoutError):  # not ready yet: nothing is sent
        ws.recv(timeout=1.5)
    ws.send(messages.encode(pb.WORKER_READY))
    assert frame(ws).kind == pb.GATEWAY_EXECUTOR_REQUEST
    ws.send(messages.encode(pb.WORKER_PAUSE))
    time.sleep(0.2)  # let the gateway read the pause before the next call is queued
    submit(gateway, "r2")
    with pytest.raises(TimeoutError):  # paused: no new calls, the socket stays open
        ws.recv(timeout=1.5)
    ws.send(messages.encode(pb.WORKER_HEARTBEAT))
    assert frame(ws).kind == pb.GATEWAY_HEARTBEAT
    ws.close()


def test_max_worker_concurrency_is_honoured(gateway: Running) -> None:
    ws, _ = hello(gateway, max_concurrency=1)
    submit(gateway, "r1")
    submit(gateway, "r2")
    first = messages.decode(pb.GatewayExecutorRequestData, frame(ws).payload)
    with pytest.raises(TimeoutError):  # one call at a time
        ws.recv(timeout=1.5)
    done = pb.SDKResponse(request_id=first.request_id, status=pb.SDKResponseStatus.DONE, body=b"1")
    ws.send(messages.encode(pb.WORKER_REPLY, done))
    assert frame(ws).kind == pb.WORKER_REPLY_ACK
    second = messages.decode(pb.GatewayExecutorRequestData, frame(ws).payload)
    assert {first.request_id, second.request_id} == {"r1", "r2"}
    ws.close()


def test_a_silent_worker_is_closed(gateway: Running) -> None:
    ws, _ = hello(gateway)
    assert closed_with(ws, timeout=12) == (1001, "CONSECUTIVE_HEARTBEATS_MISSED")
