"""`POST /e/<key>` through gunicorn as the Procfile runs it: the app with its fast path
(app.api.fast_events) and the same app with Flask alone (tests.integration.flask_only) give
the same answers, accepted or refused, over real sockets (gunicorn's own request bodies,
keep-alive, a chunked body)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import cli
from app.devredis import free_port
from app.runner import seeded_ids
from tests.integration.cluster import ROOT, Cluster, cluster_env

SEED = "1700000000000,AAECAwQFBgcICQ=="
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def servers(redis_url: str, tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(the app as served, Flask alone), each one gunicorn worker over the test Redis."""
    env = cluster_env(redis_url)
    procs, clients = [], []
    waiter = Cluster(redis_url, tmp_path)
    try:
        for name, app in (
            ("fast", "app.api:create_app()"),
            ("flask", "tests.integration.flask_only:create_app()"),
        ):
            port = free_port()
            command = [*cli.web_command("127.0.0.1", port, workers=1)[:-1], app]
            log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115
            procs.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
            clients.append(client)
            waiter.wait_for(lambda c=client: _up(c), 60, f"gunicorn ({name})")
        yield clients[0], clients[1]
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code < 500
    except httpx.HTTPError:
        return False


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k, v) for k, v in response.headers.items() if k.lower() != "date")
    return response.status_code, headers, response.content


def _event(**fields: object) -> bytes:
    return json.dumps({"name": "shop/order.placed", "data": {"n": 1}, **fields}).encode()


def _chunks() -> Iterator[bytes]:
    yield b'{"name": "shop/'
    yield b'order.placed"}'


CASES: dict[str, tuple[str, str, dict[str, str], bytes | None]] = {
    "bad json": ("POST", "/e/key", JSON, b'{"name": '),
    "empty body": ("POST", "/e/key", JSON, b""),
    "reserved name": ("POST", "/e/key", JSON, _event(name="inngest/x")),
    "event over 256 KiB": ("POST", "/e/key", JSON, _event(data={"b": "x" * 262_144})),
    "request over 3 MiB": (
        "POST",
        "/e/key",
        JSON,
        json.dumps([{"name": "a", "data": {"b": "x" * 204_800}}] * 16).encode(),
    ),
    "empty key": ("POST", "/e/%20", JSON, _event()),
    "no key": ("POST", "/e", JSON, _event()),
    "two segments": ("POST", "/e/key/more", JSON, _event()),
    "wrong method": ("GET", "/e/key", {}, None),
    "not declared json": ("POST", "/e/key", {"Content-Type": "text/plain"}, _event()),
    "cross-site": ("POST", "/e/key", {**JSON, "Sec-Fetch-Site": "cross-site"}, _event()),
    "rebinding host": ("POST", "/e/key", {**JSON, "Host": "evil.test"}, _event()),
}


def test_same_answers_with_and_without_the_fast_path(
    servers: tuple[httpx.Client, httpx.Client],
) -> None:
    fast, flask = servers
    for case, (method, path, headers, body) in CASES.items():
        if case == "request over 3 MiB":
            # gunicorn drops the connection of an answer that left a body unread (with or
            # without the fast path): sent on a connection of its own
            headers = {**headers, "Connection": "close"}
        answers = [
            _answer(c.request(method, path, headers=headers, content=body)) for c in (fast, flask)
        ]
        assert answers[0] == answers[1], case
        assert answers[0][0] >= 400, case
    # accepted: the same ids (seeded: the second send dedupes), the same bytes
    seeded = {**JSON, "x-inngest-event-id-seed": SEED}
    answers = [_answer(c.post("/e/key", headers=seeded, content=_event())) for c in (fast, flask)]
    assert answers[0] == answers[1]
    assert json.loads(answers[0][2]) == {"ids": seeded_ids(SEED, 1), "status": 200}
    # a chunked body (no Content-Length) is Flask's, and accepted as before
    chunked = fast.post("/e/key", headers=JSON, content=_chunks())
    assert chunked.status_code == 200 and len(chunked.json()["ids"]) == 1
    # a batch, then a refusal, then a batch on one keep-alive connection
    batch = json.dumps([{"name": "a/b"}, {"name": "a/c"}]).encode()
    assert len(fast.post("/e/key", headers=JSON, content=batch).json()["ids"]) == 2
    assert fast.post("/e/key", headers=JSON, content=b"{").status_code == 400
    assert len(fast.post("/e/key", headers=JSON, content=batch).json()["ids"]) == 2
