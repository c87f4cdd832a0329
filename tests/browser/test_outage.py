"""The UI's red banner: shown while beat or every worker is gone, gone once they are back."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.stack import Stack

pytestmark = pytest.mark.browser


@pytest.fixture
def quiet_stack(browser: Any, ui_redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """API and worker only, with heartbeats every half second (gone after 1.5 s)."""
    made = Stack(ui_redis_url, tmp_path, STEPLINE_HEARTBEAT_SECONDS="0.5")
    try:
        made.start_api()
        made.start_worker()
        yield made
    finally:
        made.stop()


def test_banner_while_beat_or_every_worker_is_gone(
    quiet_stack: Stack, page_factory: Callable[[Stack], Any]
) -> None:
    quiet_stack.wait_for(lambda: quiet_stack.get("/health")["workers"]["alive"], 60, "worker")
    page = page_factory(quiet_stack)
    page.goto(quiet_stack.url + "/#/runs")
    banner = page.locator("#outage")
    banner.wait_for(state="visible")
    assert banner.inner_text().startswith("beat is not running: sleeps, retries, crons")
    assert "no worker" not in banner.inner_text()

    quiet_stack.start_beat()
    banner.wait_for(state="hidden", timeout=30_000)

    worker = quiet_stack.procs[1]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    banner.wait_for(state="visible", timeout=30_000)
    assert banner.inner_text() == "no worker is running: no run makes progress"
