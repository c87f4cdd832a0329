"""A lean HTTP/1.1 load generator for the web benchmarks: keep-alive sockets, each request's
bytes built before the clock starts, replies read by `Content-Length` only.

A Python HTTP client (`requests`, `httpx`) spends about as much CPU per request as a small
Flask view; on a 2-core machine it would measure itself. This one costs tens of
microseconds a request, so what is measured is the server.

    load(host, port, bodies_of, threads=8, seconds=8)   requests/s and events/s answered 200
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    requests: int
    events: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds


class Connection:
    """One keep-alive connection; `post` sends prepared bytes and reads one reply."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.create_connection((host, port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def send(self, request: bytes) -> tuple[int, bytes]:
        self._sock.sendall(request)
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            self._buffer = rest
            self._fill()
            rest = self._buffer
        self._buffer = rest[length:]
        return status, rest[:length]

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    def close(self) -> None:
        self._sock.close()


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """The bytes of one keep-alive `POST` of a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def load(
    host: str,
    port: int,
    requests_of: Callable[[int], list[bytes]],
    *,
    events_per_request: int,
    threads: int,
    seconds: float,
) -> Result:
    """`threads` clients, each on its own connection, send their prepared requests
    (`requests_of(thread index)`, cycled) for `seconds`; every reply must be 200."""
    prepared = [requests_of(n) for n in range(threads)]
    connections = [Connection(host, port) for _ in range(threads)]
    done = [0] * threads
    failures: list[str] = []
    start_line = threading.Barrier(threads + 1)
    stop = [0.0]

    def client(index: int) -> None:
        conn, requests = connections[index], prepared[index]
        start_line.wait()
        i = 0
        try:
            while time.monotonic() < stop[0]:
                status, reply = conn.send(requests[i % len(requests)])
                if status != 200:
                    failures.append(f"{status}: {reply[:200]!r}")
                    return
                i += 1
        except OSError as exc:
            failures.append(repr(exc))
        done[index] = i

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    start = time.monotonic()
    stop[0] = start + seconds
    start_line.wait()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - start
    for conn in connections:
        conn.close()
    if failures:
        raise RuntimeError(f"the server answered {failures[0]}")
    total = sum(done)
    return Result(total, total * events_per_request, elapsed)
