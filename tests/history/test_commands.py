"""`stepline history upgrade`: the release step that creates or migrates the tables."""

from __future__ import annotations

import pytest

from app.cli import main
from app.history import migrate
from app.history.store import open_history


def test_upgrade_migrates_the_configured_database(
    history_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
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
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STEPLINE_HISTORY_URL", raising=False)
    monkeypatch.setenv("STEPLINE_DATA_DIR", f"{tmp_path}/data")
    assert main(["history", "upgrade"]) == 0
    assert f"sqlite:///{tmp_path}/data/history.db" in capsys.readouterr().out
