"""Which functions exist: every app's function configs, read from the store and cached.

In-process functions are synced into the store when a process starts (`sync_local`), so the
runner, the API and the UI see one registry whatever driver runs a function.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.models import FunctionConfig
from app.state.store import Store


class Registry:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._version = -1
        self._by_id: dict[str, FunctionConfig] = {}
        self._task = threading.local()

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
