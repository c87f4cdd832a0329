"""The same promises over a real socket: the API under gunicorn (as the Procfile runs it),
sending accepted events on to Celery's real broker. Whatever comes in, the answer is 2xx/4xx
with a strict JSON body, in time; what is stored reads back as strict JSON."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import REDIS_URL, require_redis
from tests.fuzz.checks import assert_stored_strict, check_answer
from tests.fuzz.harness import TIMEOUT_S, examples
from tests.fuzz.strategies import RAW_BODIES, WIRE_CONTENT_TYPES, nested
from tests.sdk_apps.harness import ROOT
from tests.sdk_apps.stack import ApiServer

pytestmark = pytest.mark.timeout(TIMEOUT_S)

PREFIX = "fuzzweb"
ANSWER_TIMEOUT_S = 30.0
"""No answer within this is a hang (a request is a few ms even on a busy machine)."""


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    client = require_redis()
    client.flushdb()
    env = dict(
        os.environ,
        REDIS_URL=REDIS_URL,
        STEPLINE_KEY_PREFIX=PREFIX,
        STEPLINE_FUNCTIONS="",
        PYTHONPATH=str(ROOT),
    )
    log: Path = tmp_path_factory.mktemp("fuzzweb") / "api.log"
    server = ApiServer(env, log)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=ANSWER_TIMEOUT_S) as http:
            yield http
    finally:
        server.stop()
        client.flushdb()
        client.close()


def send(web: httpx.Client, method: str, path: str, body: bytes = b"", **headers: str) -> int:
    response = web.request(method, path, content=body, headers=headers)
    check_answer(
        path, response.status_code, response.headers.get("content-type", ""), response.content
    )
    return response.status_code


HOSTILE = [
    (b'{"name": "fuzz/a", "data": {"k": 1e999}}', 400),
    (b'{"name": "fuzz/a", "data": {"k": NaN}}', 400),
    (b'[{"name": "fuzz/a"}, {"name": "fuzz/a", "data": {"k": -Infinity}}]', 400),
    (b'{"name": "fuzz/a", "data": {"k": "\\ud800"}}', 400),
    (b'{"name": "fuzz/a", "data": {"k": "\xed\xa0\x80"}}', 400),
    (b'{"name": "fuzz/a", "data": {"k": "\xff"}}', 400),
    (('{"name": "fuzz/a", "data": {"k": ' + nested(990) + "}}").encode(), 400),
    (nested(200_000).encode(), 400),
    (b'{"name": "fuzz/a", "data": {"k": 1180591620717411303425, "n": -1e308}}', 200),
    (b'{"name": "fuzz/a", "id": "\\ud83d\\ude00", "data": {"k": "\\u2028"}}', 200),
]


@pytest.mark.parametrize(("body", "status"), HOSTILE)
def test_hostile_events(web: httpx.Client, body: bytes, status: int) -> None:
    assert send(web, "POST", "/e/fuzz", body, **{"content-type": "application/json"}) == status


def test_oversized_and_chunked_bodies(web: httpx.Client) -> None:
    big = b'{"name": "fuzz/a", "data": {"k": "' + b"x" * (4 * 1024 * 1024) + b'"}}'
    # gunicorn answers before reading the whole body, then closes: a connection of its own.
    json_type = {"content-type": "application/json"}
    assert send(web, "POST", "/e/fuzz", big, connection="close", **json_type) == 413
    assert send(web, "POST", "/e/fuzz", b'{"name": "fuzz/a", "data": {"k": NaN}}') == 415

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "fuzz/a", '
        yield b'"data": {"k": NaN}}'

    response = web.post("/e/fuzz", content=chunks(), headers={"content-type": "application/json"})
    check_answer(
        "/e/fuzz", response.status_code, response.headers["content-type"], response.content
    )
    assert response.status_code == 400


def test_raw_bodies_and_garbage_queries(web: httpx.Client) -> None:
    @examples(25)
    @given(
        path=st.sampled_from(
            ["/e/fuzz", "/fn/register", "/v1/cancellations", "/v1/runs/x/replay", "/invoke/none"]
        ),
        raw=RAW_BODIES,
        content_type=WIRE_CONTENT_TYPES,
    )
    def post(path: str, raw: bytes, content_type: str) -> None:
        send(web, "POST", path, raw, **{"content-type": content_type})

    post()
    for query in ("limit=1e999&cursor=%ED%A0%80", "after=%FF&before=NaN", "status=%00&limit=-0"):
        for path in ("/v1/runs", "/v1/events"):
            assert send(web, "GET", f"{path}?{query}") == 400
    assert send(web, "GET", "/v1/runs/%ED%A0%80") == 404
    assert_stored_strict(REDIS_URL, PREFIX)
