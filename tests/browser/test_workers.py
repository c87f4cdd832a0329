"""The Workers page and the run page's "why not running" note, in a real Chromium against a
real Stepline (API, worker and beat processes)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def test_the_workers_page_lists_the_worker_beat_and_queue(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    page.goto(f"{stack.url}/#/runs")
    page.locator('[data-nav="workers"]').click()
    expect(page).to_have_url(re.compile(r"#/workers$"))
    row = page.locator('tr.worker-row[data-alive="true"]')
    expect(row).to_have_count(1)
    worker = stack.get("/v1/workers")["data"]["workers"]["items"][0]
    expect(row).to_contain_text(str(worker["pid"]))
    expect(row).to_contain_text(worker["pool"])
    expect(row).to_contain_text(str(worker["concurrency"]))
    expect(row).to_contain_text("stepline")
    expect(page.locator('#beat [data-alive="true"]')).to_contain_text("Last tick")
    expect(page.locator("#queue-jobs")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#worker-warnings .warning")).to_have_count(0)


def test_a_run_held_by_a_concurrency_key_says_so_then_runs(
    page: Any, stack: Stack, redis_client: Any
) -> None:
    from playwright.sync_api import expect

    first = stack.run_of(stack.send("shop/account.sync", {"account": "acme", "tag": "w1"}))
    stack.wait_for(lambda: stack.run(first["run_id"])["status"] == "Running", 30, "first run")
    second = stack.run_of(stack.send("shop/account.sync", {"account": "acme", "tag": "w2"}))
    page.goto(f"{stack.url}/#/runs/{second['run_id']}")
    note = page.locator("#waiting")
    expect(note).to_have_attribute("data-reason", "concurrency", timeout=30_000)
    expect(note).to_contain_text("key event.data.account = acme")
    expect(note).to_contain_text("1 running, 0 ahead")
    expect(page.locator("#result")).to_contain_text("waiting for a concurrency slot")

    # The worker page shows that the worker is busy (the first run's job: in-process runs
    # start inside their event's job, so that is the job listed).
    page.goto(f"{stack.url}/#/workers")
    expect(page.locator("tr.worker-row td.jobs")).not_to_have_text("idle", timeout=15_000)
    expect(page.locator("#queue-held")).not_to_have_text("0")

    redis_client.set("ui:go:w1", "1")
    redis_client.set("ui:go:w2", "1")
    assert stack.ended_run(second["run_id"], 60)["status"] == "Completed"
    page.goto(f"{stack.url}/#/runs/{second['run_id']}")
    expect(page.locator(".run-title .badge")).to_have_text("Completed")
    expect(page.locator("#waiting")).to_have_count(0)
