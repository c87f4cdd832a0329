"""Shared fixtures: a real Redis, flushed around each test.

Tests use `STEPLINE_TEST_REDIS_URL` (default db 15 on 127.0.0.1:6379). Locally a missing Redis
skips the tests that need it; in CI (`CI=true`) it fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

REDIS_URL = os.environ.get("STEPLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


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
PG_URL = os.environ.get(
    "STEPLINE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/stepline_test"
)
"""PostgreSQL database the history tests empty and use (created if missing)."""


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
