"""app.api.group_commit: requests that wait while a commit is under way are committed
together, in order, and each gets its own result or the group's error."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from app.api.group_commit import Committed, GroupCommit


def _wait_for(check: object, what: str) -> None:
    """Wait until `check()` holds (something that must happen), failing after 10 s."""
    deadline = time.monotonic() + 10
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.001)


class Recorder:
    """A commit function that records its groups; the first call blocks until released."""

    def __init__(self, *, fail_group: int = -1) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.followed: list[int] = []
        self.fail_group = fail_group

    def __call__(self, items: Sequence[str]) -> Committed[str]:
        index = len(self.groups)
        self.groups.append(list(items))
        if index == 0:
            self.entered.set()
            self.release.wait(10)
        if index == self.fail_group:
            raise ValueError(f"group {index} failed")
        return Committed([f"{item}!" for item in items], lambda: self.followed.append(index))


def _submit_all(
    group: GroupCommit[str, str], names: list[str], weights: dict[str, int] | None = None
) -> tuple[list[threading.Thread], dict[str, object]]:
    answers: dict[str, object] = {}

    def submit(name: str) -> None:
        try:
            answers[name] = group.submit(name, (weights or {}).get(name, 1))
        except ValueError as exc:
            answers[name] = exc

    threads = [threading.Thread(target=submit, args=(name,)) for name in names]
    return threads, answers


def test_a_lone_request_commits_at_once() -> None:
    recorder = Recorder()
    recorder.release.set()
    group: GroupCommit[str, str] = GroupCommit(recorder, max_weight=10)
    assert group.submit("a") == "a!"
    assert recorder.groups == [["a"]] and recorder.followed == [0]


def test_requests_waiting_behind_a_commit_are_committed_together_in_order() -> None:
    recorder = Recorder()
    group: GroupCommit[str, str] = GroupCommit(recorder, max_weight=10)
    first, answers = _submit_all(group, ["a"])
    first[0].start()
    recorder.entered.wait(10)
    later, later_answers = _submit_all(group, ["b", "c", "d"])
    for count, thread in enumerate(later, start=1):  # one by one: their order is known
        thread.start()
        _wait_for(lambda count=count: group.waiting == count, f"{count} requests wait")
    recorder.release.set()
    for thread in [*first, *later]:
        thread.join(10)
    assert recorder.groups == [["a"], ["b", "c", "d"]]
    assert answers == {"a": "a!"} and later_answers == {"b": "b!", "c": "c!", "d": "d!"}
    assert sorted(recorder.followed) == [0, 1] and group.groups == 2


def test_a_group_takes_waiting_requests_up_to_the_weight_limit() -> None:
    recorder = Recorder()
    group: GroupCommit[str, str] = GroupCommit(recorder, max_weight=5)
    first, _ = _submit_all(group, ["a"])
    first[0].start()
    recorder.entered.wait(10)
    waiting, _ = _submit_all(group, ["b", "c", "d"], {"b": 3, "c": 2, "d": 4})
    for count, thread in enumerate(waiting, start=1):
        thread.start()
        _wait_for(lambda count=count: group.waiting == count, f"{count} requests wait")
    recorder.release.set()
    for thread in [*first, *waiting]:
        thread.join(10)
    assert recorder.groups == [["a"], ["b", "c"], ["d"]]


def test_a_failed_commit_fails_every_request_of_its_group_and_no_other() -> None:
    recorder = Recorder(fail_group=1)
    group: GroupCommit[str, str] = GroupCommit(recorder, max_weight=10)
    first, answers = _submit_all(group, ["a"])
    first[0].start()
    recorder.entered.wait(10)
    later, later_answers = _submit_all(group, ["b", "c"])
    for thread in later:
        thread.start()
    _wait_for(lambda: group.waiting == 2, "two requests wait")
    recorder.release.set()
    for thread in [*first, *later]:
        thread.join(10)
    assert answers == {"a": "a!"}
    assert {str(error) for error in later_answers.values()} == {"group 1 failed"}
    assert group.submit("e") == "e!"  # the next group commits as usual


def test_a_commit_answering_the_wrong_number_of_results_is_an_error() -> None:
    group: GroupCommit[str, str] = GroupCommit(lambda items: Committed([]), max_weight=10)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        group.submit("a")
