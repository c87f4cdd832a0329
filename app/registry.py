"""Which functions exist: every app's function configs, read from the store and cached.

In-process functions are synced into the store when a process starts (`sync_local`), so the
runner, the API and the UI see one registry whatever driver runs a function.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import OrderedDict

from app.models import FunctionConfig
from app.state.store import Store

RUN_FUNCTIONS_CACHED = 10_000
"""How many run -> function ids `calls_app` remembers (a run's function never changes)."""


class Registry:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._version = -1
        self._by_id: dict[str, FunctionConfig] = {}
        self._run_functions: OrderedDict[str, str] = OrderedDict()

    def calls_app(self, run_id: str) -> bool:
        """Whether the run's function is served by an SDK app (HTTP or Connect driver), so
        executing it waits on that app. False for a run that is gone."""
        with self._lock:
            function_id = self._run_functions.get(run_id)
        if function_id is None:
            function_id = self._store.run_function_id(run_id)
            if function_id is None:
                return False
            with self._lock:
                self._run_functions[run_id] = function_id
                if len(self._run_functions) > RUN_FUNCTIONS_CACHED:
                    self._run_functions.popitem(last=False)
        fn = self.get(function_id)
        return fn is not None and fn.driver != "inprocess"

    def _refresh(self) -> None:
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
