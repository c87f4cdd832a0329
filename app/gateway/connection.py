"""One worker's WebSocket: the handshake (PROTOCOL.md 10.5), then its messages.

    gateway                                    worker
    GATEWAY_HELLO            ──►
                             ◄──  WORKER_CONNECT {connection id, session tokens, apps}
    (session checked; each app registered as by /fn/register; SYNC_FAILED and close if not)
    GATEWAY_CONNECTION_READY ──►  {heartbeat_interval, extend_lease_interval}
                             ◄──  WORKER_READY (TS asks for manual readiness; Python does not)

Calls are sent by `app.gateway.dispatch`; this module answers what the worker sends: replies
(stored, first wins, then acknowledged), lease renewals, heartbeats and WORKER_PAUSE (no new
calls; the socket stays open for the replies of calls in flight).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ulid import ULID
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from app import strictjson
from app.config import Settings
from app.gateway import messages
from app.gateway.proto import connect_pb2 as pb
from app.models import JSON
from app.registration import register_app
from app.state.connect import Claimed, ConnectStore
from app.state.store import Store
from app.sync import CONNECT_APP_URL, read_registration

log = logging.getLogger("stepline.gateway")

HELLO_TIMEOUT_S = 5.0
MAX_APPS = 100
MISSED_HEARTBEATS = 3
"""A connection silent for this many heartbeat intervals is closed."""

# Close reasons (at most 123 bytes), as Inngest's syscodes name them; TS reconnects quickly on
# "connect_gateway_closing".
GATEWAY_CLOSING = "connect_gateway_closing"
AUTH_FAILED = "connect_authentication_failed"
BAD_HELLO = "connect_worker_hello_invalid_msg"
BAD_PAYLOAD = "connect_worker_hello_invalid_payload"
SYNC_FAILED = "connect_sync_failed"
HEARTBEATS_MISSED = "CONSECUTIVE_HEARTBEATS_MISSED"


@dataclass(frozen=True)
class Timing:
    heartbeat_s: int
    lease_ms: int

    @property
    def extend_every_s(self) -> int:
        """Renewal interval told to workers: a quarter of the lease, in whole seconds (the
        Python SDK parses only "<N>s")."""
        return max(1, self.lease_ms // 4000)


class Refused(Exception):
    """The handshake failed: close the socket with `code` and `reason`."""

    def __init__(self, code: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.reason = reason


class WorkerConnection:
    """A worker after its handshake: which apps it serves and what it is running."""

    def __init__(self, ws: ServerConnection, data: pb.WorkerConnectRequestData) -> None:
        self.ws = ws
        self.id = data.connection_id
        self.instance = data.instance_id
        self.apps = [app.app_name for app in data.apps]
        self.sdk = f"{data.sdk_language}:{data.sdk_version}"
        self.manual_ack = data.worker_manual_readiness_ack
        limit = data.max_worker_concurrency if data.HasField("max_worker_concurrency") else 0
        self.max_inflight = limit if limit > 0 else None
        self.ready = False
        self.paused = False
        self.closing = False
        self.inflight: set[str] = set()
        self.last_heartbeat = time.monotonic()
        self._send_lock = asyncio.Lock()

    @property
    def worker(self) -> str:
        """How requests name the worker running them: "<instance id>/<connection id>"."""
        return f"{self.instance}/{self.id}"

    @property
    def accepting(self) -> bool:
        """Takes new calls: ready, not paused by the worker, not drained by the gateway."""
        open_ = self.ws.close_code is None
        return self.ready and open_ and not self.paused and not self.closing

    @property
    def has_capacity(self) -> bool:
        return self.max_inflight is None or len(self.inflight) < self.max_inflight

    async def send(self, frame: bytes) -> bool:
        try:
            async with self._send_lock:
                await self.ws.send(frame)
            return True
        except ConnectionClosed:
            return False

    async def forward(self, claimed: Claimed) -> bool:
        """Send a call to the worker; False if the socket is gone."""
        self.inflight.add(claimed.request.request_id)
        request = messages.executor_request(claimed.request, claimed.lease_id)
        sent = await self.send(messages.encode(pb.GATEWAY_EXECUTOR_REQUEST, request))
        if not sent:
            self.inflight.discard(claimed.request.request_id)
        return sent


# --- the handshake -------------------------------------------------------------------------


async def handshake(
    ws: ServerConnection, store: Store, settings: Settings, connect: ConnectStore, timing: Timing
) -> WorkerConnection:
    """Hello, WORKER_CONNECT, registration, CONNECTION_READY; raises `Refused`."""
    await ws.send(messages.encode(pb.GATEWAY_HELLO))
    try:
        raw = await asyncio.wait_for(ws.recv(decode=False), HELLO_TIMEOUT_S)
        frame = messages.decode(pb.ConnectMessage, raw)
    except TimeoutError:
        raise Refused(1008, BAD_HELLO, "no WORKER_CONNECT within 5 s") from None
    except messages.DecodeError:
        raise Refused(1008, BAD_HELLO, "the first message is not a ConnectMessage") from None
    if frame.kind != pb.WORKER_CONNECT:
        raise Refused(1008, BAD_HELLO, f"expected WORKER_CONNECT, got kind {frame.kind}")
    try:
        data = messages.decode(pb.WorkerConnectRequestData, frame.payload)
    except messages.DecodeError:
        raise Refused(1008, BAD_PAYLOAD, "WORKER_CONNECT payload is not protobuf") from None
    if not data.instance_id or not data.apps or len(data.apps) > MAX_APPS:
        raise Refused(1008, BAD_PAYLOAD, "WORKER_CONNECT needs an instance id and 1-100 apps")
    session = await asyncio.to_thread(connect.take_session, data.connection_id)
    tokens = (data.auth_data.session_token, data.auth_data.sync_token)
    if session is None or session != tokens:
        raise Refused(1008, AUTH_FAILED, f"unknown or expired session {data.connection_id!r}")
    for app in data.apps:
        problem = await asyncio.to_thread(_register, store, settings, app, data)
        if problem is not None:
            error = pb.SystemError(code=SYNC_FAILED, message=problem)
            await ws.send(messages.encode(pb.SYNC_FAILED, error))
            raise Refused(1008, SYNC_FAILED, problem)
    ready = pb.GatewayConnectionReadyData(
        heartbeat_interval=f"{timing.heartbeat_s}s",
        extend_lease_interval=f"{timing.extend_every_s}s",
    )
    await ws.send(messages.encode(pb.GATEWAY_CONNECTION_READY, ready))
    conn = WorkerConnection(ws, data)
    conn.ready = not conn.manual_ack
    return conn


def _register(
    store: Store, settings: Settings, app: pb.AppConfiguration, data: pb.WorkerConnectRequestData
) -> str | None:
    """Register one app of the worker as /fn/register would; the problem, or None."""
    try:
        functions: JSON = strictjson.loads(app.functions or b"[]")  # as /fn/register reads JSON
    except strictjson.JSONRejected as exc:
        return f"app {app.app_name!r}: its functions are not valid JSON: {exc}"
    body: dict[str, JSON] = {
        "appName": app.app_name,
        "url": CONNECT_APP_URL,
        "functions": functions,
        "sdk": f"{data.sdk_language}:{data.sdk_version}",
        "framework": data.framework or "connect",
    }
    if app.HasField("app_version"):
        body["appVersion"] = app.app_version
    try:
        registration = read_registration(body, headers={}, transport="connect")
    except Exception as exc:  # BadRequest: a malformed payload
        return f"app {app.app_name!r}: {exc}"
    registered = register_app(store, settings, registration, int(time.time() * 1000))
    return None if registered.ok else f"app {app.app_name!r}: {registered.message}"


# --- after the handshake: the worker's messages ---------------------------------------------


class MessageHandler:
    """Answers one worker's messages; `on_change` tells the dispatcher when the connection
    started or stopped taking calls, or freed capacity."""

    def __init__(
        self,
        conn: WorkerConnection,
        connect: ConnectStore,
        timing: Timing,
        on_change: Callable[[], None],
    ) -> None:
        self.conn = conn
        self.connect = connect
        self.timing = timing
        self.on_change = on_change

    async def run(self) -> None:
        """Read messages until the socket closes (or stays silent too long)."""
        watchdog = asyncio.create_task(self._watch_heartbeats())
        try:
            async for raw in self.conn.ws:
                if isinstance(raw, bytes):
                    await self._handle(raw)
        except ConnectionClosed:
            pass
        finally:
            watchdog.cancel()

    async def _handle(self, raw: bytes) -> None:
        try:
            frame = messages.decode(pb.ConnectMessage, raw)
            await self._dispatch(frame)
        except messages.DecodeError:
            log.warning("undecodable message from worker=%s", self.conn.worker)

    async def _dispatch(self, frame: pb.ConnectMessage) -> None:
        conn, kind = self.conn, frame.kind
        if kind == pb.WORKER_HEARTBEAT:
            conn.last_heartbeat = time.monotonic()
            await conn.send(messages.encode(pb.GATEWAY_HEARTBEAT))
            await self._seen()
        elif kind == pb.WORKER_READY:
            if not conn.closing:
                conn.ready = True
                await self._seen()
                self.on_change()
        elif kind == pb.WORKER_PAUSE:
            conn.paused = True
            log.info("worker paused worker=%s inflight=%d", conn.worker, len(conn.inflight))
        elif kind == pb.WORKER_REPLY:
            await self._reply(messages.decode(pb.SDKResponse, frame.payload))
        elif kind == pb.WORKER_REQUEST_EXTEND_LEASE:
            await self._extend(messages.decode(pb.WorkerRequestExtendLeaseData, frame.payload))
        elif kind == pb.WORKER_REQUEST_ACK:
            pass  # the lease, renewed by the worker, is what counts
        else:
            log.debug("ignored message kind=%s worker=%s", kind, conn.worker)

    async def _reply(self, response: pb.SDKResponse) -> None:
        reply = messages.reply_from_proto(response)
        outcome = await asyncio.to_thread(self.connect.save_reply, reply)
        if outcome != "saved":
            log.info("reply ignored request_id=%s outcome=%s", reply.request_id, outcome)
        await self.conn.send(
            messages.encode(pb.WORKER_REPLY_ACK, pb.WorkerReplyAckData(request_id=reply.request_id))
        )
        self._done(reply.request_id)

    async def _extend(self, data: pb.WorkerRequestExtendLeaseData) -> None:
        now = int(time.time() * 1000)
        renewed = await asyncio.to_thread(
            self.connect.extend,
            data.request_id,
            data.lease_id,
            str(ULID()),
            now,
            self.timing.lease_ms,
        )
        ack = pb.WorkerRequestExtendLeaseAckData(
            request_id=data.request_id,
            account_id=data.account_id,
            env_id=data.env_id,
            app_id=data.app_id,
            function_slug=data.function_slug,
        )
        if renewed is not None:
            ack.new_lease_id = renewed
        else:
            log.info("lease lost request_id=%s worker=%s", data.request_id, self.conn.worker)
            self._done(data.request_id)
        await self.conn.send(messages.encode(pb.WORKER_REQUEST_EXTEND_LEASE_ACK, ack))

    def _done(self, request_id: str) -> None:
        if request_id in self.conn.inflight:
            self.conn.inflight.discard(request_id)
            self.on_change()

    async def _seen(self) -> None:
        now = int(time.time() * 1000)
        for app in self.conn.apps:
            await asyncio.to_thread(self.connect.worker_seen, app, self.conn.worker, now)

    async def _watch_heartbeats(self) -> None:
        limit = MISSED_HEARTBEATS * self.timing.heartbeat_s
        while True:
            await asyncio.sleep(self.timing.heartbeat_s)
            if time.monotonic() - self.conn.last_heartbeat > limit:
                log.warning("worker missed heartbeats, closing worker=%s", self.conn.worker)
                await self.conn.ws.close(1001, HEARTBEATS_MISSED)
                return
