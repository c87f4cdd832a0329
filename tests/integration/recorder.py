"""What the call-counting tests (test_start_calls.py, test_suspend_calls.py,
test_wake_calls.py) share: a stand-in for Celery that keeps what would have been sent, an
engine that sends through it, and a record of the Lua scripts the process runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

from app.config import Settings
from app.engine import Engine
from app.functions import load_functions
from app.state.lua_files import Arg, LuaScripts

FUNCTIONS = "tests.integration.start_functions"

T = TypeVar("T")


class Recorder:
    """Stands in for Celery: keeps each message's arguments (a job id, a start job's function,
    its limits)."""

    def __init__(self) -> None:
        self.messages: list[list[str]] = []

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.messages.append([str(arg) for arg in args])

    @property
    def sent(self) -> list[str]:
        """The job ids sent."""
        return [args[0] for args in self.messages]

    def drain(self, work: Callable[..., str]) -> list[str]:
        """Run each kept message through `work` (a worker's task), and those they send in
        turn, until none is left; their answers, in order."""
        answers: list[str] = []
        while self.messages:
            messages, self.messages = self.messages, []
            answers += [work(*args) for args in messages]
        return answers


def recorded_engine(redis_url: str) -> Iterator[tuple[Engine, Recorder]]:
    """An engine running tests/integration/start_functions.py in this process, sending
    through a `Recorder`, one process in the pool (a task keeps its whole work list: no share
    to send); closed after."""
    recorder = Recorder()
    settings = Settings.from_env().replace(redis_url=redis_url, functions=[], worker_concurrency=1)
    e = Engine.create(settings, sender=recorder, local=load_functions([FUNCTIONS]), inline=True)
    yield e, recorder
    e.store.close()


def record_scripts(
    monkeypatch: pytest.MonkeyPatch,
    what: Callable[[str, Sequence[Arg], Any], T],
) -> list[T]:
    """Every Lua script this process runs from now on, in order, as `what(name, ARGV,
    pipeline or None)` makes each."""
    called: list[T] = []
    run = LuaScripts.run

    def counted(
        self: LuaScripts, name: str, keys: Sequence[str], args: Sequence[Arg], client: Any = None
    ) -> Any:
        called.append(what(name, args, client))
        return run(self, name, keys, args, client)

    monkeypatch.setattr(LuaScripts, "run", counted)
    return called
