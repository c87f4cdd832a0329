"""`app.sdk` signals and AI calls end to end, through real `celery worker`/beat processes:
`step.wait_for_signal` resumed by `client.send_signal_sync` (from another run's step, so from
inside a worker), by the engine's `signals.send` and by `POST /v1/signals`; `step.ai.infer`
against a local HTTP server standing in for the model API."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from app import signals
from app.api import create_app
from tests.integration.cluster import Cluster
from tests.sdk_apps.harness import CannedServer, Reply

pytestmark = pytest.mark.e2e


def _waiting(cluster: Cluster, data: dict[str, Any]) -> str:
    event_id = cluster.send("e2e/signal", data)

    def waiting() -> str | None:
        for run in cluster.runs_of(event_id):
            if any(s.get("status") == "Waiting" for s in run.steps):
                return run.run_id
        return None

    return str(cluster.wait_for(waiting, what="the run to wait for its signal"))


def test_send_signal_from_a_step_resumes_the_waiting_run_once(cluster: Cluster) -> None:
    name = f"inproc-{secrets.token_hex(4)}"
    waiter = _waiting(cluster, {"signal": name})
    sender = cluster.run_of(cluster.send("e2e/signal-sender", {"signal": name, "data": [1, 2]}))
    assert sender.status == "Completed"
    assert sender.output == waiter
    cluster.wait_for(
        lambda: (
            (view := cluster.engine.store.get_run(waiter)) is not None
            and view.status == "Completed"
        ),
        what="the signalled run to complete",
    )
    run = cluster.engine.store.get_run(waiter)
    assert run is not None and run.output == {"signal": name, "data": [1, 2]}
    again = cluster.run_of(cluster.send("e2e/signal-sender", {"signal": name}))
    assert again.output is None  # resumed once: nobody waits any more


def test_a_signal_wait_times_out_with_none(cluster: Cluster) -> None:
    name = f"inproc-{secrets.token_hex(4)}"
    run = cluster.run_of(cluster.send("e2e/signal", {"signal": name, "timeout": 1}))
    assert run.status == "Completed" and run.output is None
    now = cluster.engine.now()
    assert signals.send(cluster.engine.store, cluster.engine.runner, name, 1, now) is None


def test_conflicting_waits_fail_or_replace(cluster: Cluster) -> None:
    name = f"inproc-{secrets.token_hex(4)}"
    first = _waiting(cluster, {"signal": name})
    loser = cluster.run_of(cluster.send("e2e/signal", {"signal": name}), timeout=60)
    assert loser.status == "Failed"
    (wait,) = loser.steps
    assert wait["kind"] == "WaitForSignal" and wait["error"]["name"] == "SignalConflictError"
    second = _waiting(cluster, {"signal": name, "conflict": "replace"})
    api = create_app(cluster.engine).test_client()
    response = api.post("/v1/signals", json={"signal": name, "data": "x"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"data": {"run_id": second}}
    first_view = cluster.engine.store.get_run(first)
    assert first_view is not None and first_view.status == "Running"
    assert api.post("/v1/signals", json={"signal": name}).status_code == 404


def test_step_ai_infer_is_made_by_the_engine(cluster: Cluster) -> None:
    remote = CannedServer()
    try:
        answer = {"choices": [{"message": {"role": "assistant", "content": "in process"}}]}
        remote.queue(Reply(500, {}, b"overloaded"), Reply(200, {}, answer))
        run = cluster.run_of(cluster.send("e2e/ai", {"base": f"{remote.url}/v1"}), timeout=60)
        assert run.status == "Completed", run
        assert run.output == "in process"
        first, second = remote.received  # the 500 was retried as a step error
        assert first.path == second.path == "/v1/chat/completions"
        assert second.headers["authorization"] == "Bearer sk-e2e"
        assert second.json() == {"messages": [], "model": "gpt-e2e"}
        ask = next(s for s in run.steps if s["name"] == "ask")
        assert (ask["kind"], ask["status"], ask["attempts"]) == ("AIGateway", "Completed", 2)
    finally:
        remote.close()
