"""Group commit: concurrent requests of one web process share one store call.

    group = GroupCommit(commit, max_weight=1000)
    result = group.submit(item, weight)      # from any request thread

Each `submit` waits its turn; a request that finds no commit under way becomes the leader:
it takes every item waiting at that moment (up to `max_weight` in total, at least one) and
calls `commit(items)` once, in its own thread, then hands each request of the group its
result, or the exception `commit` raised. Requests that arrive meanwhile form the next group,
led by the oldest of them, whom the ending commit wakes (each request is woken exactly once:
to take its answer, or to lead).
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
    __slots__ = ("done", "error", "item", "result", "wake", "weight")

    def __init__(self, item: Item, weight: int) -> None:
        self.item = item
        self.weight = weight
        self.done = False
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.wake = threading.Lock()
        """Held until the slot's thread is woken: its group committed (`done`), or it leads."""
        self.wake.acquire()


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self, commit: Callable[[Sequence[Item]], Committed[Result]], *, max_weight: int
    ) -> None:
        self._commit = commit
        self._max_weight = max_weight
        self._mutex = threading.Lock()
        self._waiting: list[_Slot[Item, Result]] = []
        self._busy = False
        """A leader is committing; while it is, arrivals wait (never busy with none waiting
        to lead next: a leader that finds requests waiting hands the lead to the oldest)."""
        self.groups = 0
        """Commits made so far (for tests and benchmarks)."""

    @property
    def waiting(self) -> int:
        """Items submitted and not yet taken into a commit."""
        with self._mutex:
            return len(self._waiting)

    def submit(self, item: Item, weight: int = 1) -> Result:
        """Commit `item` (with others waiting, if any); its result, or `commit`'s exception.

        Each waiting request sleeps on a lock of its own and is woken once: when its group
        is answered, or when it is the oldest waiting as a commit ends (it then leads the
        next group). No request is woken only to wait again."""
        slot: _Slot[Item, Result] = _Slot(item, weight)
        with self._mutex:
            self._waiting.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.wake.acquire()
        if not slot.done:  # this request leads: its slot is the oldest waiting
            then = self._lead()
            if then is not None:
                then()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> Callable[[], None] | None:
        """Commit the waiting group (this thread's slot first), wake its requests, and hand
        the lead to the oldest request that arrived meanwhile, if any."""
        with self._mutex:
            group = self._take()
        try:
            return self._run(group)
        finally:
            with self._mutex:
                following = self._waiting[0] if self._waiting else None
                self._busy = following is not None
            for slot in group[1:]:
                slot.wake.release()
            if following is not None:
                following.wake.release()

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
        """Commit a group; every slot ends done, with a result or error."""
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
