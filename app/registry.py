"""Which functions exist: every app's function configs, read from the store and cached.

In-process functions are synced into the store when a process starts (`sync_local`), so the
runner, the API and the UI see one registry whatever driver runs a function.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from app.models import FunctionConfig
from app.state.store import Store

RUNS_CACHED = 10_000
"""How many runs `calls_app` remembers the answer for (a run's function never changes)."""


class Registry:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._version: str | None = None
        self._by_id: dict[str, FunctionConfig] = {}
        self._runs_calling_apps: OrderedDict[str, bool] = OrderedDict()
        self._task = threading.local()

    def calls_app(self, run_id: str) -> bool:
        """Whether the run's function is served by an SDK app (HTTP or Connect driver), so
        executing it waits on that app. False for a run that is gone. Remembered per run
        (`remember_run` when this process created it, else read once)."""
        with self._lock:
            known = self._runs_calling_apps.get(run_id)
        if known is not None:
            return known
        function_id = self._store.run_function_id(run_id)
        if function_id is None:
            return False
        fn = self.get(function_id)
        if fn is None:
            return False
        self.remember_run(run_id, fn)
        return fn.driver != "inprocess"

    def learn_runs(self, run_ids: Sequence[str]) -> None:
        """Read which of these runs call SDK apps, for the ones not remembered yet, in one
        round trip and one registry check, so `calls_app` answers each from memory (beat
        routing a release of many due timers, which it never created)."""
        with self._lock:
            unknown = [r for r in dict.fromkeys(run_ids) if r not in self._runs_calling_apps]
        if not unknown:
            return
        function_ids = self._store.run_function_ids(unknown)
        with self.pinned():
            for run_id, function_id in zip(unknown, function_ids, strict=True):
                fn = None if function_id is None else self.get(function_id)
                if fn is not None:
                    self.remember_run(run_id, fn)

    def remember_run(self, run_id: str, fn: FunctionConfig) -> None:
        """`run_id` is a run of `fn` (saves `calls_app` its reads)."""
        with self._lock:
            self._runs_calling_apps[run_id] = fn.driver != "inprocess"
            if len(self._runs_calling_apps) > RUNS_CACHED:
                self._runs_calling_apps.popitem(last=False)

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """One task's view: the version is checked once on entry (one GET), then every read
        inside is served from the cache (nested entries reuse it). Workers run each job in
        one, so a run costs one registry read, not one per lookup."""
        depth = int(getattr(self._task, "depth", 0))
        if depth == 0:
            self._refresh()
        self._task.depth = depth + 1
        try:
            yield
        finally:
            self._task.depth = depth

    def _refresh(self) -> None:
        if getattr(self._task, "depth", 0):
            return  # pinned: checked when the task began
        version = self._store.registry_version()
        if version == self._version:
            return
        with self._lock:
            configs = self._store.list_functions()
            self._by_id = {config.id: config for config in configs}
            self._version = version

    def all(self) -> list[FunctionConfig]:
        self._refresh()
        return list(self._by_id.values())

    def get(self, function_id: str) -> FunctionConfig | None:
        self._refresh()
        found = self._by_id.get(function_id)
        if found is None:
            # A function synced a moment ago in another process: read through once.
            found = self._store.get_function(function_id)
        return found

    def triggered_by(self, event_name: str) -> list[FunctionConfig]:
        """Functions with an event trigger whose name pattern matches `event_name`."""
        return [
            config
            for config in self.all()
            if any(
                t.event is not None and event_matches(t.event, event_name) for t in config.triggers
            )
        ]


def event_matches(pattern: str, name: str) -> bool:
    """Inngest trigger names: exact, or `*` wildcards such as `app/user.*`."""
    if "*" not in pattern:
        return pattern == name
    return fnmatch.fnmatchcase(name, pattern)
