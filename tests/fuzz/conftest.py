"""Fixtures of the fuzzing suite (settings and the target live in `tests/fuzz/harness.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz import harness


@pytest.fixture(scope="module")
def target() -> Iterator[harness.Target]:
    yield from harness.target()
