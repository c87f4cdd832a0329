"""One typed Settings object, read from the environment once per process.

    Settings(...)          exactly the values given, the rest defaults (tests, benchmarks)
    Settings.from_env()    the environment (pydantic-settings): `STEPLINE_<FIELD>`, and the
                           platform's own names for a few (`REDIS_URL`, `PORT`,
                           `WEB_CONCURRENCY`); empty variables count as unset
    settings.replace(...)  a validated copy with some values changed

Every value is typed and bounded. A bad one fails at start with a `ConfigError` that names the
variable, the value and what is allowed (`STEPLINE_LEASE_SECONDS='0': must be greater than 0`).
`stepline config` prints the effective configuration (`describe`), secrets masked. Every
setting is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BeforeValidator,
    DirectoryPath,
    Field,
    FilePath,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from app.errors import ConfigError

ENV_PREFIX = "STEPLINE_"
SECRETS = frozenset({"signing_key", "signing_key_fallback", "api_token"})
"""Fields `describe` masks. `redis_url` is shown with its password masked."""


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]
"""A comma-separated variable (`a, b,c`); a list when given in Python."""
Seconds = Annotated[float, Field(gt=0, le=86_400)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL", repr=False)
    """State store and Celery broker (`REDIS_URL`): `redis://`, `rediss://` (TLS) or
    `unix://`."""
    redis_tls_cert_reqs: Annotated[
        Literal["required", "optional", "none"], BeforeValidator(_lower)
    ] = "required"
    """With `rediss://`: whether the server's certificate must verify (`none` for managed
    Redis with self-signed certificates, e.g. Heroku Redis)."""
    redis_tls_ca_file: FilePath | None = None
    """With `rediss://`: a CA bundle to verify the server's certificate against."""
    functions: CommaList = []
    """Modules holding in-process functions (`STEPLINE_FUNCTIONS`, comma-separated)."""
    key_prefix: str = Field("sl", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """Prefix of every Redis key Stepline writes (`STEPLINE_KEY_PREFIX`)."""
    eta_max_seconds: Annotated[float, Field(ge=0, le=3_600)] = 10.0
    """Delays up to this go to Celery as ETA; longer ones wait in the Redis timer set."""
    lease_seconds: Annotated[float, Field(gt=0, le=3_600)] = 30.0
    """How long a running job's lease lasts without a heartbeat before it is redelivered."""
    max_job_failures: Annotated[int, Field(ge=1, le=1_000)] = 8
    """`STEPLINE_MAX_JOB_FAILURES`: after this many deliveries of a run's job that raised or
    died without finishing (a step killing its process: OOM, segfault, `os._exit`), the run
    fails with an `InternalError` naming the step instead of being redelivered forever."""
    redis_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    """`STEPLINE_REDIS_TIMEOUT_SECONDS`: how long one Redis command or connect may take before
    it fails (a frozen or unreachable Redis: the API then answers 503)."""
    redeliver_seconds: Seconds = 60.0
    """How long a sent job may sit unstarted in the broker before it is sent again."""
    tick_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    """How often beat ticks in full (lost jobs, cron runs, retention); due timers are
    released when they fall due, between ticks too."""
    step_budget_seconds: Annotated[float, Field(gt=0, le=3_600)] = 10.0
    """How long one task keeps executing a run's steps inline before yielding to the queue,
    and keeps running the jobs of its work list before sending the rest (`JobRunner.work`)."""
    event_dedupe_seconds: Annotated[int, Field(gt=0, le=30 * 86_400)] = 86_400
    """Window in which an event id is processed only once."""
    retry_base_seconds: Annotated[float, Field(gt=0, le=3_600)] = 15.0
    """Scale of the retry backoff table (15s, 30s, 1m, ... 2h); tests shrink it."""
    event_keys: CommaList = []
    """Accepted event keys (`STEPLINE_EVENT_KEYS`); empty: any key in dev mode, and the event
    API closed in production mode."""
    event_key: str = "dev"
    """`STEPLINE_EVENT_KEY`: the key `stepline send` and the dev banner use."""
    signing_key: str | None = Field(None, repr=False)
    """`STEPLINE_SIGNING_KEY`: production mode signs requests to apps and checks syncs."""
    signing_key_fallback: str | None = Field(None, repr=False)
    """`STEPLINE_SIGNING_KEY_FALLBACK`: also accepted while rotating keys."""
    app_urls: CommaList = []
    """`STEPLINE_APP_URLS`: SDK apps that beat (and `dev`) syncs, retrying while they are down
    and again every few minutes, so a deployment knows its apps without a manual PUT."""
    http_timeout_seconds: Seconds = 300.0
    """How long the HTTP driver waits for an app's next bytes within one call (and how long
    the Connect driver waits for a worker's reply)."""
    http_call_deadline_seconds: Seconds = 900.0
    """`STEPLINE_HTTP_CALL_DEADLINE_SECONDS`: the most one call to an SDK app may take in total,
    connecting, sending and reading included, however the app paces its answer."""
    sdk_queue: str = Field("stepline-sdk", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    """`STEPLINE_SDK_QUEUE`: the Celery queue of jobs that call SDK apps (HTTP and Connect
    functions), served by the Procfile's `sdk-worker`, so a slow app never holds the worker
    processes that in-process runs, events and timers need. `stepline`: one shared pool."""
    checkpointing: bool = True
    """`STEPLINE_CHECKPOINTING`: let SDKs that can (TS) run several steps in one call and
    report each to `/v1/checkpoint/<run>/async` (`app.checkpoint`); false: one step per call."""
    api_token: str | None = Field(None, repr=False)
    """`STEPLINE_API_TOKEN`: operator routes (`/v1`, `/metrics`, `/invoke`) accept
    `Authorization: Bearer <token>`."""
    auth_header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]+$")
    """`STEPLINE_AUTH_HEADER`: a header an authenticating proxy sets; its presence admits."""
    retention_days: Annotated[float, Field(ge=0, le=36_500)] = 7.0
    """`STEPLINE_RETENTION_DAYS`: finished runs and events are deleted after this long."""
    allowed_app_hosts: CommaList = []
    """`STEPLINE_ALLOWED_APP_HOSTS`: private or loopback app addresses Stepline may call in
    production mode (`host`, `host:port`, `10.0.0.0/8`, `[::1]:3000`; see `app.netpolicy`)."""
    # --- Connect (app/gateway, app/drivers/connect.py) ---
    gateway_port: Annotated[int, Field(ge=1, le=65_535)] = 8289
    """`STEPLINE_GATEWAY_PORT`: where the gateway serves `/v0/connect` (WebSocket)."""
    gateway_url: str | None = None
    """`STEPLINE_GATEWAY_URL`: the gateway URL handed to workers by `/v0/connect/start`
    (default `ws://<host the worker reached the API at>:<gateway port>/v0/connect`)."""
    connect_lease_seconds: Annotated[float, Field(gt=0, le=3_600)] = 20.0
    """`STEPLINE_CONNECT_LEASE_SECONDS`: a Connect worker renews its lease on a call every
    quarter of this; a call whose lease runs out (worker gone) is retried."""
    connect_heartbeat_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    """`STEPLINE_CONNECT_HEARTBEAT_SECONDS`: the heartbeat interval told to workers; the
    gateway drops a connection silent for three intervals."""
    lua_dir: DirectoryPath | None = None
    """`STEPLINE_LUA_DIR`: read the Lua scripts from here instead of the installed ones."""
    visibility_timeout_seconds: Annotated[int, Field(ge=60, le=7 * 86_400)] = Field(
        3_600, validation_alias=AliasChoices("STEPLINE_VISIBILITY_TIMEOUT")
    )
    """`STEPLINE_VISIBILITY_TIMEOUT`: Celery's Redis visibility timeout, only a backstop."""
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = "text"
    """`STEPLINE_LOG_FORMAT`: `json` makes every process log one JSON object per line."""
    access_log: bool = True
    """`STEPLINE_ACCESS_LOG`: gunicorn logs one line per request (`stepline dev` turns it off
    unless set)."""
    worker_concurrency: Annotated[int, Field(ge=1, le=256)] = 2
    """`STEPLINE_WORKER_CONCURRENCY`: Celery worker processes per `worker` (not per CPU)."""
    port: Annotated[int, Field(ge=1, le=65_535)] = Field(8288, validation_alias="PORT")
    """`PORT`: where `web` listens (on 0.0.0.0)."""
    web_concurrency: Annotated[int, Field(ge=1, le=64)] = Field(
        2, validation_alias="WEB_CONCURRENCY"
    )
    """`WEB_CONCURRENCY`: gunicorn worker processes of `web` (8 threads each)."""
    heartbeat_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    """`STEPLINE_HEARTBEAT_SECONDS`: how often workers and beat report that they live; one
    silent for three of its intervals counts as gone."""
    # --- run history (app/history) ---
    history_url: str = ""
    """`STEPLINE_HISTORY_URL`: the history store (SQLAlchemy URL); empty is an SQLite file in
    `data_dir`. Production: `postgresql+psycopg://user:password@host/db`."""
    data_dir: Annotated[str, Field(min_length=1)] = ".stepline"
    """`STEPLINE_DATA_DIR`: where the embedded history file lives (relative to the cwd)."""
    hot_window_seconds: Annotated[float, Field(ge=0, le=7 * 86_400)] = 600.0
    """`STEPLINE_HOT_WINDOW_SECONDS`: how long an archived run or event stays in Redis too."""

    @field_validator("allowed_app_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        from app.netpolicy import parse_allowed

        parse_allowed(value)  # a malformed entry fails at startup, named
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings(...)` is its arguments and the defaults; only `from_env` reads the
        environment, so a test's Settings never depends on the shell it runs in."""
        return (init_settings,)

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of this process's environment; `ConfigError` names every bad one."""
        raw = EnvSettingsSource(cls)()
        try:
            return cls(**raw)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (field names), validated like the original."""
        try:
            kept = self.model_dump(include=self.model_fields_set)
            return type(self).model_validate({**kept, **changes})
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    @property
    def production(self) -> bool:
        """Production mode: any credential is configured. Then every route that reads run data
        or changes state needs a credential of its kind (`app.api.auth`), app URLs may not
        lead to private addresses unless allowed (`app.netpolicy`), and processes refuse to
        start on a Redis that may evict keys (`app.release`)."""
        return bool(self.signing_key or self.event_keys or self.api_token or self.auth_header)


def load_or_exit() -> Settings:
    """`Settings.from_env()`, or exit naming the bad variables (process start-up)."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"stepline: {exc}") from None


def env_name(field: str) -> str:
    """The environment variable of a field (`lease_seconds` -> `STEPLINE_LEASE_SECONDS`)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return ENV_PREFIX + field.upper()


def _explain(exc: ValidationError) -> str:
    return "invalid configuration: " + "; ".join(_problem(error) for error in exc.errors())


def _problem(error: ErrorDetails) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    name = env_name(field) if field in Settings.model_fields else field
    allowed = error["msg"].removeprefix("Value error, ")
    allowed = allowed.replace("Input should be", "must be").replace("String should", "must")
    allowed = allowed[:1].lower() + allowed[1:]
    return f"{name}={error.get('input')!r}: {allowed}"


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(variable, effective value, where it came from) for every setting, secrets masked."""
    rows = []
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if field in SECRETS and value is not None:
            shown = "***"
        elif field == "redis_url":
            shown = masked_url(str(value))
        elif isinstance(value, list):
            shown = ",".join(value)
        else:
            shown = "" if value is None else str(value)
        source = "environment" if field in settings.model_fields_set else "default"
        rows.append((env_name(field), shown, source))
    return rows


def masked_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{user}:***@{host}{port}").geturl()


def environment_names() -> Mapping[str, str]:
    """Field -> environment variable, for docs and the configuration test."""
    return {field: env_name(field) for field in Settings.model_fields}


__all__ = [
    "ConfigError",
    "Settings",
    "describe",
    "env_name",
    "environment_names",
    "load_or_exit",
    "masked_url",
]
