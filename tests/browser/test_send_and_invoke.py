"""The UI's Invoke runs that one function through POST /invoke/<id> (its trigger's expression
and the event path are not involved), and the Send-event dialog sends an event templated on
the last one of its name. Real Chromium against a real Stepline (API, worker, beat)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser.stack import Stack

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

RUN_DONE = 30_000


def test_invoke_runs_the_function_even_when_its_trigger_would_not(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    # Sent as an event, the trigger's expression (event.data.vip == true) starts no run.
    event_id = stack.send("shop/vip.visit", {"user": "zed"})

    def outcome() -> list[Any]:
        answer = stack.get(f"/v1/events/{event_id}/runs")
        return [o["outcome"] for o in answer["metadata"]["outcomes"]] if answer else []

    assert stack.wait_for(outcome, 30, "the event's outcome") == ["no_match"]
    assert stack.runs_of(event_id) == []
    page.goto(f"{stack.url}/#/functions")
    card = page.locator('.function-card[data-function-id="shop-greet-vip"]')
    card.get_by_role("button", name="Invoke").click()
    expect(page.locator("#invoke-template")).to_contain_text("POST /invoke/shop-greet-vip")
    page.locator("#invoke-json").fill(json.dumps({"data": {"user": "zed"}}))
    page.locator("#invoke-send").click()
    chip = page.locator("#invoke-result .run-chip")
    expect(chip.locator(".badge")).to_have_text("Completed", timeout=RUN_DONE)
    expect(chip).to_contain_text("shop-greet-vip")
    chip.click()
    expect(page.locator("#result .json")).to_contain_text("hello zed")
    expect(page.locator("#trigger")).to_contain_text("inngest/function.invoked")


def test_invoke_prefills_the_data_of_the_last_trigger_event(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    event_id = stack.send("shop/order.placed", {"order_id": "o-template", "coupon": "WELCOME"})
    stack.run_of(event_id)
    page.goto(f"{stack.url}/#/functions")
    card = page.locator('.function-card[data-function-id="shop-charge-order"]')
    card.get_by_role("button", name="Invoke").click()
    expect(page.locator("#invoke-json")).to_have_value(re.compile('"coupon": "WELCOME"'))
    expect(page.locator("#invoke-template")).to_contain_text("last shop/order.placed event")


def test_send_event_dialog_uses_the_last_event_of_that_name_as_template(
    page: Any, stack: Stack
) -> None:
    from playwright.sync_api import expect

    earlier = stack.send("shop/vip.visit", {"vip": True, "user": "tmpl-user", "tier": "gold"})
    stack.run_of(earlier)
    page.goto(f"{stack.url}/#/events")
    page.locator("#send-event").click()
    dialog = page.locator("#send-dialog")
    expect(dialog).to_be_visible()
    page.locator("#send-name").fill("shop/vip.visit")
    editor = page.locator("#send-json")
    expect(editor).to_have_value(re.compile('"tier": "gold"'))
    expect(page.locator("#send-template")).to_contain_text(earlier)
    value = json.loads(editor.input_value())
    data = {"vip": True, "user": "tmpl-user", "tier": "gold"}
    assert value == {"name": "shop/vip.visit", "data": data}
    value["data"]["user"] = "sent-from-dialog"
    editor.fill(json.dumps(value))
    expect(page.locator("#send-json-status")).to_have_text("valid JSON")
    page.locator("#send-submit").click()
    link = page.locator("#send-result a.sent-event")
    expect(link).to_have_count(1)
    sent_id = link.inner_text()
    run = stack.ended_run(stack.run_of(sent_id)["run_id"])
    assert run["function_id"] == "shop-greet-vip" and run["output"] == "hello sent-from-dialog"

    # A name never sent starts from an empty event.
    page.locator("#send-name").fill("shop/never.sent")
    expect(page.locator("#send-template")).to_contain_text("No earlier shop/never.sent event")
    page.locator("#send-close").click()
    expect(dialog).to_have_count(0)
