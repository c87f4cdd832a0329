"""Opening the store from Settings: the Redis client (TLS with `rediss://`) and the scripts.

    store_for(settings)    Store over `REDIS_URL`, key prefix, Lua directory
    redis_client(...)      decode_responses client; `rediss://` gets the certificate check of
                           STEPLINE_REDIS_TLS_CERT_REQS and the CA of STEPLINE_REDIS_TLS_CA_FILE
                           (`ssl_*` parameters in the URL's query win over both)

The Celery broker gets the same TLS options from `app.queue.broker_options`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis

from app.state.store import Store

if TYPE_CHECKING:
    from app.config import Settings


UNAVAILABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)
"""What a Redis that does not answer raises (refused, reset, timed out, still loading its
data after a restart): the API answers 503, workers retry the job."""


def redis_client(
    url: str,
    cert_reqs: str = "required",
    ca_file: Path | None = None,
    timeout_seconds: float = 5.0,
) -> redis.Redis[str]:
    """A command or connect that takes longer than `timeout_seconds` fails (a frozen Redis
    must not hang a request or a worker). Idle pooled connections are checked before reuse
    after a while. (A retry on ConnectionError broke the Connect gateway's tests: not used.)"""
    options: dict[str, Any] = {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "socket_keepalive": True,
        "health_check_interval": 15,
    }
    if urlsplit(url).scheme == "rediss":
        options["ssl_cert_reqs"] = cert_reqs
        if ca_file is not None:
            options["ssl_ca_certs"] = str(ca_file)
    return redis.Redis.from_url(url, decode_responses=True, **options)


def store_for(settings: Settings) -> Store:
    client = redis_client(
        settings.redis_url,
        settings.redis_tls_cert_reqs,
        settings.redis_tls_ca_file,
        settings.redis_timeout_seconds,
    )
    return Store.from_client(client, prefix=settings.key_prefix, lua_dir=settings.lua_dir)
