"""The dev UI in a real browser against a real Stepline (API, worker and beat processes).

The module shares one Stepline; each test makes its own events and finds its own runs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.browser.stack import Stack
from tests.integration.cluster import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

RUN_DONE = 30_000  # ms the UI gets to show a run ending


def run_id_from_url(page: Any) -> str:
    match = re.search(r"#/runs/([^/?]+)", page.url)
    assert match, page.url
    return match.group(1)


def test_invoke_form_starts_a_run_whose_timeline_shows_each_step(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    page.goto(f"{stack.url}/#/functions")
    card = page.locator('.function-card[data-function-id="shop-onboard-user"]')
    expect(card).to_contain_text("shop/user.signed_up")
    expect(card.locator('.option[data-option="concurrency"]')).to_contain_text("limit=10")
    expect(page.locator('.app-card[data-app-id="shop"]')).to_contain_text("in-process")
    expect(page.locator('.function-card[data-function-id="shop-nightly-report"]')).to_contain_text(
        "cron 0 3 * * *"
    )
    card.get_by_role("button", name="Invoke").click()

    editor = page.locator("#invoke-json")
    editor.fill('{"data": {"email": ')
    expect(page.locator("#invoke-json-status")).to_have_class(re.compile(r"\bbad\b"))
    expect(page.locator("#invoke-send")).to_be_disabled()
    body = {"data": {"email": "grace@example.com"}}
    editor.fill(json.dumps(body))
    expect(page.locator("#invoke-json-status")).to_have_text("valid JSON")
    page.locator("#invoke-format").click()
    expect(editor).to_have_value(json.dumps(body, indent=2))
    page.locator("#invoke-send").click()

    chip = page.locator("#invoke-result .run-chip")
    expect(chip).to_have_count(1)
    expect(chip.locator(".badge")).to_have_text("Completed", timeout=RUN_DONE)
    run_id = chip.get_attribute("data-run-id")

    # The run is in the runs list, newest first.
    page.locator('[data-nav="runs"]').click()
    row = page.locator(f'tr.run-row[data-run-id="{run_id}"]')
    expect(page.locator("tr.run-row").first).to_have_attribute("data-run-id", str(run_id))
    expect(row.locator(".badge")).to_have_text("Completed")
    expect(row).to_contain_text("shop-onboard-user")
    row.click()

    # Its detail: the trigger, every step with its output, the run's output.
    expect(page).to_have_url(re.compile(f"#/runs/{run_id}$"))
    expect(page.locator(".run-title .badge")).to_have_text("Completed")
    expect(page.locator("#trigger")).to_contain_text("grace@example.com")
    steps = page.locator("details.step")
    expect(steps).to_have_count(4)
    names = [steps.nth(i).get_attribute("data-step-name") for i in range(4)]
    assert names == ["load-profile", "score-lead", "short-breather", "send-welcome"]
    outputs = {
        "load-profile": '"plan": "pro"',
        "score-lead": "87",
        "send-welcome": '"template": "welcome-v2"',
    }
    for name, text in outputs.items():
        step = page.locator(f'details.step[data-step-name="{name}"]')
        expect(step.locator(".badge")).to_have_text("Completed")
        step.locator("summary").click()
        expect(step.locator(".json")).to_contain_text(text)
        expect(step.locator(".track .bar")).to_be_visible()
    sleep = page.locator('details.step[data-step-name="short-breather"]')
    expect(sleep.locator(".step-icon")).to_have_attribute("title", "sleep")
    expect(page.locator("#result .json")).to_contain_text('"score": 87')


def test_a_cron_only_function_is_run_now_from_its_invoke_form(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    page.goto(f"{stack.url}/#/functions")
    card = page.locator('.function-card[data-function-id="shop-nightly-report"]')
    card.get_by_role("button", name="Invoke").click()
    expect(page.locator("#invoke-send")).to_have_text("Invoke")
    page.locator("#invoke-json").fill('{"data": {"day": "monday"}}')
    page.locator("#invoke-send").click()
    chip = page.locator("#invoke-result .run-chip")
    expect(chip).to_have_count(1)
    expect(chip.locator(".badge")).to_have_text("Completed", timeout=RUN_DONE)
    expect(chip).to_contain_text("shop-nightly-report")


def test_an_sdk_app_is_synced_by_url_resynced_and_invoked(
    page: Any, stack: Stack, tmp_path: Path
) -> None:
    pytest.importorskip("inngest", reason="the official Python SDK (pip install '.[test]')")
    from playwright.sync_api import expect

    from tests.sdk_apps.harness import SdkApp

    page.goto(f"{stack.url}/#/functions")
    page.locator("#sync-url").fill("http://127.0.0.1:9/api/inngest")
    page.get_by_role("button", name="Sync new app").click()
    expect(page.locator(".toast-error")).to_contain_text("Sync failed")

    app = SdkApp(
        [sys.executable, str(ROOT / "tests" / "sdk_apps" / "py_app.py")],
        {"INNGEST_DEV": stack.url},
        log=tmp_path / "sdk-app.log",
    )
    try:
        app.wait_ready()
        page.locator("#sync-url").fill(app.url)
        page.get_by_role("button", name="Sync new app").click()
        card = page.locator('.app-card[data-app-id="pyapp"]')
        expect(card).to_contain_text(app.url)
        card.get_by_role("button", name="Sync").click()
        expect(page.locator(".toast").last).to_contain_text("pyapp")
        expect(card.get_by_role("button", name="Sync")).to_be_enabled()

        fn = page.locator('.function-card[data-function-id="pyapp-three"]')
        expect(fn).to_contain_text(app.url)
        fn.get_by_role("button", name="Invoke").click()
        expect(page.locator("#invoke-template")).to_contain_text("POST /invoke/pyapp-three")
        page.locator("#invoke-send").click()
        chip = page.locator("#invoke-result .run-chip")
        expect(chip.locator(".badge")).to_have_text("Completed", timeout=RUN_DONE)
        chip.click()
        expect(page.locator("#result .json")).to_contain_text('"sum": 6')
    finally:
        app.stop()


def test_a_sleeping_run_shows_its_wake_time_and_can_be_cancelled(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    event_id = stack.send("shop/trial.started", {"user": "lin"})
    run_id = stack.run_of(event_id)["run_id"]
    page.goto(f"{stack.url}/#/runs/{run_id}")

    nap = page.locator('details.step[data-step-name="wait-a-week"]')
    expect(nap).to_have_attribute("data-status", "Sleeping", timeout=RUN_DONE)
    expect(nap.locator(".bar.pending")).to_be_visible()
    expect(page.locator("#rerun-run")).to_have_count(0)

    cancel = page.locator("#cancel-run")
    cancel.click()
    expect(cancel).to_have_text("Click again to cancel")
    cancel.click()
    expect(page.locator(".run-title .badge")).to_have_text("Cancelled")
    expect(page.locator("#cancel-run")).to_have_count(0)
    expect(page.locator("#rerun-run")).to_be_visible()
    assert stack.run(run_id)["status"] == "Cancelled"


def test_a_sleep_shows_when_it_wakes(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    run_id = stack.run_of(stack.send("shop/trial.started", {"user": "kim"}))["run_id"]

    def sleeping() -> dict[str, Any] | None:
        steps = {step["name"]: step for step in stack.run(run_id)["steps"]}
        step = steps.get("wait-a-week")
        return step if step and step["status"] == "Sleeping" else None

    step = stack.wait_for(sleeping, 30, "the run to sleep")
    if "due_at" not in step:
        pytest.skip("GET /v1/runs/<id> has no `due_at` on sleeping steps yet")
    page.goto(f"{stack.url}/#/runs/{run_id}")
    nap = page.locator('details.step[data-step-name="wait-a-week"]')
    nap.locator("summary").click()
    expect(nap.locator(".due")).to_contain_text("Sleeping until")
    expect(nap.locator(".due")).to_contain_text("in 6d")
    stack.http.post(f"/v1/runs/{run_id}/cancel").raise_for_status()


def test_a_failed_run_shows_its_error_and_is_replayed_then_rerun(
    page: Any, stack: Stack, redis_client: redis.Redis[bytes]
) -> None:
    from playwright.sync_api import expect

    event_id = stack.send("shop/order.placed", {"order_id": "o-77"})
    original = stack.ended_run(stack.run_of(event_id)["run_id"])
    assert original["status"] == "Failed"
    page.goto(f"{stack.url}/#/runs/{original['run_id']}")

    expect(page.locator(".run-title .badge")).to_have_text("Failed")
    failed = page.locator('details.step[data-step-name="charge-card"]')
    expect(failed).to_have_attribute("open", "")  # failed steps open by themselves
    expect(failed.locator(".error-message")).to_contain_text("card declined")
    expect(failed.locator(".stack")).to_contain_text("Traceback")
    expect(page.locator("#result .error-box")).to_contain_text("card declined")

    # The card works now: replay from the failed step reuses load-cart's memoized output.
    redis_client.set("ui:card-ok:o-77", "1")
    page.locator("#replay-run").click()
    expect(page).not_to_have_url(re.compile(f"#/runs/{original['run_id']}$"))
    replayed = run_id_from_url(page)
    expect(page.locator(".run-title .badge")).to_have_text("Completed", timeout=RUN_DONE)
    expect(page.locator(".meta")).to_contain_text("Rerun of")
    expect(page.locator("#result .json")).to_contain_text("ch_123")
    assert redis_client.get("ui:count:load-cart:o-77") == b"1"
    assert stack.run(replayed)["original_run_id"] == original["run_id"]

    # Rerun the original from the start: load-cart runs again.
    page.locator(".meta a").click()
    expect(page).to_have_url(re.compile(f"#/runs/{original['run_id']}$"))
    page.locator("#rerun-run").click()
    expect(page).not_to_have_url(re.compile(f"#/runs/{original['run_id']}$"))
    rerun = run_id_from_url(page)
    assert rerun != replayed
    expect(page.locator(".run-title .badge")).to_have_text("Completed", timeout=RUN_DONE)
    expect(page.locator('details.step[data-step-name="load-cart"]')).to_have_count(1)
    assert redis_client.get("ui:count:load-cart:o-77") == b"2"


def test_the_event_stream_shows_payloads_runs_and_unmatched_events(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    matched = stack.send("shop/user.signed_up", {"email": "stream@example.com", "pause": 0})
    unmatched = stack.send("shop/nobody.listens", {"x": 1})
    page.goto(f"{stack.url}/#/events")

    # Newest first (internal events, such as each run's inngest/function.finished, aside).
    first = page.locator("details.event-row:not(.internal)").first
    expect(first).to_have_attribute("data-event-id", unmatched)
    expect(page.locator("details.event-row.internal").first).to_contain_text("internal event")
    row = page.locator(f'details.event-row[data-event-id="{matched}"]')
    expect(row.locator(".run-chip .badge")).to_have_text("Completed", timeout=RUN_DONE)
    expect(row.locator(".run-chip")).to_contain_text("shop-onboard-user")
    lonely = page.locator(f'details.event-row[data-event-id="{unmatched}"]')
    expect(lonely.locator(".no-runs")).to_have_text("no function matched", timeout=RUN_DONE)

    row.locator(".event-name").click()
    expect(row.locator(".json")).to_contain_text("stream@example.com")
    row.get_by_role("link", name="Permalink").click()
    expect(page).to_have_url(re.compile(f"#/events/{matched}$"))
    row = page.locator(f'details.event-row[data-event-id="{matched}"]')
    expect(row.locator(".json")).to_contain_text("stream@example.com")
    row.locator(".run-chip").click()
    expect(page).to_have_url(re.compile(r"#/runs/"))
    expect(page.locator("#trigger")).to_contain_text("stream@example.com")


def test_the_event_stream_says_why_a_function_did_not_run(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    started = stack.send("shop/vip.visit", {"vip": True, "user": "u1"})
    stack.ended_run(stack.run_of(started)["run_id"])
    limited = stack.send("shop/vip.visit", {"vip": True, "user": "u1"})
    plain = stack.send("shop/vip.visit", {"vip": False, "user": "u2"})
    page.goto(f"{stack.url}/#/events")

    def row(event_id: str) -> Any:
        return page.locator(f'details.event-row[data-event-id="{event_id}"]')

    expect(row(started).locator(".run-chip")).to_contain_text("shop-greet-vip")
    skip = row(limited).locator('.skip-chip[data-outcome="rate_limited"]')
    expect(skip).to_contain_text("rate limited", timeout=RUN_DONE)
    expect(skip).to_contain_text("shop-greet-vip")
    expect(row(limited).locator(".run-chip")).to_have_count(0)
    expect(row(plain).locator('.skip-chip[data-outcome="no_match"]')).to_be_visible()
    row(limited).locator(".event-name").click()
    expect(row(limited).locator(".reasons")).to_contain_text("shop-greet-vip")


def test_the_runs_list_filters_pages_and_updates_live(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    events = [
        stack.send("shop/user.signed_up", {"email": f"p{i}@example.com", "pause": 0})
        for i in range(5)
    ]
    events.append(stack.send("shop/order.placed", {"order_id": "o-filter"}))  # fails
    for event_id in events:
        stack.ended_run(stack.run_of(event_id)["run_id"])
    newest = stack.get("/v1/runs", function_id="shop-onboard-user", limit=100)["data"]
    assert len(newest) >= 5

    page.goto(f"{stack.url}/#/runs?function_id=shop-onboard-user&limit=3")
    rows = page.locator("tr.run-row")
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-run-id", newest[0]["run_id"])
    expect(page.locator("#filter-function")).to_have_value("shop-onboard-user")

    page.locator("#page-older").click()
    expect(rows.first).to_have_attribute("data-run-id", newest[3]["run_id"])
    page.locator("#page-newer").click()
    expect(rows.first).to_have_attribute("data-run-id", newest[0]["run_id"])

    # Live: a new run shows up on top without a reload.
    fresh = stack.run_of(stack.send("shop/user.signed_up", {"pause": 0}))["run_id"]
    expect(rows.first).to_have_attribute("data-run-id", fresh)

    # Status and time filters.
    page.locator("#filter-function").select_option("")
    page.locator("#filter-status").select_option("Failed")
    expect(rows.first).to_have_attribute("data-status", "Failed")
    expect(page.locator('tr.run-row:not([data-status="Failed"])')).to_have_count(0)
    assert "status=Failed" in page.url
    page.locator("#filter-status").select_option("")
    page.locator("#filter-range").select_option("custom")
    page.locator("#filter-from").fill("2001-01-01T00:00:00")
    page.locator("#filter-to").fill("2001-01-02T00:00:00")
    expect(page.locator(".empty")).to_have_text("No runs match these filters.")
    page.locator("#filter-range").select_option("15m")
    expect(rows).to_have_count(3)


def test_an_api_token_is_asked_for_and_kept(
    page_factory: Any, ui_redis_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    guarded = Stack(ui_redis_url, tmp_path, STEPLINE_API_TOKEN="s3cret")
    try:
        guarded.start_api()
        page = page_factory(guarded)
        page.goto(f"{guarded.url}/#/runs")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        page.locator("#token-input").fill("wrong")
        page.locator("#token-save").click()
        expect(dialog).to_be_visible()
        expect(page.locator("#token-error")).to_contain_text("refused")
        page.locator("#token-input").fill("s3cret")
        page.locator("#token-save").click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#runs-table")).to_be_visible()
        expect(page.locator(".problem")).to_have_count(0)
        assert page.evaluate("localStorage.getItem('stepline.token')") == "s3cret"
        page.reload()
        expect(page.locator("#token-button")).to_have_text("API token ✓")
        expect(dialog).to_be_hidden()
    finally:
        guarded.stop()
