"""bulk_advance / bulk_stop / bulk_record: a finished bulk operation and its per-run outcomes
expire after the retention, every call safe to repeat (a lost reply sends it again)."""

from __future__ import annotations

import redis

from app.state.bulk import BulkStore
from app.state.store import Store
from tests.lua.conftest import T0

KEEP = 3_600_000
SPEC = {"action": "cancel"}


def _ttls(client: redis.Redis, bulk_id: str) -> tuple[int, int]:
    return client.pttl(f"sl:bulk:{bulk_id}"), client.pttl(f"sl:bulk:{bulk_id}:runs")


def test_a_running_operation_never_expires(store: Store, client: redis.Redis) -> None:
    bulks = BulkStore(store, KEEP)
    assert bulks.create("b1", SPEC, 3, T0)
    assert bulks.record("b1", "r1", "done", "") == "done"
    assert bulks.advance("b1", (T0, "r1"), T0 + 1, finished=False) == "running"
    assert _ttls(client, "b1") == (-1, -1)


def test_done_sets_the_expiry_once_and_a_repeat_answers_done(
    store: Store, client: redis.Redis
) -> None:
    bulks = BulkStore(store, KEEP)
    bulks.create("b1", SPEC, 1, T0)
    bulks.record("b1", "r1", "done", "")
    assert bulks.advance("b1", (T0, "r1"), T0 + 1, finished=True) == "done"
    bulk_ttl, runs_ttl = _ttls(client, "b1")
    assert 0 < bulk_ttl <= KEEP and 0 < runs_ttl <= KEEP
    client.pexpire("sl:bulk:b1", 10 * KEEP)  # a repeat must not move it back
    assert bulks.advance("b1", (T0, "r1"), T0 + 2, finished=True) == "done"
    assert _ttls(client, "b1")[0] > KEEP
    record = bulks.get("b1")
    assert record is not None and record.state == "done" and record.finished_at == T0 + 1


def test_stop_expires_and_a_run_handled_after_it_expires_with_it(
    store: Store, client: redis.Redis
) -> None:
    bulks = BulkStore(store, KEEP)
    bulks.create("b1", SPEC, 2, T0)
    assert bulks.stop("b1", T0 + 5) == "running"
    assert bulks.stop("b1", T0 + 6) == "stopped"  # repeat: the first call's outcome stands
    record = bulks.get("b1")
    assert record is not None and record.finished_at == T0 + 5
    # The job was acting on a run when the stop came: its outcome is recorded, and expires.
    assert bulks.record("b1", "r1", "done", "") == "done"
    bulk_ttl, runs_ttl = _ttls(client, "b1")
    assert 0 < bulk_ttl <= KEEP and 0 < runs_ttl <= bulk_ttl


def test_recent_forgets_expired_operations(store: Store, client: redis.Redis) -> None:
    bulks = BulkStore(store, KEEP)
    for n in range(3):
        bulks.create(f"b{n}", SPEC, 0, T0 + n)
    client.delete("sl:bulk:b1")  # as its expiry would
    assert [r.id for r in bulks.recent(10)] == ["b2", "b0"]
    assert client.zrange("sl:bulks", 0, -1) == ["b0", "b2"]
