"""The runs page's search box and the bulk operations page in a real browser, against a real
Stepline (API, worker and beat processes): a search finds runs by their trigger data, a bad
filter is named, a search cut short says so and goes on; a bulk replay is counted, started,
watched to its end, and its new runs really ran."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.browser.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _failed_orders(stack: Stack, prefix: str, count: int) -> list[str]:
    """Runs of charge-order that fail (no card-ok mark), ended."""
    runs = [
        stack.run_of(stack.send("shop/order.placed", {"order_id": f"{prefix}{i}"}))
        for i in range(count)
    ]
    return [stack.ended_run(run["run_id"], timeout=60)["run_id"] for run in runs]


def test_the_search_box_finds_runs_by_event_data_and_names_a_bad_filter(
    page: Any, stack: Stack
) -> None:
    from playwright.sync_api import expect

    run_ids = _failed_orders(stack, "o-search-", 3)
    page.goto(f"{stack.url}/#/runs")
    search = page.locator("#filter-search")
    search.fill('event.data.order_id == "o-search-1"')
    search.press("Enter")
    rows = page.locator("tr.run-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", run_ids[1])
    assert "filter=" in page.url  # the search is in the address, for sharing and reloads

    search.fill('event.data.order_id.startsWith("o-search-") && status == "Failed"')
    page.locator("#search-go").click()
    expect(rows).to_have_count(3)
    expect(page.locator("#search-partial")).to_be_hidden()

    search.fill("event.data.order_id ==")
    search.press("Enter")
    expect(page.locator("#search-error")).to_contain_text("invalid expression")
    expect(rows).to_have_count(0)
    search.fill("evnt.data == 1")
    search.press("Enter")
    expect(page.locator("#search-error")).to_contain_text("unknown name 'evnt'")


def test_the_events_page_searches_by_name_and_filter(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    ids = [stack.send("shop/nobody.listens", {"sku": f"sku-{i}"}) for i in range(3)]
    stack.send("shop/other.thing", {"sku": "sku-1"})
    page.goto(f"{stack.url}/#/events")
    page.locator("#event-name").fill("shop/nobody.listens")
    page.locator("#event-filter").fill('event.data.sku in ["sku-1", "sku-2"]')
    page.locator("#event-search-go").click()
    rows = page.locator("details.event-row")
    expect(rows).to_have_count(2)
    assert [rows.nth(i).get_attribute("data-event-id") for i in range(2)] == [ids[2], ids[1]]
    assert "name=shop" in page.url and "filter=" in page.url
    page.locator("#event-filter").fill("event.data.sku ==")
    page.locator("#event-search-go").click()
    expect(page.locator("#event-search-error")).to_contain_text("invalid expression")


def test_a_search_cut_short_says_partial_and_searches_older_runs(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    # More live runs than a search evaluates with cel-python per request (SearchBounds):
    # trial runs sleep for a week, so they stay in Redis.
    for i in range(45):
        stack.send("shop/trial.started", {"user": f"u{i:02d}"})
    stack.wait_for(
        lambda: (
            len(stack.get("/v1/runs", limit=100, function_id="shop-trial-reminder")["data"]) >= 45
        ),
        90,
        "45 trial runs",
    )
    page.goto(f"{stack.url}/#/runs")
    search = page.locator("#filter-search")
    search.fill('size(event.data.user) == 3 && event.data.user == "u00"')  # cel-python only
    search.press("Enter")
    note = page.locator("#search-partial")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Partial search")
    for _ in range(10):  # walk on until the oldest trial run is found
        if page.locator("tr.run-row").count() == 1:
            break
        page.locator("#page-older").click()
        page.wait_for_timeout(300)
    expect(page.locator("tr.run-row")).to_have_count(1)
    expect(page.locator("tr.run-row td.fn")).to_have_text("shop-trial-reminder")


def test_the_bulk_page_counts_starts_and_watches_a_replay(
    page: Any, stack: Stack, redis_client: redis.Redis[bytes]
) -> None:
    from playwright.sync_api import expect

    run_ids = _failed_orders(stack, "o-bulk-", 3)
    for i in range(3):
        redis_client.set(f"ui:card-ok:o-bulk-{i}", "1")  # the fix is deployed: replays succeed

    page.goto(f"{stack.url}/#/bulk")
    expect(page.locator('[data-nav="bulk"]')).to_have_class("nav-link active")
    page.locator("#bulk-action").select_option("replay")
    page.locator("#bulk-function").select_option("shop-charge-order")
    page.locator("#bulk-status").select_option("Failed")
    page.locator("#bulk-filter").fill("event.data.order_id ==")
    page.locator("#bulk-count").click()
    expect(page.locator("#bulk-error")).to_contain_text("invalid expression")

    page.locator("#bulk-filter").fill('event.data.order_id.startsWith("o-bulk-")')
    page.locator("#bulk-count").click()
    expect(page.locator("#bulk-matched")).to_have_text("3")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#bulk-start").click()
    card = page.locator(".bulk-card").first
    expect(card).to_contain_text("Replay")
    expect(card).to_have_attribute("data-state", "done", timeout=60_000)
    expect(card.locator(".count-done")).to_have_text("3 done")
    expect(card.locator(".count-failed")).to_have_text("0 failed")
    expect(card.locator(".bulk-stop")).to_have_count(0)

    replays = [
        run
        for run in stack.get("/v1/runs", limit=100, function_id="shop-charge-order")["data"]
        if run["original_run_id"] in run_ids
    ]
    assert sorted(run["original_run_id"] for run in replays) == sorted(run_ids)
    for run in replays:
        assert stack.ended_run(run["run_id"], timeout=60)["status"] == "Completed"


def test_a_running_bulk_operation_can_be_stopped_from_the_page(
    page: Any, stack: Stack, redis_client: redis.Redis[bytes]
) -> None:
    from playwright.sync_api import expect

    # No worker takes the job while the worker is paused: the operation stays running.
    worker = next(
        proc
        for proc in stack.procs
        if "celery" in proc.args and "worker" in proc.args  # type: ignore[operator]
    )
    import os
    import signal

    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        page.goto(f"{stack.url}/#/bulk")
        page.locator("#bulk-action").select_option("cancel")
        page.locator("#bulk-function").select_option("shop-trial-reminder")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#bulk-start").click()
        card = page.locator('.bulk-card[data-state="running"]').first
        expect(card).to_contain_text("Cancel")
        card.locator(".bulk-stop").click()
        expect(page.locator(".bulk-card").first).to_have_attribute("data-state", "stopped")
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    bulk_id = page.locator(".bulk-card").first.get_attribute("data-bulk-id")
    stack.wait_for(lambda: stack.get(f"/v1/bulk/{bulk_id}")["data"]["state"] == "stopped", 10)
    trials = stack.get("/v1/runs", limit=100, function_id="shop-trial-reminder")["data"]
    assert all(run["status"] != "Cancelled" for run in trials)
