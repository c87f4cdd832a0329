"""app.cli: argument parsing, the commands each entry point runs, `send`, and the supervisor."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import cli
from app.devredis import RedisHandle


def test_dev_defaults() -> None:
    args = cli.build_parser().parse_args(["dev"])
    assert (args.port, args.host, args.app_urls, args.functions) == (8288, "127.0.0.1", [], None)


def test_dev_options() -> None:
    args = cli.build_parser().parse_args(
        [
            "dev",
            "--port",
            "9000",
            "--host",
            "0.0.0.0",
            "-u",
            "localhost:3000/api/inngest",
            "--sdk-url",
            "http://a/api",
            "--functions",
            "mod.a,mod.b",
        ]
    )
    assert args.port == 9000 and args.host == "0.0.0.0"
    assert args.app_urls == ["localhost:3000/api/inngest", "http://a/api"]
    assert args.functions == "mod.a,mod.b"


def test_dev_rejects_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["dev", "--bogus"])
    assert exit_.value.code == 2
    assert "--bogus" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "dev" in capsys.readouterr().out


def test_app_urls_merge_cli_and_env_with_schemes_and_no_repeats() -> None:
    assert cli.app_urls(
        ["localhost:3000/api/inngest", "https://x/api"], " https://x/api , y:8000/api/inngest,"
    ) == ["http://localhost:3000/api/inngest", "https://x/api", "http://y:8000/api/inngest"]
    assert cli.app_urls([], None) == []


def test_functions_come_from_flag_then_env_then_the_example() -> None:
    assert cli.dev_functions("a,b", "c") == "a,b"
    assert cli.dev_functions(None, "c") == "c"
    assert cli.dev_functions(None, None) == "app.examples.hello"


def test_dev_environment() -> None:
    env = cli.dev_environment({"PATH": "/bin", "REDIS_URL": "old"}, "redis://h:1/0", "m", ["u1"])
    assert env == {
        "PATH": "/bin",
        "REDIS_URL": "redis://h:1/0",
        "STEPLINE_FUNCTIONS": "m",
        "PYTHONUNBUFFERED": "1",
        "STEPLINE_ACCESS_LOG": "false",
        "STEPLINE_APP_URLS": "u1",
    }
    assert "STEPLINE_APP_URLS" not in cli.dev_environment({}, "r", "m", [])
    asked = cli.dev_environment({"STEPLINE_ACCESS_LOG": "true"}, "r", "m", [])
    assert asked["STEPLINE_ACCESS_LOG"] == "true"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.2", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert cli.is_loopback(host) is loopback


def test_dev_commands() -> None:
    py = sys.executable
    assert cli.web_command("127.0.0.1", 8288, workers=1) == [
        py,
        "-m",
        "gunicorn",
        "-c",
        "python:app.gunicorn_conf",
        "-b",
        "127.0.0.1:8288",
        "--workers",
        "1",
        "app.api:create_app()",
    ]
    assert cli.web_command("::1", 8288, workers=1)[6] == "[::1]:8288"
    assert cli.worker_command(concurrency=2) == [
        py,
        "-m",
        "celery",
        "-A",
        "tasks",
        "worker",
        "-Q",
        "stepline",
        "--concurrency",
        "2",
        "--loglevel",
        "INFO",
    ]
    assert cli.beat_command(Path("/tmp/x/beat-schedule")) == [
        py,
        "-m",
        "celery",
        "-A",
        "tasks",
        "-q",
        "beat",
        "--loglevel",
        "INFO",
        "-s",
        "/tmp/x/beat-schedule",
    ]


def test_the_gunicorn_config_keeps_event_keys_out_of_the_logs() -> None:
    from app import gunicorn_conf

    assert gunicorn_conf.logger_class == "app.api.accesslog.AccessLogger"
    assert gunicorn_conf.threads == 8


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        assert path == argv[0]
        calls.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", fake_execv)
    return calls


def test_wrappers_exec_the_procfile_commands_with_extra_args(
    execs: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    py = sys.executable
    monkeypatch.setenv("PORT", "5000")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    for argv in (["web", "--timeout", "30"], ["worker", "-c", "4"], ["beat"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
    assert execs == [
        [
            py,
            "-m",
            "gunicorn",
            "-c",
            "python:app.gunicorn_conf",
            "-b",
            "0.0.0.0:5000",
            "--workers",
            "3",
            "app.api:create_app()",
            "--timeout",
            "30",
        ],
        [
            py,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-Q",
            "stepline",
            "--loglevel",
            "INFO",
            "-c",
            "4",
        ],
        [py, "-m", "celery", "-A", "tasks", "-q", "beat", "--loglevel", "INFO"],
    ]


def test_dev_fails_fast_on_a_missing_functions_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dev", "--port", "1", "--functions", "no_such_module_xyz"]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err


def test_dev_fails_fast_on_a_taken_port(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert cli.main(["dev", "--port", str(port), "--functions", "json"]) == 2
    assert "pick another --port" in capsys.readouterr().err


# send -------------------------------------------------------------------------------------------


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_post(url: str, *, json: Any, timeout: float) -> httpx.Response:
        calls.append({"url": url, "json": json})
        if json["name"] == "fail/me":
            return httpx.Response(401, json={"error": "Event key not found"})
        return httpx.Response(200, json={"ids": ["01J0000000000000000000000A"], "status": 200})

    monkeypatch.setattr(httpx, "post", fake_post)
    return calls


def test_send_posts_the_event_and_prints_its_ids(
    posts: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "send",
            "app/user.created",
            "--data",
            '{"id": 7}',
            "--id",
            "u7",
            "--url",
            "http://127.0.0.1:9999/",
            "--key",
            "k1",
        ]
    )
    assert code == 0
    assert posts == [
        {
            "url": "http://127.0.0.1:9999/e/k1",
            "json": {"name": "app/user.created", "data": {"id": 7}, "id": "u7"},
        }
    ]
    assert capsys.readouterr().out == "01J0000000000000000000000A\n"


def test_send_defaults(posts: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPLINE_EVENT_KEY", raising=False)
    assert cli.main(["send", "a/b"]) == 0
    assert posts == [{"url": "http://127.0.0.1:8288/e/dev", "json": {"name": "a/b", "data": {}}}]


def test_send_reports_errors(
    posts: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["send", "fail/me"]) == 1
    assert "401" in capsys.readouterr().err
    assert cli.main(["send", "a/b", "--data", "[1]"]) == 2
    assert cli.main(["send", "a/b", "--data", "{nope"]) == 2
    assert len(posts) == 1


def test_send_says_when_the_server_is_not_there(capsys: pytest.CaptureFixture[str]) -> None:
    from app.devredis import free_port

    assert cli.main(["send", "a/b", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "python -m app dev" in capsys.readouterr().err


# Supervisor: real processes, no engine ----------------------------------------------------------

SPAWNS_GRANDCHILD = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('grandchild', g.pid, flush=True)\n"
    "time.sleep(60)\n"
)
IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('stubborn', flush=True)\n"
    "time.sleep(60)\n"
)
NO_REDIS = RedisHandle(url="redis://unused", source="REDIS_URL")


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_for(out: io.StringIO, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in out.getvalue():
            return out.getvalue()
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not in output:\n{out.getvalue()}")


def _grandchild_pid(out: io.StringIO) -> int:
    line = next(x for x in _wait_for(out, "grandchild").splitlines() if "grandchild" in x)
    return int(line.split()[-1])


def test_a_signal_stops_every_process_group_and_exits_0() -> None:
    out = io.StringIO()
    supervisor = cli.Supervisor(cli.Console(out))
    before = signal.getsignal(signal.SIGINT)
    with supervisor.handling_signals():
        supervisor.start("one", [sys.executable, "-c", SPAWNS_GRANDCHILD], dict(os.environ))
        supervisor.start("two", [sys.executable, "-c", SPAWNS_GRANDCHILD], dict(os.environ))
        supervisor.start_readers()
        grandchild = _grandchild_pid(out)
        children = [c.process.pid for c in supervisor.children]
        assert all(os.getpgid(pid) == pid for pid in children)  # each its own group
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        assert supervisor.run(NO_REDIS) == 0
    assert signal.getsignal(signal.SIGINT) is before
    assert not any(_pid_alive(pid) for pid in [*children, grandchild])
    assert "one | grandchild" in out.getvalue() or "two | grandchild" in out.getvalue()


def test_a_child_that_dies_stops_the_rest_and_exits_1() -> None:
    out = io.StringIO()
    supervisor = cli.Supervisor(cli.Console(out))
    with supervisor.handling_signals():
        supervisor.start("web", [sys.executable, "-c", SPAWNS_GRANDCHILD], dict(os.environ))
        supervisor.start(
            "worker",
            [sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit(3)"],
            dict(os.environ),
        )
        supervisor.start_readers()
        grandchild = _grandchild_pid(out)
        assert supervisor.run(NO_REDIS) == 1
    assert "worker exited unexpectedly with code 3" in out.getvalue()
    assert not any(_pid_alive(c.process.pid) for c in supervisor.children)
    assert not _pid_alive(grandchild)


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    out = io.StringIO()
    supervisor = cli.Supervisor(cli.Console(out))
    supervisor.start("beat", [sys.executable, "-c", IGNORES_SIGTERM], dict(os.environ))
    supervisor.start_readers()
    _wait_for(out, "beat | stubborn")
    started = time.monotonic()
    supervisor.stop_all(timeout=0.5)
    assert time.monotonic() - started < 5
    assert supervisor.children[0].process.returncode == -signal.SIGKILL
    assert "beat did not stop in time; killing it" in out.getvalue()


def test_console_prefixes_whole_lines() -> None:
    out = io.StringIO()
    console = cli.Console(out)
    console.pump("worker", io.BytesIO(b"run completed run_id=1\nsecond\xff\n"))
    console.write("plain")
    assert out.getvalue() == "worker | run completed run_id=1\nworker | second\ufffd\nplain\n"


def test_send_output_is_json_when_the_server_answers_otherwise(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(httpx, "post", lambda *a, **k: httpx.Response(200, json={"id": "x"}))
    assert cli.main(["send", "a/b"]) == 0
    assert json.loads(capsys.readouterr().out) == {"id": "x"}
