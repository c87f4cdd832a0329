"""Take the README's screenshot of a bulk replay in progress (docs/screenshot-bulk.png).

    STEPLINE_TEST_REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python -m tests.browser.screenshot_bulk

Starts a Stepline (API, worker, beat) serving tests.browser.functions against that Redis
database, which it FLUSHES first; makes a few hundred orders fail, "deploys the fix", starts a
bulk replay of the failed ones from the bulk page and photographs it part-way (the worker is
paused with SIGSTOP once the operation has made some progress, and resumed after).
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path

import redis
from playwright.sync_api import sync_playwright

from tests.browser.stack import CHROMIUM_ARGS, Stack, chromium_path
from tests.conftest import REDIS_URL
from tests.integration.cluster import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot-bulk.png")
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or set STEPLINE_CHROMIUM)")
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(REDIS_URL, Path(tmp))
        try:
            stack.start_api()
            stack.start_worker()
            stack.start_beat()
            shoot(stack, client, executable, args)
        finally:
            stack.stop()


def shoot(
    stack: Stack, client: redis.Redis[bytes], executable: str, args: argparse.Namespace
) -> None:
    events = [
        stack.send("shop/order.placed", {"order_id": f"o-{2000 + i}"}) for i in range(args.orders)
    ]
    for event in events:
        stack.ended_run(stack.run_of(event, timeout=120)["run_id"], timeout=120)
    for i in range(args.orders):
        client.set(f"ui:card-ok:o-{2000 + i}", "1")  # the fix is deployed
    worker = next(p for p in stack.procs if "celery" in p.args and "worker" in p.args)  # type: ignore[operator]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.goto(f"{stack.url}/#/bulk")
        page.locator("#bulk-action").select_option("replay")
        page.locator("#bulk-function").select_option("shop-charge-order")
        page.locator("#bulk-status").select_option("Failed")
        page.locator("#bulk-filter").fill('error.message.contains("card declined")')
        page.locator("#bulk-count").click()
        page.locator("#bulk-matched").wait_for()
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#bulk-start").click()
        deadline = time.monotonic() + 60
        paused = False
        try:
            while time.monotonic() < deadline:
                ops = stack.get("/v1/bulk")["data"]
                if ops and ops[0]["matched"] >= args.orders // 3:
                    os.killpg(worker.pid, signal.SIGSTOP)
                    paused = True
                    break
                time.sleep(0.02)
            page.wait_for_timeout(2500)  # the page polls every second
            page.mouse.move(0, 0)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            print(f"saved {args.out} ({stack.get('/v1/bulk')['data'][0]})")
        finally:
            if paused:
                os.killpg(worker.pid, signal.SIGCONT)
        browser.close()


if __name__ == "__main__":
    main()
