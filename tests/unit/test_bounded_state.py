"""Everything Stepline writes to Redis has a bound: once runs have ended, been archived and
left their hot window, the keyspace is back where it started.

A real engine over a real Redis and a SQLite history store runs a mix of functions (steps, a
failure, waits, cancellation, concurrency and singleton keys, rate limits, idempotency), the
jobs Celery would carry being run here in order. Time is driven with `now` (archive, drop);
nothing sleeps. A first round warms up what is legitimately per function (counters, the
registry); a second round with fresh key values, event ids and idempotency keys must leave
no trace: every key without a TTL, and the size of each, is as it was after the first round,
and every other key expires within a bounded time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

import app.sdk as inngest
from app.config import Settings
from app.engine import Engine
from app.functions import FunctionSet
from app.runner import MAX_START_AHEAD_MS
from app.state.store import RunView

PREFIX = "bnd"
METRICS = f"{PREFIX}:metric:"
MAX_TTL_MS = 31 * 86_400_000
"""The longest a key with a TTL may live (dedupe windows and tombstones are a day)."""

client = inngest.Inngest(app_id="bounded")


@client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="b/steps"))
def steps(ctx: inngest.ContextSync) -> int:
    a = ctx.step.run("a", lambda: 1)
    return int(ctx.step.run("b", lambda: a + 1))


@client.create_function(fn_id="fails", trigger=inngest.TriggerEvent(event="b/fails"), retries=0)
def fails(ctx: inngest.ContextSync) -> None:
    def boom() -> None:
        raise inngest.NonRetriableError("no")

    ctx.step.run("boom", boom)


@client.create_function(
    fn_id="waits",
    trigger=inngest.TriggerEvent(event="b/waits"),
    cancel=[inngest.Cancel(event="b/stop", if_exp="async.data.k == event.data.k")],
)
def waits(ctx: inngest.ContextSync) -> object:
    got = ctx.step.wait_for_event(
        "w", event="b/paid", if_exp="async.data.k == event.data.k", timeout=3_600_000
    )
    return None if got is None else got.data


@client.create_function(
    fn_id="keyed",
    trigger=inngest.TriggerEvent(event="b/keyed"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.k")],
    singleton=inngest.Singleton(key="event.data.k", mode="skip"),
    rate_limit=inngest.RateLimit(limit=100, period=60_000, key="event.data.k"),
    idempotency="event.data.k",
)
def keyed(ctx: inngest.ContextSync) -> str:
    return str(ctx.step.run("one", lambda: ctx.event.data["k"]))


another_worker: list[Any] = []
"""While set, the `limited` step runs the other jobs sent so far, as a second worker would
while this one holds the concurrency slot: they park, and are woken when it is released."""


def _meanwhile(k: str) -> str:
    if another_worker:
        another_worker.pop()()
    return k


@client.create_function(
    fn_id="limited",
    trigger=inngest.TriggerEvent(event="b/limited"),
    concurrency=[inngest.Concurrency(limit=1, key="event.data.k")],
)
def limited(ctx: inngest.ContextSync) -> str:
    return str(ctx.step.run("one", lambda: _meanwhile(str(ctx.event.data["k"]))))


@dataclass
class World:
    engine: Engine
    redis: redis.Redis
    sent: list[str]

    def send(self, name: str, **data: Any) -> str:
        [event_id] = self.engine.runner.ingest([{"name": name, "data": data}], self.engine.now())
        self.drain()
        return event_id

    def drain(self) -> None:
        """Run every job sent so far, and those they send, once each, as a worker would."""
        done: set[str] = set()
        while todo := [job_id for job_id in self.sent if job_id not in done]:
            for job_id in todo:
                done.add(job_id)
                self.engine.jobs.handle(job_id)

    def runs(self) -> list[RunView]:
        return self.engine.store.list_runs(1000)

    def expire(self, now: int) -> None:
        """Archive everything that ended and drop it from Redis after the hot window."""
        archiver = self.engine.archiver
        while archiver.archive_once(now):
            pass
        while archiver.drop_due(now + MAX_START_AHEAD_MS):
            pass

    def snapshot(self) -> dict[str, tuple[str, int]]:
        """Every key without a TTL: its type and size (fields, members, length)."""
        sizes = {
            "hash": self.redis.hlen,
            "zset": self.redis.zcard,
            "set": self.redis.scard,
            "list": self.redis.llen,
            "string": self.redis.strlen,
        }
        out: dict[str, tuple[str, int]] = {}
        for key in self.redis.scan_iter(f"{PREFIX}:*", count=1000):
            ttl = int(self.redis.pttl(key))
            if ttl == -1:
                kind = str(self.redis.type(key))
                out[str(key)] = (kind, int(sizes[kind](key)))
            else:
                assert 0 < ttl <= MAX_TTL_MS or ttl == -2, (key, ttl)
        return out


class Sender:
    def __init__(self, sent: list[str]) -> None:
        self.sent = sent

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append(str((args or [""])[0]))


@pytest.fixture
def world(redis_url: str, tmp_path: Path) -> Iterator[World]:
    sent: list[str] = []
    settings = Settings(
        redis_url=redis_url,
        key_prefix=PREFIX,
        history_url=f"sqlite:///{tmp_path / 'history.db'}",
        hot_window_seconds=60,
    )
    engine = Engine.create(
        settings, sender=Sender(sent), local=FunctionSet([steps, fails, waits, keyed, limited])
    )
    yield World(engine, redis.Redis.from_url(redis_url, decode_responses=True), sent)
    another_worker.clear()
    engine.store.close()


def one_round(world: World, tag: str) -> None:
    world.send("b/steps", n=tag)
    world.send("b/fails", n=tag)
    for k in (f"{tag}-paid", f"{tag}-stopped"):
        world.send("b/waits", k=k)
    world.send("b/paid", k=f"{tag}-paid")
    world.send("b/stop", k=f"{tag}-stopped")
    for k in (f"{tag}-1", f"{tag}-2", f"{tag}-3"):
        world.send("b/keyed", k=k)
        world.send("b/keyed", k=k)  # the same key: the idempotency key answers the first run
    # Two runs of one concurrency key at once: the second parks until the first is done.
    for _ in range(2):
        world.engine.runner.ingest([{"name": "b/limited", "data": {"k": tag}}], world.engine.now())
    another_worker.append(world.drain)
    world.drain()
    assert world.redis.hlen(f"{PREFIX}:slots:limits") == 0


def test_the_keyspace_returns_to_its_start_once_runs_expire(world: World) -> None:
    one_round(world, "warm")
    statuses = sorted(run.status for run in world.runs())
    assert statuses == ["Cancelled"] + ["Completed"] * 7 + ["Failed"], statuses
    world.expire(world.engine.now())
    start = world.snapshot()
    assert world.runs() == []

    one_round(world, "next")
    assert len(world.runs()) == 9
    world.expire(world.engine.now())
    after = world.snapshot()
    grown = {
        key: (start.get(key), after.get(key))
        for key in start.keys() | after.keys()
        if start.get(key) != after.get(key) and not key.startswith(METRICS)
    }
    assert grown == {}
    # Counters and histograms: a field per function (and bucket), whatever the run count.
    functions = {config.id for config in world.engine.registry.all()} | {""}
    for key in (key for key in after if key.startswith(METRICS)):
        fields = {field.split("|")[0] for field in world.redis.hkeys(key)}
        assert fields <= functions, (key, fields - functions)
