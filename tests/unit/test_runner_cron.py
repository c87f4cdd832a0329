"""Cron triggers: exactly one run per scheduled time, whoever calls and however often."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from app.cron import fire_due_crons, latest_at_or_before, rfc3339
from app.models import Trigger
from app.registry import Registry
from tests.unit.test_runner import World, fn, make_world


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


T12 = ms("2024-01-01T12:00:00")


@pytest.fixture
def world(redis_url: str) -> Iterator[World]:
    w = make_world(redis_url)
    w.register(fn("every5", Trigger(cron="*/5 * * * *")))
    yield w
    w.store.close()


def fire(world: World, now: int) -> int:
    """One beat tick as a separate process would run it (its own registry and runner)."""
    runner = world.fresh_runner()
    return fire_due_crons(Registry(world.store), world.store, runner, now)


def cron_runs(world: World) -> list[tuple[str, int]]:
    """(event id, scheduled ts) of every cron run created, oldest first."""
    out = []
    for view in world.store.list_runs(100, function_id="app-every5"):
        state = world.store.load_run(view.run_id)
        assert state is not None
        event = state.events[0]
        assert event["name"] == "inngest/scheduled.timer"
        assert event["data"] == {"cron": "*/5 * * * *"}
        out.append((str(event["id"]), int(event["ts"])))
    return sorted(out, key=lambda item: item[1])


def test_latest_at_or_before() -> None:
    assert latest_at_or_before("*/5 * * * *", T12) == T12
    assert latest_at_or_before("*/5 * * * *", T12 - 1) == T12 - 5 * 60_000
    assert latest_at_or_before("*/5 * * * *", T12 + 299_999) == T12
    assert latest_at_or_before("0 9 * * *", T12) == ms("2024-01-01T09:00:00")
    assert latest_at_or_before("TZ=Europe/Paris 0 9 * * *", T12) == ms("2024-01-01T08:00:00")
    assert latest_at_or_before("CRON_TZ=UTC 0 9 * * *", T12) == ms("2024-01-01T09:00:00")
    assert latest_at_or_before("not a cron", T12) is None
    assert latest_at_or_before("TZ=Nowhere/Land * * * * *", T12) is None


def test_rfc3339() -> None:
    assert rfc3339(T12) == "2024-01-01T12:00:00Z"
    assert rfc3339(T12 + 5) == "2024-01-01T12:00:00.005Z"


def test_fires_once_at_the_scheduled_time(world: World) -> None:
    assert fire(world, T12 - 200) == 0
    assert fire(world, T12 + 100) == 1
    assert fire(world, T12 + 400) == 0
    assert fire(world, T12 + 60_000) == 0
    assert cron_runs(world) == [("2024-01-01T12:00:00Z", T12)]
    assert len(world.sender.job_ids("stepline.start")) == 1


def test_two_beats_at_the_same_moment_fire_once(world: World) -> None:
    fired = [fire(world, T12 + 100), fire(world, T12 + 100)]
    assert sorted(fired) == [0, 1]
    assert cron_runs(world) == [("2024-01-01T12:00:00Z", T12)]


def test_two_beats_interleaved_over_many_ticks(world: World) -> None:
    total = 0
    for now in range(T12 - 400, T12 + 15 * 60_000, 5_000):
        total += fire(world, now)  # beat A
        total += fire(world, now + 100)  # beat B, a moment later
    assert total == 3
    assert [ts for _, ts in cron_runs(world)] == [T12, T12 + 300_000, T12 + 600_000]


def test_first_sight_ignores_times_older_than_one_tick(world: World) -> None:
    # Started 10 s after 12:00: that time passed before this engine was watching.
    assert fire(world, T12 + 10_000) == 0
    assert fire(world, T12 + 300_000) == 1
    assert [ts for _, ts in cron_runs(world)] == [T12 + 300_000]


def test_after_downtime_only_the_most_recent_missed_time_fires(world: World) -> None:
    assert fire(world, T12 + 100) == 1
    # Down for an hour; a restarted beat (fresh objects, same Redis) catches up once.
    back = T12 + 3_600_000 + 30_000
    assert fire(world, back) == 1
    assert fire(world, back + 100) == 0
    assert [ts for _, ts in cron_runs(world)] == [T12, T12 + 3_600_000]


def test_restart_does_not_fire_again(world: World) -> None:
    assert fire(world, T12 + 100) == 1
    assert fire(world, T12 + 200) == 0  # new runner and registry objects each call
    assert len(cron_runs(world)) == 1


def test_claimed_time_is_left_to_the_claimer_until_its_claim_lapses(
    world: World, redis_url: str
) -> None:
    fire(world, T12 - 100)
    # Another beat has claimed 12:00 and is about to fire it: this one must not.
    assert world.store.claim_cron("app-every5", T12, 60_000)
    assert fire(world, T12 + 100) == 0
    assert fire(world, T12 + 600) == 0
    assert cron_runs(world) == []
    # That beat died before firing: once its claim lapses, the time is fired after all.
    client = redis.Redis.from_url(redis_url)
    client.delete(world.store.keys.cron_claim("app-every5", T12))
    client.close()
    assert fire(world, T12 + 61_000) == 1
    assert cron_runs(world) == [("2024-01-01T12:00:00Z", T12)]


def test_run_is_idempotent_even_if_a_claim_expired(world: World, redis_url: str) -> None:
    fire(world, T12 - 100)
    assert fire(world, T12 + 100) == 1
    # A stale cursor and a lapsed claim (a claimer that died long ago): the run's
    # idempotency key (`cron:<ts>`) still holds.
    world.store.set_cron_cursor("app-every5", T12 - 1)
    client = redis.Redis.from_url(redis_url)
    client.delete(world.store.keys.cron_claim("app-every5", T12))
    client.close()
    assert fire(world, T12 + 200) == 1  # it claimed, but scheduled no second run
    assert len(cron_runs(world)) == 1
    assert len(set(world.sender.job_ids("stepline.start"))) == 1


def test_functions_without_cron_are_ignored(world: World) -> None:
    world.register(fn("plain", Trigger(event="a/b")), app_id="other")
    assert fire(world, T12 + 100) == 1
    assert world.store.cron_cursor("app-plain") is None


def test_two_functions_on_the_same_schedule_each_get_a_run(world: World) -> None:
    world.register(fn("hourly", Trigger(cron="0 * * * *")), app_id="other")
    assert fire(world, T12 + 100) == 2
    views = world.store.list_runs(10)
    assert sorted(v.function_id for v in views) == ["app-every5", "app-hourly"]
    hourly = next(v for v in views if v.function_id == "app-hourly")
    state = world.store.load_run(hourly.run_id)
    assert state is not None and state.events[0]["data"] == {"cron": "0 * * * *"}


def test_jitter_delays_each_time_by_a_fixed_offset_below_the_jitter(world: World) -> None:
    from app.cron import jitter_ms

    trigger = Trigger(cron="*/5 * * * *", jitter="2m")
    world.register(fn("every5", trigger))
    offset = jitter_ms("app-every5", trigger, T12)
    assert 0 <= offset < 120_000
    assert offset == jitter_ms("app-every5", trigger, T12)  # every beat agrees
    assert {jitter_ms("app-every5", trigger, T12 + i * 300_000) for i in range(20)} != {offset}
    fire(world, T12 - 1)  # first sight of the function sets its cursor
    if offset > 0:
        assert fire(world, T12 + offset - 1) == 0  # scheduled, but not yet due
    assert fire(world, T12 + offset) == 1
    assert [ts for _, ts in cron_runs(world)] == [T12]
