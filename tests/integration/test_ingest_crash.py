"""Nothing accepted waits on a crash window: the web process killed (`kill -9`) between two
requests of a retried send, and every event it ever answered 200 gets its run.

A client sends events one request each, retrying the same body (same `id`, same
`x-inngest-event-id-seed`, as the SDKs do) until it gets 200; meanwhile the web process is
killed and restarted. Then every body is sent once more (a reply that was lost: the client
cannot tell "stored" from "not stored"), which must answer the same ids. Every accepted event
must end with exactly one completed run.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.integration.cluster import Cluster

pytestmark = pytest.mark.e2e

EVENTS = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _body(i: int) -> tuple[str, dict[str, str]]:
    event = {"name": "e2e/steps", "id": f"crash-{i}", "data": {"n": 2}}
    seed = f"{1_700_000_000_000 + i},AAECAwQFBgcICQ=="
    return json.dumps(event), {"content-type": "application/json", "x-inngest-event-id-seed": seed}


def _send_until_200(url: str, i: int, attempts: list[int]) -> str:
    body, headers = _body(i)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        attempts[i] += 1
        try:
            reply = requests.post(f"{url}/e/test", data=body, headers=headers, timeout=5)
        except requests.RequestException:
            time.sleep(0.05)
            continue
        if reply.status_code == 200:
            [event_id] = reply.json()["ids"]
            return str(event_id)
        time.sleep(0.05)
    raise AssertionError(f"event {i} was never accepted")


def test_every_accepted_event_gets_its_run_across_web_kills(cluster: Cluster) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    web = cluster.start_web(port)
    ids: list[str] = [""] * EVENTS
    attempts = [0] * EVENTS
    sent = threading.Event()

    def client() -> None:
        for i in range(EVENTS):
            ids[i] = _send_until_200(url, i, attempts)
        sent.set()

    thread = threading.Thread(target=client)
    thread.start()
    for _ in range(2):  # two kills mid-stream, each between two requests of a retried send
        cluster.wait_for(lambda: sum(bool(i) for i in ids) >= 10 or sent.is_set(), what="sends")
        cluster.kill(web)
        time.sleep(0.3)  # requests meanwhile fail and are retried
        web = cluster.start_web(port)
        seen = sum(bool(i) for i in ids)
        cluster.wait_for(lambda s=seen: sum(bool(i) for i in ids) >= s + 5 or sent.is_set())
    thread.join(timeout=120)
    assert sent.is_set()
    assert sum(attempts) > EVENTS  # some sends were retried across the kills

    # The lost-reply retry of every body answers the first ids, and stores nothing new.
    def sent_events() -> int:
        records = cluster.engine.store.list_events(10_000)
        return sum(record.event["name"] == "e2e/steps" for record in records)

    again = [_send_until_200(url, i, [0] * EVENTS) for i in range(EVENTS)]
    assert again == ids
    assert sent_events() == EVENTS

    for event_id in ids:
        run = cluster.run_of(event_id, timeout=60)
        assert run.status == "Completed" and run.output == {"total": 1}
        assert len(cluster.runs_of(event_id)) == 1
