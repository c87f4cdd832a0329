"""Group commit: concurrent requests of one web process share one store call.

    group = GroupCommit(commit, max_weight=1000)
    result = group.submit(item, weight)      # from any request thread

Each `submit` waits its turn; whichever request finds no commit under way becomes the
leader: it takes every item waiting at that moment (up to `max_weight` in total, at least
one) and calls `commit(items)` once, in its own thread, then hands each waiting request its
result, or the exception `commit` raised. Requests that arrive meanwhile form the next group.
A lone request commits at once (no timer, no added latency); under load a group costs one
script call and one queue message for the events of several requests (app.api.events).

`commit` answers `Committed(results, then)`: `then` (if any) is work that needs no
exclusivity, such as sending the queue message of what was just stored. The leader runs it
after the group is answered and the next group may commit; its failure is the leader's alone.

The items of a group are committed in the order they were submitted, and a request gets its
answer only after the call that stored its items returned, so an answer still means stored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Committed(Generic[Result]):
    results: Sequence[Result]
    """One per item, in order."""
    then: Callable[[], None] | None = None
    """Run by the leader once the group is answered (outside the group's turn)."""


class _Slot(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result", "weight")

    def __init__(self, item: Item, weight: int) -> None:
        self.item = item
        self.weight = weight
        self.done = False
        self.result: Result | None = None
        self.error: Exception | None = None


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self, commit: Callable[[Sequence[Item]], Committed[Result]], *, max_weight: int
    ) -> None:
        self._commit = commit
        self._max_weight = max_weight
        self._cond = threading.Condition()
        self._waiting: list[_Slot[Item, Result]] = []
        self._busy = False
        self.groups = 0
        """Commits made so far (for tests and benchmarks)."""

    @property
    def waiting(self) -> int:
        """Items submitted and not yet taken into a commit."""
        with self._cond:
            return len(self._waiting)

    def submit(self, item: Item, weight: int = 1) -> Result:
        """Commit `item` (with others waiting, if any); its result, or `commit`'s exception."""
        slot: _Slot[Item, Result] = _Slot(item, weight)
        follow_ups: list[Callable[[], None]] = []
        with self._cond:
            self._waiting.append(slot)
            while not slot.done:
                if self._busy:
                    self._cond.wait()
                    continue
                group = self._take()
                self._busy = True
                self._cond.release()
                try:
                    then = self._run(group)
                    if then is not None:
                        follow_ups.append(then)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        for then in follow_ups:
            then()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _take(self) -> list[_Slot[Item, Result]]:
        """The oldest waiting slots up to `max_weight` (at least one); the rest wait on."""
        total, count = 0, 0
        for slot in self._waiting:
            if count and total + slot.weight > self._max_weight:
                break
            total += slot.weight
            count += 1
        group, self._waiting = self._waiting[:count], self._waiting[count:]
        return group

    def _run(self, group: list[_Slot[Item, Result]]) -> Callable[[], None] | None:
        """Commit a group outside the lock; every slot ends done, with a result or error."""
        self.groups += 1
        try:
            committed = self._commit([slot.item for slot in group])
            if len(committed.results) != len(group):
                raise RuntimeError(
                    f"commit answered {len(committed.results)} results for {len(group)} items"
                )
        except Exception as exc:  # every waiter of the group learns of the failure
            for slot in group:
                slot.error = exc
                slot.done = True
            return None
        except BaseException:
            for slot in group:
                slot.error = RuntimeError("the commit of this group was interrupted")
                slot.done = True
            raise
        for slot, result in zip(group, committed.results, strict=True):
            slot.result = result
            slot.done = True
        return committed.then
