"""app/config.py: typed, bounded settings from the environment; errors that name the variable,
the value and what is allowed; `stepline config`; a process refusing a bad value at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli
from app.config import ConfigError, Settings, describe, env_name, load_or_exit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean slate: none of this shell's Stepline variables."""
    for name in list(os.environ):
        if name.startswith("STEPLINE_") or name in ("REDIS_URL", "PORT", "WEB_CONCURRENCY"):
            monkeypatch.delenv(name)
    return monkeypatch


def error_of(env: pytest.MonkeyPatch, name: str, value: str) -> str:
    env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env()
    return caught.value.message


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("STEPLINE_RETENTION_DAYS", "7d", "must be a valid number"),
        ("STEPLINE_LEASE_SECONDS", "0", "must be greater than 0"),
        ("STEPLINE_TICK_SECONDS", "-1", "must be greater than 0"),
        ("STEPLINE_TICK_SECONDS", "600", "must be less than or equal to 60"),
        ("STEPLINE_VISIBILITY_TIMEOUT", "ten", "must be a valid integer"),
        ("STEPLINE_LOG_FORMAT", "yaml", "must be 'text' or 'json'"),
        ("STEPLINE_WORKER_CONCURRENCY", "0", "must be greater than or equal to 1"),
        ("PORT", "70000", "must be less than or equal to 65535"),
        ("WEB_CONCURRENCY", "x", "must be a valid integer"),
        ("REDIS_URL", "http://cache:6379", "must be a redis://, rediss:// or unix:// URL"),
        ("STEPLINE_REDIS_TLS_CERT_REQS", "maybe", "must be 'required', 'optional' or 'none'"),
        ("STEPLINE_LUA_DIR", "/no/such/dir", "path does not point to a directory"),
        ("STEPLINE_KEY_PREFIX", "has space", "must match pattern"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    env: pytest.MonkeyPatch, name: str, value: str, allowed: str
) -> None:
    message = error_of(env, name, value)
    assert f"{name}={value!r}: {allowed}" in message


def test_every_bad_value_is_reported_at_once(env: pytest.MonkeyPatch) -> None:
    env.setenv("STEPLINE_LEASE_SECONDS", "0")
    message = error_of(env, "STEPLINE_RETENTION_DAYS", "7d")
    assert "STEPLINE_LEASE_SECONDS='0'" in message and "STEPLINE_RETENTION_DAYS='7d'" in message


def test_values_are_parsed_and_typed(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("REDIS_URL", "rediss://:pw@cache:6380/2")
    env.setenv("STEPLINE_FUNCTIONS", " shop.functions, billing ,")
    env.setenv("STEPLINE_EVENT_KEYS", "k1,k2")
    env.setenv("STEPLINE_LOG_FORMAT", "JSON")
    env.setenv("STEPLINE_LUA_DIR", str(tmp_path))
    env.setenv("STEPLINE_VISIBILITY_TIMEOUT", "600")
    env.setenv("STEPLINE_REDIS_TLS_CERT_REQS", "NONE")
    env.setenv("PORT", "5000")
    env.setenv("WEB_CONCURRENCY", "3")
    env.setenv("STEPLINE_SIGNING_KEY", "")  # empty counts as unset
    settings = Settings.from_env()
    assert settings.redis_url == "rediss://:pw@cache:6380/2"
    assert settings.functions == ["shop.functions", "billing"]
    assert settings.event_keys == ["k1", "k2"]
    assert settings.log_format == "json"
    assert settings.lua_dir == tmp_path
    assert settings.visibility_timeout_seconds == 600
    assert settings.redis_tls_cert_reqs == "none"
    assert (settings.port, settings.web_concurrency) == (5000, 3)
    assert settings.signing_key is None
    assert settings.production  # an event key is a credential


def test_settings_built_in_code_ignore_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("STEPLINE_LEASE_SECONDS", "5")
    env.setenv("REDIS_URL", "redis://elsewhere:1/0")
    assert Settings().lease_seconds == 30.0
    assert Settings(lease_seconds=4).redis_url == "redis://127.0.0.1:6379/0"
    assert Settings.from_env().lease_seconds == 5.0


def test_replace_validates_and_keeps_the_rest(env: pytest.MonkeyPatch) -> None:
    env.setenv("STEPLINE_KEY_PREFIX", "shop")
    settings = Settings.from_env().replace(tick_seconds=0.2)
    assert (settings.key_prefix, settings.tick_seconds) == ("shop", 0.2)
    assert "key_prefix" in settings.model_fields_set and "port" not in settings.model_fields_set
    with pytest.raises(ConfigError, match="STEPLINE_TICK_SECONDS=0"):
        settings.replace(tick_seconds=0)


def test_describe_masks_secrets_and_says_where_values_came_from(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_URL", "redis://user:hunter2@cache:6379/0")
    env.setenv("STEPLINE_SIGNING_KEY", "signkey-prod-abc")
    env.setenv("STEPLINE_API_TOKEN", "tok")
    settings = Settings.from_env()
    rows = {name: (value, source) for name, value, source in describe(settings)}
    assert rows["REDIS_URL"] == ("redis://user:***@cache:6379/0", "environment")
    assert rows["STEPLINE_SIGNING_KEY"] == ("***", "environment")
    assert rows["STEPLINE_API_TOKEN"] == ("***", "environment")
    assert rows["STEPLINE_LEASE_SECONDS"] == ("30.0", "default")
    assert "signkey-prod-abc" not in repr(settings) and "tok'" not in repr(settings)
    assert env_name("visibility_timeout_seconds") == "STEPLINE_VISIBILITY_TIMEOUT"
    assert env_name("lease_seconds") == "STEPLINE_LEASE_SECONDS"


def test_stepline_config_prints_the_effective_configuration(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("STEPLINE_SIGNING_KEY", "signkey-prod-abc")
    env.setenv("STEPLINE_TICK_SECONDS", "0.25")
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert "signkey-prod-abc" not in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert lines["STEPLINE_TICK_SECONDS"] == ["0.25", "(environment)"]
    assert lines["STEPLINE_SIGNING_KEY"] == ["***", "(environment)"]
    assert lines["PORT"] == ["8288", "(default)"]


def test_every_command_refuses_a_bad_configuration(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("STEPLINE_LEASE_SECONDS", "0")
    assert cli.main(["config"]) == 2
    assert "STEPLINE_LEASE_SECONDS='0': must be greater than 0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="STEPLINE_LEASE_SECONDS='0'"):
        load_or_exit()


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--help"],
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:app.gunicorn_conf",
            "--check-config",
            "app.api:create_app()",
        ],
    ],
    ids=["celery", "gunicorn"],
)
def test_celery_and_gunicorn_stop_at_start_naming_the_variable(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPLINE_")}
    env["STEPLINE_RETENTION_DAYS"] = "7d"
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "STEPLINE_RETENTION_DAYS='7d': must be a valid number" in done.stderr
