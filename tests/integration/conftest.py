from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A worker (2 processes) and beat, against a flushed test Redis."""
    c = Cluster(redis_url, tmp_path)
    c.start_worker()
    c.start_beat()
    try:
        yield c
    finally:
        c.stop()
