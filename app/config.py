"""One typed Settings object, read from the environment once.

Every setting is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """State store and Celery broker (`REDIS_URL`)."""
    functions: list[str] = field(default_factory=list)
    """Modules holding in-process functions (`STEPLINE_FUNCTIONS`, comma-separated)."""
    key_prefix: str = "sl"
    """Prefix of every Redis key Stepline writes (`STEPLINE_KEY_PREFIX`)."""
    eta_max_seconds: float = 10.0
    """Delays up to this go to Celery as ETA; longer ones wait in the Redis timer set."""
    lease_seconds: float = 30.0
    """How long a running job's lease lasts without a heartbeat before it is redelivered."""
    redeliver_seconds: float = 60.0
    """How long a sent job may sit unstarted in the broker before it is sent again."""
    tick_seconds: float = 0.5
    """How often beat releases due timers and cron runs."""
    step_budget_seconds: float = 10.0
    """How long one task keeps executing a run's steps inline before yielding to the queue."""
    event_dedupe_seconds: int = 86_400
    """Window in which an event id is processed only once."""
    retry_base_seconds: float = 15.0
    """Scale of the retry backoff table (15s, 30s, 1m, ... 2h); tests shrink it."""
    event_keys: list[str] = field(default_factory=list)
    """Accepted event keys (`STEPLINE_EVENT_KEYS`); empty: any key in dev mode, and the event
    API closed in production mode."""
    signing_key: str | None = None
    """`STEPLINE_SIGNING_KEY`: production mode signs requests to apps and checks syncs."""
    signing_key_fallback: str | None = None
    """`STEPLINE_SIGNING_KEY_FALLBACK`: also accepted while rotating keys."""
    app_urls: list[str] = field(default_factory=list)
    """`STEPLINE_APP_URLS`: SDK apps that beat (and `dev`) syncs, retrying while they are down
    and again every few minutes, so a deployment knows its apps without a manual PUT."""
    http_timeout_seconds: float = 300.0
    """How long the HTTP driver waits for an app to answer one call."""
    api_token: str | None = None
    """`STEPLINE_API_TOKEN`: operator routes (`/v1`, `/metrics`, `/invoke`) accept
    `Authorization: Bearer <token>`."""
    auth_header: str | None = None
    """`STEPLINE_AUTH_HEADER`: a header an authenticating proxy sets; its presence admits."""
    retention_days: float = 7.0
    """`STEPLINE_RETENTION_DAYS`: finished runs and events are deleted after this long."""
    allowed_app_hosts: list[str] = field(default_factory=list)
    """`STEPLINE_ALLOWED_APP_HOSTS`: private or loopback app addresses Stepline may call in
    production mode (`host`, `host:port`, `10.0.0.0/8`, `[::1]:3000`; see `app.netpolicy`)."""
    # --- Connect (app/gateway, app/drivers/connect.py) ---
    gateway_port: int = 8289
    """`STEPLINE_GATEWAY_PORT`: where the gateway serves `/v0/connect` (WebSocket)."""
    gateway_url: str | None = None
    """`STEPLINE_GATEWAY_URL`: the gateway URL handed to workers by `/v0/connect/start`
    (default `ws://<host the worker reached the API at>:<gateway port>/v0/connect`)."""
    connect_lease_seconds: float = 20.0
    """`STEPLINE_CONNECT_LEASE_SECONDS`: a Connect worker renews its lease on a call every
    quarter of this; a call whose lease runs out (worker gone) is retried."""
    connect_heartbeat_seconds: float = 10.0
    """`STEPLINE_CONNECT_HEARTBEAT_SECONDS`: the heartbeat interval told to workers; the
    gateway drops a connection silent for three intervals."""
    # --- run history (app/history) ---
    history_url: str = ""
    """`STEPLINE_HISTORY_URL`: the history store (SQLAlchemy URL); empty is an SQLite file in
    `data_dir`. Production: `postgresql+psycopg://user:password@host/db`."""
    data_dir: str = ".stepline"
    """`STEPLINE_DATA_DIR`: where the embedded history file lives (relative to the cwd)."""
    hot_window_seconds: float = 600.0
    """`STEPLINE_HOT_WINDOW_SECONDS`: how long an archived run or event stays in Redis too."""

    def __post_init__(self) -> None:
        from app.netpolicy import parse_allowed

        parse_allowed(self.allowed_app_hosts)  # a malformed entry fails at startup, named

    @property
    def production(self) -> bool:
        """Production mode: any credential is configured. Then every route that reads run data
        or changes state needs a credential of its kind (`app.api.auth`), and app URLs may not
        lead to private addresses unless allowed (`app.netpolicy`)."""
        return bool(self.signing_key or self.event_keys or self.api_token or self.auth_header)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=os.environ.get("REDIS_URL", cls.redis_url),
            functions=_env_list("STEPLINE_FUNCTIONS"),
            key_prefix=os.environ.get("STEPLINE_KEY_PREFIX", cls.key_prefix),
            eta_max_seconds=_env_float("STEPLINE_ETA_MAX_SECONDS", cls.eta_max_seconds),
            lease_seconds=_env_float("STEPLINE_LEASE_SECONDS", cls.lease_seconds),
            redeliver_seconds=_env_float("STEPLINE_REDELIVER_SECONDS", cls.redeliver_seconds),
            tick_seconds=_env_float("STEPLINE_TICK_SECONDS", cls.tick_seconds),
            step_budget_seconds=_env_float("STEPLINE_STEP_BUDGET_SECONDS", cls.step_budget_seconds),
            event_dedupe_seconds=_env_int(
                "STEPLINE_EVENT_DEDUPE_SECONDS", cls.event_dedupe_seconds
            ),
            retry_base_seconds=_env_float("STEPLINE_RETRY_BASE_SECONDS", cls.retry_base_seconds),
            event_keys=_env_list("STEPLINE_EVENT_KEYS"),
            signing_key=os.environ.get("STEPLINE_SIGNING_KEY") or None,
            signing_key_fallback=os.environ.get("STEPLINE_SIGNING_KEY_FALLBACK") or None,
            app_urls=_env_list("STEPLINE_APP_URLS"),
            http_timeout_seconds=_env_float(
                "STEPLINE_HTTP_TIMEOUT_SECONDS", cls.http_timeout_seconds
            ),
            api_token=os.environ.get("STEPLINE_API_TOKEN") or None,
            auth_header=os.environ.get("STEPLINE_AUTH_HEADER") or None,
            retention_days=_env_float("STEPLINE_RETENTION_DAYS", cls.retention_days),
            allowed_app_hosts=_env_list("STEPLINE_ALLOWED_APP_HOSTS"),
            # Connect
            gateway_port=_env_int("STEPLINE_GATEWAY_PORT", cls.gateway_port),
            gateway_url=os.environ.get("STEPLINE_GATEWAY_URL") or None,
            connect_lease_seconds=_env_float(
                "STEPLINE_CONNECT_LEASE_SECONDS", cls.connect_lease_seconds
            ),
            connect_heartbeat_seconds=_env_float(
                "STEPLINE_CONNECT_HEARTBEAT_SECONDS", cls.connect_heartbeat_seconds
            ),
            # History
            history_url=os.environ.get("STEPLINE_HISTORY_URL", cls.history_url),
            data_dir=os.environ.get("STEPLINE_DATA_DIR") or cls.data_dir,
            hot_window_seconds=_env_float("STEPLINE_HOT_WINDOW_SECONDS", cls.hot_window_seconds),
        )
