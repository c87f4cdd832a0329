"""Loading user functions: the modules named in `STEPLINE_FUNCTIONS`, imported once.

Every `app.sdk.Function` found in those modules is registered: functions that are module
globals, and every function of every `app.sdk.Inngest` client that is a module global (so
functions made inside factories count too). A failure handler is registered under its own
slug, `<slug>-failure`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from app.errors import InvalidFunction
from app.models import FunctionConfig
from app.sdk.client import EventSender, Inngest, SignalSender
from app.sdk.function import Function, Handler

EXAMPLE_MODULE = "app.examples.hello"
"""What `python -m app dev` serves when `STEPLINE_FUNCTIONS` is unset."""


class LocalFunction(NamedTuple):
    """One runnable function of this process."""

    config: FunctionConfig
    handler: Handler
    client: Inngest


class FunctionSet(Mapping[str, LocalFunction]):
    """The in-process functions, by slug."""

    def __init__(self, functions: Iterable[Function[Any]] = ()) -> None:
        self._by_slug: dict[str, LocalFunction] = {}
        self._origin: dict[str, Function[Any]] = {}
        for function in functions:
            self.add(function)

    def add(self, function: Function[Any]) -> None:
        """Register `function` (and its failure handler). A slug taken by another function
        raises `InvalidFunction`; adding the same function twice is harmless."""
        handlers = function.handlers()
        for config in function.config():
            other = self._origin.get(config.id)
            if other is function:
                continue
            if other is not None:
                raise InvalidFunction(
                    f"duplicate function id '{config.id}': defined by {_where(other)} and by "
                    f"{_where(function)}",
                    field="fn_id",
                )
            self._origin[config.id] = function
            self._by_slug[config.id] = LocalFunction(config, handlers[config.id], function.client)

    def __getitem__(self, slug: str) -> LocalFunction:
        return self._by_slug[slug]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_slug)

    def __len__(self) -> int:
        return len(self._by_slug)

    def configs(self) -> list[FunctionConfig]:
        return [entry.config for entry in self._by_slug.values()]

    def clients(self) -> list[Inngest]:
        unique: dict[int, Inngest] = {}
        for entry in self._by_slug.values():
            unique.setdefault(id(entry.client), entry.client)
        return list(unique.values())

    def install_sender(self, sender: EventSender) -> None:
        """Make every client send events through `sender` (the engine's ingest)."""
        for client in self.clients():
            client.set_sender(sender)

    def install_signal_sender(self, sender: SignalSender) -> None:
        """Make every client send signals through `sender` (`app.signals.send`)."""
        for client in self.clients():
            client.set_signal_sender(sender)


def _where(function: Function[Any]) -> str:
    handler = function.handlers()[function.slug]
    module = getattr(handler, "__module__", "?")
    qualname = getattr(handler, "__qualname__", repr(handler))
    return f"{module}.{qualname}"


def load_functions(modules: Iterable[str]) -> FunctionSet:
    """Import each module (dotted path) and collect its functions."""
    functions = FunctionSet()
    for path in modules:
        try:
            module = importlib.import_module(path)
        except ImportError as err:
            raise InvalidFunction(
                f"cannot import functions module {path!r}: {err}", field="STEPLINE_FUNCTIONS"
            ) from err
        for value in list(vars(module).values()):
            if isinstance(value, Function):
                functions.add(value)
            elif isinstance(value, Inngest):
                for function in value.functions:
                    functions.add(function)
    return functions
