"""`Function`: a handler with its triggers and options, checked when it is defined.

`config()` gives the `FunctionConfig`s the engine registers: the function itself and, with
`on_failure`, its failure handler `<slug>-failure`, triggered by `inngest/function.failed`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import ValidationError

from app.durations import parse_duration_ms
from app.errors import BadRequest, InvalidFunction
from app.flow.options import check_options
from app.models import JSON, FunctionConfig, Trigger
from app.sdk.options import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
    _Option,
    duration_ms,
    duration_str,
)
from app.sdk.serializer import NO_TYPE
from app.sync import cron_is_valid

if TYPE_CHECKING:
    from app.sdk.client import Inngest

T = TypeVar("T")
M = TypeVar("M", bound=_Option)

Handler = Callable[[Any], Any]
"""A sync handler (ContextSync -> output) or an async one (Context -> awaitable output)."""

MAX_RETRIES = 20
FAILED_EVENT = "inngest/function.failed"


class _Checker:
    """Validation helpers whose errors name the function and the field."""

    def __init__(self, slug: str) -> None:
        self.slug = slug

    def fail(self, field: str, problem: str) -> InvalidFunction:
        return InvalidFunction(f"function '{self.slug}': {field} {problem}", field=field)

    def model(self, field: str, value: object, model: type[M]) -> M:
        if isinstance(value, dict):
            try:
                return model.model_validate(value)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise self.fail(f"{field}.{where}" if where else field, first["msg"]) from None
        if not isinstance(value, model):
            raise self.fail(field, f"must be an inngest.{model.__name__}, got {value!r}")
        return value

    def option(self, field: str, value: object, model: type[_Option]) -> dict[str, JSON]:
        """The option as registered: aliased keys, no nulls, durations as strings."""
        parsed = self.model(field, value, model)
        out: dict[str, JSON] = parsed.model_dump(by_alias=True, exclude_none=True)
        for name in parsed.durations:
            raw = getattr(parsed, name)
            if raw is None:
                continue
            ms = duration_ms(raw)
            if ms < 1000 or ms % 1000:
                raise self.fail(
                    f"{field}.{name}", f"must be a whole number of seconds, at least 1s; got {ms}ms"
                )
            out[name] = duration_str(ms)
        for name in ("limit", "max_size", "burst"):
            number = getattr(parsed, name, None)
            if number is not None and number < 1:
                raise self.fail(f"{field}.{name}", f"must be at least 1, got {number}")
        return out

    def options(self, field: str, value: object, model: type[_Option]) -> list[JSON]:
        items = value if isinstance(value, list) else [value]
        return [self.option(f"{field}[{i}]", item, model) for i, item in enumerate(items)]

    def trigger(self, field: str, value: object) -> Trigger:
        if isinstance(value, dict):
            model: type[_Option] = TriggerCron if "cron" in value else TriggerEvent
            value = self.model(field, value, model)
        if isinstance(value, TriggerEvent):
            if not value.event:
                raise self.fail(f"{field}.event", "must not be empty")
            return Trigger(event=value.event, expression=value.expression)
        if isinstance(value, TriggerCron):
            if not cron_is_valid(value.cron):  # 5 or 6 fields or a macro, `TZ=<zone> ` prefix
                raise self.fail(f"{field}.cron", f"is not a valid cron expression: {value.cron!r}")
            if value.jitter is not None:
                try:
                    parse_duration_ms(value.jitter)
                except BadRequest as exc:
                    raise self.fail(f"{field}.jitter", exc.message) from exc
            return Trigger(cron=value.cron, jitter=value.jitter)
        raise self.fail(field, f"must be an inngest.TriggerEvent or TriggerCron, got {value!r}")


_SDK_NAMES = {"rateLimit": "rate_limit", "batchEvents": "batch_events", "maxSize": "max_size"}


def _sdk_path(path: str) -> str:
    """An option path as the SDK's arguments name it: `batchEvents.maxSize` -> `batch_events.
    max_size`, `cancel[0].if` -> `cancel[0].if_exp`."""
    parts = [_SDK_NAMES.get(part, part) for part in path.split(".")]
    return ".".join("if_exp" if part == "if" else part for part in parts)


def _serializing(client: Inngest, handler: Handler, output_type: object) -> Handler:
    """`handler` whose return value goes through the client's serializer (`output_type`)."""
    if output_type is NO_TYPE:
        return handler
    if inspect.iscoroutinefunction(handler):

        async def run_async(ctx: Any) -> object:
            return client._serialize(await handler(ctx), output_type)

        return run_async

    def run(ctx: Any) -> object:
        return client._serialize(handler(ctx), output_type)

    return run


class Function(Generic[T]):
    """A function created by `Inngest.create_function`.

    `id` is the local id given as `fn_id`; `slug` (`<app id>-<fn id>`) is the engine's id.
    """

    def __init__(
        self,
        client: Inngest,
        *,
        fn_id: str,
        handler: Handler,
        trigger: object,
        name: str | None = None,
        retries: int | None = None,
        on_failure: Handler | None = None,
        batch_events: Batch | None = None,
        cancel: list[Cancel] | Cancel | None = None,
        concurrency: list[Concurrency] | Concurrency | None = None,
        debounce: Debounce | None = None,
        idempotency: str | None = None,
        priority: Priority | None = None,
        rate_limit: RateLimit | None = None,
        throttle: Throttle | None = None,
        timeouts: Timeouts | None = None,
        singleton: Singleton | None = None,
        output_type: object = NO_TYPE,
    ) -> None:
        self._client = client
        self._id = fn_id
        self._handler = handler
        self._on_failure = on_failure
        slug = f"{client.app_id}-{fn_id}"
        chk = _Checker(slug)
        if not isinstance(fn_id, str) or not fn_id or any(c.isspace() for c in fn_id):
            raise chk.fail("fn_id", f"must be a non-empty string without spaces, got {fn_id!r}")
        if not callable(handler):
            raise chk.fail("handler", "must be callable")
        if on_failure is not None and not callable(on_failure):
            raise chk.fail("on_failure", "must be callable")
        valid_int = isinstance(retries, int) and not isinstance(retries, bool)
        if retries is not None and not (valid_int and 0 <= retries <= MAX_RETRIES):
            raise chk.fail(
                "retries", f"must be an integer from 0 to {MAX_RETRIES}, got {retries!r}"
            )
        triggers = trigger if isinstance(trigger, list) else [trigger]
        if not triggers:
            raise chk.fail("trigger", "must name at least one event or cron")
        self._name = name or fn_id

        options: dict[str, JSON] = {}
        if batch_events is not None:
            options["batchEvents"] = chk.option("batch_events", batch_events, Batch)
        if cancel is not None:
            options["cancel"] = chk.options("cancel", cancel, Cancel)
        if concurrency is not None:
            options["concurrency"] = chk.options("concurrency", concurrency, Concurrency)
        if debounce is not None:
            options["debounce"] = chk.option("debounce", debounce, Debounce)
        if idempotency is not None:
            if not isinstance(idempotency, str) or not idempotency:
                raise chk.fail("idempotency", "must be a non-empty expression string")
            options["idempotency"] = idempotency
        if priority is not None:
            options["priority"] = chk.option("priority", priority, Priority)
        if rate_limit is not None:
            options["rateLimit"] = chk.option("rate_limit", rate_limit, RateLimit)
        if throttle is not None:
            options["throttle"] = chk.option("throttle", throttle, Throttle)
        if timeouts is not None:
            options["timeouts"] = chk.option("timeouts", timeouts, Timeouts)
        if singleton is not None:
            options["singleton"] = chk.option("singleton", singleton, Singleton)
        for path, problem in check_options(options):  # ranges, limits, expressions
            raise chk.fail(_sdk_path(path), problem)

        main = FunctionConfig(
            id=slug,
            name=self._name,
            app_id=client.app_id,
            triggers=[chk.trigger(f"trigger[{i}]", t) for i, t in enumerate(triggers)],
            driver="inprocess",
            options=options,
            **({} if retries is None else {"retries": retries}),
        )
        self._configs = [main]
        self._handlers: dict[str, Handler] = {slug: _serializing(client, handler, output_type)}
        if on_failure is not None:
            failure_slug = f"{slug}-failure"
            self._configs.append(
                FunctionConfig(
                    id=failure_slug,
                    name=f"{self._name} (failure)",
                    app_id=client.app_id,
                    triggers=[
                        Trigger(
                            event=FAILED_EVENT,
                            expression=f"event.data.function_id == '{slug}'",
                        )
                    ],
                    retries=0,
                    driver="inprocess",
                )
            )
            self._handlers[failure_slug] = on_failure

    @property
    def id(self) -> str:
        """The local id (`fn_id`)."""
        return self._id

    @property
    def local_id(self) -> str:
        return self._id

    @property
    def slug(self) -> str:
        """The fully qualified id, `<app id>-<fn id>`."""
        return self._configs[0].id

    @property
    def app_id(self) -> str:
        return self._client.app_id

    @property
    def name(self) -> str:
        return self._name

    @property
    def client(self) -> Inngest:
        return self._client

    @property
    def on_failure_fn_id(self) -> str | None:
        """Slug of the failure handler, if there is one."""
        return self._configs[1].id if len(self._configs) > 1 else None

    def config(self) -> list[FunctionConfig]:
        """The function's config, then its failure handler's if it has one."""
        return [c.model_copy(deep=True) for c in self._configs]

    def handlers(self) -> dict[str, Handler]:
        """Handlers by slug: the function's, and its failure handler's."""
        return dict(self._handlers)

    def handler_for(self, slug: str) -> Handler | None:
        return self._handlers.get(slug)

    def __repr__(self) -> str:
        return f"<Function {self.slug}>"
