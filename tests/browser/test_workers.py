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


def test_the_run_page_shows_ctx_logger_lines_with_their_steps(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    event_id = stack.send("shop/user.signed_up", {"email": "logs@example.com", "pause": 0.01})
    run = stack.ended_run(stack.run_of(event_id)["run_id"])
    page.goto(f"{stack.url}/#/runs/{run['run_id']}")
    logs = page.locator("#logs")
    expect(logs.locator("h2")).to_have_text("Logs (3)")
    lines = logs.locator(".log-line")
    expect(lines.nth(0)).to_contain_text("onboarding logs@example.com")
    expect(lines.nth(0)).to_have_attribute("data-step", "")
    expect(lines.nth(1)).to_have_attribute("data-step", "load-profile")
    expect(lines.nth(2)).to_have_class(re.compile(r"\blevel-warning\b"))
    step = page.locator('details.step[data-step-name="score-lead"]')
    step.locator("summary").click()
    expect(step.locator(".log-line")).to_have_count(1)
    expect(step.locator(".log-line")).to_contain_text("lead score model is stale")
