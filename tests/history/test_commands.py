"""`stepline history upgrade`: the release step that creates or migrates the tables."""

from __future__ import annotations

import pytest

from app.cli import main
from app.history import migrate
from app.history.store import open_history


def test_upgrade_migrates_the_configured_database(
    history_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("STEPLINE_HISTORY_URL", history_url)
    assert main(["history", "upgrade"]) == 0
    assert main(["history", "upgrade"]) == 0  # nothing left to do
    assert f"is at revision {migrate.head()}" in capsys.readouterr().out
    store = open_history(history_url)
    try:
        assert migrate.current(store.engine) == migrate.head()  # type: ignore[attr-defined]
    finally:
        store.close()


def test_upgrade_sql_prints_the_ddl_for_a_dba(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STEPLINE_HISTORY_URL", "postgresql://stepline@db.invalid/stepline")
    assert main(["history", "upgrade", "--sql"]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE runs" in out and "JSONB" in out and "ix_runs_function_created" in out


def test_upgrade_of_an_unreachable_database_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STEPLINE_HISTORY_URL", "postgresql://stepline@127.0.0.1:1/stepline")
    assert main(["history", "upgrade"]) == 1
    assert "stepline history upgrade: " in capsys.readouterr().err


def test_the_data_directory_holds_the_default_sqlite_file(
    tmp_path: object,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("STEPLINE_HISTORY_URL", raising=False)
    monkeypatch.setenv("STEPLINE_DATA_DIR", f"{tmp_path}/data")
    assert main(["history", "upgrade"]) == 0
    assert f"sqlite:///{tmp_path}/data/history.db" in capsys.readouterr().out


def test_upgrade_hands_the_archiver_what_an_older_version_left_in_redis(
    history_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.state.store import Store
    from tests.lua.conftest import T0, new_run

    store = Store(redis_url, prefix="sl")
    client = store._client
    store.store_event({"name": "app/go", "data": {}, "id": "", "ts": T0, "user": {}}, "E1", T0, 1)
    store.create_run(new_run("R1", event_ids=["E1"]))
    store.finish_run("R1", "Completed", None, None, T0 + 5)
    store.create_run(new_run("LIVE"))
    client.delete("sl:history:runs", "sl:history:events")  # as before the history store
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("STEPLINE_HISTORY_URL", history_url)
    assert main(["history", "upgrade"]) == 0
    assert "queued for the archiver: 1 finished runs and 1 events" in capsys.readouterr().out
    assert client.zrange("sl:history:runs", 0, -1, withscores=True) == [("R1", T0 + 5)]
    assert client.zrange("sl:history:events", 0, -1) == ["E1"]
    assert main(["history", "upgrade"]) == 0
    assert "queued" not in capsys.readouterr().out
    store.close()
