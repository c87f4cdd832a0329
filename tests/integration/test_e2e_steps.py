"""Every step kind end to end, through real `celery worker` and `celery beat` processes."""

from __future__ import annotations

import pytest
import redis

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.e2e


def _exec_count(cluster: Cluster, key: str) -> int:
    client = redis.Redis.from_url(cluster.env["REDIS_URL"])
    return int(client.get(key) or 0)


def test_sequential_steps_complete_and_each_runs_once(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/steps", {"n": 5})
    run = cluster.run_of(event_id)
    assert run.status == "Completed"
    assert run.output == {"total": 10}
    assert [s["name"] for s in run.steps] == [f"add-{i}" for i in range(5)]
    for i in range(5):
        assert _exec_count(cluster, f"e2e:exec:{run.run_id}:{i}") == 1


def test_sleep_suspends_and_wakes(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/sleep", {"seconds": 1.5})
    run = cluster.run_of(event_id, timeout=30)
    assert run.status == "Completed"
    assert run.output == "rested"
    steps = {s["name"]: s for s in run.steps}
    nap, after = steps["nap"], steps["after"]
    assert int(after["ended_at"]) >= int(nap["due_at"])
    assert _exec_count(cluster, "e2e:count:sleep-before") == 1
    assert _exec_count(cluster, "e2e:count:sleep-after") == 1


def test_wait_for_event_resumes_only_on_matching_event(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/order.created", {"order_id": "o-1", "timeout": 60})
    cluster.wait_for(
        lambda: any(
            s.get("status") == "Waiting" for r in cluster.runs_of(event_id) for s in r.steps
        ),
        what="the run to wait",
    )
    cluster.send("e2e/order.paid", {"order_id": "o-other", "amount": 1})
    cluster.send("e2e/order.paid", {"order_id": "o-1", "amount": 42})
    run = cluster.run_of(event_id)
    assert run.status == "Completed"
    assert run.output == {"paid": True, "amount": 42}


def test_wait_for_event_times_out_with_none(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/order.created", {"order_id": "o-2", "timeout": 1})
    run = cluster.run_of(event_id)
    assert run.status == "Completed"
    assert run.output == {"paid": False, "amount": None}


def test_invoke_returns_the_child_output(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/parent", {"x": 21})
    run = cluster.run_of(event_id, function_id="e2e-parent")
    assert run.status == "Completed"
    assert run.output == {"child": 42}


def test_invoke_of_a_failing_child_raises_in_the_parent(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/parent", {"x": 1, "fail": True})
    run = cluster.run_of(event_id, function_id="e2e-parent")
    assert run.status == "Completed"
    assert "child refused" in str(run.output)


def test_step_retries_then_succeeds(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/flaky", {"fail_times": 1})
    run = cluster.run_of(event_id, function_id="e2e-flaky")
    assert run.status == "Completed"
    assert run.output == "ok"
    assert run.steps[0]["attempts"] == 2


def test_exhausted_retries_fail_the_run_and_run_on_failure(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/flaky", {"fail_times": 99})
    run = cluster.run_of(event_id, function_id="e2e-flaky")
    assert run.status == "Failed"
    assert "not yet" in str(run.error)
    assert _exec_count(cluster, f"e2e:count:flaky:{run.run_id}") == 3  # retries=2
    cluster.wait_for(
        lambda: _exec_count(cluster, f"e2e:failure-handler:{run.run_id}"),
        what="the on_failure handler",
    )


def test_non_retriable_error_fails_at_once(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/fatal")
    run = cluster.run_of(event_id)
    assert run.status == "Failed"
    assert "no point retrying" in str(run.error)
    assert _exec_count(cluster, f"e2e:count:fatal:{run.run_id}") == 1


def test_parallel_steps_join(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/fanout")
    run = cluster.run_of(event_id)
    assert run.status == "Completed"
    assert run.output == {"results": [0, 10, 20], "total": 30}


def test_send_event_starts_another_run(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/send")
    run = cluster.run_of(event_id)
    assert run.output == {"sent": 1}
    client = redis.Redis.from_url(cluster.env["REDIS_URL"])
    cluster.wait_for(lambda: list(client.scan_iter("e2e:exec:*")), what="the sent event's run")


def test_wildcard_trigger_with_expression(cluster: Cluster) -> None:
    vip = cluster.send("e2e/match.signup", {"vip": True})
    plain = cluster.send("e2e/match.signup", {"vip": False})
    run = cluster.run_of(vip)
    assert run.output == "e2e/match.signup"
    assert cluster.runs_of(plain) == []


def test_cancel_a_sleeping_run(cluster: Cluster) -> None:
    event_id = cluster.send("e2e/sleep", {"seconds": 30})
    cluster.wait_for(
        lambda: any(
            s.get("status") == "Sleeping" for r in cluster.runs_of(event_id) for s in r.steps
        ),
        what="the run to sleep",
    )
    run_id = cluster.runs_of(event_id)[0].run_id
    assert cluster.engine.executor.cancel(run_id, cluster.engine.now())
    run = cluster.run_of(event_id)
    assert run.status == "Cancelled"
    cluster.wait_for(
        lambda: cluster.engine.store.count_jobs() == 0, what="the run's timer to be dropped"
    )
    assert _exec_count(cluster, "e2e:count:sleep-after") == 0


def test_duplicate_event_id_is_processed_once(cluster: Cluster) -> None:
    first = cluster.send("e2e/steps", {"n": 1}, id="same-id")
    second = cluster.send("e2e/steps", {"n": 1}, id="same-id")
    assert first == second
    run = cluster.run_of(first)
    assert run.status == "Completed"
    assert len(cluster.runs_of(first)) == 1
