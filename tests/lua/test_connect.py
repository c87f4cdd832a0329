"""lua/connect_*.lua: requests handed to Connect workers under a lease, first reply wins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.models import ConnectReply, ConnectRequest
from app.state.connect import ConnectStore
from app.state.store import Store
from tests.lua.conftest import T0, race

LEASE = 20_000
REQ = ConnectRequest(
    request_id="r1",
    app_id="shop",
    function_slug="shop-checkout",
    step_id="step",
    run_id="01RUN",
    payload='{"event": {}}',
)
W1, W2 = "host-a/01CONN1", "host-b/01CONN2"


@pytest.fixture
def connect(store: Store) -> Iterator[ConnectStore]:
    yield ConnectStore(store)


def reply(body: str = '{"ok": true}', request_id: str = "r1") -> ConnectReply:
    return ConnectReply(request_id=request_id, status="done", body=body, sdk_version="py:v1")


def test_submit_queues_once_under_a_lease(connect: ConnectStore, client: redis.Redis) -> None:
    assert connect.submit(REQ, "L1", T0, LEASE).state == "sent"
    assert client.lrange("sl:connect:queue:shop", 0, -1) == ["r1"]
    assert client.hget("sl:connect:{r1}:req", "lease_until") == str(T0 + LEASE)
    # A repeat of the same call (a lost reply): same outcome, nothing queued twice.
    assert connect.submit(REQ, "L1", T0 + 5, LEASE).state == "sent"
    assert client.llen("sl:connect:queue:shop") == 1
    # Another submission (a redelivered executor job) while the lease lives: wait for it.
    assert connect.submit(REQ, "L2", T0 + LEASE, LEASE).state == "busy"
    assert client.llen("sl:connect:queue:shop") == 1
    assert client.pttl("sl:connect:{r1}:req") > 0


def test_submit_after_the_lease_ran_out_sends_again(
    connect: ConnectStore, client: redis.Redis
) -> None:
    connect.submit(REQ, "L1", T0, LEASE)
    assert connect.next_request("shop", 0.1) == "r1"
    assert connect.claim("r1", W1, T0 + 10, LEASE) is not None
    assert connect.submit(REQ, "L2", T0 + 10 + LEASE + 1, LEASE).state == "sent"
    assert client.hget("sl:connect:{r1}:req", "claimed_by") == ""
    assert connect.next_request("shop", 0.1) == "r1"


def test_submit_of_an_answered_request_returns_the_reply(connect: ConnectStore) -> None:
    connect.submit(REQ, "L1", T0, LEASE)
    assert connect.save_reply(reply()) == "saved"
    done = connect.submit(REQ, "L2", T0 + 10 * LEASE, LEASE)
    assert (done.state, done.reply) == ("replied", reply())


def test_claim_restarts_the_lease_for_the_worker(connect: ConnectStore) -> None:
    connect.submit(REQ, "L1", T0, LEASE)
    claimed = connect.claim("r1", W1, T0 + 15_000, LEASE)
    assert claimed is not None and (claimed.request, claimed.lease_id) == (REQ, "L1")
    status = connect.status("r1")
    assert status is not None and (status.lease_until, status.claimed_by) == (T0 + 35_000, W1)
    # The same claim again (a lost reply) gets the same answer and leaves the lease alone.
    again = connect.claim("r1", W1, T0 + 16_000, LEASE)
    assert again == claimed
    status = connect.status("r1")
    assert status is not None and status.lease_until == T0 + 35_000


def test_claim_refuses_what_is_no_longer_wanted(connect: ConnectStore) -> None:
    assert connect.claim("missing", W1, T0, LEASE) is None
    connect.submit(REQ, "L1", T0, LEASE)
    assert connect.claim("r1", W1, T0 + LEASE + 1, LEASE) is None  # nobody took it in time
    connect.submit(REQ.model_copy(update={"request_id": "r2"}), "L1", T0, LEASE)
    connect.save_reply(reply(request_id="r2"))
    assert connect.claim("r2", W1, T0, LEASE) is None  # answered


def test_extend_rotates_the_lease_and_is_safe_to_repeat(connect: ConnectStore) -> None:
    connect.submit(REQ, "L1", T0, LEASE)
    connect.claim("r1", W1, T0, LEASE)
    assert connect.extend("r1", "L1", "L2", T0 + 5_000, LEASE) == "L2"
    assert connect.extend("r1", "L1", "L2", T0 + 5_001, LEASE) == "L2"  # repeat
    status = connect.status("r1")
    assert status is not None and status.lease_until == T0 + 25_000
    assert connect.extend("r1", "L1", "L3", T0 + 6_000, LEASE) is None  # stale lease id
    assert connect.extend("r1", "L2", "L3", T0 + 25_001, LEASE) is None  # ran out
    assert connect.extend("missing", "L1", "L2", T0, LEASE) is None


def test_extend_after_the_reply_is_refused(connect: ConnectStore) -> None:
    connect.submit(REQ, "L1", T0, LEASE)
    connect.save_reply(reply())
    assert connect.extend("r1", "L1", "L2", T0 + 1, LEASE) is None


def test_first_reply_wins_and_wakes_the_waiting_executor(
    connect: ConnectStore, client: redis.Redis
) -> None:
    connect.submit(REQ, "L1", T0, LEASE)
    assert connect.save_reply(reply("first")) == "saved"
    assert connect.save_reply(reply("first")) == "saved"  # repeat: same outcome
    assert connect.save_reply(reply("late")) == "duplicate"
    assert client.llen("sl:connect:{r1}:reply") == 1
    assert connect.wait_reply("r1", 0.1) == reply("first")
    assert connect.wait_reply("r1", 0.05) is None
    status = connect.status("r1")
    assert status is not None and status.reply == reply("first")
    assert connect.save_reply(reply(request_id="never-sent")) == "unknown"


def test_racing_replies_store_exactly_one(connect: ConnectStore) -> None:
    connect.submit(REQ, "L1", T0, LEASE)
    outcomes = race(8, lambda i: connect.save_reply(reply(f"r{i}")))
    assert sorted(outcomes).count("saved") == 1
    assert connect.wait_reply("r1", 0.1) is not None
    assert connect.wait_reply("r1", 0.05) is None


def test_requeue_puts_a_popped_request_back_once(
    connect: ConnectStore, client: redis.Redis
) -> None:
    connect.submit(REQ, "L1", T0, LEASE)
    connect.submit(REQ.model_copy(update={"request_id": "r2"}), "L1", T0, LEASE)
    assert connect.next_request("shop", 0.1) == "r1"
    assert connect.requeue("r1", "shop", "pop-1") is True
    assert connect.requeue("r1", "shop", "pop-1") is False  # repeat: not queued twice
    assert client.lrange("sl:connect:queue:shop", 0, -1) == ["r1", "r2"]
    connect.save_reply(reply())
    assert connect.requeue("r1", "shop", "pop-2") is False  # answered meanwhile


def test_sessions_and_workers(connect: ConnectStore) -> None:
    connect.open_session("01CONN1", "sess", "sync", 60_000)
    assert connect.take_session("01CONN1") == ("sess", "sync")
    assert connect.take_session("01CONN1") is None  # one WebSocket per session
    assert connect.take_session("01OTHER") is None
    connect.worker_seen("shop", W1, T0)
    connect.worker_seen("shop", W2, T0 + 10)
    assert connect.workers("shop", T0 + 5) == [W2]
    connect.worker_gone("shop", W2)
    assert connect.workers("shop", 0) == [W1]
