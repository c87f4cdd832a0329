"""HttpDriver against a real local HTTP server replaying replies recorded from the official SDKs,
plus the ways an app (or whatever answers in its place) can misbehave."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from inngest._internal import net, server_lib

from app.config import Settings
from app.drivers import signing
from app.drivers.base import CallRequest, CallResult, Op, stepline_version
from app.drivers.http import MAX_RESPONSE_BYTES, HttpDriver, request_body, step_url
from app.models import FunctionConfig, Trigger
from tests.sdk_apps.captures import CLOUD_SIGNING_KEY, PY_REPLIES, TS_REPLIES
from tests.sdk_apps.harness import CannedServer, Reply, free_port

NOW_S = datetime(2026, 11, 24, 0, 53, 2, tzinfo=UTC).timestamp()
NOW_MS = int(NOW_S * 1000)
EVENT = {"name": "cap/three", "data": {"id": "abc", "x": 2}, "id": "01HEVENT", "ts": 1}
SDK = {"content-type": "application/json", "x-inngest-sdk": "inngest-py:v0.5.19"}
PRODUCTION = Settings(signing_key=CLOUD_SIGNING_KEY, allowed_app_hosts=["127.0.0.1"])
"""Production mode, allowed to call the test servers on loopback."""
A = "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
B = "e9d71f5ee7c92d6dc9e92ffdad17b8bd49418f98"


@pytest.fixture
def server() -> Iterator[CannedServer]:
    srv = CannedServer()
    yield srv
    srv.close()


def function(base: str, fn_id: str = "cap-three") -> FunctionConfig:
    return FunctionConfig(
        id=fn_id,
        name=fn_id,
        app_id="cap",
        triggers=[Trigger(event="cap/three")],
        retries=1,
        driver="http",
        url=f"{base}/api/inngest?fnId={fn_id}&stepId=step",
    )


def request(base: str, **changes: Any) -> CallRequest:
    fields: dict[str, Any] = {
        "function": function(base),
        "run_id": "01HRUN",
        "event": EVENT,
        "events": [EVENT],
        "steps": {},
        "stack": [],
        "attempt": 0,
        "max_attempts": 2,
    }
    fields.update(changes)
    return CallRequest(**fields)


def no_checkpoint(op: Op) -> Any:
    raise AssertionError("the HTTP driver never checkpoints")


def call(
    server: CannedServer, *replies: Reply, settings: Settings | None = None, **changes: Any
) -> CallResult:
    server.queue(*replies)
    driver = HttpDriver(settings or Settings(), clock=lambda: NOW_S, read_timeout_s=2.0)
    try:
        return driver.call(request(server.url, **changes), no_checkpoint)
    finally:
        driver.close()


def recorded(reply: dict[str, Any]) -> Reply:
    return Reply(reply["status"], reply["headers"], reply["body"])


# --- the request --------------------------------------------------------------------------


def test_request_body_and_headers(server: CannedServer) -> None:
    result = call(
        server,
        recorded(PY_REPLIES["POST three with step a memoized"]),
        steps={A: {"data": 1}},
        stack=[A],
        attempt=1,
    )
    assert result.kind == "ops"
    sent = server.received[0]
    assert sent.method == "POST"
    assert sent.path == "/api/inngest?fnId=cap-three&stepId=step"
    body = sent.json()
    assert sent.body == signing.canonical_json(body), "the body is sent JCS-canonical"
    assert body == {
        "version": -1,
        "event": {**EVENT, "user": {}},
        "events": [{**EVENT, "user": {}}],
        "steps": {A: {"data": 1}},
        "ctx": {
            "run_id": "01HRUN",
            "attempt": 1,
            "max_attempts": 2,
            "disable_immediate_execution": False,
            "use_api": False,
            "stack": {"stack": [A], "current": 1},
            "step_id": "step",
        },
        "use_api": False,
    }
    assert "fn_id" not in body["ctx"], "ctx.fn_id switches the TS SDK into checkpointing"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-inngest-server-kind"] == "dev"
    assert sent.headers["x-run-id"] == "01HRUN"
    assert sent.headers["x-inngest-req-version"] == "-1"
    assert "x-inngest-signature" not in sent.headers


def test_targeted_call_and_batch(server: CannedServer) -> None:
    second = {**EVENT, "id": "01HSECOND"}
    call(
        server,
        recorded(PY_REPLIES["POST three targeted at step b (stepId=hash) with a memoized"]),
        target=B,
        events=[EVENT, second],
        disable_immediate_execution=True,
    )
    sent = server.received[0]
    assert sent.path == f"/api/inngest?fnId=cap-three&stepId={B}"
    assert sent.headers["x-inngest-step-id"] == B
    body = sent.json()
    assert body["ctx"]["step_id"] == B
    assert body["ctx"]["disable_immediate_execution"] is True
    assert [e["id"] for e in body["events"]] == ["01HEVENT", "01HSECOND"]


def test_events_are_never_empty(server: CannedServer) -> None:
    call(server, recorded(PY_REPLIES["POST first call of three (no memo)"]), events=[])
    assert server.received[0].json()["events"] == [{**EVENT, "user": {}}]


def test_step_url_keeps_other_params() -> None:
    url = "http://h:1/api/inngest?fnId=app-fn&stepId=step&deployId=7"
    assert step_url(url, "abc") == "http://h:1/api/inngest?fnId=app-fn&stepId=abc&deployId=7"
    assert step_url("http://h/x?fnId=a-b", "step") == "http://h/x?fnId=a-b&stepId=step"


# --- production mode: signatures both ways -------------------------------------------------


def signed(status: int, body: Any, key: str = CLOUD_SIGNING_KEY, at: float = NOW_S) -> Reply:
    raw = json.dumps(body).encode()
    headers = {**SDK, "x-inngest-signature": signing.sign(raw, key, int(at))}
    return Reply(status, headers, raw)


def test_production_mode_signs_and_verifies(server: CannedServer) -> None:
    settings = PRODUCTION
    result = call(server, signed(200, {"sum": 3}), settings=settings)
    assert result == CallResult("complete", output={"sum": 3})
    sent = server.received[0]
    assert sent.headers["x-inngest-server-kind"] == "cloud"
    checked = net.validate_request_sig(
        body=sent.body,
        headers={"x-inngest-signature": sent.headers["x-inngest-signature"]},
        mode=server_lib.ServerKind.CLOUD,
        signing_key=CLOUD_SIGNING_KEY,
        signing_key_fallback=None,
    )
    assert checked == CLOUD_SIGNING_KEY, "the official SDK accepts our signature"


def test_production_mode_refuses_unsigned_or_badly_signed_replies(server: CannedServer) -> None:
    settings = PRODUCTION
    unsigned = call(server, Reply(200, SDK, {"sum": 3}), settings=settings)
    wrong = call(server, signed(200, {"sum": 3}, key="signkey-x-00"), settings=settings)
    for result in (unsigned, wrong):
        assert result.kind == "error" and result.retriable
        assert result.error is not None
        assert "X-Inngest-Signature" in str(result.error["message"])


def test_production_mode_explains_a_refused_signature(server: CannedServer) -> None:
    refused = PY_REPLIES["cloud: POST without signature"]
    headers = {**refused["headers"]}
    other = PRODUCTION.replace(signing_key="k")
    result = call(server, Reply(401, headers, refused["body"]), settings=other)
    assert result.kind == "error" and result.retriable
    assert result.error is not None
    assert "refused our signature" in str(result.error["message"])


@pytest.mark.parametrize(
    ("signed_at", "accepted"),
    [
        (NOW_S, True),
        (NOW_S - 299, True),  # the app's clock a little behind
        (NOW_S + 299, True),  # ... or ahead
        (NOW_S - 301, False),  # signed before the call was made: a recorded, replayed reply
        (NOW_S - 86_400, False),
        (NOW_S + 301, False),
    ],
)
def test_reply_signatures_are_bound_to_the_call(
    server: CannedServer, signed_at: float, accepted: bool
) -> None:
    result = call(server, signed(200, {"sum": 3}, at=signed_at), settings=PRODUCTION)
    if accepted:
        assert result == CallResult("complete", output={"sum": 3})
        return
    assert result.kind == "error" and result.retriable and result.error is not None
    assert result.error["code"] == "signature_invalid"
    assert "stale or replayed" in str(result.error["message"])


def test_a_recorded_reply_replayed_later_is_refused(server: CannedServer) -> None:
    """The Python SDK's signed reply from the captures, replayed: accepted within its call's
    window, refused an hour later."""
    recorded_reply = PY_REPLIES[
        "cloud: POST with X-Inngest-Signature t=..&s=HMAC(key_hex_text, JCS(body)+t)"
    ]
    raw = json.dumps(recorded_reply["body"]).encode()
    reply = Reply(recorded_reply["status"], recorded_reply["headers"], raw)
    fresh = call(server, reply, settings=PRODUCTION)
    assert fresh.kind == "ops", fresh
    later = HttpDriver(PRODUCTION, clock=lambda: NOW_S + 3600, read_timeout_s=2.0)
    server.queue(reply)
    try:
        replayed = later.call(request(server.url), no_checkpoint)
    finally:
        later.close()
    assert replayed.kind == "error" and replayed.error is not None
    assert "stale or replayed" in str(replayed.error["message"])


def test_a_reply_signature_needs_its_timestamp(server: CannedServer) -> None:
    raw = json.dumps({"sum": 3}).encode()
    headers = {**SDK, "x-inngest-signature": hmac_body_only(raw)}
    assert signing.verify(raw, headers["x-inngest-signature"], [CLOUD_SIGNING_KEY])
    result = call(server, Reply(200, headers, raw), settings=PRODUCTION)
    assert result.kind == "error" and result.error is not None
    assert "no timestamp" in str(result.error["message"])


def hmac_body_only(raw: bytes) -> str:
    """A signature over the body alone (no `t`), which `verify` accepts for requests."""
    key = signing.strip_prefix(CLOUD_SIGNING_KEY).encode()
    return "s=" + hmac.new(key, raw, hashlib.sha256).hexdigest()


# --- every recorded reply ----------------------------------------------------------------


def ops(*items: tuple[str, str, str]) -> list[tuple[str, str, str]]:
    return list(items)


PY_EXPECTED: dict[str, Any] = {
    "POST first call of three (no memo)": ops(("StepRun", A, "a")),
    "POST three with step a memoized": ops(("StepRun", B, "b")),
    "POST three with a and b memoized -> function result": ("complete", {"sum": 3}),
    "POST three, disable_immediate_execution=true -> StepPlanned": ops(("StepPlanned", A, "a")),
    "POST three targeted at step b (stepId=hash) with a memoized": ops(("StepRun", B, "b")),
    "POST ops -> Sleep": ops(("Sleep", "c2640f79b4ed481b838ce4ad75330aa3f825d4d9", "nap")),
    "POST ops, sleep done (memo null) -> WaitForEvent": ops(
        ("WaitForEvent", "daaad336276d15594d0e765f96c17cd746bf4971", "wait")
    ),
    "POST ops, wait fulfilled with raw event -> InvokeFunction": ops(
        ("InvokeFunction", "bc8d8647b02deea0ab3e715c220d041ee78cc19d", "call")
    ),
    "POST ops, invoke result memoized -> send_event runs inline (SDK POSTs /e/)": ops(
        ("StepRun", "37ed539c0cef13959abd980bebf30f4922f606e3", "send")
    ),
    "POST ops, wait timed out (memo null), invoke failed (memo error)": ("error", False),
    "POST par (parallel group) -> 2 StepPlanned": ops(
        ("StepPlanned", "b78f576611ec06f96af3ca654c22172a5d746c40", "p1"),
        ("StepPlanned", "c5fd961c9f737a955a308050062e7a2c34ee67c3", "p2"),
    ),
    "POST par targeted at p2": ops(("StepRun", "c5fd961c9f737a955a308050062e7a2c34ee67c3", "p2")),
    "POST par with both memoized -> result": ("complete", ["x", "y"]),
    "POST fail attempt 0 (max_attempts 2) -> StepError": ops(
        ("StepError", "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5", "boom")
    ),
    "POST fail attempt 1 (max_attempts 2) -> StepFailed": ops(
        ("StepFailed", "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5", "boom")
    ),
    "POST fail, no max_attempts in ctx -> always StepError": ops(
        ("StepError", "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5", "boom")
    ),
    "POST fail with the step's error memoized -> function error (500, no-retry)": ("error", False),
    "POST on_failure handler (fnId=cap-fail-failure)": (
        "complete",
        {"saw": "inngest/function.failed"},
    ),
    "POST nr -> NonRetriableError": ("error", False),
    "POST ra -> RetryAfterError": ("error", True),
    "POST dup -> repeated step id 'x'": ops(
        ("StepRun", "825b938e1bf063c8ae74c6b0689861a0c2c0ae63", "x")
    ),
    "POST three with use_api=true (events/steps fetched from API)": ops(("StepRun", A, "a")),
    "POST without `events` and use_api=false": ("error", True),
    "POST unknown fnId": ("error", True),
    "POST probe=trust": ("complete", None),
}

TS_EXPECTED: dict[str, Any] = {
    "POST three, first call, no ctx.fn_id (plain async mode)": ops(("StepRun", A, "a")),
    "POST three, first call, version 0 -> refused": ("error", True),
    "POST three with a memoized as {data}": ops(("StepRun", B, "b")),
    "POST three with a,b memoized -> 200 result": ("complete", {"sum": 3}),
    "POST three disable_immediate_execution -> StepPlanned": ops(("StepPlanned", A, "a")),
    "POST three targeted at b": ops(("StepRun", B, "b")),
    "POST ops -> Sleep": ops(("Sleep", "c2640f79b4ed481b838ce4ad75330aa3f825d4d9", "nap")),
    "POST ops sleep done -> WaitForEvent": ops(
        ("WaitForEvent", "daaad336276d15594d0e765f96c17cd746bf4971", "wait")
    ),
    "POST ops wait fulfilled (raw event) -> InvokeFunction": ops(
        ("InvokeFunction", "bc8d8647b02deea0ab3e715c220d041ee78cc19d", "call")
    ),
    "POST ops invoke memoized -> sendEvent": ops(
        ("StepRun", "37ed539c0cef13959abd980bebf30f4922f606e3", "send")
    ),
    "POST ops wait timed out (null), invoke error memo": ("error", False),
    "POST par -> parallel": ops(
        ("StepPlanned", "b78f576611ec06f96af3ca654c22172a5d746c40", "p1"),
        ("StepPlanned", "c5fd961c9f737a955a308050062e7a2c34ee67c3", "p2"),
    ),
    "POST par targeted at p2": ops(("StepRun", "c5fd961c9f737a955a308050062e7a2c34ee67c3", "p2")),
    "POST par both memoized": ("complete", ["x", "y"]),
    "POST fail attempt 0, max_attempts 2": ops(
        ("StepError", "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5", "boom")
    ),
    "POST fail attempt 1, max_attempts 2": ops(
        ("StepFailed", "c53d2f1a9a8499bcb477be56c31caa5c76ae60f5", "boom")
    ),
    "POST fail, error memoized": ("error", False),
    "POST onFailure handler (fnId=cap-fail-failure)": (
        "complete",
        {"saw": "inngest/function.failed"},
    ),
    "POST nr -> NonRetriableError": ("error", False),
    "POST ra -> RetryAfterError": ("error", True),
    "POST dup -> repeated step id": ops(
        ("StepRun", "825b938e1bf063c8ae74c6b0689861a0c2c0ae63", "x")
    ),
    "POST three with ctx.use_api=true": ("error", False),
    "POST three WITH ctx.fn_id but no qi_id (checkpointing attempted)": ops(("StepRun", A, "a")),
    "POST three WITH ctx.fn_id and ctx.qi_id (async checkpointing)": ("complete", {"sum": 3}),
    "POST three WITH fn_id+qi_id, a memoized (last step then function end)": (
        "complete",
        {"sum": 3},
    ),
    "POST unknown fnId": ("error", True),
    "POST ops with an event that matches no trigger": ("error", False),
    "POST three (invoked) with event inngest/function.invoked": ops(("StepRun", A, "a")),
    "POST ops (cron) with event inngest/scheduled.timer": ops(
        ("Sleep", "c2640f79b4ed481b838ce4ad75330aa3f825d4d9", "nap")
    ),
}

CASES = [("py", title, PY_REPLIES[title], want) for title, want in PY_EXPECTED.items()] + [
    ("ts", title, TS_REPLIES[title], want) for title, want in TS_EXPECTED.items()
]


def test_every_recorded_reply_is_covered() -> None:
    skipped = {"cloud: POST without signature"}
    signed_title = "cloud: POST with X-Inngest-Signature t=..&s=HMAC(key_hex_text, JCS(body)+t)"
    assert set(PY_REPLIES) - set(PY_EXPECTED) == skipped | {signed_title}
    assert set(TS_REPLIES) == set(TS_EXPECTED)


@pytest.mark.parametrize(
    ("sdk", "title", "reply", "want"), CASES, ids=[c[0] + ": " + c[1] for c in CASES]
)
def test_recorded_reply(
    server: CannedServer, sdk: str, title: str, reply: dict[str, Any], want: Any
) -> None:
    result = call(server, recorded(reply))
    if isinstance(want, list):
        assert result.kind == "ops", result.error
        assert [(op.op, op.id, op.name) for op in result.ops] == want
        return
    kind, detail = want
    assert result.kind == kind, result
    if kind == "complete":
        assert result.output == detail
    else:
        assert result.retriable is detail
        assert result.error is not None
        assert set(result.error) >= {"name", "message", "stack"}
        assert result.error["message"] == reply["body"]["message"]


def one_op(reply: dict[str, Any], server: CannedServer) -> Op:
    result = call(server, recorded(reply))
    assert result.kind == "ops" and len(result.ops) == 1, result
    return result.ops[0]


def test_sleep_wake_time_lands_in_opts(server: CannedServer) -> None:
    py = one_op(PY_REPLIES["POST ops -> Sleep"], server)
    assert py.opts == {"until": "2026-11-24T00:53:04.446Z"}
    ts = one_op(TS_REPLIES["POST ops -> Sleep"], server)
    assert ts.opts == {"duration": "2s"}


def test_wait_for_event_opts(server: CannedServer) -> None:
    want = {"event": "cap/approve", "if": "async.data.id == event.data.id", "timeout": "1m"}
    for reply in (
        PY_REPLIES["POST ops, sleep done (memo null) -> WaitForEvent"],
        TS_REPLIES["POST ops sleep done -> WaitForEvent"],
    ):
        assert one_op(reply, server).opts == want


def test_invoke_opts_as_sent(server: CannedServer) -> None:
    py = one_op(PY_REPLIES["POST ops, wait fulfilled with raw event -> InvokeFunction"], server)
    assert py.opts == {
        "function_id": "cap-three",
        "payload": {"data": {"n": 1}, "v": None},
        "timeout": None,
    }
    ts = one_op(TS_REPLIES["POST ops wait fulfilled (raw event) -> InvokeFunction"], server)
    assert ts.opts == {"payload": {"data": {"n": 1}}, "function_id": "cap-three"}


def test_step_outputs(server: CannedServer) -> None:
    py = one_op(
        PY_REPLIES["POST ops, invoke result memoized -> send_event runs inline (SDK POSTs /e/)"],
        server,
    )
    assert py.data == ["01EVENTID00000000000000000"]
    ts = one_op(TS_REPLIES["POST ops invoke memoized -> sendEvent"], server)
    assert ts.data == {"ids": ["01EVENTID00000000000000000"]}
    assert ts.opts == {"type": "step.sendEvent"}
    assert one_op(PY_REPLIES["POST par targeted at p2"], server).data == "y"


def test_step_errors_carry_retry_decisions(server: CannedServer) -> None:
    for title, want_op, want_no_retry in (
        ("POST fail attempt 0 (max_attempts 2) -> StepError", "StepError", False),
        ("POST fail attempt 1 (max_attempts 2) -> StepFailed", "StepFailed", True),
    ):
        op = one_op(PY_REPLIES[title], server)
        assert (op.op, op.no_retry) == (want_op, want_no_retry)
        assert op.error is not None and op.error["message"] == "kaput"
        assert op.error["name"] == "ValueError"
    for title, want_op, want_no_retry in (
        ("POST fail attempt 0, max_attempts 2", "StepError", False),
        ("POST fail attempt 1, max_attempts 2", "StepFailed", True),
    ):
        op = one_op(TS_REPLIES[title], server)
        assert (op.op, op.no_retry, op.data) == (want_op, want_no_retry, None)
        assert op.error is not None and op.error["message"] == "kaput"


def test_retry_after_from_both_sdks(server: CannedServer) -> None:
    py = call(server, recorded(PY_REPLIES["POST ra -> RetryAfterError"]))
    assert py.retry_at_ms == int(datetime(2026, 11, 24, 0, 53, 32, 458000, UTC).timestamp() * 1000)
    ts = call(server, recorded(TS_REPLIES["POST ra -> RetryAfterError"]))
    assert ts.retry_at_ms == NOW_MS + 30_000
    assert ts.error is not None and ts.error["name"] == "RetryAfterError"


# --- status codes and headers --------------------------------------------------------------


def error_reply(status: int, **headers: str) -> Reply:
    body = {"name": "Error", "message": "nope", "stack": "at x"}
    return Reply(status, {**SDK, **headers}, body)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("120", NOW_MS + 120_000),
        ("0", NOW_MS + 1_000),
        ("-5", NOW_MS + 1_000),
        ("99999999", None),
        ("Tue, 24 Nov 2026 02:53:02 GMT", NOW_MS + 2 * 3_600_000),
        ("2026-11-24T01:53:02Z", NOW_MS + 3_600_000),
        ("2026-11-30T00:00:00.000Z", NOW_MS + 86_400_000),
        ("2020-01-01T00:00:00.000Z", NOW_MS + 1_000),
        ("soon", None),
    ],
)
def test_retry_after_forms(server: CannedServer, value: str, want: int | None) -> None:
    result = call(server, error_reply(500, **{"retry-after": value}))
    assert (result.kind, result.retriable, result.retry_at_ms) == ("error", True, want)


def test_no_retry_header(server: CannedServer) -> None:
    assert call(server, error_reply(500, **{"x-inngest-no-retry": "true"})).retriable is False
    assert call(server, error_reply(400, **{"x-inngest-no-retry": "false"})).retriable is True
    assert call(server, error_reply(400)).retriable is True


def test_step_error_with_retry_after(server: CannedServer) -> None:
    op = {"op": "StepError", "id": A, "displayName": "a", "error": {"name": "E", "message": "m"}}
    reply = Reply(206, {**SDK, "retry-after": "60", "x-inngest-no-retry": "true"}, [op])
    result = call(server, reply)
    assert result.ops[0].retry_at_ms == NOW_MS + 60_000
    assert result.ops[0].no_retry is True


def test_error_body_that_is_not_an_error_object(server: CannedServer) -> None:
    result = call(server, Reply(503, SDK, b"upstream busy"))
    assert result.kind == "error" and result.retriable
    assert result.error is not None
    assert result.error["message"] == (
        f"app at {server.url}/api/inngest?fnId=cap-three&stepId=step returned HTTP 503: "
        "upstream busy"
    )


def test_op_list_shapes(server: CannedServer) -> None:
    single = {"op": "StepRun", "id": A, "name": "a", "data": 1}
    assert [op.id for op in call(server, Reply(206, SDK, single)).ops] == [A]
    assert call(server, Reply(206, SDK, [])) == CallResult("ops", ops=[])
    legacy = [{"op": "Step", "id": A, "name": "a", "data": 2}, {"op": "None", "id": ""}]
    assert [(op.op, op.data) for op in call(server, Reply(206, SDK, legacy)).ops] == [
        ("StepRun", 2)
    ]
    nameless = [{"op": "stepplanned", "id": B}]
    assert [(op.op, op.name) for op in call(server, Reply(206, SDK, nameless)).ops] == [
        ("StepPlanned", B)
    ]


def test_non_finite_step_outputs_fail_naming_the_step(server: CannedServer) -> None:
    """The Python SDK writes a NaN output as `NaN`; Inngest's Go decoder refuses the reply, so
    the call fails (and is retried). The error names the step and the place."""
    for raw, words in (
        (
            b'[{"op": "StepRun", "id": "%s", "displayName": "ratio", "data": {"r": NaN}}]'
            % A.encode(),
            ["step 'ratio'", "data.r", "finite"],
        ),
        (
            b'[{"op": "StepRun", "id": "%s", "userland": {"id": "big"}, "data": [1e999]}]'
            % A.encode(),
            ["step 'big'", "data[0]", "finite"],
        ),
        (b'{"total": -Infinity}', ["function output", "total", "finite"]),
        (
            json.dumps({"op": "StepRun", "id": A, "data": [[[[]]]]})
            .replace("[[[[]]]]", "[" * 150 + "]" * 150)
            .encode(),
            ["deeper than 100"],
        ),
    ):
        status = 200 if raw.startswith(b'{"total') else 206
        result = call(server, Reply(status, SDK, raw))
        assert result.kind == "error" and result.retriable, raw[:60]
        assert result.error is not None and result.error["code"] == "invalid_json"
        for word in words:
            assert word in str(result.error["message"]), (word, result.error["message"])


def test_lone_surrogates_in_replies_become_replacement_characters(server: CannedServer) -> None:
    """As Go's decoder reads them (a JS string cut inside an emoji, say): the step's work is
    kept, and what is stored is valid Unicode."""
    raw = (
        b'[{"op": "StepRun", "id": "%s", "name": "cut\\ud83d", "data": {"t": "ab\\ud83d"}},'
        b' {"op": "StepError", "id": "%s", "error": {"name": "E", "message": "x\\udc00"}}]'
        % (A.encode(), B.encode())
    )
    result = call(server, Reply(206, SDK, raw))
    assert result.kind == "ops"
    run, failed = result.ops
    assert (run.name, run.data) == ("cut\ufffd", {"t": "ab\ufffd"})
    assert failed.error is not None and failed.error["message"] == "x\ufffd"
    error = call(server, Reply(500, SDK, b'{"name": "E\\ud800", "message": "m", "stack": "s"}'))
    assert error.error is not None and error.error["name"] == "E\ufffd"
    envelope = b'{"status": 500, "body": "", "error": "broke \\udc00"}'
    streamed = call(server, Reply(201, SDK, envelope))
    assert streamed.error is not None and str(streamed.error["message"]).endswith("broke \ufffd")


def test_sleep_forms(server: CannedServer) -> None:
    def sleep(**fields: Any) -> CallResult:
        return call(server, Reply(206, SDK, [{"op": "Sleep", "id": A, **fields}]))

    assert sleep(opts={"duration": "1h30m"}).ops[0].opts == {"duration": "1h30m"}
    assert sleep(opts={"duration": "2026-11-24T01:00:00+00:00"}).ops[0].opts == {
        "until": "2026-11-24T01:00:00.000Z"
    }
    assert sleep(name="2026-11-24T01:00:00Z", displayName="nap").ops[0].name == "nap"
    bad = sleep(name="whenever")
    assert bad.kind == "error" and bad.retriable
    assert bad.error is not None and "Sleep" in str(bad.error["message"])


@pytest.mark.parametrize(
    ("op", "feature"),
    [
        ("DeferAdd", "defer()"),
        ("DeferAbort", "defer()"),
        ("DiscoveryRequest", "checkpointing"),
        ("StepNotFound", "renamed or removed"),
        ("Teleport", "'Teleport'"),
    ],
)
def test_an_opcode_stepline_lacks_fails_the_run_at_once(
    server: CannedServer, op: str, feature: str
) -> None:
    result = call(server, Reply(206, SDK, [{"op": op, "id": A, "opts": {}}]))
    assert (result.kind, result.retriable) == ("error", False)
    assert result.error is not None
    message = str(result.error["message"])
    assert feature in message and op in message
    assert "inngest-py:v0.5.19" in message  # who sent it (x-inngest-sdk)
    assert f"Stepline {stepline_version()}" in message
    assert result.error["code"] == "unsupported_opcode"


def test_an_unsupported_opcode_anywhere_in_the_array_fails_the_run(server: CannedServer) -> None:
    """`DeferAdd` rides along with the next message (PROTOCOL.md 10.4): never drop it."""
    step = {"op": "StepRun", "id": A, "name": "a", "data": 1}
    defer = {"op": "DeferAdd", "id": B, "opts": {"fn_slug": "x", "input": {}}}
    done = {"op": "RunComplete", "id": B, "data": "out"}
    for ops in ([step, defer], [defer, step], [step, defer, done], [step, done, defer]):
        result = call(server, Reply(206, SDK, ops))
        assert (result.kind, result.retriable) == ("error", False), ops
        assert result.error is not None and "DeferAdd" in str(result.error["message"])


def test_checkpointing_is_offered_with_fn_id_and_qi_id() -> None:
    """PROTOCOL.md 10.2: the TS SDK checkpoints only with both ids in `ctx`."""
    request = CallRequest(
        function=function("http://127.0.0.1:1"),
        run_id="01HRUN",
        event=EVENT,
        events=[EVENT],
        steps={},
        stack=[],
        attempt=0,
        max_attempts=2,
        checkpoint_id="01HRUN:start:0",
    )
    ctx = request_body(request)["ctx"]
    assert isinstance(ctx, dict)
    assert (ctx["fn_id"], ctx["qi_id"]) == ("cap-three", "01HRUN:start:0")
    request.checkpoint_id = None
    ctx = request_body(request)["ctx"]
    assert isinstance(ctx, dict) and "fn_id" not in ctx and "qi_id" not in ctx


def test_signal_fetch_and_ai_ops_are_read(server: CannedServer) -> None:
    signal = {"op": "WaitForSignal", "id": A, "name": "sig", "opts": {"signal": "sig"}}
    fetch = {"op": "Gateway", "id": B, "displayName": "step.fetch: x", "opts": {"url": "u"}}
    result = call(server, Reply(206, SDK, [signal, fetch]))
    assert result.kind == "ops"
    waits, fetches = result.ops
    assert (waits.op, waits.opts) == ("WaitForSignal", {"signal": "sig", "timeout": None})
    assert (fetches.op, fetches.name, fetches.opts) == ("Gateway", "step.fetch: x", {"url": "u"})
    ai = call(server, Reply(206, SDK, [{"op": "AIGateway", "id": A, "opts": {"url": "u"}}]))
    assert ai.ops[0].op == "AIGateway"
    nameless = call(server, Reply(206, SDK, [{"op": "WaitForSignal", "id": A, "opts": {}}]))
    assert nameless.kind == "error" and nameless.error is not None
    assert "without signal" in str(nameless.error["message"])


def test_run_complete_keeps_the_steps_before_it(server: CannedServer) -> None:
    """A checkpointing SDK may end with `[StepRun, RunComplete]`: the step is not dropped."""
    step = {"op": "StepRun", "id": A, "name": "a", "data": 1}
    done = {"op": "RunComplete", "id": B, "data": "out"}
    result = call(server, Reply(206, SDK, [step, done]))
    assert (result.kind, result.output) == ("complete", "out")
    assert [(op.op, op.id, op.data) for op in result.ops] == [("StepRun", A, 1)]


def test_an_op_without_a_name_is_an_invalid_reply(server: CannedServer) -> None:
    result = call(server, Reply(206, SDK, [{"id": A, "data": 1}]))
    assert (result.kind, result.retriable) == ("error", True)
    assert result.error is not None and result.error["code"] == "invalid_response"


def test_streaming_envelope(server: CannedServer) -> None:
    inner = [{"op": "StepRun", "id": A, "name": "a", "data": 1}]
    envelope = {"body": json.dumps(inner), "headers": {"x-inngest-req-version": "2"}, "status": 206}
    streamed = Reply(201, SDK, b"   " + json.dumps(envelope).encode())
    assert [op.data for op in call(server, streamed).ops] == [1]
    failed = {
        "body": json.dumps({"name": "NonRetriableError", "message": "no"}),
        "headers": {"x-inngest-no-retry": "true"},
        "status": 500,
    }
    result = call(server, Reply(201, SDK, b" " + json.dumps(failed).encode()))
    assert (result.kind, result.retriable) == ("error", False)
    assert call(server, Reply(201, SDK, b"  {oops")).kind == "error"


# --- things that are not an SDK answering --------------------------------------------------


def test_html_error_page(server: CannedServer) -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    result = call(server, Reply(502, {"content-type": "text/html"}, page))
    assert result.kind == "error" and result.retriable
    url = f"{server.url}/api/inngest?fnId=cap-three&stepId=step"
    assert result.error is not None
    assert result.error["message"] == (
        f"app at {url} returned HTTP 502 (not an Inngest SDK response): {page}"
    )


def test_success_from_something_else_is_not_completion(server: CannedServer) -> None:
    result = call(server, Reply(200, {"content-type": "application/json"}, {"ok": True}))
    assert result.kind == "error" and result.retriable


def test_long_garbage_is_cut(server: CannedServer) -> None:
    result = call(server, Reply(500, {}, "x" * 10_000))
    assert result.error is not None
    assert str(result.error["message"]).endswith(": " + "x" * 119 + "…")


def test_error_excerpts_are_short_and_sanitised(server: CannedServer) -> None:
    """Whatever answers at an app URL (a metadata service, an internal admin page) shows in
    run history only as a short excerpt, without control characters or line breaks."""
    body = "secret-line-1\n\x1b[31mAKIA-EXAMPLE\x00\r\n" + "key=value " * 400
    for reply in (Reply(404, {}, body), Reply(500, SDK, body), Reply(206, SDK, body)):
        result = call(server, reply)
        assert result.error is not None
        message = str(result.error["message"])
        quoted = message.split(": ", 1)[1]
        assert len(quoted) <= 120, message
        assert not any(c in message for c in "\n\r\x00\x1b"), message
        assert "secret-line-1 [31mAKIA-EXAMPLE" in quoted


def test_sdk_reply_that_is_not_json(server: CannedServer) -> None:
    result = call(server, Reply(206, SDK, b"<html>"))
    assert result.kind == "error" and result.retriable
    assert result.error is not None and "not JSON" in str(result.error["message"])


def test_oversized_body(server: CannedServer) -> None:
    result = call(server, Reply(200, SDK, b"[" + b"1," * (MAX_RESPONSE_BYTES // 2) + b"1]"))
    assert result.kind == "error" and result.retriable
    assert result.error is not None and "over 4194304 bytes" in str(result.error["message"])


def test_timeout(server: CannedServer) -> None:
    server.queue(Reply(200, SDK, {"late": True}, delay_s=1.5))
    driver = HttpDriver(Settings(), read_timeout_s=0.3)
    result = driver.call(request(server.url), no_checkpoint)
    assert result.kind == "error" and result.retriable
    assert result.error is not None and "did not answer in time" in str(result.error["message"])


def test_unreachable_app() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    result = HttpDriver(Settings()).call(request(base), no_checkpoint)
    assert result.kind == "error" and result.retriable
    assert result.error is not None and "is unreachable" in str(result.error["message"])


def test_function_without_url() -> None:
    fn = function("http://x").model_copy(update={"url": None})
    result = HttpDriver(Settings()).call(request("http://x", function=fn), no_checkpoint)
    assert (result.kind, result.retriable) == ("error", False)


def test_state_that_cannot_be_sent(server: CannedServer) -> None:
    result = call(server, steps={A: {"data": float("nan")}})
    assert result.kind == "error"
    assert server.received == []


def test_nothing_escapes_call() -> None:
    fn = function("http://x").model_copy(update={"url": "http://[::1/api?fnId=f"})
    result = HttpDriver(Settings()).call(request("http://x", function=fn), no_checkpoint)
    assert (result.kind, result.retriable) == ("error", True)


def test_state_too_large_to_send_goes_by_the_api(server: CannedServer) -> None:
    big = {f"s{i}": {"data": "x" * 1_000_000} for i in range(5)}
    call(
        server,
        recorded(PY_REPLIES["POST first call of three (no memo)"]),
        steps=big,
        stack=list(big),
    )
    body = server.received[0].json()
    assert body["use_api"] is True and body["ctx"]["use_api"] is True
    assert body["steps"] == {} and body["events"] == []
    assert body["ctx"]["stack"]["stack"] == list(big)  # the SDK still gets the order
    assert len(server.received[0].body) < 10_000


class TricklingApp:
    """An app that answers 200 at once, then sends its body one byte every 0.1 s, for ever:
    each byte beats any read timeout, so only a total deadline ends the call."""

    def __init__(self) -> None:
        stop = self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000000")
                self.end_headers()
                while not stop.is_set():
                    try:
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    except OSError:
                        return  # the driver hung up
                    stop.wait(0.1)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_call_ends_at_its_total_deadline_however_the_app_paces_bytes() -> None:
    app = TricklingApp()
    driver = HttpDriver(Settings(http_call_deadline_seconds=1.0), read_timeout_s=0.5)
    try:
        result = driver.call(request(app.url), no_checkpoint)
    finally:
        driver.close()
        app.close()
    assert result.kind == "error" and result.retriable
    assert result.error is not None
    assert "within the call deadline of 1 s" in str(result.error["message"])
