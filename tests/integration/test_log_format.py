"""STEPLINE_LOG_FORMAT=json: every line the worker, beat and gunicorn write is one JSON object,
and a run's lines carry its run id."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from app import cli
from app.devredis import free_port
from tests.integration.cluster import ROOT, Cluster

pytestmark = pytest.mark.e2e


def json_lines(path: Path) -> list[dict[str, object]]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines, f"{path.name} is empty"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path.name}: not JSON: {line!r}") from None
    return parsed


def test_worker_beat_and_gunicorn_log_json(redis_url: str, tmp_path: Path) -> None:
    cluster = Cluster(redis_url, tmp_path, STEPLINE_LOG_FORMAT="json")
    worker_proc = cluster.start_worker()
    port = free_port()
    # beat and web as the Procfile and `stepline beat|web` start them (beat with -q: its
    # banner is not a log line)
    for name, command in (
        ("beat", cli.beat_command(tmp_path / "beat-schedule")),
        ("web", cli.web_command("127.0.0.1", port, workers=1)),
    ):
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115
        cluster.procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=cluster.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        event_id = cluster.send("e2e/steps", {"n": 2})
        run = cluster.run_of(event_id)
        assert run.status == "Completed"
        base = f"http://127.0.0.1:{port}"
        cluster.wait_for(lambda: _answers(f"{base}/health"), 60, "gunicorn")
        cluster.wait_for(
            lambda: "beat: Starting" in (tmp_path / "beat.log").read_text(), 30, "beat's log"
        )

        worker = json_lines(tmp_path / "w1.log")
        loggers = {line["logger"] for line in worker}
        assert {"celery.worker.strategy", "celery.app.trace", "stepline.runs"} <= loggers
        mine = [line for line in worker if str(line["logger"]).startswith("stepline.")]
        about_run = [line for line in mine if line.get("run_id") == run.run_id]
        assert {"run started", "run completed"} <= {
            str(line["message"]).split(" run_id=")[0] for line in about_run
        }
        # Celery's own task lines ("received", "succeeded") name what their job is about:
        # here the trigger event's job (its run started inline, within that job).
        celery_about_event = {
            str(line["logger"])
            for line in worker
            if str(line["logger"]).startswith("celery.") and line.get("event_id") == event_id
        }
        assert {"celery.worker.strategy", "celery.app.trace"} <= celery_about_event
        # A warm shutdown (SIGTERM, as supervisors stop it) is a JSON line too, not the raw
        # "worker: Warm shutdown (MainProcess)" Celery prints to stdout.
        cluster.kill(worker_proc, signal.SIGTERM)
        after = json_lines(tmp_path / "w1.log")
        assert any(line["message"] == "worker: Warm shutdown" for line in after)
        beat = json_lines(tmp_path / "beat.log")
        assert any(line["logger"] == "celery.beat" for line in beat)
        web_lines = json_lines(tmp_path / "web.log")
        assert any(line["logger"] == "gunicorn.error" for line in web_lines)
        access = [line for line in web_lines if line["logger"] == "gunicorn.access"]
        assert any("GET /health" in str(line["message"]) for line in access)
    finally:
        cluster.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
