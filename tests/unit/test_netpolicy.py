"""The outbound address policy (`app.netpolicy`) and its users: which addresses Stepline may
connect to for an app URL, checked before connecting and pinned for the connection.

Every refusal is proved to happen before any connection attempt: Python's audit hook
`socket.connect` records each connect the process makes. Targets are loopback ports (nothing
listens on the closed ones) or addresses that are refused before any packet leaves, never an
outside address.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.drivers.base import CallRequest, Op
from app.drivers.http import HttpDriver
from app.models import FunctionConfig, Trigger
from app.netpolicy import (
    AddressPolicy,
    AddressRefused,
    AddressUnresolved,
    Allowed,
    ProcessClient,
    carried,
    parse_allowed,
    read_capped,
)
from app.sync import SyncError, sync_app
from tests.sdk_apps.harness import CannedServer, Reply, free_port

_recording: list[list[tuple[str, int]]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _recording and isinstance(args[1], tuple):
        _recording[-1].append((str(args[1][0]), int(args[1][1])))


sys.addaudithook(_audit)  # hooks stay for the process; this one records only inside `connects`


@contextmanager
def connects() -> Iterator[list[tuple[str, int]]]:
    """Every (address, port) this thread's sockets connect to inside the block."""
    made: list[tuple[str, int]] = []
    _recording.append(made)
    try:
        yield made
    finally:
        _recording.pop()


DEV = AddressPolicy(private=True)
PRODUCTION = AddressPolicy(private=False)
SDK = {"content-type": "application/json", "x-inngest-sdk": "inngest-py:v0.5.19"}


def get(policy: AddressPolicy, url: str) -> httpx.Response:
    with httpx.Client(transport=policy.transport(), trust_env=False, timeout=2) as client:
        return client.get(url)


# --- the allow list ---------------------------------------------------------------------------


def test_allowed_entries() -> None:
    entries = parse_allowed(
        ["127.0.0.1:3000", "10.0.0.0/8", "[::1]:8000", "fd00::/8", "App.Internal", "svc:81", " "]
    )
    assert entries == (
        Allowed(network=ipaddress.ip_network("127.0.0.1/32"), port=3000),
        Allowed(network=ipaddress.ip_network("10.0.0.0/8")),
        Allowed(network=ipaddress.ip_network("::1/128"), port=8000),
        Allowed(network=ipaddress.ip_network("fd00::/8")),
        Allowed(host="app.internal"),
        Allowed(host="svc", port=81),
    )


@pytest.mark.parametrize("entry", ["127.0.0.1:99999", "host:port", "[::1", "a b", "10.0.0.0/33"])
def test_malformed_entries_fail_at_startup(entry: str) -> None:
    with pytest.raises(ValueError, match="STEPLINE_ALLOWED_APP_HOSTS"):
        parse_allowed([entry])
    with pytest.raises(ValueError, match="STEPLINE_ALLOWED_APP_HOSTS"):
        Settings(allowed_app_hosts=[entry])


def test_production_is_any_credential() -> None:
    assert not Settings().production
    for change in (
        {"signing_key": "k"},
        {"event_keys": ["k"]},
        {"api_token": "t"},
        {"auth_header": "X-User"},
    ):
        assert Settings(**change).production  # type: ignore[arg-type]
    assert AddressPolicy.for_apps(Settings()).private
    assert not AddressPolicy.for_apps(Settings(api_token="t")).private


# --- judging addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "dev", "production"),
    [
        ("169.254.169.254", False, False),  # cloud metadata: never
        ("fe80::1", False, False),
        ("::ffff:169.254.169.254", False, False),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", False, False),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", False, False),  # 6to4 of it
        ("127.0.0.1", True, False),
        ("127.8.9.10", True, False),
        ("::1", True, False),
        ("0.0.0.0", True, False),  # reaches this host on Linux
        ("10.1.2.3", True, False),
        ("172.16.0.1", True, False),
        ("192.168.1.1", True, False),
        ("100.64.0.1", True, False),  # carrier-grade NAT
        ("fd00:ec2::254", True, False),  # AWS's IPv6 metadata (unique-local)
        ("224.0.0.1", True, False),  # multicast
        ("::ffff:10.0.0.1", True, False),
        ("8.8.8.8", True, True),  # public: judged only, never connected to here
        ("2606:4700::1111", True, True),
    ],
)
def test_judging(address: str, dev: bool, production: bool) -> None:
    for policy, allowed in ((DEV, dev), (PRODUCTION, production)):
        if allowed:
            assert policy.resolve(address, 80) == [ipaddress.ip_address(address)]
        else:
            with pytest.raises(AddressRefused):
                policy.resolve(address, 80)


def test_carried_addresses() -> None:
    assert str(carried(ipaddress.ip_address("::ffff:127.0.0.1"))) == "127.0.0.1"
    assert str(carried(ipaddress.ip_address("64:ff9b::0a00:0001"))) == "10.0.0.1"
    assert str(carried(ipaddress.ip_address("::1"))) == "::1"


def test_allowed_entries_open_private_addresses_in_production() -> None:
    policy = AddressPolicy(allowed=parse_allowed(["127.0.0.1:3000", "10.0.0.0/8", "localhost"]))
    assert policy.resolve("127.0.0.1", 3000)
    with pytest.raises(AddressRefused, match=r"STEPLINE_ALLOWED_APP_HOSTS \(e.g. 127.0.0.1:3001\)"):
        policy.resolve("127.0.0.1", 3001)  # another port of the same host
    assert policy.resolve("10.200.0.7", 443)
    with pytest.raises(AddressRefused):
        policy.resolve("192.168.0.7", 443)
    assert policy.resolve("localhost", 8000)  # by name: whatever localhost resolves to
    with pytest.raises(AddressRefused):
        policy.resolve("127.0.0.1", 8000)  # ... but the bare address was not listed


def test_link_local_stays_refused_even_when_listed() -> None:
    policy = AddressPolicy(private=True, allowed=parse_allowed(["169.254.0.0/16", "fe80::/10"]))
    for address in ("169.254.169.254", "fe80::1"):
        with pytest.raises(AddressRefused, match="link-local"):
            policy.resolve(address, 80)


def test_every_resolved_address_must_pass() -> None:
    """A name with one public and one private address is refused (as Inngest's dialer does)."""
    policy = AddressPolicy(resolver=lambda host, port: ["8.8.8.8", "10.0.0.1"])
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.1"):
        policy.resolve("mixed.test", 80)


def test_unresolvable_names() -> None:
    with pytest.raises(AddressUnresolved):
        PRODUCTION.resolve("does-not-exist.invalid", 80)
    with pytest.raises(AddressRefused):
        PRODUCTION.check_url("http:///nohost")


def test_check_url_gives_the_checked_addresses() -> None:
    target = DEV.check_url("http://localhost:8123/api/inngest")
    assert (target.host, target.port) == ("localhost", 8123)
    assert ipaddress.ip_address("127.0.0.1") in target.addresses
    assert DEV.check_url("https://[::1]/x").port == 443


# --- refused before connecting -------------------------------------------------------------------


def test_production_refuses_loopback_before_connecting() -> None:
    port = free_port()  # closed: a connection attempt would be refused by the OS instead
    with connects() as made, pytest.raises(AddressRefused, match="private or loopback"):
        get(PRODUCTION, f"http://127.0.0.1:{port}/api/inngest")
    assert made == []


def test_link_local_refused_before_connecting_even_in_dev_mode() -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:80/"):
        with connects() as made, pytest.raises(AddressRefused, match="link-local"):
            get(DEV, url)
        assert made == []


def test_the_audit_hook_sees_connections() -> None:
    """The control for the tests above: an allowed address is connected to (and refused by the
    OS, as nothing listens)."""
    port = free_port()
    allowed = AddressPolicy(allowed=parse_allowed([f"127.0.0.1:{port}"]))
    for policy in (DEV, allowed):
        with connects() as made, pytest.raises(httpx.ConnectError):
            get(policy, f"http://127.0.0.1:{port}/")
        assert made == [("127.0.0.1", port)]


def test_resolved_once_and_connected_to_the_checked_address() -> None:
    """DNS rebinding: the name answers a good address to the check, then cloud metadata. The
    connection goes to the address that was checked; the next one is refused unconnected."""
    server = CannedServer()
    port = int(server.url.rsplit(":", 1)[1])
    answers = [["127.0.0.1"], ["169.254.169.254"]]
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[len(asked) - 1]

    policy = AddressPolicy(resolver=rebinding, allowed=parse_allowed([f"rebind.test:{port}"]))
    try:
        server.queue(Reply(200, SDK, {"ok": True}))
        with connects() as made:
            response = get(policy, f"http://rebind.test:{port}/api/inngest")
        assert response.json() == {"ok": True}
        assert server.received[0].headers["host"] == f"rebind.test:{port}"
        assert asked == ["rebind.test"] and made == [("127.0.0.1", port)]
        with connects() as made, pytest.raises(AddressRefused, match="link-local"):
            get(policy, f"http://rebind.test:{port}/api/inngest")
        assert made == [] and asked == ["rebind.test", "rebind.test"]
    finally:
        server.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for the name `localhost`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
    ]
    names = ["-addext", "subjectAltName=DNS:localhost"]
    subprocess.run(
        [openssl, *request, *names, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1]), cert
    finally:
        server.shutdown()
        server.server_close()


def test_tls_checks_the_url_name_while_connecting_to_the_checked_address(
    tls_server: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, cert = tls_server
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        get(DEV, f"https://localhost:{port}/")  # not a trusted certificate: verification is on
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    with connects() as made:
        assert get(DEV, f"https://localhost:{port}/").status_code == 200
    assert ("127.0.0.1", port) in made  # connected by address, verified by name
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        get(DEV, f"https://127.0.0.1:{port}/")  # the certificate does not name the address


# --- the callers: sync and the HTTP driver ----------------------------------------------------


def test_sync_refuses_before_connecting() -> None:
    port = free_port()
    production = Settings(signing_key="signkey-test-00")
    for url, settings in (
        (f"http://127.0.0.1:{port}/api/inngest", production),
        ("http://169.254.169.254/api/inngest", Settings()),
    ):
        with connects() as made, pytest.raises(AddressRefused):
            sync_app(url, settings, timeout_s=2)
        assert made == []
    with connects() as made, pytest.raises(SyncError, match="unreachable"):
        sync_app(f"http://127.0.0.1:{port}/api/inngest", Settings(), timeout_s=2)
    assert made == [("127.0.0.1", port)]


def _call(settings: Settings, url: str) -> Any:
    function = FunctionConfig(
        id="cap-three",
        name="three",
        app_id="cap",
        triggers=[Trigger(event="cap/three")],
        driver="http",
        url=url,
    )
    request = CallRequest(
        function=function,
        run_id="01HRUN",
        event={"name": "cap/three", "data": {}},
        events=[],
        steps={},
        stack=[],
        attempt=0,
        max_attempts=1,
    )

    def no_checkpoint(op: Op) -> None:
        raise AssertionError("never checkpoints")

    driver = HttpDriver(settings, read_timeout_s=2)
    try:
        return driver.call(request, no_checkpoint)
    finally:
        driver.close()


def test_the_driver_refuses_before_connecting() -> None:
    port = free_port()
    for url, settings in (
        (f"http://127.0.0.1:{port}/api/inngest?fnId=cap-three", Settings(api_token="t")),
        ("http://169.254.169.254/api/inngest?fnId=cap-three", Settings()),
    ):
        with connects() as made:
            result = _call(settings, url)
        assert made == []
        assert result.kind == "error" and result.error is not None
        assert result.error["code"] == "address_refused", result.error
        assert "not called" in str(result.error["message"])


def test_the_driver_ignores_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would make the connection itself, out of the policy's sight."""
    server = CannedServer()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    try:
        server.queue(Reply(200, SDK, {"sum": 1}))
        result = _call(Settings(), f"{server.url}/api/inngest?fnId=cap-three")
        assert result.kind == "complete" and result.output == {"sum": 1}
    finally:
        server.close()


def test_read_capped_answers_none_past_the_limit() -> None:
    assert read_capped(httpx.Response(200, content=iter([b"ab", b"cd"])), 4) == b"abcd"
    assert read_capped(httpx.Response(200, content=iter([b"ab", b"cd", b"e"])), 4) is None


def test_process_client_is_made_again_after_a_fork() -> None:
    clients = ProcessClient(AddressPolicy(private=True), httpx.Timeout(1.0))
    first = clients.get()
    assert clients.get() is first
    pid = os.fork()
    if pid == 0:  # the child must not use the parent's pooled connections
        os._exit(0 if clients.get() is not first else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    clients.close()
    assert clients.get() is not first
    clients.close()
