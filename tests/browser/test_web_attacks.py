"""A real browser, a real Stepline in dev mode, and the two attacks a web page can mount on it.

- CSRF: a page on another origin sends "simple" requests (no CORS preflight: `text/plain`
  bodies, `no-cors` fetches, form posts) to register its own app URL and to send events.
- DNS rebinding: a page's own host name resolves to 127.0.0.1, so its same-origin requests
  reach Stepline and their answers are readable (Chromium's `--host-resolver-rules` plays the
  attacker's DNS).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.stack import CHROMIUM_ARGS, Stack, chromium_path
from tests.sdk_apps.captures import TS_REGISTER
from tests.sdk_apps.harness import CannedServer, Reply

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

REGISTRATION = {**TS_REGISTER["body"], "appName": "evil", "url": "http://127.0.0.1:9/steal"}
"""A real SDK registration, pointed at the attacker's URL."""


@pytest.fixture(scope="module")
def api(ui_redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if chromium_path() is None:
        pytest.skip("no Chromium: apt-get install chromium (or set STEPLINE_CHROMIUM)")
    made = Stack(ui_redis_url, tmp_path_factory.mktemp("attacks"))
    try:
        made.start_api()
        yield made
    finally:
        made.stop()


@pytest.fixture
def attacker() -> Iterator[CannedServer]:
    server = CannedServer()
    yield server
    server.close()


def attack_page(target: str) -> str:
    """Every request a page can send cross-origin without a preflight, then a done marker."""
    body = json.dumps(json.dumps(REGISTRATION))
    event = json.dumps(json.dumps({"name": "evil/event", "data": {}}))
    return f"""<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="{target}/e/dev" target="sink">
  <input name='{{"name": "evil/form", "x": "' value='"}}'>
</form>
<iframe name="sink"></iframe>
<script>
(async () => {{
  const shots = [
    fetch("{target}/fn/register", {{method: "POST", mode: "no-cors", body: {body}}}),
    fetch("{target}/fn/register", {{method: "POST", mode: "no-cors", body: {body},
      headers: {{"Content-Type": "text/plain"}}}}),
    fetch("{target}/e/dev", {{method: "POST", mode: "no-cors", body: {event}}}),
    fetch("{target}/e/dev", {{method: "POST", mode: "no-cors", body: new Blob([{event}])}}),
  ];
  await Promise.allSettled(shots);
  document.querySelector("iframe").onload = () => {{ document.body.dataset.done = "yes"; }};
  document.getElementById("f").submit();
}})();
</script></body></html>"""


def test_a_cross_origin_page_cannot_register_an_app_or_send_events(
    browser: Any, api: Stack, attacker: CannedServer
) -> None:
    attacker.queue(Reply(200, {"content-type": "text/html"}, attack_page(api.url)))
    answered: list[tuple[str, str, int]] = []
    context = browser.new_context()
    try:
        page = context.new_page()
        page.on(
            "response",
            lambda r: (
                answered.append((r.request.method, r.url, r.status))
                if r.url.startswith(api.url)
                else None
            ),
        )
        # Another origin: the attacker's page is served from localhost:<its port>.
        page.goto(attacker.url.replace("127.0.0.1", "localhost") + "/")
        page.wait_for_selector("body[data-done=yes]", state="attached")
        sink = page.frame(name="sink")
        assert sink is not None and "cross-origin request refused" in sink.content()
    finally:
        context.close()
    # Every shot reached Stepline (the browser sent them all) and was refused.
    assert len(answered) == 5, answered
    assert {status for _, _, status in answered} == {403}, answered
    apps = api.get("/v1/apps")["data"]
    assert [app["id"] for app in apps if app["id"] == "evil"] == []
    names = [event["name"] for event in api.get("/v1/events", limit=100)["data"]]
    assert not [name for name in names if name.startswith("evil/")], names


def test_a_rebinding_page_cannot_read_run_data(browser: Any, api: Stack) -> None:
    api.send("app/hello")  # something to read
    args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"]
    rebinding = browser.browser_type.launch(executable_path=chromium_path(), args=args)
    try:
        page = rebinding.new_page()
        direct = page.goto(f"http://rebind.test:{api.port}/v1/events")
        assert direct is not None and direct.status == 403
        assert "DNS rebinding" in direct.json()["error"]
        # The page's own scripts, same-origin as far as the browser knows:
        assert page.evaluate("fetch('/v1/runs').then(r => r.status)") == 403
        # The same browser reaching Stepline by IP address is served (the control).
        control = page.goto(f"http://127.0.0.1:{api.port}/v1/events")
        assert control is not None and control.status == 200
        assert control.json()["data"], "the event sent above is there to read"
    finally:
        rebinding.close()
