"""Outbound address policy: where Stepline may connect for a URL it did not choose.

An SDK app's serve URL (sync, `POST /fn/register`, `runtime.url`) comes from outside, and so
will `step.fetch` / `step.ai` targets. Without a policy such a URL can aim Stepline at cloud
metadata (169.254.169.254), at services on private networks, or at other ports of its own host.

    policy = AddressPolicy.for_apps(settings)        # or AddressPolicy(private=..., allowed=...)
    target = policy.check_url(url)                    # resolved once: the checked addresses
    client = httpx.Client(transport=policy.transport(), trust_env=False)

Rules, applied to every address a host resolves to (all must pass, as Inngest's dialer does):

1. link-local (169.254.0.0/16, where cloud metadata lives, and fe80::/10): refused always, in
   dev mode too, whatever `allowed` says;
2. not globally routable (loopback, RFC 1918, unique-local, CGNAT, unspecified, multicast,
   reserved, ...): refused unless `private` (dev mode) or an `allowed` entry covers it;
3. anything else (a public address): allowed.

IPv4-mapped (`::ffff:a.b.c.d`), 6to4 and NAT64 (`64:ff9b::/96`) addresses are judged by the
IPv4 address they carry.

Allowed entries (`STEPLINE_ALLOWED_APP_HOSTS`, comma-separated): `10.0.0.0/8` (a range, any
port), `127.0.0.1:3000` and `[::1]:3000` (one address and port), `fd00::/8`, `app.internal` or
`app.internal:3000` (whatever that name resolves to, when a URL uses that name).

Resolve once, connect to what was checked: the transport from `transport()` checks at every new
connection (resolve, judge every address, connect to a checked one), so DNS cannot answer the
check with one address and the connection with another. TLS still verifies the URL's host name.
Refusals raise `AddressRefused` before any connection is attempted.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from app.deadline import DeadlineStream, bounded
from app.errors import BadRequest

if TYPE_CHECKING:
    from app.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
"""(host, port) -> addresses as text; raises OSError when the name does not resolve."""

SETTING = "STEPLINE_ALLOWED_APP_HOSTS"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?)+$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressRefused(BadRequest):
    """The policy refuses the address a URL leads to (nothing was connected)."""

    code = "address_refused"


class AddressUnresolved(BadRequest):
    """A URL's host name does not resolve (nothing was connected)."""

    code = "address_unresolved"


@dataclass(frozen=True)
class Allowed:
    """One entry of the allow list: an address range or a host name, optionally one port."""

    network: IPNetwork | None = None
    host: str | None = None
    port: int | None = None

    def covers(self, host: str, port: int, address: IPAddress) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address.version == self.network.version and address in self.network
        return host == self.host


def parse_allowed(entries: Iterable[str]) -> tuple[Allowed, ...]:
    """The allow list from its entries; raises ValueError naming a malformed one."""
    return tuple(_parse_entry(entry) for entry in entries if entry.strip())


def _parse_entry(entry: str) -> Allowed:
    text = entry.strip().lower()
    host, port = text, None
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{SETTING}: {entry!r} is not [address]:port")
        host, port = inside, _port(entry, rest[1:]) if rest else None
    elif text.count(":") == 1:
        host, _, raw_port = text.partition(":")
        port = _port(entry, raw_port)
    try:
        return Allowed(network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    name = host.rstrip(".")
    if "/" in host or not _HOSTNAME.match(name):
        raise ValueError(
            f"{SETTING}: {entry!r} is not a host, host:port, address, [address]:port or range"
        )
    return Allowed(host=name, port=port)


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{SETTING}: {entry!r} has an invalid port")
    return int(text)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IP literals are returned as they are, no DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def carried(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 IPv6 address carries (else itself)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    """A URL's host and port with the addresses it resolved to, each checked."""

    host: str
    port: int
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class AddressPolicy:
    private: bool = False
    """Allow non-public addresses (dev mode); link-local stays refused."""
    allowed: tuple[Allowed, ...] = ()
    resolver: Resolver = system_resolver

    @classmethod
    def for_apps(cls, settings: Settings) -> AddressPolicy:
        """The policy for SDK app URLs: private addresses open in dev mode only."""
        return cls(
            private=not settings.production, allowed=parse_allowed(settings.allowed_app_hosts)
        )

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to, each checked; raises `AddressRefused` if any is
        refused, `AddressUnresolved` if there is none."""
        name = host.strip().strip("[]").lower().rstrip(".")
        try:
            addresses = [ipaddress.ip_address(name.split("%")[0])]
        except ValueError:
            try:
                addresses = [
                    ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(name, port)
                ]
            except (OSError, UnicodeError, ValueError) as exc:
                raise AddressUnresolved(f"cannot resolve {name}: {exc}") from exc
        if not addresses:
            raise AddressUnresolved(f"{name} resolves to no address")
        for address in addresses:
            self._judge(name, port, address)
        return addresses

    def check_url(self, url: str) -> Target:
        """Resolve and check the host of an http(s) URL."""
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError as exc:
            raise AddressRefused(f"{url!r} has an invalid port") from exc
        if not parts.hostname or port is None:
            raise AddressRefused(f"{url!r} is not an http(s) URL with a host")
        return Target(parts.hostname, port, tuple(self.resolve(parts.hostname, port)))

    def transport(self, **pool: Any) -> httpx.BaseTransport:
        """An httpx transport that connects through this policy (see the module docstring).
        `pool` takes httpcore.ConnectionPool options (max_connections, ...)."""
        return _CheckedTransport(self, **pool)

    def _judge(self, host: str, port: int, address: IPAddress) -> None:
        inner = carried(address)
        shown = f"{host} ({address})" if host != str(address) else str(address)
        if inner.is_link_local:
            raise AddressRefused(
                f"{shown} is a link-local address (where cloud metadata services answer): "
                "Stepline never connects there"
            )
        if self.private or _public(inner):
            return
        if any(entry.covers(host, port, inner) for entry in self.allowed):
            return
        example = f"[{inner}]:{port}" if inner.version == 6 else f"{inner}:{port}"
        raise AddressRefused(
            f"{shown} port {port} is a private or loopback address, refused in production mode: "
            f"add it to {SETTING} (e.g. {example}) if Stepline should call it"
        )


class _CheckedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses the policy checked; its
    streams honour the current call's total deadline (`app.deadline.call_deadline`)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: httpcore.ConnectError | None = None
        for address in self._policy.resolve(host, port):
            try:
                wait = bounded(timeout, httpcore.ConnectTimeout)
                stream = super().connect_tcp(
                    str(address), port, wait, local_address, socket_options
                )
                return DeadlineStream(stream)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # resolve() returns at least one address
        raise failure


class _CheckedTransport(httpx.HTTPTransport):
    """httpx's transport with its connection pool built on `_CheckedBackend`."""

    def __init__(self, policy: AddressPolicy, **pool: Any) -> None:
        # The pool httpx builds here is replaced below (verify=False only spares loading CA
        # certificates for it); ours verifies as httpx does, SSL_CERT_FILE/_DIR included.
        super().__init__(verify=False, trust_env=False)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        options: dict[str, Any] = {
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": 5.0,
            **pool,
        }
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=True),
            network_backend=_CheckedBackend(policy),
            **options,
        )


class ProcessClient:
    """One pooled httpx client per process, connecting through an address policy: made on
    first use and again after a fork (the parent's pooled connections are not ours to use or
    close). Safe to share between threads."""

    def __init__(self, policy: AddressPolicy, timeout: httpx.Timeout) -> None:
        self._policy = policy
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = httpx.Client(
                    timeout=self._timeout,
                    follow_redirects=False,
                    transport=self._policy.transport(),
                    trust_env=False,
                )
                self._pid = os.getpid()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None


def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """A streamed response's body, or None as soon as it passes `limit` bytes (never holding
    more than that)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
