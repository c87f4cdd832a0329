"""A loopback TCP proxy between Stepline's processes and Redis that loses replies.

While `armed`, every `every`-th reply to a Lua script (a chunk from Redis following a chunk
from the client that held `EVALSHA`/`EVAL`) is not forwarded: the proxy closes both sides
instead. Redis did the work; the client sees its connection reset and cannot know whether
the script ran, which is exactly the case every script must survive being sent again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket
    script_pending: bool = False
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


@dataclass
class LosingProxy:
    target_port: int
    port: int
    every: int = 10
    armed: bool = False
    dropped: int = 0
    """Script replies lost so far."""
    _replies: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket | None = None
    _pairs: list[_Pair] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        for pair in list(self._pairs):
            pair.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, upstream)
            self._pairs.append(pair)
            threading.Thread(target=self._to_redis, args=(pair,), daemon=True).start()
            threading.Thread(target=self._to_client, args=(pair,), daemon=True).start()

    def _to_redis(self, pair: _Pair) -> None:
        while not pair.closed:
            try:
                data = pair.client.recv(65536)
                if not data:
                    break
                if b"EVAL" in data.upper():
                    pair.script_pending = True
                pair.upstream.sendall(data)
            except OSError:
                break
        pair.close()

    def _to_client(self, pair: _Pair) -> None:
        while not pair.closed:
            try:
                data = pair.upstream.recv(65536)
                if not data:
                    break
                if pair.script_pending:
                    pair.script_pending = False
                    if self._lose():
                        break  # Redis answered; the client never hears it
                pair.client.sendall(data)
            except OSError:
                break
        pair.close()

    def _lose(self) -> bool:
        with self._lock:
            if not self.armed:
                return False
            self._replies += 1
            if self._replies % self.every:
                return False
            self.dropped += 1
            return True
