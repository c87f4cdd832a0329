"""Workers built with the official SDKs' Connect, unmodified: Python `inngest[connect]` 0.5.19
(tests/sdk_apps/py_connect.py) and TypeScript `connect()` from inngest 4.24.0
(tests/sdk_apps/ts_app/connect.js), served by a real Stepline: API, celery worker and beat, and
the gateway, each its own process. The workers dial out; nothing calls them over HTTP. The same
tests run against both SDKs."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.drivers import signing
from tests.sdk_apps.connect import ConnectStack, connect_stack
from tests.sdk_apps.harness import CannedServer, Reply, node_available
from tests.sdk_apps.stack import redis_for_stack, step_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def remote() -> Iterator[CannedServer]:
    """A local HTTP server standing in for a remote API (never an outside address)."""
    server = CannedServer()
    yield server
    server.close()


class ConnectWorkers:
    """The tests; subclasses name the SDK (`KIND`) and its app id (`APP`)."""

    KIND = ""
    APP = ""

    @pytest.fixture(scope="class")
    def stack(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectStack]:
        tmp = tmp_path_factory.mktemp(f"{self.KIND}-connect")
        with connect_stack(redis_for_stack(), tmp) as stack:
            yield stack

    def test_connecting_registers_the_apps_functions(self, stack: ConnectStack) -> None:
        app = self.APP
        stack.start_worker(self.KIND, app, f"{self.KIND}-a")
        functions = {fn.id: fn for fn in stack.cluster.engine.registry.all() if fn.app_id == app}
        expected = ("three", "ops", "who", "slow", "nap", "par", "caller", "nr", "nr-failure")
        assert {f"{app}-{fn}" for fn in expected} <= set(functions)
        assert {fn.driver for fn in functions.values()} == {"connect"}
        apps = stack.http.get("/v1/apps").json()["data"]
        assert any(entry["id"] == app for entry in apps)

    def test_steps_run_on_the_worker(self, stack: ConnectStack) -> None:
        app = self.APP
        run = stack.run_of(stack.send(f"{app}/three"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"sum": 6}
        assert [s["name"] for s in run["steps"]] == ["a", "b", "c"]

    def test_parallel_steps_join(self, stack: ConnectStack) -> None:
        app = self.APP
        run = stack.run_of(stack.send(f"{app}/par"))
        assert run["status"] == "Completed", run
        assert run["output"] == ["x", "y"]

    def test_invoke_and_send_event(self, stack: ConnectStack) -> None:
        app = self.APP
        run = stack.run_of(stack.send(f"{app}/caller"), f"{app}-caller")
        assert run["status"] == "Completed", run
        assert run["output"] == {"invoked": {"sum": 6}, "sent": 1}

    def test_a_failed_step_is_retried(self, stack: ConnectStack) -> None:
        app = self.APP
        run = stack.run_of(stack.send(f"{app}/flaky"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"succeeded_on": 1}
        assert step_of(run, "once")["attempts"] == 2

    def test_non_retriable_error_fails_at_once_and_runs_on_failure(
        self, stack: ConnectStack
    ) -> None:
        app = self.APP
        run = stack.run_of(stack.send(f"{app}/nr"), f"{app}-nr")
        assert run["status"] == "Failed", run
        assert "stop now" in str(run["error"])
        handler = stack.ended_runs_of_function(
            f"{app}-nr-failure", lambda r: r["status"] == "Completed"
        )
        assert handler["output"] == {"saw": "inngest/function.failed"}

    def test_step_ai_infer_is_made_by_the_engine(
        self, stack: ConnectStack, remote: CannedServer
    ) -> None:
        answer = {"choices": [{"message": {"role": "assistant", "content": "over connect"}}]}
        remote.queue(Reply(200, {"content-type": "application/json"}, answer))
        run = stack.run_of(stack.send(f"{self.APP}/ai", {"base": f"{remote.url}/v1"}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"content": "over connect"}
        (request,) = remote.received
        assert (request.method, request.path) == ("POST", "/v1/chat/completions")
        assert request.headers["authorization"] == "Bearer sk-test"

    def test_sleeps_and_waits(self, stack: ConnectStack) -> None:
        app = self.APP
        event_id = stack.send(f"{app}/ops", {"id": "o-1"})

        def waiting() -> bool:
            runs = stack.event_runs(event_id)
            return bool(runs) and step_of_or_none(runs[0], "wait") == "Waiting"

        stack.wait_for(waiting, what="the run to wait for the approval")
        stack.send(f"{app}/approve", {"id": "other"})
        stack.send(f"{app}/approve", {"id": "o-1"})
        run = stack.run_of(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {"first": "one", "approved": True, "late": None}
        assert step_of(run, "nap")["status"] == "Completed"
        assert step_of(run, "late")["status"] == "TimedOut"

    def test_two_workers_share_the_load(self, stack: ConnectStack) -> None:
        app = self.APP
        first = stack.workers[0]
        second = stack.start_worker(self.KIND, app, f"{self.KIND}-b")
        events = [stack.send(f"{app}/who", {"i": i}) for i in range(10)]
        pids = {stack.run_of(event_id)["output"] for event_id in events}
        assert pids == {first.pid, second.pid}

    def test_a_worker_killed_mid_step_gets_the_step_retried(
        self, stack: ConnectStack, tmp_path: Path
    ) -> None:
        app = self.APP
        marker = tmp_path / "ran-on"
        event_id = stack.send(f"{app}/slow", {"marker": str(marker)})
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

    def test_a_gateway_restart_moves_the_workers_without_losing_a_call(
        self, stack: ConnectStack, tmp_path: Path
    ) -> None:
        """GATEWAY_CLOSING while a step runs: the worker reconnects to the new gateway, keeps
        renewing its lease there and delivers its reply; nothing is retried."""
        app = self.APP
        marker = tmp_path / "dozing"
        event_id = stack.send(f"{app}/nap", {"marker": str(marker)})
        stack.wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the step")
        stack.restart_gateway()
        run = stack.run_of(event_id, timeout=60)
        assert run["status"] == "Completed", run
        assert run["output"] == "rested"
        assert step_of(run, "doze")["attempts"] == 1
        new_gateway = stack.gateways[-1]
        stack.wait_for(
            lambda: "worker connected" in new_gateway.log.read_text(),
            what="the workers to reconnect to the new gateway",
        )
        assert stack.run_of(stack.send(f"{app}/three"))["output"] == {"sum": 6}

    def test_a_stopped_worker_drains(self, stack: ConnectStack) -> None:
        app = self.APP
        """SIGTERM: WORKER_PAUSE, calls in flight finish, the socket closes; the app's calls
        go to the workers left."""
        leaving = next(w for w in stack.workers if w.process.poll() is None)
        leaving.stop()
        assert leaving.process.returncode is not None
        stack.wait_for(
            lambda: not leaving.connected(stack.connect), what="the worker to leave the gateway"
        )
        if not any(w.process.poll() is None for w in stack.workers):
            stack.start_worker(self.KIND, app, f"{self.KIND}-c")
        run = stack.run_of(stack.send(f"{app}/three"))
        assert run["status"] == "Completed", run


def step_of_or_none(run: dict[str, object], name: str) -> object:
    for step in run["steps"]:  # type: ignore[attr-defined]
        if step["name"] == name:
            return step["status"]
    return None


class TestPythonConnectWorkers(ConnectWorkers):
    KIND = "python"
    APP = "pyconn"


@pytest.mark.skipif(node_available() is not None, reason=str(node_available()))
class TestTypeScriptConnectWorkers(ConnectWorkers):
    KIND = "node"
    APP = "tsconn"

    def test_step_fetch_is_made_by_the_engine(
        self, stack: ConnectStack, remote: CannedServer
    ) -> None:
        remote.queue(Reply(200, {"content-type": "text/plain"}, b"fetched"))
        run = stack.run_of(stack.send(f"{self.APP}/fetcher", {"url": f"{remote.url}/x"}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"status": 200, "body": "fetched"}
        assert [(r.method, r.path) for r in remote.received] == [("GET", "/x")]

    def test_a_signal_resumes_a_connect_run(self, stack: ConnectStack) -> None:
        name = f"conn-{secrets.token_hex(4)}"
        event_id = stack.send(f"{self.APP}/signal", {"signal": name})

        def sent() -> str | None:
            response = stack.http.post("/v1/signals", json={"signal": name, "data": {"n": 1}})
            return str(response.json()["data"]["run_id"]) if response.status_code == 200 else None

        run_id = stack.wait_for(sent, what="a run to wait for the signal")
        run = stack.run_of(event_id)
        assert (run["run_id"], run["status"]) == (run_id, "Completed"), run
        assert run["output"] == {"signal": name, "data": {"n": 1}}

    def test_a_feature_stepline_lacks_fails_the_run_at_once(self, stack: ConnectStack) -> None:
        run = stack.run_of(stack.send(f"{self.APP}/lacking"))
        assert run["status"] == "Failed", run
        assert run["error"]["name"] == "UnsupportedOpcodeError"
        assert "defer()" in run["error"]["message"] and "DeferAdd" in run["error"]["message"]
        assert not [s for s in run["steps"] if s.get("kind") == "Call"], run["steps"]


SIGNING_KEY = f"signkey-test-{secrets.token_hex(32)}"


class TestProductionMode:
    """A signing key set: the worker's start call carries its hashed key (checked like
    /fn/register's), and a start without it is refused."""

    @pytest.fixture(scope="class")
    def stack(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectStack]:
        tmp = tmp_path_factory.mktemp("prod-connect")
        with connect_stack(
            redis_for_stack(),
            tmp,
            STEPLINE_SIGNING_KEY=SIGNING_KEY,
            STEPLINE_EVENT_KEYS="connect-prod-event-key",
        ) as stack:
            yield stack

    def test_a_worker_with_the_signing_key_connects_and_runs(self, stack: ConnectStack) -> None:
        stack.start_worker("python", "pyprod", "prod-a")
        run = stack.run_of(stack.send("pyprod/three"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"sum": 6}

    def test_a_start_without_the_key_is_refused(self, stack: ConnectStack) -> None:
        for headers in ({}, {"Authorization": signing.bearer_value(f"signkey-test-{'cd' * 32}")}):
            response = httpx.post(f"{stack.api.url}/v0/connect/start", content=b"", headers=headers)
            assert response.status_code == 401
            assert "signing key" in response.json()["error"]
