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
