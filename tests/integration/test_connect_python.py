"""Workers built with the official Python SDK's Connect (`inngest[connect]` 0.5.19, unmodified,
tests/sdk_apps/py_connect.py) served by a real Stepline: API, celery worker and beat, and the
gateway, each its own process. The workers dial out; nothing calls them over HTTP."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sdk_apps.connect import ConnectStack, connect_stack
from tests.sdk_apps.stack import redis_for_stack, step_of

pytestmark = pytest.mark.e2e

APP = "pyconn"


@pytest.fixture(scope="class")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectStack]:
    tmp = tmp_path_factory.mktemp("py-connect")
    with connect_stack(redis_for_stack(), tmp) as stack:
        yield stack


class TestPythonConnectWorkers:
    def test_connecting_registers_the_apps_functions(self, stack: ConnectStack) -> None:
        stack.start_worker("python", APP, "py-a")
        functions = {fn.id: fn for fn in stack.cluster.engine.registry.all() if fn.app_id == APP}
        assert {"pyconn-three", "pyconn-ops", "pyconn-who", "pyconn-slow"} <= set(functions)
        assert {fn.driver for fn in functions.values()} == {"connect"}
        apps = stack.http.get("/v1/apps").json()["data"]
        assert any(app["id"] == APP for app in apps)

    def test_steps_run_on_the_worker(self, stack: ConnectStack) -> None:
        run = stack.run_of(stack.send(f"{APP}/three"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"sum": 6}
        assert [s["name"] for s in run["steps"]] == ["a", "b", "c"]

    def test_sleeps_and_waits(self, stack: ConnectStack) -> None:
        event_id = stack.send(f"{APP}/ops", {"id": "o-1"})

        def waiting() -> bool:
            runs = stack.event_runs(event_id)
            return bool(runs) and step_of_or_none(runs[0], "wait") == "Waiting"

        stack.wait_for(waiting, what="the run to wait for the approval")
        stack.send(f"{APP}/approve", {"id": "other"})
        stack.send(f"{APP}/approve", {"id": "o-1"})
        run = stack.run_of(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {"first": "one", "approved": True, "late": None}
        assert step_of(run, "nap")["status"] == "Completed"
        assert step_of(run, "late")["status"] == "TimedOut"

    def test_two_workers_share_the_load(self, stack: ConnectStack) -> None:
        first = stack.workers[0]
        second = stack.start_worker("python", APP, "py-b")
        events = [stack.send(f"{APP}/who", {"i": i}) for i in range(10)]
        pids = {stack.run_of(event_id)["output"] for event_id in events}
        assert pids == {first.pid, second.pid}

    def test_a_worker_killed_mid_step_gets_the_step_retried(
        self, stack: ConnectStack, tmp_path: Path
    ) -> None:
        marker = tmp_path / "ran-on"
        event_id = stack.send(f"{APP}/slow", {"marker": str(marker)})
        stack.wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the step")
        victim = int(marker.read_text().split()[0])
        (worker,) = [w for w in stack.workers if w.pid == victim]
        killed_at = time.monotonic()
        worker.kill(signal.SIGKILL)
        run = stack.run_of(event_id, timeout=60)
        assert run["status"] == "Completed", run
        survivor = next(w for w in stack.workers if w is not worker)
        assert run["output"] == {"ran_on": survivor.pid}
        assert step_of(run, "work")["attempts"] == 2
        assert [int(pid) for pid in marker.read_text().split()] == [victim, survivor.pid]
        assert time.monotonic() - killed_at < 30  # the lease (4 s), not a long timeout

    def test_a_stopped_worker_drains(self, stack: ConnectStack) -> None:
        """SIGTERM: WORKER_PAUSE, calls in flight finish, the socket closes; the app's calls
        go to the workers left."""
        leaving = next(w for w in stack.workers if w.process.poll() is None)
        leaving.stop()
        assert leaving.process.returncode is not None
        stack.wait_for(
            lambda: not leaving.connected(stack.connect), what="the worker to leave the gateway"
        )
        if not any(w.process.poll() is None for w in stack.workers):
            stack.start_worker("python", APP, "py-c")
        run = stack.run_of(stack.send(f"{APP}/three"))
        assert run["status"] == "Completed", run


def step_of_or_none(run: dict[str, object], name: str) -> object:
    for step in run["steps"]:  # type: ignore[attr-defined]
        if step["name"] == name:
            return step["status"]
    return None
