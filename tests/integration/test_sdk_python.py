"""An app built with the official Inngest Python SDK (`tests/sdk_apps/py_app.py`, unmodified
`inngest` 0.5.19) run by a real Stepline: the API under gunicorn, a celery worker and beat, the
app as its own process pointed at the API with `INNGEST_DEV` (or, in production mode,
`INNGEST_BASE_URL` and a signing key). Events go in through `POST /e/<key>` (ours or the SDK
client's); outcomes are read from `GET /v1/events/<id>/runs` and `GET /v1/runs/<id>`.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.drivers import signing
from tests.sdk_apps.harness import HERE, CannedServer, Reply, SdkApp
from tests.sdk_apps.stack import Stack, python_sdk_app, redis_for_stack, running_stack, step_of

pytestmark = pytest.mark.e2e

SIGNING_KEY = f"signkey-test-{secrets.token_hex(32)}"
OLD_SIGNING_KEY = f"signkey-test-{secrets.token_hex(32)}"
EVENT_KEY = "prod-event-key"


class TestDevMode:
    @pytest.fixture(scope="class")
    def stack(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        tmp = tmp_path_factory.mktemp("py-dev")
        with running_stack(
            redis_for_stack(), tmp, python_sdk_app, STEPLINE_HTTP_TIMEOUT_SECONDS="4"
        ) as stack:
            yield stack

    def test_sync_registers_every_function(self, stack: Stack) -> None:
        ids = {fn.id for fn in stack.cluster.engine.registry.all() if fn.app_id == "pyapp"}
        assert {"pyapp-three", "pyapp-ops", "pyapp-fail", "pyapp-fail-failure"} <= ids
        three = stack.cluster.engine.registry.get("pyapp-three")
        assert three is not None and three.driver == "http"
        assert three.url is not None and three.url.startswith(stack.app.url)

    def test_sequential_steps(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/three"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"sum": 6}
        assert [s["name"] for s in run["steps"]] == ["a", "b", "c"]
        assert all(s["attempts"] == 1 for s in run["steps"])

    def test_parallel_steps_join(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/par"))
        assert run["status"] == "Completed", run
        assert run["output"] == ["x", "y"]
        assert sorted(s["name"] for s in run["steps"]) == ["p1", "p2"]

    def test_sleep_wait_invoke_and_send_event(self, stack: Stack) -> None:
        event_id = stack.send("pyapp/ops", {"id": "o-1"})
        started = time.monotonic()

        def waiting() -> bool:
            runs = stack.event_runs(event_id)
            return bool(runs) and any(s["status"] == "Waiting" for s in runs[0]["steps"])

        stack.wait_for(waiting, what="the run to wait for pyapp/approve")
        assert time.monotonic() - started >= 1.5  # slept 2 s first
        stack.send("pyapp/approve", {"id": "other"})
        stack.send("pyapp/approve", {"id": "o-1"})
        run = stack.run_of(event_id, "pyapp-ops")
        assert run["status"] == "Completed", run
        out = run["output"]
        assert out["approved"] is True
        assert out["invoked"] == {"double": 42}
        assert len(out["sent"]) == 1
        assert [s["name"] for s in run["steps"]] == ["nap", "wait", "call", "send"]
        sent = stack.event_runs(out["sent"][0])
        assert sent == []  # nothing is triggered by pyapp/sent, but the event is stored
        assert stack.http.get(f"/v1/events/{out['sent'][0]}").json()["data"]["name"] == (
            "pyapp/sent"
        )

    def test_parallel_group_then_astep_of(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/fanout"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"results": [0, 10, 20], "total": 30}
        assert step_of(run, "sum")["attempts"] == 1

    def test_wait_for_event_times_out_with_none(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/waiter"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"got": None, "after": "done"}
        assert step_of(run, "wait")["status"] == "TimedOut"

    def test_integers_beyond_2_to_the_53_stay_exact(self, stack: Stack) -> None:
        """Memos and events reach the SDK exactly, not rounded to doubles."""
        run = stack.run_of(stack.send("pyapp/bigint", {"big": 2**62 + 3}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"id": 2**60 + 1, "exact": True, "event": 2**62 + 3}

    def test_state_over_4_mib_is_fetched_by_the_sdk(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/bulky"), timeout=60)
        assert run["status"] == "Completed", run
        assert run["output"] == {"lengths": [1_500_000] * 3, "last": "ok"}

    def test_step_fails_then_succeeds(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/flaky"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"succeeded_on": 1}
        assert step_of(run, "once")["attempts"] == 2

    def test_exhausted_retries_fail_the_run_and_run_on_failure(self, stack: Stack) -> None:
        event_id = stack.send("pyapp/fail")
        run = stack.run_of(event_id, "pyapp-fail")
        assert run["status"] == "Failed", run
        assert "kaput" in str(run["error"])
        assert step_of(run, "boom")["attempts"] == 2  # retries=1
        handler = stack.ended_runs_of_function(
            "pyapp-fail-failure",
            lambda r: (
                stack.get_run(r["run_id"])["status"] == "Completed"
                and _failed_run_id(stack, r) == run["run_id"]
            ),
        )
        assert handler["output"] == {"saw": "inngest/function.failed"}

    def test_non_retriable_error_fails_at_once(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/nr"))
        assert run["status"] == "Failed", run
        assert "stop now" in str(run["error"])

    def test_non_retriable_error_in_a_step_fails_at_once(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/nrstep"))
        assert run["status"] == "Failed", run
        assert "step says no" in str(run["error"])
        # The Python SDK turns it into a function-level error (500 + no-retry) at once.
        assert run["steps"] == []

    def test_step_ai_infer_is_made_by_the_engine(self, stack: Stack) -> None:
        """A local server stands in for the model API (never an outside address)."""
        remote = CannedServer()
        try:
            answer = {"choices": [{"message": {"role": "assistant", "content": "from py"}}]}
            remote.queue(Reply(200, {"content-type": "application/json"}, answer))
            run = stack.run_of(stack.send("pyapp/ai", {"base": f"{remote.url}/v1"}))
            assert run["status"] == "Completed", run
            assert run["output"] == {"content": "from py"}
            (request,) = remote.received
            assert (request.method, request.path) == ("POST", "/v1/chat/completions")
            assert request.headers["authorization"] == "Bearer sk-test"
            assert request.json()["model"] == "gpt-test"
            assert step_of(run, "ask")["kind"] == "AIGateway"
        finally:
            remote.close()

    def test_sdk_function_invokes_an_in_process_function(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/call-inproc", {"x": 5}), "pyapp-call-inproc")
        assert run["status"] == "Completed", run
        assert run["output"] == {"child": 10}

    def test_in_process_function_invokes_an_sdk_function(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("sdkx/call-sdk", {"app": "pyapp", "n": 7}), "sdkx-call-sdk")
        assert run["status"] == "Completed", run
        assert run["output"] == {"sdk_child": {"double": 14}}

    def test_in_process_invoke_of_a_failing_sdk_function_raises(self, stack: Stack) -> None:
        run = stack.run_of(
            stack.send("sdkx/call-sdk", {"app": "pyapp", "fn": "nr"}), "sdkx-call-sdk"
        )
        assert run["status"] == "Completed", run
        assert "stop now" in run["output"]["error"]

    def test_step_send_event_triggers_both_drivers(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/sender", {"tag": "s1"}), "pyapp-sender")
        assert run["status"] == "Completed", run
        to_inproc, to_sdk = run["output"]["ids"]
        assert stack.run_of(to_inproc, "e2e-steps")["output"] == {"total": 1}
        assert stack.run_of(to_sdk, "pyapp-child")["output"] == {"double": 8}

    def test_client_send_triggers_both_drivers(self, stack: Stack) -> None:
        (to_sdk,) = stack.app_sends("pyapp/child", {"n": 3})
        (to_inproc,) = stack.app_sends("e2e/steps", {"n": 3})
        assert stack.run_of(to_sdk, "pyapp-child")["output"] == {"double": 6}
        assert stack.run_of(to_inproc, "e2e-steps")["output"] == {"total": 3}

    def test_app_down_mid_run_is_retried_until_it_is_back(self, stack: Stack) -> None:
        event_id = stack.send("pyapp/napper", {"s": 1})

        def napping() -> bool:
            runs = stack.event_runs(event_id)
            return bool(runs) and any(s["status"] == "Sleeping" for s in runs[0]["steps"])

        stack.wait_for(napping, what="the run to sleep")
        stack.app.stop()
        run_id = stack.event_runs(event_id)[0]["run_id"]

        def failed_call() -> bool:
            return "unreachable" in str(stack.get_run(run_id))

        try:
            stack.wait_for(failed_call, what="a failed call in the run history")
        finally:
            stack.app.restart()
        run = stack.run_of(event_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {"before": "b", "after": "a"}
        call = next(s for s in run["steps"] if s["kind"] == "Call")
        assert call["status"] == "Errored"
        assert "is unreachable" in call["error"]["message"]
        assert step_of(run, "after")["attempts"] >= 2

    def test_app_slower_than_the_timeout_is_retried(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/slowpoke", {"s": 6}), timeout=45)
        assert run["status"] == "Completed", run
        assert run["output"] == {"done_on": 1}

    def test_resync_replaces_functions_and_removed_ones_stop_triggering(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        def start(only: str | None) -> SdkApp:
            env = {"INNGEST_DEV": stack.api.url, "PYAPP_ID": "pyapp2"}
            if only:
                env["PYAPP_FUNCTIONS"] = only
            app = SdkApp([sys.executable, str(HERE / "py_app.py")], env, log=tmp_path / "a.log")
            app.wait_ready()
            return app

        def functions() -> set[str]:
            return {fn.id for fn in stack.cluster.engine.registry.all() if fn.app_id == "pyapp2"}

        full = start(None)
        try:
            assert httpx.put(full.url, timeout=30).status_code == 200
        finally:
            full.stop()
        assert {"pyapp2-three", "pyapp2-child"} <= functions()
        smaller = start("three")
        try:
            assert httpx.put(smaller.url, timeout=30).status_code == 200
            assert functions() == {"pyapp2-three"}
            event_id = stack.send("pyapp/child", {"n": 1})
            assert stack.run_of(event_id, "pyapp-child")["status"] == "Completed"
            assert {r["function_id"] for r in stack.event_runs(event_id)} == {"pyapp-child"}
            run = stack.run_of(stack.send("pyapp/three"), "pyapp2-three")
            assert run["output"] == {"sum": 6}
        finally:
            smaller.stop()


def test_beat_syncs_the_apps_of_stepline_app_urls(tmp_path: Path) -> None:
    """No manual PUT: a beat given STEPLINE_APP_URLS syncs the app, so its events run."""
    with running_stack(redis_for_stack(), tmp_path, python_sdk_app, sync=False) as stack:
        registry = stack.cluster.engine.registry
        assert registry.get("pyapp-three") is None
        stack.cluster.env["STEPLINE_APP_URLS"] = stack.app.url
        stack.cluster.start_beat()  # a second beat, as harmless as designed
        stack.cluster.wait_for(
            lambda: registry.get("pyapp-three") is not None, timeout=30, what="the beat's sync"
        )
        run = stack.run_of(stack.send("pyapp/three"))
        assert run["status"] == "Completed", run


class TestBadApps:
    """Apps that answer what no SDK would: the step is retried, the error shows in the run's
    history, the worker lives on. (Served by a canned HTTP server, registered directly.)"""

    @pytest.fixture(scope="class")
    def stack(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        tmp = tmp_path_factory.mktemp("py-bad")
        with running_stack(redis_for_stack(), tmp, python_sdk_app, sync=False) as stack:
            yield stack

    @pytest.fixture
    def canned(self) -> Iterator[CannedServer]:
        server = CannedServer()
        yield server
        server.close()

    @staticmethod
    def _register(
        stack: Stack, url: str, fn_id: str, retries: int = 5, **fields: Any
    ) -> httpx.Response:
        function: dict[str, Any] = {
            "id": fn_id,
            "name": fn_id,
            "triggers": [{"event": f"canned/{fn_id}"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": f"{url}/api?fnId={fn_id}&stepId=step"},
                    "retries": {"attempts": retries},
                }
            },
            **fields,
        }
        body = {"appname": "canned", "url": f"{url}/api", "functions": [function]}
        return stack.http.post("/fn/register", json=body)

    def test_invalid_function_is_refused_naming_function_and_field(self, stack: Stack) -> None:
        response = self._register(stack, "http://127.0.0.1:9", "bad", rateLimit={"limit": 0})
        assert response.status_code == 400
        body = response.json()
        assert "'bad'" in body["error"] and "rateLimit" in body["error"]
        assert body["field"].startswith("functions[0].rateLimit")

    def test_function_ids_of_another_app_are_refused(self, stack: Stack) -> None:
        response = self._register(stack, "http://127.0.0.1:9", "e2e-child")
        assert response.status_code == 409
        assert "already belongs to app 'e2e'" in response.json()["error"]
        owner = stack.cluster.engine.registry.get("e2e-child")
        assert owner is not None and owner.driver == "inprocess"

    def test_garbage_html_oversized_and_wrong_status_are_retried(
        self, stack: Stack, canned: CannedServer
    ) -> None:
        sdk = {"x-inngest-sdk": "py:v0.5.19", "content-type": "application/json"}
        canned.queue(
            Reply(502, {"content-type": "text/html"}, b"<html><h1>Bad Gateway</h1></html>"),
            Reply(206, sdk, b"{not json"),
            Reply(200, sdk, b'"' + b"x" * (5 * 1024 * 1024) + b'"'),
            Reply(404, sdk, b"no such function"),
            Reply(200, sdk, {"fine": True}),
        )
        assert self._register(stack, canned.url, "garbage").status_code == 200
        run = stack.run_of(stack.send("canned/garbage"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"fine": True}
        assert len(canned.received) == 5
        call = next(s for s in run["steps"] if s["kind"] == "Call")
        assert call["attempts"] == 4
        assert "HTTP 404" in call["error"]["message"]
        assert all(proc.poll() is None for proc in stack.cluster.procs)
        worker_log = (stack.cluster.tmp / "w1.log").read_text()
        for expected in ("not an Inngest SDK response", "not JSON", "bytes"):
            assert expected in worker_log

    def test_retry_after_is_honoured(self, stack: Stack, canned: CannedServer) -> None:
        sdk = {"x-inngest-sdk": "py:v0.5.19", "content-type": "application/json"}
        canned.queue(
            Reply(503, {**sdk, "retry-after": "2"}, {"message": "busy"}),
            Reply(200, sdk, b'"ok"'),
        )
        assert self._register(stack, canned.url, "later").status_code == 200
        started = time.monotonic()
        run = stack.run_of(stack.send("canned/later"))
        assert run["status"] == "Completed", run
        assert time.monotonic() - started >= 1.9  # not the 0.2 s backoff of these tests
        assert [s["attempts"] for s in run["steps"] if s["kind"] == "Call"] == [1]

    def test_errors_shown_while_retrying_and_in_the_failed_run(
        self, stack: Stack, canned: CannedServer
    ) -> None:
        canned.queue(*[Reply(500, {}, b"<html>oops</html>") for _ in range(3)])
        assert self._register(stack, canned.url, "broken", retries=2).status_code == 200
        run = stack.run_of(stack.send("canned/broken"), timeout=60)
        assert run["status"] == "Failed", run
        assert "not an Inngest SDK response" in run["error"]["message"]
        assert "<html>oops</html>" in run["error"]["message"]
        assert len(canned.received) == 3
        call = next(s for s in run["steps"] if s["kind"] == "Call")
        assert call["attempts"] == 2 and "<html>oops</html>" in call["error"]["message"]


def _failed_run_id(stack: Stack, handler_run: dict[str, Any]) -> str | None:
    event = stack.http.get(f"/v1/events/{handler_run['event_id']}").json()["data"]
    return event["data"].get("run_id") if isinstance(event.get("data"), dict) else None


class TestProductionMode:
    @pytest.fixture(scope="class")
    def stack(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        tmp = tmp_path_factory.mktemp("py-prod")
        with running_stack(
            redis_for_stack(),
            tmp,
            python_sdk_app,
            key=EVENT_KEY,
            app_env={"INNGEST_SIGNING_KEY": SIGNING_KEY, "INNGEST_EVENT_KEY": EVENT_KEY},
            app_api_var="INNGEST_BASE_URL",
            STEPLINE_SIGNING_KEY=SIGNING_KEY,
            STEPLINE_SIGNING_KEY_FALLBACK=OLD_SIGNING_KEY,
            STEPLINE_EVENT_KEYS=f"other-key,{EVENT_KEY}",
            STEPLINE_ALLOWED_APP_HOSTS="127.0.0.1",  # the test app listens on loopback
        ) as stack:
            yield stack

    def test_the_app_checks_signatures(self, stack: Stack) -> None:
        """So the signed runs below completing means Stepline signs what it sends."""
        unsigned = httpx.post(f"{stack.app.url}?fnId=pyapp-three&stepId=step", json={})
        assert unsigned.status_code == 401

    def test_signed_runs_complete(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/three"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"sum": 6}
        run = stack.run_of(stack.send("pyapp/par"))
        assert run["output"] == ["x", "y"]

    def test_integers_beyond_2_to_the_53_stay_exact_when_signed(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("pyapp/bigint", {"big": 2**62 + 3}))
        assert run["status"] == "Completed", run
        assert run["output"] == {"id": 2**60 + 1, "exact": True, "event": 2**62 + 3}

    def test_sdk_sends_with_its_event_key(self, stack: Stack) -> None:
        (event_id,) = stack.app_sends("pyapp/child", {"n": 2})
        assert stack.run_of(event_id, "pyapp-child")["output"] == {"double": 4}

    def test_wrong_event_key_is_refused(self, stack: Stack) -> None:
        response = stack.post_events({"name": "pyapp/three"}, key="wrong")
        assert response.status_code == 401
        assert "event key" in response.json()["error"].lower()

    def test_unsigned_registration_is_refused(self, stack: Stack) -> None:
        body = {"appname": "intruder", "url": "http://127.0.0.1:1/api", "functions": []}
        for headers in ({}, {"Authorization": signing.bearer_value(f"signkey-test-{'ab' * 32}")}):
            response = httpx.post(f"{stack.api.url}/fn/register", json=body, headers=headers)
            assert response.status_code == 401
            assert "signing key" in response.json()["error"]
        assert all(fn.app_id != "intruder" for fn in stack.cluster.engine.registry.all())

    def test_app_still_on_the_old_key_works_while_rotating(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        """Stepline signs with the new key and accepts the old one (the fallback); the app
        signs with the old key and accepts the new one."""
        env = {
            "INNGEST_BASE_URL": stack.api.url,
            "INNGEST_SIGNING_KEY": OLD_SIGNING_KEY,
            "INNGEST_SIGNING_KEY_FALLBACK": SIGNING_KEY,
            "INNGEST_EVENT_KEY": EVENT_KEY,
            "PYAPP_ID": "pyapp-old",
            "PYAPP_FUNCTIONS": "three",
        }
        app = SdkApp([sys.executable, str(HERE / "py_app.py")], env, log=tmp_path / "a.log")
        try:
            app.wait_ready()
            reply = httpx.put(app.url, timeout=30)
            assert reply.status_code == 200 and "error" not in reply.json(), reply.text
            run = stack.run_of(stack.send("pyapp/three"), "pyapp-old-three")
            assert run["status"] == "Completed", run
            assert run["output"] == {"sum": 6}
        finally:
            app.stop()

    def test_app_with_another_signing_key_cannot_sync(self, stack: Stack, tmp_path: Path) -> None:
        env = {
            "INNGEST_BASE_URL": stack.api.url,
            "INNGEST_SIGNING_KEY": f"signkey-test-{'cd' * 32}",
            "PYAPP_ID": "pyapp3",
        }
        app = SdkApp([sys.executable, str(HERE / "py_app.py")], env, log=tmp_path / "a.log")
        try:
            app.wait_ready()
            reply = httpx.put(app.url, timeout=30)
            assert reply.status_code != 200 or "error" in reply.json(), reply.text
            assert "signing key" in reply.text
        finally:
            app.stop()
        assert all(fn.app_id != "pyapp3" for fn in stack.cluster.engine.registry.all())

    def test_event_keys_stay_out_of_the_access_log(self, stack: Stack) -> None:
        """Runs after the tests above sent events with the key (SDK client and ours)."""
        stack.send("pyapp/three")
        log = stack.api.log_text()
        assert "POST /e/[redacted]" in log
        assert EVENT_KEY not in log
