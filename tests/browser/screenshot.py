"""Take the README's screenshots: a run timeline (docs/screenshot-timeline.png) and the
Workers page (docs/screenshot-workers.png).

    STEPLINE_TEST_REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python -m tests.browser.screenshot

Starts a Stepline (API, worker, beat) serving tests.browser.functions against that Redis
database, which it FLUSHES first, runs a few functions, and photographs the UI with the
system's Chromium. `--all DIR` also saves the other pages (for review).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import redis
from playwright.sync_api import sync_playwright

from tests.browser.stack import CHROMIUM_ARGS, Stack, chromium_path
from tests.conftest import REDIS_URL
from tests.integration.cluster import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot-timeline.png")
    parser.add_argument(
        "--workers-out", type=Path, default=ROOT / "docs" / "screenshot-workers.png"
    )
    parser.add_argument("--all", type=Path, help="also save every page into this directory")
    parser.add_argument("--scheme", choices=["dark", "light"], default="dark")
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or set STEPLINE_CHROMIUM)")

    redis.Redis.from_url(REDIS_URL).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(REDIS_URL, Path(tmp))
        try:
            stack.start_api()
            stack.start_worker()
            stack.start_beat()
            shoot(stack, executable, args)
        finally:
            stack.stop()


def shoot(stack: Stack, executable: str, args: argparse.Namespace) -> None:
    # Some history for the lists, then the run the picture is about.
    stack.send("shop/trial.started", {"user": "lin"})
    order = stack.run_of(stack.send("shop/order.placed", {"order_id": "o-1042"}))
    stack.ended_run(order["run_id"])
    stack.send("shop/nobody.listens", {"x": 1})
    for email in ("lin@example.com", "kim@example.com"):
        stack.send("shop/user.signed_up", {"email": email, "pause": 0.05})
    event = stack.send("shop/user.signed_up", {"email": "ada@example.com", "pause": 0.18})
    run = stack.ended_run(stack.run_of(event)["run_id"])

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1280, "height": 800},
            device_scale_factor=1,
            color_scheme=args.scheme,
        )
        page = context.new_page()
        page.goto(f"{stack.url}/#/runs/{run['run_id']}")
        step = page.locator('details.step[data-step-name="score-lead"]')
        step.locator("summary").click()
        step.locator(".log-line").wait_for()
        page.locator("#result .json").wait_for()
        page.mouse.move(0, 0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        print(f"saved {args.out}")
        shoot_workers(stack, page, args.workers_out)
        if args.all:
            args.all.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.all / "run.png"), full_page=True)
            page.goto(f"{stack.url}/#/runs/{order['run_id']}")
            page.locator("#result .error-box").wait_for()
            page.screenshot(path=str(args.all / "failed-run.png"), full_page=True)
            for name in ("runs", "events", "functions"):
                page.goto(f"{stack.url}/#/{name}")
                page.wait_for_timeout(2500)
                page.screenshot(path=str(args.all / f"{name}.png"), full_page=True)
            page.goto(f"{stack.url}/#/functions")
            page.locator('[data-invoke="shop-onboard-user"]').click()
            page.wait_for_timeout(300)
            page.screenshot(path=str(args.all / "invoke.png"), full_page=True)
            print(f"saved the pages in {args.all}")
        browser.close()


def shoot_workers(stack: Stack, page: Any, out: Path) -> None:
    """The Workers page while the worker runs a job and another run waits for its
    concurrency slot (then both are let go)."""
    client = redis.Redis.from_url(REDIS_URL)
    first = stack.run_of(stack.send("shop/account.sync", {"account": "acme", "tag": "shot1"}))
    stack.wait_for(lambda: stack.run(first["run_id"])["status"] == "Running", 30, "a busy worker")
    stack.run_of(stack.send("shop/account.sync", {"account": "acme", "tag": "shot2"}))
    page.goto(f"{stack.url}/#/workers")
    page.locator("tr.worker-row td.jobs a, tr.worker-row td.jobs span.mono").first.wait_for(
        timeout=20_000
    )
    page.wait_for_timeout(500)
    page.mouse.move(0, 0)
    page.screenshot(path=str(out))
    print(f"saved {out}")
    client.set("ui:go:shot1", "1")
    client.set("ui:go:shot2", "1")
    client.close()


if __name__ == "__main__":
    main()
