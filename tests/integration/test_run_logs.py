"""`ctx.logger` lines are kept with their run and step (in-process functions), bounded, shown
by `GET /v1/runs/<id>`, and archived with the run to the history store. Through the real
engine, Redis and Flask app; Celery's broker hop is a recorder and jobs are run by hand."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

import app.sdk as inngest
from app.api import create_app
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.state.run_logs import RunLogStore
from tests.integration.test_flow_slots_engine import Recorder
from tests.integration.test_tracing import drain

client = inngest.Inngest(app_id="logunit")


@client.create_function(fn_id="chatty", trigger=inngest.TriggerEvent(event="log/chatty"))
def chatty(ctx: inngest.ContextSync) -> str:
    ctx.logger.info("starting for %s", ctx.event.data["who"])

    def load() -> int:
        ctx.logger.warning("loading %d rows", 3)
        return 3

    rows = ctx.step.run("load", load)
    ctx.step.sleep("pause", datetime.timedelta(milliseconds=1))
    ctx.logger.info("after the pause")

    def save() -> str:
        try:
            raise KeyError("disk")
        except KeyError:
            ctx.logger.exception("save failed once")
        return "saved"

    return ctx.step.run("save", save) + f" {rows}"


@client.create_function(fn_id="flood", trigger=inngest.TriggerEvent(event="log/flood"))
def flood(ctx: inngest.ContextSync) -> int:
    for i in range(300):
        ctx.logger.info("line %d %s", i, "x" * (5000 if i == 0 else 0))
    return 1


@dataclass
class Harness:
    engine: Engine
    http: FlaskClient

    def run_of(self, name: str, **data: Any) -> str:
        [event_id] = self.engine.runner.ingest([{"name": name, "data": data}], self.engine.now())
        self.engine.runner.process_event(event_id, self.engine.now())
        [run_id] = self.engine.store.event_run_ids(event_id)
        return run_id

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200
        return response.get_json()["data"]  # type: ignore[no-any-return]


@pytest.fixture
def h(redis_url: str, tmp_path: Path) -> Iterator[Harness]:
    engine = Engine.create(
        Settings(redis_url=redis_url, history_url=f"sqlite:///{tmp_path / 'h.db'}"),
        sender=Recorder(),
        local=FunctionSet([chatty, flood]),
    )
    app = create_app(engine)
    app.testing = True
    yield Harness(engine, app.test_client())
    engine.store.close()


def test_lines_are_kept_with_their_step_once_each_across_replays(h: Harness) -> None:
    run_id = h.run_of("log/chatty", who="ada")
    # After the sleep a second call replays "load" (its logger quiet) and runs to the end.
    assert h.engine.jobs.handle(f"{run_id}:start") == "done"
    drain(h.engine, run_id)
    run = h.run(run_id)
    assert run["status"] == "Completed" and run["output"] == "saved 3"
    lines = [(line["level"], line["message"].split("\n")[0], line["step"]) for line in run["logs"]]
    # The replay of the second call logs nothing again: each line once, in order.
    assert lines == [
        ("info", "starting for ada", None),
        ("warning", "loading 3 rows", "load"),
        ("info", "after the pause", None),
        ("error", "save failed once", "save"),
    ]
    failed = run["logs"][3]["message"]
    assert "Traceback" in failed and "KeyError: 'disk'" in failed
    assert all(isinstance(line["ts"], int) for line in run["logs"])
    assert run["logs_dropped"] == 0
    step_ids = {step["name"]: step["id"] for step in run["steps"]}
    assert run["logs"][1]["step_id"] == step_ids["load"]


def test_lines_are_bounded_per_call_and_per_line(h: Harness) -> None:
    run_id = h.run_of("log/flood")
    assert h.engine.jobs.handle(f"{run_id}:start") == "done"
    run = h.run(run_id)
    logs = run["logs"]
    assert len(logs) == 201
    assert len(logs[0]["message"]) == 2000 and logs[0]["message"].endswith("…")
    assert logs[199]["message"] == "line 199 "
    assert logs[200]["message"] == "100 more lines of this call were not kept"


def test_a_repeated_write_stores_nothing_twice_and_a_run_is_capped(h: Harness) -> None:
    logs = RunLogStore(h.engine.store)
    line = {"ts": 1, "level": "info", "message": "m", "step": None, "step_id": None}
    assert logs.append("R", "batch-1", [line, line], max_lines=3) == 2
    assert logs.append("R", "batch-1", [line, line], max_lines=3) == 2  # a repeat
    assert logs.append("R", "batch-2", [line, line], max_lines=3) == 1
    read = logs.read("R")
    assert (len(read.lines), read.dropped) == (3, 1)


def test_lines_are_archived_with_the_run(h: Harness) -> None:
    run_id = h.run_of("log/flood")
    assert h.engine.jobs.handle(f"{run_id}:start") == "done"
    live = h.run(run_id)
    archiver = h.engine.archiver
    assert archiver.archive_once(h.engine.now() + 1) >= 1  # the run and its event
    hot = int(h.engine.settings.hot_window_seconds * 1000)
    assert archiver.drop_due(h.engine.now() + hot + 10_000) >= 1
    assert h.engine.store.get_run(run_id) is None
    keys = RunLogStore(h.engine.store).keys
    assert not h.engine.store._client.exists(keys.logs(run_id), keys.meta(run_id))
    archived = h.run(run_id)
    assert archived["logs"] == live["logs"] and len(archived["logs"]) == 201
