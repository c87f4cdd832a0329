"""`rediss://` gets the same TLS options for the state client and the Celery broker (the
Procfile test runs both against a TLS Redis)."""

from __future__ import annotations

import ssl
from pathlib import Path

from app.config import Settings
from app.queue import broker_options
from app.state.client import redis_client


def test_plain_redis_has_no_tls_options() -> None:
    options = broker_options(Settings(redis_url="redis://cache:6379/0"))
    assert "broker_use_ssl" not in options
    assert options["broker_url"] == "redis://cache:6379/0"
    transport = options["broker_transport_options"]
    assert transport["visibility_timeout"] == 3600
    assert not any("ssl" in name for name in transport)


def test_rediss_verifies_by_default_and_can_be_told_otherwise(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    strict = Settings(redis_url="rediss://cache:6380/0", redis_tls_ca_file=ca)
    assert broker_options(strict)["broker_use_ssl"] == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(ca),
    }
    kwargs = redis_client(strict.redis_url, "required", ca).connection_pool.connection_kwargs
    assert (kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"]) == ("required", str(ca))

    lax = Settings(redis_url="rediss://cache:6380/0", redis_tls_cert_reqs="none")
    assert broker_options(lax)["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_NONE}
    kwargs = redis_client(lax.redis_url, "none").connection_pool.connection_kwargs
    assert kwargs["ssl_cert_reqs"] == "none"


def test_ssl_parameters_in_the_url_win_for_the_state_client() -> None:
    client = redis_client("rediss://cache:6380/0?ssl_cert_reqs=optional", "required")
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "optional"
