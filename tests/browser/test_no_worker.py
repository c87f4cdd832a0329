"""With no worker alive: the Workers page warns, and a queued run says nobody will run it
(its own module: the shared Stack of the other browser modules would keep a worker alive)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


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


def test_with_no_worker_the_page_warns_and_a_run_says_it_has_no_worker(
    quiet_stack: Stack, page_factory: Callable[[Stack], Any]
) -> None:
    from playwright.sync_api import expect

    stack = quiet_stack
    stack.wait_for(lambda: stack.get("/health")["workers"]["alive"], 60, "the worker")
    done = stack.http.post("/invoke/shop-nightly-report", json={"data": {}})
    done.raise_for_status()
    first = stack.run_of(done.json()["id"])
    stack.ended_run(first["run_id"], 60)
    worker = stack.procs[1]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    stack.wait_for(lambda: not stack.get("/health")["workers"]["alive"], 30, "the worker gone")
    # A rerun is queued by the API itself: its start job waits for a worker that is gone.
    rerun = stack.http.post(f"/v1/runs/{first['run_id']}/rerun")
    rerun.raise_for_status()
    run_id = rerun.json()["data"]["run_id"]

    page = page_factory(stack)
    page.goto(f"{stack.url}/#/runs/{run_id}")
    note = page.locator("#waiting")
    expect(note).to_have_attribute("data-reason", "no_worker")
    expect(note).to_contain_text("with no live worker")
    note.get_by_role("link", name="Workers").click()

    expect(page).to_have_url(re.compile(r"#/workers$"))
    warnings = page.locator("#worker-warnings")
    expect(warnings).to_contain_text("no worker is running")
    expect(warnings).to_contain_text("beat is not running")
    expect(page.locator('tr.worker-row[data-alive="false"]')).to_have_count(1)
    expect(page.locator("#queue-jobs")).not_to_have_text("0")
    # The rerun's start job waits on the main queue, aging as the page polls.
    main = page.locator('#queues tr[data-queue="stepline"]')
    expect(main.locator(".queue-waiting")).to_have_text(re.compile(r"^[1-9]\d*\+?$"))
    expect(main.locator(".queue-oldest-waiting")).to_have_text(re.compile(r"^(<1 s|\d+ s)$"))
    sdk = page.locator('#queues tr[data-queue="stepline-sdk"]')
    expect(sdk.locator(".queue-waiting")).to_have_text("0")
    expect(sdk.locator(".queue-oldest-waiting")).to_have_text("—")
