"""App registration ("sync"): SDK apps tell Stepline which functions they serve.

    sync_app(url) ──PUT──► SDK app ──POST /fn/register──► parse_registration ──► store.save_app
    (or the app's own PUT, sent by anyone, e.g. `curl -X PUT <app url>`)

`parse_registration` turns the payload both official SDKs send (PROTOCOL.md 3.2, 8 "Sync")
into `FunctionConfig`s run by the HTTP driver, refusing invalid functions with a message naming
the function and the field; `check_app_urls` refuses URLs that lead where Stepline may not
connect (`app.netpolicy`). `sync_app` asks an app to register (what the Inngest dev server's
"sync" does), connecting only to addresses the policy checked; `sync_apps_forever` keeps asking
apps that are down until they answer.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from croniter import croniter

from app import strictjson
from app.config import Settings
from app.drivers import signing
from app.drivers.http_reply import excerpt
from app.durations import parse_duration_ms
from app.errors import BadRequest, InvalidFunction, SteplineError
from app.expressions import compile_expression
from app.flow.options import check_options
from app.models import JSON, FunctionConfig, Trigger
from app.netpolicy import AddressPolicy, AddressRefused, AddressUnresolved

log = logging.getLogger("stepline.sync")

DEFAULT_RETRIES = 4
"""Retries when an app registers none (Inngest's current default: 5 attempts)."""
MAX_RETRIES = 30
SYNC_TIMEOUT_S = 30.0

FLOW_CONTROL_KEYS = (
    "concurrency",
    "rateLimit",
    "throttle",
    "debounce",
    "batchEvents",
    "priority",
    "idempotency",
    "cancel",
    "timeouts",
    "singleton",
)
"""Function options kept in `FunctionConfig.options`, under these (SDK) names."""


class SyncError(SteplineError):
    """An app could not be synced: unreachable, or it (or we) refused the registration."""

    code = "sync_failed"
    status = 502


def _fold(key: str) -> str:
    """Key spellings differ by SDK (`appname`, `appName`, `deploy_type`): compare folded."""
    return key.replace("_", "").lower()


def _folded(obj: Mapping[str, JSON]) -> dict[str, JSON]:
    return {_fold(str(key)): value for key, value in obj.items()}


# --- parsing a registration ----------------------------------------------------------------


@dataclass
class Registration:
    """A parsed `/fn/register` payload: the valid functions, and the refused ones' errors."""

    app_id: str
    url: str
    functions: list[FunctionConfig]
    errors: list[InvalidFunction]
    """One per invalid function, naming the function and the field."""


def parse_registration(
    body: Mapping[str, JSON], *, headers: Mapping[str, str]
) -> tuple[str, str, list[FunctionConfig]]:
    """(app id, app URL, functions) from a `/fn/register` payload; unknown keys are ignored.

    `headers` are the request's; nothing in them changes the result today (the SDK, framework
    and deploy id headers are informational). Raises `BadRequest` for a malformed payload and
    `InvalidFunction` (naming function and field) for the first invalid function.
    """
    registration = read_registration(body, headers=headers)
    if registration.errors:
        raise registration.errors[0]
    return registration.app_id, registration.url, registration.functions


Transport = Literal["http", "connect"]
"""How the app serves its functions: over HTTP (`/fn/register`), or over a Connect worker's
WebSocket (its `WORKER_CONNECT` message: runtime `ws`, URLs `wss://connect?fnId=...`)."""
CONNECT_APP_URL = "wss://connect"


def read_registration(
    body: Mapping[str, JSON], *, headers: Mapping[str, str], transport: Transport = "http"
) -> Registration:
    """Like `parse_registration`, but an invalid function does not refuse the others: it is
    left out and its error listed. Raises `BadRequest` only for a malformed payload."""
    del headers  # informational only; kept so callers hand over the whole request
    is_url = _is_ws_url if transport == "connect" else _is_http_url
    top = _folded(body)
    app_id = top.get("appname")
    if not isinstance(app_id, str) or not app_id.strip():
        raise BadRequest("registration needs a non-empty appName", field="appName")
    deploy_type = top.get("deploytype", "ping")
    if deploy_type not in (None, "ping"):
        raise BadRequest(
            f"deployType {deploy_type!r} is not supported: serve the app over HTTP ('ping')",
            field="deployType",
        )
    url = top.get("url")
    if not isinstance(url, str) or not is_url(url):
        raise BadRequest(f"registration needs the app's http(s) url, got {url!r}", field="url")
    functions = top.get("functions")
    if functions is None:
        functions = []
    if not isinstance(functions, list):
        raise BadRequest("functions must be a list", field="functions")
    configs: list[FunctionConfig] = []
    errors: list[InvalidFunction] = []
    seen: set[str] = set()
    for index, raw in enumerate(functions):
        try:
            config = _FunctionParser(app_id.strip(), url, index, raw, transport).parse()
        except InvalidFunction as exc:
            errors.append(exc)
            continue
        if config.id in seen:
            errors.append(
                InvalidFunction(
                    f"function {config.id!r} is registered twice", field=f"functions[{index}].id"
                )
            )
            continue
        seen.add(config.id)
        configs.append(config)
    return Registration(app_id.strip(), url, configs, errors)


def check_app_urls(registration: Registration, policy: AddressPolicy, *, strict: bool) -> None:
    """Refuse a registration whose app URL or function URLs lead to addresses `policy` refuses
    (raises `AddressRefused` naming the field). `strict` (production mode): a host name that
    does not resolve is refused too; otherwise it is left to the check made at each connection.
    """
    urls = [("url", registration.url)]
    urls += [(f"functions[{config.id}].url", config.url or "") for config in registration.functions]
    checked: set[tuple[str | None, int | None]] = set()
    for field, url in urls:
        parts = urllib.parse.urlsplit(url)
        place = (parts.hostname, parts.port)
        if parts.scheme not in ("http", "https") or place in checked:
            continue  # only http(s) URLs are ever dialled (the parser refuses others)
        checked.add(place)
        try:
            policy.check_url(url)
        except AddressRefused as exc:
            raise AddressRefused(f"{field} {url!r}: {exc.message}", field=field) from exc
        except AddressUnresolved as exc:
            if strict:
                raise AddressRefused(f"{field} {url!r}: {exc.message}", field=field) from exc


def _is_http_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_ws_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("ws", "wss") and bool(parts.netloc)


def cron_is_valid(expr: str) -> bool:
    """A cron spec as Inngest accepts it: 5 or 6 fields or a macro, optional `TZ=<zone> `."""
    spec = expr.strip()
    head, _, rest = spec.partition(" ")
    if head.startswith(("TZ=", "CRON_TZ=")):
        try:
            ZoneInfo(head.split("=", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            return False
        spec = rest.strip()
    return bool(spec) and bool(croniter.is_valid(spec))


class _FunctionParser:
    """Validates one SDK function definition; every error names the function and the field."""

    def __init__(
        self, app_id: str, app_url: str, index: int, raw: JSON, transport: Transport = "http"
    ) -> None:
        self.app_id = app_id
        self.app_url = app_url
        self.index = index
        self.raw = raw
        self.fn_id = f"#{index}"
        self.transport = transport

    def fail(self, path: str, problem: str) -> InvalidFunction:
        return InvalidFunction(
            f"function {self.fn_id!r}: {path}: {problem}", field=f"functions[{self.index}].{path}"
        )

    def parse(self) -> FunctionConfig:
        if not isinstance(self.raw, dict):
            raise self.fail("", "must be an object")
        fn = _folded(self.raw)
        fn_id = fn.get("id")
        if not isinstance(fn_id, str) or not fn_id.strip():
            raise self.fail("id", "must be a non-empty string")
        self.fn_id = fn_id
        name = fn.get("name")
        if name is not None and not isinstance(name, str):
            raise self.fail("name", "must be a string")
        options: dict[str, JSON] = {}
        for key in FLOW_CONTROL_KEYS:
            value = fn.get(_fold(key))
            if value is None or value == [] or value == {}:
                continue
            options[key] = self.option(key, value)
        for path, problem in check_options(options):  # ranges and limits (app/flow/admission)
            raise self.fail(path, problem)
        return FunctionConfig(
            id=fn_id,
            name=name or fn_id,
            app_id=self.app_id,
            triggers=self.triggers(fn.get("triggers")),
            retries=self.retries(fn),
            driver=self.transport,
            url=self.runtime_url(fn),
            options=options,
        )

    # --- pieces ---

    def triggers(self, raw: JSON) -> list[Trigger]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("triggers", "needs at least one trigger ({event} or {cron})")
        out: list[Trigger] = []
        for i, item in enumerate(raw):
            path = f"triggers[{i}]"
            if not isinstance(item, dict):
                raise self.fail(path, "must be an object with `event` or `cron`")
            event, cron, expression = item.get("event"), item.get("cron"), item.get("expression")
            if (event is None) == (cron is None):
                raise self.fail(path, "needs exactly one of `event` and `cron`")
            if cron is not None:
                if not isinstance(cron, str) or not cron_is_valid(cron):
                    raise self.fail(f"{path}.cron", f"invalid cron expression {cron!r}")
                if item.get("jitter") is not None:
                    self.duration(f"{path}.jitter", item["jitter"])
                jitter = item.get("jitter")
                out.append(Trigger(cron=cron.strip(), jitter=jitter or None))
                continue
            if not isinstance(event, str) or not event.strip():
                raise self.fail(f"{path}.event", "must be a non-empty event name")
            if expression is not None:
                self.expression(f"{path}.expression", expression)
            out.append(Trigger(event=event, expression=expression or None))
        return out

    def retries(self, fn: dict[str, JSON]) -> int:
        path = "steps.step.retries.attempts"
        attempts = self.dig(fn, "steps", "step", "retries", "attempts")
        if attempts is None:
            attempts, path = fn.get("retries"), "retries"
        if attempts is None:
            return DEFAULT_RETRIES
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise self.fail(path, f"must be an integer, got {attempts!r}")
        if not 0 <= attempts <= MAX_RETRIES:
            raise self.fail(path, f"must be between 0 and {MAX_RETRIES}, got {attempts}")
        return attempts

    def runtime_url(self, fn: dict[str, JSON]) -> str:
        runtime = self.dig(fn, "steps", "step", "runtime")
        if runtime is None:
            query = urllib.parse.urlencode({"fnId": self.fn_id, "stepId": "step"})
            joiner = "&" if "?" in self.app_url else "?"
            return f"{self.app_url}{joiner}{query}"
        if not isinstance(runtime, dict):
            raise self.fail("steps.step.runtime", "must be an object")
        connect = self.transport == "connect"
        # A Connect worker's runtimes are "ws" (the Python SDK 0.5.19 still says "http" for
        # on_failure handlers, with the same wss:// URL).
        accepted = ("ws", "http") if connect else ("http",)
        kind = runtime.get("type", accepted[0])
        url = runtime.get("url")
        if kind not in accepted:
            how = "a Connect worker" if connect else "an app synced over HTTP"
            raise self.fail(
                "steps.step.runtime.type",
                f"runtime {kind!r} is not supported for {how} (expected {accepted[0]!r})",
            )
        if not isinstance(url, str) or not (_is_ws_url if connect else _is_http_url)(url):
            scheme = "ws(s)" if connect else "http(s)"
            raise self.fail("steps.step.runtime.url", f"must be a {scheme} URL, got {url!r}")
        return url

    def dig(self, obj: JSON, *keys: str) -> JSON:
        for key in keys:
            if not isinstance(obj, dict):
                return None
            obj = _folded(obj).get(_fold(key))
        return obj

    def expression(self, path: str, value: JSON) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "must be a non-empty expression")
        try:
            compile_expression(value)
        except BadRequest as exc:
            raise self.fail(path, exc.message) from exc
        return value

    def duration(self, path: str, value: JSON) -> None:
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise self.fail(path, f"must be a duration such as '30s' or '1h', got {value!r}")
        try:
            parse_duration_ms(value)
        except BadRequest as exc:
            raise self.fail(path, exc.message) from exc

    def integer(self, path: str, value: JSON, minimum: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, f"must be an integer >= {minimum}, got {value!r}")

    def obj(self, path: str, value: JSON) -> dict[str, JSON]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be an object")
        return value

    def check(self, path: str, value: dict[str, JSON], spec: dict[str, str]) -> None:
        """Check the fields of `value` named in `spec` ({field: kind}); kinds ending in `!`
        are required: "expr", "duration", "int0"/"int1" (minimum 0/1), "str"."""
        for name, kind in spec.items():
            required = kind.endswith("!")
            kind = kind.rstrip("!")
            item = value.get(name)
            if item is None:
                if required:
                    raise self.fail(f"{path}.{name}", "is required")
                continue
            where = f"{path}.{name}"
            if kind == "expr":
                self.expression(where, item)
            elif kind == "duration":
                self.duration(where, item)
            elif kind in ("int0", "int1"):
                self.integer(where, item, int(kind[-1]))
            elif not isinstance(item, str) or not item:
                raise self.fail(where, "must be a non-empty string")

    def option(self, key: str, value: JSON) -> JSON:
        if key == "concurrency":
            return self.concurrency(value)
        if key == "idempotency":
            return self.expression(key, value)
        if key == "cancel":
            if not isinstance(value, list):
                raise self.fail(key, "must be a list")
            for i, item in enumerate(value):
                where = f"cancel[{i}]"
                self.check(
                    where,
                    self.obj(where, item),
                    {"event": "str!", "if": "expr", "timeout": "duration"},
                )
            return value
        specs: dict[str, dict[str, str]] = {
            "rateLimit": {"limit": "int1!", "period": "duration!", "key": "expr"},
            "throttle": {"limit": "int1!", "period": "duration!", "burst": "int1", "key": "expr"},
            "debounce": {"period": "duration!", "key": "expr", "timeout": "duration"},
            "batchEvents": {
                "maxSize": "int1!",
                "timeout": "duration!",
                "key": "expr",
                "if": "expr",
            },
            "priority": {"run": "expr"},
            "timeouts": {"start": "duration", "finish": "duration"},
            "singleton": {"key": "expr", "mode": "str"},
        }
        self.check(key, self.obj(key, value), specs[key])
        if key == "singleton" and self.obj(key, value).get("mode") not in (None, "skip", "cancel"):
            raise self.fail("singleton.mode", "must be 'skip' or 'cancel'")
        return value

    def concurrency(self, value: JSON) -> list[JSON]:
        """Always a list of {limit, key?, scope?}: SDKs send an int, one object or a list."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = [{"limit": value}]
        elif isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise self.fail("concurrency", "must be a number, an object or a list")
        for i, item in enumerate(value):
            where = f"concurrency[{i}]"
            limit = self.obj(where, item)
            self.check(where, limit, {"limit": "int0!", "key": "expr"})
            if limit.get("scope") not in (None, "fn", "env", "account"):
                raise self.fail(f"{where}.scope", "must be 'fn', 'env' or 'account'")
        return value


# --- asking apps to sync ---------------------------------------------------------------------


def sync_app(url: str, settings: Settings, *, timeout_s: float = SYNC_TIMEOUT_S) -> dict[str, JSON]:
    """Ask the app served at `url` to register: PUT it; the SDK POSTs `/fn/register` back to
    the Stepline it is configured with (`INNGEST_DEV` / `INNGEST_BASE_URL`) and relays our
    answer. Returns that answer; raises `AddressRefused` (400, nothing connected) if the URL
    leads where Stepline may not connect, `SyncError` if the app is down or the sync failed.
    """
    body = signing.canonical_json({"url": url})
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "stepline",
        "X-Inngest-Server-Kind": signing.server_kind(settings.signing_key),
    }
    if settings.signing_key:
        headers[signing.SIGNATURE_HEADER] = signing.sign(
            body, settings.signing_key, int(time.time())
        )
    policy = AddressPolicy.for_apps(settings)
    try:
        with httpx.Client(transport=policy.transport(), trust_env=False) as client:
            response = client.put(url, content=body, headers=headers, timeout=timeout_s)
    except (httpx.HTTPError, AddressUnresolved) as exc:
        raise SyncError(f"app at {url} is unreachable: {exc}") from exc
    try:
        reply = strictjson.loads(response.content)
    except ValueError:  # not JSON, or not strict JSON (NaN, a lone surrogate, too deep)
        reply = None
    if not isinstance(reply, dict):
        raise SyncError(
            f"app at {url} answered the sync with HTTP {response.status_code} and no JSON "
            f"object (is it an Inngest SDK serve URL?): {excerpt(response.content)}"
        )
    # The Python SDK relays a refused registration with status 200: look at the body too.
    if response.status_code >= 300 or reply.get("error") or reply.get("ok") is False:
        detail = reply.get("error") or reply.get("message") or reply
        raise SyncError(
            f"sync of {url} failed (HTTP {response.status_code}): "
            f"{excerpt(str(detail).encode(), limit=500)}"
        )
    return reply


def sync_apps_forever(
    urls: Iterable[str],
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    retry_s: float = 1.0,
    max_retry_s: float = 30.0,
    resync_s: float | None = None,
    sync: Callable[[str, Settings], dict[str, JSON]] = sync_app,
) -> None:
    """Sync every app in `urls`, retrying (1 s doubling to 30 s) those that are down.

    Returns once all are synced, unless `resync_s` is set: then each app is synced again every
    `resync_s` seconds (picks up code changes and restarted apps) until `stop` is set.
    Used by `python -m app dev -u <url>` and `STEPLINE_APP_URLS`.
    """
    stop = stop or threading.Event()
    due = {url: 0.0 for url in dict.fromkeys(urls)}
    delay = dict.fromkeys(due, retry_s)
    failing: set[str] = set()
    while due and not stop.is_set():
        now = time.monotonic()
        for url, at in list(due.items()):
            if at > now or stop.is_set():
                continue
            try:
                reply = sync(url, settings)
            except SteplineError as exc:
                level = logging.DEBUG if url in failing else logging.WARNING
                log.log(level, "sync failed url=%s retry_in=%.1fs: %s", url, delay[url], exc)
                failing.add(url)
                due[url] = time.monotonic() + delay[url]
                delay[url] = min(delay[url] * 2, max_retry_s)
                continue
            log.info("synced url=%s modified=%s", url, reply.get("modified"))
            failing.discard(url)
            delay[url] = retry_s
            if resync_s is None:
                del due[url]
            else:
                due[url] = time.monotonic() + resync_s
        if due:
            stop.wait(max(0.0, min(due.values()) - time.monotonic()))


def start_sync_thread(
    urls: Iterable[str], settings: Settings, **options: float | None
) -> tuple[threading.Thread, threading.Event]:
    """Run `sync_apps_forever` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=sync_apps_forever,
        args=(list(urls), settings),
        kwargs={"stop": stop, **options},
        name="stepline-sync",
        daemon=True,
    )
    thread.start()
    return thread, stop
