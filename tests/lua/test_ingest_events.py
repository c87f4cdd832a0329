"""lua/ingest_events.lua (and the trigger index lua/save_app.lua keeps): a request's events,
their dedupe keys and the one job that processes them, in one call; events nothing listens to
are stored without a job; a repeated call (a lost reply re-sent) answers the same and writes
nothing."""

from __future__ import annotations

import json

import redis

from app.models import FunctionConfig, Job, JobKind, Trigger
from app.state.events import RECENT_EVENTS_MS
from app.state.store import BrokerMessage, NewEvent, Store
from tests.lua.conftest import T0, make_pause, race

TTL = 60_000
SEND_BY = T0 + 10_000


def ev(internal_id: str, name: str = "app/go", user_id: str = "", **kw: object) -> NewEvent:
    event = {"name": name, "data": {}, "id": user_id or internal_id, "ts": T0, "user": {}}
    dedupe = kw.pop("dedupe", "user" if user_id else "")
    return NewEvent(internal_id, event, dedupe, bool(kw.pop("must", False)))  # type: ignore[arg-type]


def register(store: Store, *events: str) -> None:
    configs = [
        FunctionConfig(id=f"a-f{i}", name=f"f{i}", app_id="a", triggers=[Trigger(event=name)])
        for i, name in enumerate(events)
    ]
    store.save_app("a", None, configs, T0)


def snapshot(client: redis.Redis) -> dict[str, bytes | None]:
    raw = redis.Redis(connection_pool=client.connection_pool, decode_responses=False)
    return {key: raw.dump(key) for key in client.keys("*")}


def stored_job(store: Store, job_id: str) -> Job:
    job = store.begin_job(job_id, "tok", T0, 1_000)
    assert not isinstance(job, str)
    return job


def test_a_batch_is_stored_with_one_job(store: Store, client: redis.Redis) -> None:
    result = store.ingest_events([ev("01E1"), ev("01E2"), ev("01E3")], T0, TTL, SEND_BY)
    assert result.ids == ["01E1", "01E2", "01E3"]
    assert result.job is not None and result.job.id == "event:01E1"
    for internal_id in result.ids:
        record = store.get_event(internal_id)
        assert record is not None and record.received_at == T0
    assert client.zscore("sl:jobs:due", "event:01E1") == SEND_BY
    # due when received: the Workers page's age of a job waiting for a worker
    assert json.loads(client.hget("sl:jobs", "event:01E1") or "{}")["due_at"] == T0
    job = stored_job(store, "event:01E1")
    assert job.kind is JobKind.EVENT and job.events == ["01E1", "01E2", "01E3"]
    # Queued for the history archiver too.
    assert client.zcard("sl:history:events") == 3


def test_a_repeated_call_answers_the_same_and_writes_nothing(
    store: Store, client: redis.Redis
) -> None:
    batch = [ev("01E1", user_id="u1"), ev("01E2"), ev("01E3", user_id="u3")]
    first = store.ingest_events(batch, T0, TTL, SEND_BY)
    before = snapshot(client)
    again = store.ingest_events(batch, T0, TTL, SEND_BY)
    assert again.ids == first.ids
    assert again.job is None  # the first call's job is the one; it is still queued
    assert snapshot(client) == before
    assert store.count_jobs() == 1


def test_a_duplicate_always_has_its_job(store: Store) -> None:
    """The crash window this script closes: whatever answered "already stored" was stored
    with its job, so a retried send never leaves an accepted event unprocessed."""
    store.ingest_events([ev("01E1", user_id="u1")], T0, TTL, SEND_BY)
    retry = store.ingest_events([ev("01E9", user_id="u1")], T0 + 5, TTL, SEND_BY)
    assert retry.ids == ["01E1"] and retry.job is None
    assert stored_job(store, "event:01E1").events == ["01E1"]
    assert store.get_event("01E9") is None


def test_dedupe_within_one_batch_and_the_ttl(store: Store, client: redis.Redis) -> None:
    result = store.ingest_events(
        [ev("01E1", user_id="same"), ev("01E2", user_id="same")], T0, TTL, SEND_BY
    )
    assert result.ids == ["01E1", "01E1"]
    assert stored_job(store, "event:01E1").events == ["01E1"]
    assert 0 < client.pttl("sl:event-dedupe:same") <= TTL


def test_engine_ids_have_their_own_namespace(store: Store) -> None:
    """A user event whose id is a run id never swallows that run's engine event."""
    store.ingest_events([ev("01E1", user_id="01RUN")], T0, TTL, SEND_BY)
    engine = store.ingest_events(
        [ev("01E2", "inngest/function.failed", user_id="01RUN", dedupe="engine")],
        T0,
        TTL,
        SEND_BY,
    )
    assert engine.ids == ["01E2"] and engine.job is not None
    again = store.ingest_events(
        [ev("01E3", "inngest/function.failed", user_id="01RUN", dedupe="engine")],
        T0,
        TTL,
        SEND_BY,
    )
    assert again.ids == ["01E2"] and again.job is None


def test_without_a_trigger_index_every_event_is_queued(store: Store) -> None:
    """A store older than the index (nothing registered since): nothing may go unprocessed."""
    result = store.ingest_events([ev("01E1", "nobody/listens")], T0, TTL, SEND_BY)
    assert result.job is not None and result.idle == 0


def test_events_nothing_listens_to_are_stored_without_a_job(
    store: Store, client: redis.Redis
) -> None:
    register(store, "app/go", "shop/*")
    result = store.ingest_events(
        [ev("01E1", "nobody/listens"), ev("01E2", "app/go"), ev("01E3", "shop/order.paid")],
        T0,
        TTL,
        SEND_BY,
    )
    assert result.idle == 1
    assert result.job is not None and result.job.id == "event:01E2"
    assert stored_job(store, "event:01E2").events == ["01E2", "01E3"]
    assert store.get_event("01E1") is not None  # kept for history and replay
    idle = store.ingest_events([ev("01E4", "nobody/listens")], T0, TTL, SEND_BY)
    assert idle.ids == ["01E4"] and idle.job is None and idle.idle == 1
    assert client.hlen("sl:jobs") == 1


def test_wildcards_match_as_the_registry_does(store: Store) -> None:
    register(store, "shop/*.paid", "a.b/c+d")
    cases = {
        "shop/order.paid": True,
        "shop/x/y.paid": True,
        "shop/order.created": False,
        "a.b/c+d": True,
        "aXb/c+d": False,
    }
    for i, (name, listened) in enumerate(cases.items()):
        result = store.ingest_events([ev(f"01W{i}", name)], T0, TTL, SEND_BY)
        assert (result.job is not None) is listened, name


def test_a_pending_pause_or_the_must_flag_makes_an_event_listened_to(
    store: Store, run: str
) -> None:
    register(store, "app/go")
    assert store.ingest_events([ev("01E1", "app/paid")], T0, TTL, SEND_BY).job is None
    store.save_pause(make_pause("p1", event="app/paid"))
    assert store.ingest_events([ev("01E2", "app/paid")], T0, TTL, SEND_BY).job is not None
    store.save_pause(make_pause("p2", event="app/indexed", index_path="x", index_value='"1"'))
    assert store.ingest_events([ev("01E3", "app/indexed")], T0, TTL, SEND_BY).job is not None
    must = ev("01E4", "inngest/function.invoked", must=True)
    assert store.ingest_events([must], T0, TTL, SEND_BY).job is not None


def test_the_index_follows_registrations(store: Store, client: redis.Redis) -> None:
    register(store, "app/one")
    assert client.smembers("sl:triggers") == {"app/one"}
    register(store, "app/two", "app/*")
    assert client.smembers("sl:triggers") == {"app/two"}
    assert client.smembers("sl:triggers:wild") == {"app/*"}
    store.save_app("a", None, [], T0)
    assert client.smembers("sl:triggers") == set() and client.get("sl:triggers:built") == "1"


def test_the_index_is_built_by_an_unchanged_sync(store: Store, client: redis.Redis) -> None:
    register(store, "app/one")
    client.delete("sl:triggers", "sl:triggers:built")  # a store from before the index
    register(store, "app/one")  # same checksum: functions unchanged
    assert client.smembers("sl:triggers") == {"app/one"}


def test_concurrent_sends_of_one_id_store_it_once(store: Store) -> None:
    results = race(8, lambda i: store.ingest_events([ev(f"01R{i}", user_id="u")], T0, TTL, 0))
    assert len({r.ids[0] for r in results}) == 1
    assert sum(r.job is not None for r in results) == 1


MESSAGE = BrokerMessage("broker\x06\x166", '{"body": "the job message"}')
"""A broker message as app/queue.py hands it over (state never looks inside)."""


def test_the_job_message_is_pushed_with_the_job_once(store: Store, client: redis.Redis) -> None:
    """The job and its broker message in one call; a repeated call (lost reply) pushes no
    second message."""
    register(store, "app/go")
    batch = [ev("01E1"), ev("01E2")]
    first = store.ingest_events(batch, T0, TTL, SEND_BY, message=MESSAGE)
    assert first.sent and first.job is not None and first.job.id == "event:01E1"
    assert client.lrange(MESSAGE.list_key, 0, -1) == [MESSAGE.payload]
    assert stored_job(store, "event:01E1").events == ["01E1", "01E2"]
    before = snapshot(client)
    again = store.ingest_events(batch, T0, TTL, SEND_BY, message=MESSAGE)
    assert again.ids == first.ids and again.job is None and not again.sent
    assert snapshot(client) == before


def test_the_job_is_named_after_the_first_event_even_one_nothing_listens_to(
    store: Store, client: redis.Redis
) -> None:
    """The message was built for job "event:<first event>" before the call: the job takes
    that name even when the first event is stored without processing."""
    register(store, "app/go")
    batch = [ev("01E1", "nobody/listens"), ev("01E2"), ev("01E3", "nobody/listens")]
    result = store.ingest_events(batch, T0, TTL, SEND_BY, message=MESSAGE)
    assert result.sent and result.job is not None and result.job.id == "event:01E1"
    assert result.job.events == ["01E2"] and result.idle == 2
    assert stored_job(store, "event:01E1").events == ["01E2"]
    assert client.llen(MESSAGE.list_key) == 1


def test_no_job_no_message(store: Store, client: redis.Redis) -> None:
    register(store, "app/go")
    result = store.ingest_events([ev("01E1", "nobody/listens")], T0, TTL, SEND_BY, message=MESSAGE)
    assert result.job is None and not result.sent
    assert client.llen(MESSAGE.list_key) == 0 and client.hlen("sl:jobs") == 0


def test_a_duplicate_first_event_leaves_the_new_events_job_to_the_caller(
    store: Store, client: redis.Redis
) -> None:
    """The message names a job after the first event; when that event is a duplicate, the
    job of the call's new events is named after the first of them and not pushed (the
    caller sends it): never a message for a job that does not exist, nor the reverse."""
    register(store, "app/go")
    store.ingest_events([ev("01E1", user_id="u1")], T0, TTL, SEND_BY)
    result = store.ingest_events(
        [ev("01E5", user_id="u1"), ev("01E6")], T0 + 1, TTL, SEND_BY, message=MESSAGE
    )
    assert result.ids == ["01E1", "01E6"]
    assert result.job is not None and result.job.id == "event:01E6" and not result.sent
    assert client.llen(MESSAGE.list_key) == 0
    assert stored_job(store, "event:01E6").events == ["01E6"]


def test_new_events_are_indexed_by_name_in_the_same_call(store: Store, client: redis.Redis) -> None:
    """For wait lookback (app/lookback.py): new events only, the window and cap kept."""
    old = T0 - RECENT_EVENTS_MS - 1
    store.ingest_events([ev("01E0")], old, TTL, SEND_BY, index_recent=True)
    batch = [ev("01E1", user_id="u1"), ev("01E2", "app/other"), ev("01E3", user_id="u1")]
    result = store.ingest_events(batch, T0, TTL, SEND_BY, index_recent=True)
    assert result.ids == ["01E1", "01E2", "01E1"]
    assert [r.internal_id for r in store.recent_events("app/go", old, T0)] == ["01E1"]
    assert [r.internal_id for r in store.recent_events("app/other", old, T0)] == ["01E2"]
    assert 0 < client.pttl("sl:recent-events:app/go") <= RECENT_EVENTS_MS
    before = snapshot(client)
    store.ingest_events(batch, T0, TTL, SEND_BY, index_recent=True)  # a lost reply re-sent
    assert snapshot(client) == before
    store.ingest_events([ev("01E9", "app/none")], T0, TTL, SEND_BY)  # not asked: not indexed
    assert client.exists("sl:recent-events:app/none") == 0
