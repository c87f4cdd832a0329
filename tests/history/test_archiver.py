"""The archiver against a real Redis and each history database: finished runs and events
reach the history store exactly once, whatever step a crash interrupts, and Redis drops them
only after the commit and the hot window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from app import retention
from app.config import Settings
from app.history import archiver as archiver_module
from app.history.archiver import JOB_EVERY_MS, YIELD_TO_TIMERS_MS, Archiver
from app.history.reads import Reads
from app.history.schema import runs as runs_table
from app.history.store import HistoryStore, open_history
from app.models import Job, JobKind
from app.state.archive import ArchiveStore
from app.state.store import Store
from tests.lua.conftest import T0, new_run

HOT_MS = 600_000
LEASE_MS = 30_000


@dataclass
class World:
    store: Store
    archive: ArchiveStore
    history: HistoryStore
    archiver: Archiver
    clock: list[int]

    def finish(self, run_id: str, at: int = T0 + 10, **kw: object) -> None:
        self.store.create_run(new_run(run_id, **kw))  # type: ignore[arg-type]
        self.store.mark_started(run_id, T0 + 1)
        self.store.save_step(run_id, "s1", {"data": 1}, {"name": "one", "kind": "StepRun"}, T0)
        assert self.store.finish_run(run_id, "Completed", {"n": run_id}, None, at)

    def rows(self) -> int:
        with self.history.engine.connect() as connection:  # type: ignore[attr-defined]
            return int(
                connection.execute(sa.select(sa.func.count()).select_from(runs_table)).scalar_one()
            )


@pytest.fixture
def world(redis_url: str, history_url: str) -> Iterator[World]:
    store = Store(redis_url, prefix="sl")
    history = open_history(history_url)
    clock = [T0 + 100]
    archive = ArchiveStore(store)
    settings = Settings(
        hot_window_seconds=HOT_MS / 1000, lease_seconds=LEASE_MS / 1000, retention_days=1
    )
    yield World(
        store, archive, history, Archiver(archive, history, settings, lambda: clock[0]), clock
    )
    history.close()
    store.close()


def test_a_finished_run_is_archived_then_dropped_after_the_hot_window(world: World) -> None:
    world.finish("R1")
    live = world.store.get_run("R1")
    assert world.archiver.archive_once(T0 + 100) == 1
    assert world.history.get_run("R1") == live
    assert world.archiver.archive_once(T0 + 101) == 0
    assert world.archiver.drop_due(T0 + 100 + HOT_MS - 1) == 0
    assert world.store.get_run("R1") is not None
    assert world.archiver.drop_due(T0 + 100 + HOT_MS) == 1
    assert world.store.get_run("R1") is None
    assert Reads(world.store, world.history).get_run("R1") == live


def test_a_live_run_is_neither_archived_nor_dropped(world: World) -> None:
    world.store.create_run(new_run("LIVE"))
    world.finish("R1")
    assert world.archiver.archive_once(T0 + 100) == 1
    assert world.archiver.drop_due(T0 + 10 * HOT_MS) == 1
    assert world.store.get_run("LIVE") is not None
    assert world.history.get_run("LIVE") is None


def test_an_archiver_killed_after_its_claim_loses_nothing(world: World) -> None:
    """Killed between the claim and the commit: the batch comes back when the lease ends."""
    world.finish("R1")
    world.finish("R2")
    assert world.archive.claim_runs("dead", T0 + 100, LEASE_MS, 10) == ["R1", "R2"]
    assert world.archiver.archive_once(T0 + 101) == 0  # leased to the dead one
    assert world.archiver.drop_due(T0 + 10 * HOT_MS) == 0  # not archived: never dropped
    assert world.archiver.archive_once(T0 + 100 + LEASE_MS) == 2
    assert world.rows() == 2


def test_an_archiver_killed_after_its_commit_duplicates_nothing(world: World) -> None:
    """Killed between the commit and marking the batch archived: it is saved again (upsert)."""
    world.finish("R1")
    ids = world.archive.claim_runs("dead", T0 + 100, LEASE_MS, 10)
    world.history.save_runs(world.archive.read_runs(ids), T0 + 100)
    assert world.archiver.archive_once(T0 + 100 + LEASE_MS) == 1
    assert world.rows() == 1
    assert world.history.get_run("R1") is not None


def test_events_are_archived_at_once_and_dropped_once_processed(world: World) -> None:
    event = {"name": "app/go", "data": {"k": 1}, "id": "", "ts": T0, "user": {}}
    world.store.store_event(event, "E1", T0, 5000)
    world.store.enqueue_job(Job(id="event:E1", kind=JobKind.EVENT, event_id="E1"), T0, T0)
    world.finish("R1", event_ids=["E1"])
    assert world.archiver.archive_once(T0 + 100) == 2
    assert world.history.get_event("E1") == world.store.get_event("E1")
    assert world.history.event_run_ids("E1") == ["R1"]
    assert world.archiver.drop_due(T0 + 100 + HOT_MS) == 1  # the run; the event waits
    assert world.store.get_event("E1") is not None
    world.store.finish_job("event:E1", "w")
    assert world.archiver.drop_due(T0 + 100 + 2 * HOT_MS) == 1
    assert world.store.get_event("E1") is None
    assert [v.run_id for v in Reads(world.store, world.history).event_runs("E1")] == ["R1"]


def test_beat_sends_a_job_when_work_waits_and_once_a_minute_anyway(world: World) -> None:
    first = world.archiver.due_job(T0)  # nothing waits, but retention has never run
    assert first is not None and first.kind is JobKind.ARCHIVE
    world.finish("R1")
    job = world.archiver.due_job(T0 + retention.INTERVAL_MS)
    assert job is not None and job.kind is JobKind.ARCHIVE
    assert world.archiver.due_job(T0 + retention.INTERVAL_MS + JOB_EVERY_MS - 1) is None
    again = world.archiver.due_job(T0 + retention.INTERVAL_MS + JOB_EVERY_MS)
    assert again is not None and again.id != job.id
    world.store.enqueue_job(again, T0, T0)  # sent, then queued until a worker is done with it
    assert world.archiver.due_job(T0 + retention.INTERVAL_MS + 2 * JOB_EVERY_MS) is None
    world.store.finish_job(again.id, "worker")
    world.archiver.archive_once(T0 + 2 * retention.INTERVAL_MS)
    quiet = T0 + retention.INTERVAL_MS + 3 * JOB_EVERY_MS
    assert world.archiver.due_job(quiet) is None  # nothing waits, retention ran a job ago
    assert world.archiver.due_job(T0 + 3 * retention.INTERVAL_MS) is not None


def test_the_job_archives_everything_and_applies_retention_at_most_once_a_minute(
    world: World,
) -> None:
    day = retention.DAY_MS
    world.finish("OLD", at=T0)
    world.clock[0] = T0 + day - 1_000  # archives OLD; retention runs, OLD is not a day old
    world.archiver.run_job(Job(id="archive:1", kind=JobKind.ARCHIVE))
    assert world.history.get_run("OLD") is not None
    world.finish("NEW", at=T0 + day)
    world.clock[0] = T0 + day + 1
    world.archiver.run_job(Job(id="archive:2", kind=JobKind.ARCHIVE))
    assert world.history.get_run("NEW") is not None
    assert world.history.get_run("OLD") is not None  # retention ran under a minute ago
    world.clock[0] = T0 + day - 1_000 + retention.INTERVAL_MS
    world.archiver.run_job(Job(id="archive:3", kind=JobKind.ARCHIVE))
    assert world.history.get_run("OLD") is None
    assert world.history.get_run("NEW") is not None


def test_zero_retention_days_keeps_everything(history_url: str) -> None:
    from tests.history.conftest import archived

    history = open_history(history_url)
    try:
        history.save_runs([archived("R1", ended_at=T0)], now=T0)
        assert (
            retention.apply(history, Settings(retention_days=0), T0 + 1000 * retention.DAY_MS).runs
            == 0
        )
        assert retention.apply(history, Settings(retention_days=1), T0 + retention.DAY_MS).runs == 1
    finally:
        history.close()


def _history_of(world: World, runs: int, events: int, at: int) -> None:
    from app.state.store import EventRecord
    from tests.history.conftest import archived

    world.history.save_runs([archived(f"R{i:04}", ended_at=at) for i in range(runs)], now=at)
    world.history.save_events(
        [
            EventRecord(f"E{i:04}", at, {"name": "app/go", "data": {}, "id": "", "ts": at})
            for i in range(events)
        ]
    )


def test_retention_deletes_everything_due_not_a_fixed_number_a_call(world: World) -> None:
    """The old cap (10 batches a minute) fell behind any larger backlog: now one call works
    through all that is due while its time budget lasts."""
    _history_of(world, 250, 120, T0)
    stored = world.rows()  # 250, and what earlier tests left in this database
    now = T0 + 10 * retention.DAY_MS
    purged = retention.purge(world.history, now, retention.DAY_MS, batch=10)
    assert (purged.runs, purged.caught_up) == (stored, True) and purged.events >= 120
    assert world.rows() == 0


def test_retention_behind_runs_again_at_the_next_job(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    retention.purge(world.history, T0 + 100 * retention.DAY_MS, 0)  # what earlier tests left
    _history_of(world, 30, 0, T0)
    monkeypatch.setattr(retention, "BATCH", 10)
    monkeypatch.setattr(retention, "BUDGET_SECONDS", 0.0)  # one batch per call
    world.clock[0] = T0 + retention.DAY_MS
    for left in (20, 10, 0):
        world.archiver.run_job(Job(id=f"archive:{left}", kind=JobKind.ARCHIVE))
        assert world.rows() == left  # not a minute later: at the next job


def test_the_job_yields_to_timers_falling_due_after_one_batch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of wakes needs every pool process: an ARCHIVE job archives one batch, then
    stops while a timer is due within YIELD_TO_TIMERS_MS; with none due it drains all."""
    monkeypatch.setattr(archiver_module, "BATCH", 1)
    for run_id in ("R1", "R2", "R3"):
        world.finish(run_id)
    now = world.clock[0]
    settings = Settings(hot_window_seconds=HOT_MS / 1000, lease_seconds=LEASE_MS / 1000)
    due_soon = Archiver(
        world.archive,
        world.history,
        settings,
        lambda: world.clock[0],
        next_timer=lambda: now + YIELD_TO_TIMERS_MS,
    )
    due_soon.run_job(Job(id="archive:1", kind=JobKind.ARCHIVE))
    assert world.rows() == 1
    later = Archiver(
        world.archive,
        world.history,
        settings,
        lambda: world.clock[0],
        next_timer=lambda: now + YIELD_TO_TIMERS_MS + 1,
    )
    later.run_job(Job(id="archive:2", kind=JobKind.ARCHIVE))
    assert world.rows() == 3
