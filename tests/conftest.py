"""Shared fixtures: a real Redis, flushed around each test.

Tests use `STEPLINE_TEST_REDIS_URL` (default db 15 on 127.0.0.1:6379). Locally a missing Redis
skips the tests that need it; in CI (`CI=true`) it fails them.

Under pytest-xdist (`scripts/test` runs `-n`), worker N has databases of its own: Redis db 15,
13, 12, ... (the configured db, then from two below it down: the benchmarks use db 14) and the
PostgreSQL database named with a `_gwN` suffix. The worker's environment says so too, so the
processes a test starts inherit them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
"""This pytest-xdist worker's number (0 without xdist)."""


def _worker_redis_url(url: str) -> str:
    """The worker's Redis database: the configured one for worker 0, else N+1 below it."""
    from urllib.parse import urlsplit

    if WORKER == 0:
        return url
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0) - WORKER - 1
    if db < 0:
        raise RuntimeError(f"too many xdist workers for the Redis databases below {url}")
    return parts._replace(path=f"/{db}").geturl()


def _worker_pg_url(url: str) -> str:
    """The worker's PostgreSQL database: the configured one for worker 0, else `<name>_gwN`."""
    if WORKER == 0:
        return url
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    return parsed.set(database=f"{parsed.database}_gw{WORKER}").render_as_string(
        hide_password=False
    )


REDIS_URL = _worker_redis_url(
    os.environ.get("STEPLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
)
os.environ["STEPLINE_TEST_REDIS_URL"] = REDIS_URL


def require_redis() -> redis.Redis:
    """A client of the test Redis; skips the test when there is none, except in CI."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        client.close()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}")
    return client


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = require_redis()
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


# --- the history store's databases -----------------------------------------------------------
PG_URL = _worker_pg_url(
    os.environ.get("STEPLINE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/stepline_test")
)
"""PostgreSQL database the history tests empty and use (created if missing)."""
os.environ["STEPLINE_TEST_PG_URL"] = PG_URL


def require_postgres() -> str:
    """The test database's URL (psycopg 3), created if missing; skips the test when no
    PostgreSQL answers, except in CI."""
    import sqlalchemy as sa

    from app.history.store import normalize_url

    url = sa.make_url(normalize_url(PG_URL))
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": url.database},
            ).first()
            if exists is None:
                connection.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    except sa.exc.OperationalError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL at {PG_URL}")
    finally:
        admin.dispose()
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty, migrated history database of each kind: an SQLite file, then PostgreSQL."""
    from app.history.store import open_history

    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('history') / 'history.db'}"
    from app.history import migrate
    from app.history.schema import metadata

    url = require_postgres()
    store = open_history(url)
    engine = store.engine  # type: ignore[attr-defined]
    try:
        if migrate.current(engine) != migrate.head():
            with engine.begin() as connection:  # a test or an older run left it half done
                metadata.drop_all(connection)
                connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        store.upgrade()
        empty_history(store)
    finally:
        store.close()
    return url


def empty_history(store: object) -> None:
    """Delete every row of the history tables (the schema stays)."""
    import sqlalchemy as sa

    from app.history.schema import metadata

    engine: sa.Engine = store.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


# --- running in parallel (pytest-xdist) ------------------------------------------------------
# `scripts/test` runs the suite on several xdist workers with this scheduling: the tests of a
# class, or of a module outside a class, go to one worker together (their class-, module- and
# session-scoped servers, wheels and virtualenvs are made once), except where every test starts
# its own processes and a module would hold one worker for minutes (SPLIT: each test is a unit
# of its own). The long units are collected first, so no worker is left with one at the end.
SPLIT = ("tests/chaos/", "tests/unit/test_cli_dev.py")
LONG_FIRST = ("tests/deploy/", *SPLIT)


def xdist_unit(nodeid: str) -> str | None:
    """The unit of work a test belongs to, or None for xdist's own (class, else module)."""
    return nodeid if nodeid.startswith(SPLIT) else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the collection order: long units first

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_unit(nodeid) or super()._split_scope(nodeid)

    return Scheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts the same way
        items.sort(key=lambda item: not item.nodeid.startswith(LONG_FIRST))
