"""The history store on SQLite and PostgreSQL: what goes in comes out as the live store shows
it, upserts by id, pages newest first with stable positions, purges in bounded batches."""

from __future__ import annotations

import dataclasses

import pytest

from app.errors import HistoryUnavailable
from app.history.records import ArchivedStep
from app.history.store import HistoryStore, normalize_url, open_history
from app.state.records import EventCriteria, EventRecord, RunCriteria
from tests.history.conftest import T0, archived


def test_a_saved_run_reads_back_with_its_steps_in_history_order(history: HistoryStore) -> None:
    history.save_runs([archived()], now=T0 + 100)
    view = history.get_run("01RUN")
    assert view is not None
    assert (view.function_id, view.status, view.event_ids) == ("app-fn", "Completed", ["01EVT"])
    assert (view.created_at, view.started_at, view.ended_at) == (T0, T0 + 5, T0 + 50)
    assert view.output == {"total": 3} and view.error is None
    assert [step["name"] for step in view.steps] == ["charge", "nap"]
    assert view.steps[0]["memo"] == {"data": 3}
    assert "memo" in view.steps[1] and view.steps[1]["memo"] is None
    assert view.steps[1]["due_at"] == T0 + 40
    assert history.get_run("nope") is None


def test_saving_a_run_twice_keeps_one_copy_the_second(history: HistoryStore) -> None:
    history.save_runs([archived()], now=T0)
    history.save_runs([archived(output={"total": 4})], now=T0 + 1)
    assert history.page_runs(10).items[0].output == {"total": 4}
    assert len(history.page_runs(10).items) == 1
    assert len(history.get_run("01RUN").steps) == 2  # type: ignore[union-attr]
    assert history.event_run_ids("01EVT") == ["01RUN"]


def test_a_memoized_step_without_a_record_is_replayed_but_not_shown(
    history: HistoryStore,
) -> None:
    run = archived()
    run.steps.append(ArchivedStep("s3hash", None, memoized=True, memo={"data": 9}, stack_index=2))
    history.save_runs([run], now=T0)
    assert len(history.get_run("01RUN").steps) == 2  # type: ignore[union-attr]
    memo = history.memoized_steps("01RUN")
    assert memo is not None
    assert memo.stack == ["s1hash", "s2hash", "s3hash"]
    assert memo.steps == {"s1hash": {"data": 3}, "s2hash": None, "s3hash": {"data": 9}}
    assert set(memo.history) == {"s1hash", "s2hash"}
    assert memo.history["s1hash"]["name"] == "charge"


def test_load_run_gives_what_rerun_and_replay_start_from(history: HistoryStore) -> None:
    history.save_runs([archived(correlation_id="corr-1", error={"message": "x"})], now=T0)
    state = history.load_run("01RUN")
    assert state is not None
    assert state.events == archived().events
    assert state.stack == ["s1hash", "s2hash"]
    assert state.steps == {"s1hash": {"data": 3}, "s2hash": None}
    assert state.kinds == {"s1hash": "StepRun", "s2hash": "Sleep"}
    assert (state.correlation_id, state.created_at, state.started_at) == ("corr-1", T0, T0 + 5)
    assert history.load_run("nope") is None and history.memoized_steps("nope") is None


def test_runs_page_newest_first_and_ties_break_by_run_id(history: HistoryStore) -> None:
    history.save_runs(
        [
            archived(
                f"R{i:02d}",
                created_at=T0 + i // 2,
                function_id=f"fn{i % 2}",
                status="Failed" if i % 3 == 0 else "Completed",
            )
            for i in range(10)
        ],
        now=T0,
    )
    ids = [view.run_id for view in history.page_runs(100).items]
    assert ids == ["R09", "R08", "R07", "R06", "R05", "R04", "R03", "R02", "R01", "R00"]
    walked: list[str] = []
    page = history.page_runs(3)
    while True:
        walked += [view.run_id for view in page.items]
        if page.next is None:
            break
        page = history.page_runs(3, after=page.next)
    assert walked == ids
    assert [v.run_id for v in history.page_runs(100, RunCriteria("fn1")).items] == [
        "R09",
        "R07",
        "R05",
        "R03",
        "R01",
    ]
    assert [v.run_id for v in history.page_runs(100, RunCriteria(status="Failed")).items] == [
        "R09",
        "R06",
        "R03",
        "R00",
    ]
    assert [v.run_id for v in history.page_runs(100, RunCriteria("fn0", "Failed")).items] == [
        "R06",
        "R00",
    ]
    window = history.page_runs(100, RunCriteria(created_after=T0 + 1, created_before=T0 + 3))
    assert [v.run_id for v in window.items] == ["R05", "R04", "R03", "R02"]
    assert history.page_runs(100, RunCriteria(status="Running")).items == []
    assert history.page_runs(2).items[0].steps == []


def test_events_insert_once_and_page_newest_first(history: HistoryStore) -> None:
    records = [
        EventRecord(f"E{i}", T0 + i, {"name": "app/go", "data": {"i": i}, "id": f"u{i}", "ts": T0})
        for i in range(5)
    ]
    history.save_events(records)
    history.save_events([dataclasses.replace(records[0], event={"name": "changed"})])
    assert history.get_event("E0") == records[0]
    assert history.get_event("nope") is None
    first = history.page_events(2)
    assert [r.internal_id for r in first.items] == ["E4", "E3"]
    second = history.page_events(2, after=first.next)
    assert [r.internal_id for r in second.items] == ["E2", "E1"]
    window = history.page_events(10, EventCriteria(received_after=T0 + 1, received_before=T0 + 3))
    assert [r.internal_id for r in window.items] == ["E2", "E1"]
    with pytest.raises(ValueError, match="search_events"):
        history.page_events(10, EventCriteria(name="app/go"))  # would silently ignore it


def test_purge_deletes_oldest_first_in_bounded_batches(history: HistoryStore) -> None:
    history.save_runs(
        [archived(f"R{i}", ended_at=T0 + i, event_ids=[f"E{i}"]) for i in range(5)], now=T0
    )
    history.save_events([EventRecord(f"E{i}", T0 + i, {"name": "app/go"}) for i in range(5)])
    purged = history.purge(cutoff=T0 + 3, limit=3)
    assert (purged.runs, purged.events) == (3, 3)
    assert [v.run_id for v in history.page_runs(10).items] == ["R4", "R3"]
    assert history.get_run("R0") is None and history.memoized_steps("R0") is None
    assert history.event_run_ids("E0") == []
    purged = history.purge(cutoff=T0 + 3, limit=3)
    assert (purged.runs, purged.events) == (1, 1)
    assert history.purge(cutoff=T0 + 3, limit=3).runs == 0
    assert [r.internal_id for r in history.page_events(10).items] == ["E4"]


def test_the_migrated_schema_matches_the_table_definitions(history: HistoryStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from app.history.schema import metadata

    history.upgrade()

    def on_this_dialect(item: object, name: str, kind: str, reflected: bool, other: object) -> bool:
        only = getattr(item, "info", {}).get("dialect")
        return only is None or only == connection.dialect.name

    with history.engine.connect() as connection:  # type: ignore[attr-defined]
        context = MigrationContext.configure(connection, opts={"include_object": on_this_dialect})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_urls_name_psycopg_and_other_databases_are_refused() -> None:
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        open_history("mysql://u@h/db")


def test_postgres_behind_the_code_refuses_and_names_the_upgrade_command() -> None:
    from app.history.schema import metadata
    from tests.conftest import require_postgres

    store = open_history(require_postgres())
    try:
        with store.engine.begin() as connection:  # type: ignore[attr-defined]
            metadata.drop_all(connection)
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        with pytest.raises(HistoryUnavailable, match="stepline history upgrade"):
            store.get_run("x")
        store.upgrade()
        store.upgrade()  # a second upgrade finds nothing to do
        assert store.get_run("x") is None
    finally:
        store.close()
