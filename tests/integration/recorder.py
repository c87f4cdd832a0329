"""A stand-in for Celery shared by the call-counting tests (test_start_calls.py,
test_suspend_calls.py): it keeps what would have been sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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
