"""An app built with the official Inngest TypeScript SDK (`tests/sdk_apps/ts_app`, unmodified
`inngest` 4.24.0 on Node) run by a real Stepline: the API under gunicorn, a celery worker and
beat, the app as its own process pointed at the API with `INNGEST_DEV` (or, in production mode,
`INNGEST_BASE_URL` and a signing key). Skipped unless `npm install` was run in the app's folder.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.drivers import signing
from app.drivers.base import stepline_version
from tests.sdk_apps.harness import CannedServer, Reply, node_available
from tests.sdk_apps.stack import Stack, node_sdk_app, redis_for_stack, running_stack, step_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(node_available() is not None, reason=str(node_available())),
]

SIGNING_KEY = f"signkey-test-{secrets.token_hex(32)}"
EVENT_KEY = "ts-prod-event-key"


@pytest.fixture
def remote() -> Iterator[CannedServer]:
    """A local HTTP server standing in for a remote API (never an outside address)."""
    server = CannedServer()
    yield server
    server.close()


class TestDevMode:
    @pytest.fixture(scope="class")
    def stack(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        tmp = tmp_path_factory.mktemp("ts-dev")
        with running_stack(redis_for_stack(), tmp, node_sdk_app) as stack:
            yield stack

    def test_sync_registers_every_function(self, stack: Stack) -> None:
        ids = {fn.id for fn in stack.cluster.engine.registry.all() if fn.app_id == "tsapp"}
        assert {"tsapp-three", "tsapp-ops", "tsapp-fail", "tsapp-fail-failure"} <= ids

    def test_sequential_steps(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/three"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"sum": 6}
        assert [s["name"] for s in run["steps"]] == ["a", "b", "c"]

    def test_parallel_steps_join(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/par"))
        assert run["status"] == "Completed", run
        assert run["output"] == ["x", "y"]
        assert sorted(s["name"] for s in run["steps"]) == ["p1", "p2"]

    def test_sleep_wait_invoke_and_send_event(self, stack: Stack) -> None:
        event_id = stack.send("tsapp/ops", {"id": "o-1"})
        started = time.monotonic()

        def waiting() -> bool:
            runs = stack.event_runs(event_id)
            return bool(runs) and any(s["status"] == "Waiting" for s in runs[0]["steps"])

        stack.wait_for(waiting, what="the run to wait for tsapp/approve")
        assert time.monotonic() - started >= 1.5  # slept 2 s first
        stack.send("tsapp/approve", {"id": "other"})
        stack.send("tsapp/approve", {"id": "o-1"})
        run = stack.run_of(event_id, "tsapp-ops")
        assert run["status"] == "Completed", run
        out = run["output"]
        assert out["approved"] is True
        assert out["invoked"] == {"double": 42}
        assert len(out["sent"]["ids"]) == 1
        assert [s["name"] for s in run["steps"]] == ["nap", "wait", "call", "send"]

    def test_parallel_steps_and_sleep_then_astep_of(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/fanout"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"a": 10, "b": 20, "total": 30}
        assert sorted(s["name"] for s in run["steps"]) == ["branch-a", "branch-b", "pause", "sum"]

    def test_wait_for_event_times_out_with_null(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/waiter"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"got": None, "after": "done"}
        assert step_of(run, "wait")["status"] == "TimedOut"

    def test_step_fails_then_succeeds(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/flaky"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"succeededOn": 1}
        assert step_of(run, "once")["attempts"] == 2

    def test_exhausted_retries_fail_the_run_and_run_on_failure(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/fail"), "tsapp-fail")
        assert run["status"] == "Failed", run
        assert "kaput" in str(run["error"])
        assert step_of(run, "boom")["attempts"] == 2  # retries: 1

        def handled() -> dict[str, Any] | None:
            for handler in stack.function_runs("tsapp-fail-failure"):
                event = stack.http.get(f"/v1/events/{handler['event_id']}").json()["data"]
                if event["data"].get("run_id") == run["run_id"] and handler["status"] in (
                    "Completed",
                    "Failed",
                ):
                    return handler
            return None

        handler = stack.wait_for(handled, what="the onFailure run")
        assert handler["status"] == "Completed", handler
        assert handler["output"] == {"saw": "inngest/function.failed"}

    def test_non_retriable_error_fails_at_once(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/nr"))
        assert run["status"] == "Failed", run
        assert "stop now" in str(run["error"])

    def test_non_retriable_error_in_a_step_fails_at_once(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/nrstep"))
        assert run["status"] == "Failed", run
        assert "step says no" in str(run["error"])
        assert step_of(run, "refuse")["attempts"] == 1

    def test_a_feature_stepline_lacks_fails_the_run_at_once(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/deferrer"))
        assert run["status"] == "Failed", run
        error = run["error"]
        assert error["name"] == "UnsupportedOpcodeError"
        assert "defer()" in error["message"] and "DeferAdd" in error["message"]
        assert f"Stepline {stepline_version()}" in error["message"]
        # Never retried: no call of the function errored and was tried again.
        assert not [s for s in run["steps"] if s.get("kind") == "Call"], run["steps"]

    # --- checkpointing (PROTOCOL.md 10.2) ---

    def test_checkpointing_runs_synchronous_steps_in_one_call(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/five"), "tsapp-five")
        assert run["status"] == "Completed", run
        assert run["output"] == {"total": 15}
        assert [s["name"] for s in run["steps"]] == ["s1", "s2", "s3", "s4", "s5"]
        assert all(s["status"] == "Completed" for s in run["steps"])
        assert stack.app_calls(run["run_id"]) == 1

    def test_buffered_checkpoints_report_several_steps_at_once(self, stack: Stack) -> None:
        # `checkpointing: {bufferedSteps: 3}`: s1-s3 in one checkpoint, s4-s5 with the result.
        run = stack.run_of(stack.send("tsapp/five-buffered"), "tsapp-five-buffered")
        assert run["status"] == "Completed", run
        assert run["output"] == {"total": 15}
        assert [s["name"] for s in run["steps"]] == ["s1", "s2", "s3", "s4", "s5"]
        assert stack.app_calls(run["run_id"]) == 1

    def test_checkpoint_of_an_ended_run_is_a_stale_dispatch(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/five"), "tsapp-five")
        step = {"op": "StepRun", "id": "a" * 40, "name": "late", "data": 1}
        response = stack.http.post(
            f"/v1/checkpoint/{run['run_id']}/async", json={"run_id": run["run_id"], "steps": [step]}
        )
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "stale_dispatch"
        assert "late" not in [s["name"] for s in stack.get_run(run["run_id"])["steps"]]

    # --- signals (PROTOCOL.md 10.1) ---

    def _waiting_run(self, stack: Stack, data: dict[str, Any]) -> str:
        event_id = stack.send("tsapp/signal", data)

        def waiting() -> str | None:
            runs = stack.event_runs(event_id)
            if runs and any(s["status"] == "Waiting" for s in runs[0]["steps"]):
                return str(runs[0]["run_id"])
            return None

        return str(stack.wait_for(waiting, what="the run to wait for its signal"))

    def test_send_signal_resumes_the_waiting_run_once(self, stack: Stack) -> None:
        name = f"sig-{secrets.token_hex(4)}"
        run_id = self._waiting_run(stack, {"signal": name})
        assert stack.app_signals(name, {"ok": 1}) == run_id
        run = stack.run_of_id(run_id)
        assert run["status"] == "Completed", run
        assert run["output"] == {"signal": name, "data": {"ok": 1}}
        # Resumed once: a second signal finds no run waiting (the SDK answers runId undefined).
        assert stack.app_signals(name, {"ok": 2}) is None
        response = stack.http.post("/v1/signals", json={"signal": name, "data": 3})
        assert response.status_code == 404 and response.json()["code"] == "signal_not_found"

    def test_signal_wait_times_out_with_null(self, stack: Stack) -> None:
        name = f"sig-{secrets.token_hex(4)}"
        run = stack.run_of(stack.send("tsapp/signal", {"signal": name, "timeout": "1s"}))
        assert run["status"] == "Completed", run
        assert run["output"] is None
        assert step_of(run, "wait")["status"] == "TimedOut"
        assert stack.app_signals(name, {}) is None

    def test_a_second_wait_on_a_signal_name_fails_its_step(self, stack: Stack) -> None:
        name = f"sig-{secrets.token_hex(4)}"
        first = self._waiting_run(stack, {"signal": name})
        second = stack.run_of(stack.send("tsapp/signal", {"signal": name}), timeout=60)
        wait = step_of(second, "wait")
        assert wait["status"] == "Failed", second
        assert wait["error"]["name"] == "SignalConflictError"
        assert second["status"] == "Failed"
        assert stack.app_signals(name, "one") == first  # the first wait kept the name

    def test_on_conflict_replace_takes_the_name_over(self, stack: Stack) -> None:
        name = f"sig-{secrets.token_hex(4)}"
        first = self._waiting_run(stack, {"signal": name})
        second = self._waiting_run(stack, {"signal": name, "conflict": "replace"})
        assert stack.app_signals(name, "to-second") == second
        assert stack.run_of_id(second)["output"] == {"signal": name, "data": "to-second"}
        assert stack.get_run(first)["status"] == "Running"  # still waiting, until its timeout
        assert stack.app_signals(name, "again") is None

    def test_signal_api_refuses_a_body_without_a_signal(self, stack: Stack) -> None:
        response = stack.http.post("/v1/signals", json={"data": 1})
        assert response.status_code == 400
        assert response.json()["field"] == "signal"

    # --- step.fetch and step.ai (PROTOCOL.md 10.3), against a local stand-in server ---

    def test_step_fetch_is_made_by_the_engine(self, stack: Stack, remote: CannedServer) -> None:
        remote.queue(Reply(201, {"content-type": "text/plain", "x-a": "1"}, b"made it"))
        event = {"url": f"{remote.url}/things?q=1", "method": "POST", "body": "payload"}
        run = stack.run_of(stack.send("tsapp/fetcher", event), "tsapp-fetcher")
        assert run["status"] == "Completed", run
        assert run["output"] == {"status": 201, "body": "made it", "type": "text/plain"}
        (request,) = remote.received
        assert (request.method, request.path, request.body) == ("POST", "/things?q=1", b"payload")
        assert request.headers["x-test"] == "ts"
        first, fetch = run["steps"]
        assert first["name"] == "first" and fetch["status"] == "Completed"

    def test_step_fetch_to_a_link_local_address_fails_without_retrying(self, stack: Stack) -> None:
        event = {"url": "http://169.254.169.254/latest/meta-data/"}
        run = stack.run_of(stack.send("tsapp/fetcher", event), "tsapp-fetcher")
        assert run["status"] == "Failed", run
        fetch = run["steps"][-1]
        assert fetch["error"]["name"] == "GatewayError"
        assert "link-local" in fetch["error"]["message"]

    def test_step_ai_infer_and_wrap(self, stack: Stack, remote: CannedServer) -> None:
        answer = {"choices": [{"message": {"role": "assistant", "content": "hello from ai"}}]}
        remote.queue(Reply(200, {"content-type": "application/json"}, answer))
        run = stack.run_of(stack.send("tsapp/ai", {"base": f"{remote.url}/v1/"}), "tsapp-ai")
        assert run["status"] == "Completed", run
        assert run["output"] == {"content": "hello from ai", "wrapped": "DONE"}
        (request,) = remote.received
        assert (request.method, request.path) == ("POST", "/v1/chat/completions")
        assert request.headers["authorization"] == "Bearer sk-test"
        sent = request.json()
        assert sent["messages"] == [{"role": "user", "content": "hi"}]
        assert sent["model"] == "gpt-test"

    def test_sdk_function_invokes_an_in_process_function(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/call-inproc", {"x": 5}), "tsapp-call-inproc")
        assert run["status"] == "Completed", run
        assert run["output"] == {"child": 10}

    def test_in_process_function_invokes_an_sdk_function(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("sdkx/call-sdk", {"app": "tsapp", "n": 7}), "sdkx-call-sdk")
        assert run["status"] == "Completed", run
        assert run["output"] == {"sdk_child": {"double": 14}}

    def test_step_send_event_triggers_both_drivers(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/sender", {"tag": "s1"}), "tsapp-sender")
        assert run["status"] == "Completed", run
        to_inproc, to_sdk = run["output"]["ids"]
        assert stack.run_of(to_inproc, "e2e-steps")["output"] == {"total": 1}
        assert stack.run_of(to_sdk, "tsapp-child")["output"] == {"double": 8}

    def test_client_send_triggers_both_drivers(self, stack: Stack) -> None:
        (to_sdk,) = stack.app_sends("tsapp/child", {"n": 3})
        (to_inproc,) = stack.app_sends("e2e/steps", {"n": 3})
        assert stack.run_of(to_sdk, "tsapp-child")["output"] == {"double": 6}
        assert stack.run_of(to_inproc, "e2e-steps")["output"] == {"total": 3}


class TestProductionMode:
    @pytest.fixture(scope="class")
    def stack(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        tmp = tmp_path_factory.mktemp("ts-prod")
        with running_stack(
            redis_for_stack(),
            tmp,
            node_sdk_app,
            key=EVENT_KEY,
            app_env={"INNGEST_SIGNING_KEY": SIGNING_KEY, "INNGEST_EVENT_KEY": EVENT_KEY},
            app_api_var="INNGEST_BASE_URL",
            STEPLINE_SIGNING_KEY=SIGNING_KEY,
            STEPLINE_EVENT_KEYS=EVENT_KEY,
            STEPLINE_ALLOWED_APP_HOSTS="127.0.0.1",  # the test app listens on loopback
        ) as stack:
            yield stack

    def test_the_app_checks_signatures(self, stack: Stack) -> None:
        """So the signed runs below completing means Stepline signs what it sends."""
        unsigned = httpx.post(f"{stack.app.url}?fnId=tsapp-three&stepId=step", json={})
        assert unsigned.status_code == 401

    def test_signed_runs_complete(self, stack: Stack) -> None:
        run = stack.run_of(stack.send("tsapp/three"))
        assert run["status"] == "Completed", run
        assert run["output"] == {"sum": 6}
        run = stack.run_of(stack.send("tsapp/par"))
        assert run["output"] == ["x", "y"]

    def test_integers_beyond_2_to_the_53_keep_signatures_valid(self, stack: Stack) -> None:
        """JS reads them as doubles; what it checks our signature over must match."""
        run = stack.run_of(stack.send("tsapp/child", {"n": 2**62 + 3}), "tsapp-child")
        assert run["status"] == "Completed", run
        assert run["output"] == {"double": 9223372036854776000}  # 2**63 as JS writes it

    def test_sdk_sends_with_its_event_key(self, stack: Stack) -> None:
        (event_id,) = stack.app_sends("tsapp/child", {"n": 2})
        assert stack.run_of(event_id, "tsapp-child")["output"] == {"double": 4}

    def test_wrong_event_key_is_refused(self, stack: Stack) -> None:
        response = stack.post_events({"name": "tsapp/three"}, key="wrong")
        assert response.status_code == 401

    def test_unsigned_registration_is_refused(self, stack: Stack) -> None:
        body = {"appName": "intruder", "url": "http://127.0.0.1:1/api", "functions": []}
        for headers in ({}, {"Authorization": signing.bearer_value(f"signkey-test-{'ab' * 32}")}):
            response = httpx.post(f"{stack.api.url}/fn/register", json=body, headers=headers)
            assert response.status_code == 401
            assert "signing key" in response.json()["error"]
