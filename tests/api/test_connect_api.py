"""POST /v0/connect/start and /v0/connect/flush: protobuf in and out, signing key checked in
production mode like /fn/register's."""

from __future__ import annotations

from collections.abc import Callable

from app.drivers import signing
from app.gateway.proto import connect_pb2 as pb
from app.models import ConnectRequest
from app.state.connect import ConnectStore
from tests.api.conftest import Api

KEY = f"signkey-test-{'ab' * 32}"
PROTOBUF = {"Content-Type": "application/protobuf"}


def start(api: Api, headers: dict[str, str] | None = None) -> pb.StartResponse:
    response = api.client.post(
        "/v0/connect/start",
        data=pb.StartRequest(exclude_gateways=["old"]).SerializeToString(),
        headers={**PROTOBUF, **(headers or {})},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/protobuf"
    return pb.StartResponse.FromString(response.get_data())


def test_start_hands_out_a_session_and_the_gateway_url(api: Api) -> None:
    answer = start(api)
    assert len(answer.connection_id) == 26  # a ULID, as the SDKs and Inngest expect
    assert answer.gateway_endpoint == "ws://localhost:8289/v0/connect"
    assert answer.gateway_group == "stepline"
    connect = ConnectStore(api.engine.store)
    assert connect.take_session(answer.connection_id) == (answer.session_token, answer.sync_token)
    assert start(api).connection_id != answer.connection_id


def test_the_gateway_url_follows_the_host_or_the_setting(
    api_factory: Callable[..., Api],
) -> None:
    api = api_factory(gateway_port=9999, signing_key=KEY)  # host names: production mode only
    answer = start(
        api, headers={"Host": "stepline.internal:8288", "Authorization": signing.bearer_value(KEY)}
    )
    assert answer.gateway_endpoint == "ws://stepline.internal:9999/v0/connect"
    assert start(api_factory(), headers={"Host": "[::1]:8288"}).gateway_endpoint == (
        "ws://[::1]:8289/v0/connect"
    )
    fixed = api_factory(gateway_url="wss://connect.example.test/v0/connect")
    assert start(fixed).gateway_endpoint == "wss://connect.example.test/v0/connect"


def test_start_refuses_a_body_that_is_not_protobuf(api: Api) -> None:
    response = api.client.post("/v0/connect/start", data=b"\xff\xff\xff", headers=PROTOBUF)
    assert response.status_code == 400
    assert "StartRequest" in response.get_json()["error"]


def test_production_mode_wants_the_hashed_signing_key(api_factory: Callable[..., Api]) -> None:
    api = api_factory(signing_key=KEY)
    body = pb.StartRequest().SerializeToString()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}):
        response = api.client.post("/v0/connect/start", data=body, headers=headers)
        assert response.status_code == 401, headers
        assert "signing key" in response.get_json()["error"]
    assert start(api, headers={"Authorization": signing.bearer_value(KEY)}).connection_id
    flush = api.client.post("/v0/connect/flush", data=b"", headers=PROTOBUF)
    assert flush.status_code == 401


def test_flush_stores_a_reply_the_first_wins(api: Api) -> None:
    connect = ConnectStore(api.engine.store)
    request = ConnectRequest(
        request_id="r1",
        app_id="app",
        function_slug="app-fn",
        step_id="step",
        run_id="01RUN",
        payload="{}",
    )
    connect.submit(request, "L1", api.engine.now(), 20_000)

    def flush(body: bytes) -> pb.FlushResponse:
        response = api.client.post(
            "/v0/connect/flush",
            data=pb.SDKResponse(
                request_id="r1", status=pb.SDKResponseStatus.DONE, body=body, sdk_version="v1"
            ).SerializeToString(),
            headers=PROTOBUF,
        )
        assert response.status_code == 200
        return pb.FlushResponse.FromString(response.get_data())

    assert flush(b'"first"').request_id == "r1"
    assert flush(b'"late"').request_id == "r1"  # acknowledged, ignored
    reply = connect.wait_reply("r1", 0.1)
    assert reply is not None and (reply.status, reply.body) == ("done", '"first"')


def test_flush_refuses_garbage(api: Api) -> None:
    response = api.client.post("/v0/connect/flush", data=b"\xff\xff", headers=PROTOBUF)
    assert response.status_code == 400
    nameless = pb.SDKResponse(status=pb.SDKResponseStatus.DONE).SerializeToString()
    response = api.client.post("/v0/connect/flush", data=nameless, headers=PROTOBUF)
    assert response.status_code == 400
    assert response.get_json()["field"] == "request_id"
