"""Fixtures for the browser tests: one real Stepline per module and a headless Chromium.

Skipped when Playwright (`pip install playwright`) or a Chromium binary (`apt-get install
chromium`, or STEPLINE_CHROMIUM=/path) is missing; Playwright's own browser downloads are not
used. A failing test leaves a screenshot and the server logs in `test-artifacts/`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.browser.stack import CHROMIUM_ARGS, Stack, chromium_path
from tests.conftest import REDIS_URL, require_redis
from tests.integration.cluster import ROOT

ARTIFACTS = ROOT / "test-artifacts"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives the dev UI in a headless Chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def ui_redis_url() -> Iterator[str]:
    """The test Redis (as `redis_url`, but flushed around the whole module)."""
    client = require_redis()
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def redis_client(ui_redis_url: str) -> Iterator[redis.Redis[bytes]]:
    client = redis.Redis.from_url(ui_redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium: apt-get install chromium (or set STEPLINE_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack(
    browser: Any, ui_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """API + worker + beat serving tests.browser.functions (after `browser`, so a missing
    Chromium skips before any process starts)."""
    made = Stack(ui_redis_url, tmp_path_factory.mktemp("stack"))
    try:
        made.start_api()
        made.start_worker()
        made.start_beat()
        # Their heartbeats: no test starts before the worker and beat are up (and the UI's
        # outage banner is down).
        made.wait_for(lambda: made.get("/health")["ok"], 90, "the worker's and beat's heartbeats")
        yield made
    finally:
        made.stop()


def open_page(browser: Any, request: pytest.FixtureRequest, stacks: list[Stack]) -> Iterator[Any]:
    """A fresh browser context (own localStorage) and page; page errors fail the test; a failed
    test saves a screenshot and the server logs."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    failed = any(
        getattr(request.node, f"rep_{when}", None) is not None
        and getattr(request.node, f"rep_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:  # the page may be gone; the logs still help
            errors.append(f"(no screenshot: {exc})")
        logs = "\n".join(stack.log_tail(20_000) for stack in stacks)
        (ARTIFACTS / f"{name}.log").write_text(f"page errors: {errors}\n{logs}")
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Any, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from open_page(browser, request, [stack])


@pytest.fixture
def page_factory(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Pages for tests that start their own Stack (given as `stacks` for the failure logs)."""
    pages: list[Iterator[Any]] = []
    stacks: list[Stack] = []

    def make(stack: Stack) -> Any:
        stacks.append(stack)
        gen = open_page(browser, request, stacks)
        pages.append(gen)
        return next(gen)

    yield make
    for gen in pages:
        for _ in gen:
            pass
