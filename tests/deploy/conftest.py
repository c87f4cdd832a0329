"""Fixtures for the deploy tests: built once per session (a wheel, virtualenvs outside the
checkout) and a private Redis per test (the shared test Redis's `stepline` queue may be served
by other test runs' workers). Everything here is `e2e`: it installs from the package index."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.stack import RedisServer, build_wheel, make_venv, slug


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def wheel_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv with only the wheel installed (`pip install <wheel>`)."""
    return make_venv(tmp_path_factory.mktemp("wheel-venv") / "venv", str(wheel))


@pytest.fixture(scope="session")
def heroku_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(slug, bin/ of its venv): the repository's files and a venv holding exactly
    `pip install -r requirements.txt`, as a Heroku-style Python build makes them."""
    app = slug(tmp_path_factory.mktemp("slug"))
    bin_dir = make_venv(
        tmp_path_factory.mktemp("slug-venv") / "venv", "-r", str(app / "requirements.txt")
    )
    return app, bin_dir


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server")
    server = RedisServer.start(tmp_path / "redis")
    yield server
    server.stop()
