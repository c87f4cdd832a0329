"""The gateway process: `ws://<host>:<port>/v0/connect`, subprotocol `v0.connect.inngest.com`.

    python -m app gateway [--host 0.0.0.0] [--port 8289]     (the Procfile's `gateway`)

On SIGTERM or SIGINT it drains: it stops listening (a connection that still arrives is refused
with `connect_gateway_closing`), every worker gets GATEWAY_CLOSING (it opens a new connection
and closes this one; its calls in flight keep their leases and deliver their replies there or
through `/v0/connect/flush`), no call is handed out any more, and sockets still open after
`DRAIN_TIMEOUT_S` are closed. The port is bound with SO_REUSEPORT, so a new gateway can start
on it before the old one is stopped: workers then move over without a gap (rolling restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from app import logs
from app.config import Settings, load_or_exit
from app.gateway import messages
from app.gateway.connection import (
    GATEWAY_CLOSING,
    MessageHandler,
    Refused,
    Timing,
    WorkerConnection,
    handshake,
)
from app.gateway.dispatch import Dispatcher
from app.gateway.proto import connect_pb2 as pb
from app.state.client import store_for
from app.state.connect import ConnectStore
from app.state.store import Store

log = logging.getLogger("stepline.gateway")


def now_ms() -> int:
    return int(time.time() * 1000)


PATH = "/v0/connect"
SUBPROTOCOL = Subprotocol("v0.connect.inngest.com")
"""Required: websockets refuses a handshake without it (HTTP 400)."""
MAX_MESSAGE_BYTES = 5 * 1024 * 1024
"""A reply carries a step's output (4 MiB at most, as over HTTP) plus its envelope."""
DRAIN_TIMEOUT_S = 10.0
THREADS = 64
"""Threads for Redis calls (blocking pops among them: one per app with workers here)."""


class Gateway:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.connect = ConnectStore(store)
        self.timing = Timing(
            heartbeat_s=max(1, round(settings.connect_heartbeat_seconds)),
            lease_ms=int(settings.connect_lease_seconds * 1000),
        )
        self.dispatcher = Dispatcher(self.connect, self.timing.lease_ms)
        self.connections: set[WorkerConnection] = set()
        self.draining = False

    @staticmethod
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] != PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, f"Connect is served at {PATH}\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        """One worker, from hello to close."""
        if self.draining:
            await ws.close(1001, GATEWAY_CLOSING)
            return
        try:
            conn = await handshake(ws, self.store, self.settings, self.connect, self.timing)
        except Refused as refused:
            log.warning("connection refused reason=%s: %s", refused.reason, refused)
            await ws.close(refused.code, refused.reason)
            return
        log.info(
            "worker connected worker=%s apps=%s sdk=%s", conn.worker, ",".join(conn.apps), conn.sdk
        )
        self.connections.add(conn)
        if conn.ready:
            for app in conn.apps:
                await asyncio.to_thread(self.connect.worker_seen, app, conn.worker, now_ms())
        self.dispatcher.attach(conn)
        try:
            await MessageHandler(conn, self.connect, self.timing, self.dispatcher.changed).run()
        finally:
            self.connections.discard(conn)
            self.dispatcher.detach(conn)
            for app in conn.apps:
                await asyncio.to_thread(self.connect.worker_gone, app, conn.worker)
            log.info("worker disconnected worker=%s code=%s", conn.worker, ws.close_code)

    async def drain(self, server: Server) -> None:
        """Stop taking connections and calls; ask workers to move; close what stays."""
        self.draining = True
        server.close(close_connections=False)  # new sockets go to the next gateway
        for conn in list(self.connections):
            conn.closing = True
            await conn.send(messages.encode(pb.GATEWAY_CLOSING))
        self.dispatcher.changed()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.1)
        for conn in list(self.connections):
            await conn.ws.close(1001, GATEWAY_CLOSING)
        await self.dispatcher.stop()


async def serve_gateway(
    settings: Settings, host: str, port: int, stop: asyncio.Event | None = None
) -> None:
    """Serve until `stop` is set or SIGTERM/SIGINT arrives, then drain."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="gateway"))
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    store = store_for(settings)
    gateway = Gateway(settings, store)
    async with serve(
        gateway.handle,
        host,
        port,
        subprotocols=[SUBPROTOCOL],
        process_request=gateway.process_request,
        max_size=MAX_MESSAGE_BYTES,
        compression=None,
        reuse_port=True,
    ) as server:
        bound = ", ".join(str(sock.getsockname()[:2]) for sock in server.sockets)
        log.info("gateway listening on %s path=%s", bound, PATH)
        await stop.wait()
        log.info("gateway draining connections=%d", len(gateway.connections))
        await gateway.drain(server)
    store.close()


def main(host: str, port: int) -> None:
    settings = load_or_exit()
    logs.configure(settings.log_format)
    logging.getLogger("stepline").setLevel(logging.INFO)
    if not logging.getLogger().handlers and not logging.getLogger("stepline").handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logs.formatter(settings.log_format))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
    asyncio.run(serve_gateway(settings, host, port))
