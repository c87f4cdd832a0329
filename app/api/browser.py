"""What keeps web pages out: checks on requests a browser could send on a page's behalf.

A page the developer visits can make the browser send requests to `http://127.0.0.1:8288`:
form posts and `fetch` "simple requests" (`text/plain` bodies, no custom headers) go out
without any CORS preflight, and DNS rebinding lets a page read answers by making its own host
name resolve to 127.0.0.1. So, for every non-public route (`app.api.auth` calls these):

- `check_origin`: a state-changing request (not GET/HEAD/OPTIONS) from another origin is
  refused, 403. Browsers say where a request comes from: `Sec-Fetch-Site` (anything but
  `same-origin` or `none` is refused) or, from older browsers, `Origin` (must name this host).
  Requests without either come from programs (SDKs, curl), which are not the threat here.
  The same rule as Go's `net/http.CrossOriginProtection`.
- `check_body`: a request body must be declared JSON (`Content-Type: application/json`), 415
  otherwise, unless the request carries `X-Inngest-SDK`: a header no page can add to a
  cross-site request without a CORS preflight, which Stepline never approves. (The TS SDK
  sends its JSON as `text/plain;charset=UTF-8`, fetch's default, with that header.)
- `check_dev_peer` (dev mode, where no credential is checked): only loopback peers, and only
  with a Host header a rebinding page cannot produce: `localhost`, `*.localhost` or an IP
  address (no DNS is involved in those).

Each takes the request (Flask's, or the werkzeug request of `app.api.fast_events`).
"""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse

from werkzeug.wrappers import Request

from app.errors import Forbidden, UnsupportedMediaType

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SDK_HEADER = "X-Inngest-SDK"
_SAME_SITE = ("same-origin", "none")


def check_origin(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.strip().lower() in _SAME_SITE:
            return
        raise Forbidden(
            f"cross-origin request refused (Sec-Fetch-Site: {site}): Stepline's API does not "
            "take state-changing requests from other web pages"
        )
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if urllib.parse.urlsplit(origin.strip()).netloc.lower() == request.host.lower():
        return
    raise Forbidden(
        f"cross-origin request refused (Origin: {origin}): Stepline's API does not take "
        "state-changing requests from other web pages"
    )


def check_body(request: Request, media_types: tuple[str, ...]) -> None:
    if request.method in SAFE_METHODS or not _has_body(request):
        return
    if request.mimetype in media_types or request.headers.get(SDK_HEADER):
        return
    raise UnsupportedMediaType(
        f"send the body with `Content-Type: {media_types[0]}` "
        f"(got {request.content_type or 'no Content-Type'})",
        field="Content-Type",
    )


def _has_body(request: Request) -> bool:
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    return chunked or (request.content_length or 0) > 0


def check_dev_peer(request: Request) -> None:
    if not loopback(request.remote_addr):
        raise Forbidden(
            "dev mode serves loopback clients only: to serve other hosts, configure credentials "
            "(STEPLINE_SIGNING_KEY, STEPLINE_EVENT_KEYS, STEPLINE_API_TOKEN: see the README's "
            "Production section)"
        )
    if not local_host_header(request.host):
        raise Forbidden(
            f"dev mode refuses the Host {request.host!r}: call it as localhost or by IP address "
            "(a web page can point its own host name at this machine: DNS rebinding)",
            field="Host",
        )


@functools.lru_cache(maxsize=256)
def loopback(address: str | None) -> bool:
    if not address:
        return True  # a unix socket or an in-process test client
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=256)
def local_host_header(host: str) -> bool:
    """`localhost`, `*.localhost` or an IP address, with or without a port."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
