"""Fuzzing the running API (Flask over the real test Redis): whatever comes in, every answer
is 2xx/4xx with a strict JSON body, never a 5xx; accepted events are processed without an
error; everything stored reads back as strict JSON (issue 9, Fuzzing)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.strictjson import MAX_DEPTH
from tests.conftest import REDIS_URL
from tests.fuzz.checks import assert_stored_strict, check_answer
from tests.fuzz.harness import PREFIX, TIMEOUT_S, Target, examples
from tests.fuzz.strategies import (
    ANY_TEXT,
    CONTENT_TYPES,
    EVENTS,
    GOOD_EVENTS,
    HEADER_TEXT,
    QUERY_NAMES,
    QUERY_VALUES,
    RAW_BODIES,
    encode,
    nested,
    query_string,
    quote,
)

pytestmark = pytest.mark.timeout(TIMEOUT_S)

SEEDS = st.one_of(
    st.none(),
    HEADER_TEXT,
    st.sampled_from(["1700000000000,AAAAAAAAAAAAAA==", "-1,AAAA", "9" * 30 + ",x", ","]),
)


def post(target: Target, path: str, body: bytes, content_type: str, **headers: str) -> Any:
    response = target.api.client.post(path, data=body, content_type=content_type, headers=headers)
    return response, check_answer(
        path, response.status_code, response.content_type, response.get_data()
    )


def test_event_bodies(target: Target) -> None:
    @examples(100)
    @given(
        body=st.one_of(
            EVENTS, st.lists(EVENTS, max_size=4), GOOD_EVENTS, st.lists(GOOD_EVENTS, max_size=3)
        ),
        seed=SEEDS,
        content_type=CONTENT_TYPES,
    )
    @example(body={"name": "fuzz/a", "data": {"k": float("inf")}}, seed=None, content_type="")
    @example(body={"name": "fuzz/a", "data": {"k": "\ud800"}}, seed=None, content_type="")
    @example(body={"name": "fuzz/b", "data": {"k": 2**70, "n": 1}}, seed=None, content_type="")
    @example(body={"name": "fuzz/a", "data": {"k": {"x": 10**400}}}, seed=None, content_type="")
    def send(body: Any, seed: str | None, content_type: str) -> None:
        headers = {} if seed is None else {"X-Inngest-Event-Id-Seed": seed}
        response, answer = post(target, "/e/fuzz", encode(body), content_type, **headers)
        assert response.status_code in (200, 400, 413, 415), answer  # 415: a wrong type
        if response.status_code == 200:
            assert len(answer["ids"]) == (len(body) if isinstance(body, list) else 1)
            target.process()  # the runner meets the accepted data: no exception may escape

    send()
    assert assert_stored_strict(REDIS_URL, PREFIX) > 0


def test_raw_bodies_on_every_json_route(target: Target) -> None:
    routes = [
        "/e/fuzz",
        "/invoke/fuzz-expr",
        "/fn/register",
        "/v1/cancellations",
        "/v1/runs/01RUN/replay",
        "/v1/runs/01RUN/rerun",
        "/v1/apps/sync",
    ]

    @examples(120)
    @given(path=st.sampled_from(routes), raw=RAW_BODIES, content_type=CONTENT_TYPES)
    @example(path="/e/fuzz", raw=b'{"name": "fuzz/a", "data": {"k": 1e999}}', content_type="")
    @example(path="/e/fuzz", raw=b'{"name": "fuzz/a", "data": {"k": "\\ud800"}}', content_type="")
    @example(path="/fn/register", raw=nested(985).encode(), content_type="application/json")
    @example(path="/v1/cancellations", raw=b'{"function_id": "\\udfff"}', content_type="")
    def send(path: str, raw: bytes, content_type: str) -> None:
        response, _ = post(target, path, raw, content_type)
        if response.status_code == 200 and path == "/e/fuzz":
            target.process()

    send()
    assert_stored_strict(REDIS_URL, PREFIX)


def test_deep_nesting_just_under_and_over_the_parse_limit(target: Target) -> None:
    """A sweep rather than a draw: the depths around Python's recursion limit."""
    for depth in [*range(MAX_DEPTH - 2, MAX_DEPTH + 3), *range(900, 1_100, 9), 5_000, 100_000]:
        for body in (
            '{"name": "fuzz/a", "data": {"k": ' + nested(depth) + "}}",
            '{"name": "fuzz/a", "data": {"k": '
            + nested(depth, "{}").replace("[", '{"a": [')
            + "}}",
        ):
            response, _ = post(target, "/e/fuzz", body.encode(), "application/json")
            assert response.status_code in (200, 400)
            if response.status_code == 200:
                target.process()


def _routes(target: Target) -> list[tuple[str, str, list[str]]]:
    """Every rule of the app, from its url_map: (rule, method, argument names)."""
    out: list[tuple[str, str, list[str]]] = []
    for rule in target.api.app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.rule, method, sorted(rule.arguments)))
    return out


def test_every_route_with_garbage(target: Target) -> None:
    routes = _routes(target)
    assert any(rule.startswith("/v1/") for rule, _, _ in routes)

    @examples(150)
    @given(
        route=st.sampled_from(routes),
        args=st.lists(ANY_TEXT, min_size=2, max_size=2),
        query=st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=4),
        raw=st.one_of(st.just(b""), RAW_BODIES),
        content_type=CONTENT_TYPES,
        conditional=st.one_of(st.none(), HEADER_TEXT),
    )
    @example(
        route=("/v1/runs", "GET", []),
        args=["", ""],
        query=[("cursor", "WzEsIlx1ZDgwMCJd"), ("limit", "1e999")],  # [1,"\ud800"]
        raw=b"",
        content_type="",
        conditional=None,
    )
    def call(
        route: tuple[str, str, list[str]],
        args: list[str],
        query: list[tuple[str, str]],
        raw: bytes,
        content_type: str,
        conditional: str | None,
    ) -> None:
        rule, method, names = route
        path = rule
        for name, value in zip(names, args, strict=False):
            path = path.replace(f"<path:{name}>", quote(value)).replace(f"<{name}>", quote(value))
        url = path + ("?" + query_string(query) if query else "")
        headers = {} if conditional is None else {"If-None-Match": conditional}
        response = target.api.client.open(
            url, method=method, data=raw, content_type=content_type, headers=headers
        )
        check_answer(rule, response.status_code, response.content_type, response.get_data())

    call()
    assert_stored_strict(REDIS_URL, PREFIX)


def test_answers_read_back_as_strict_json(target: Target) -> None:
    """What the fuzzing stored, read through every list and item route."""
    client = target.api.client
    for path in ("/v1/events?limit=100", "/v1/runs?limit=100", "/v1/functions", "/v1/apps"):
        response = client.get(path)
        answer = check_answer(path, response.status_code, response.content_type, response.data)
        assert response.status_code == 200
        for item in answer["data"][:30]:
            for item_path in _item_paths(path, item):
                got = client.get(item_path)
                check_answer(item_path, got.status_code, got.content_type, got.data)
    assert json.loads(client.get("/health").data)["redis"] is True


def _item_paths(list_path: str, item: dict[str, Any]) -> list[str]:
    if list_path.startswith("/v1/events"):
        event_id = quote(str(item["internal_id"]))
        return [f"/v1/events/{event_id}", f"/v1/events/{event_id}/runs"]
    if list_path.startswith("/v1/runs"):
        run_id = quote(str(item["run_id"]))
        return [f"/v1/runs/{run_id}", f"/v0/runs/{run_id}/batch", f"/v0/runs/{run_id}/actions"]
    if list_path == "/v1/functions":
        return [f"/v1/functions/{quote(str(item['id']))}"]
    return []
