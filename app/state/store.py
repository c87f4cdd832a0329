"""The state store: the one seam between Stepline and Redis.

Every state change goes through one Lua script in `lua/` (atomic); reads are plain commands.
Nothing outside `app/state/` imports `redis`. Times are milliseconds since the epoch and are
always passed in (`now`), never read from the clock here or in Lua.

INTERFACE CONTRACT (implemented by the state helper; the executor, runner, queue and API are
written against exactly these signatures).

Stored forms: every JSON value is stored as compact JSON text. A step's history record is
stored as a JSON object whose values are themselves JSON texts, so the Lua merge (cjson)
only ever re-encodes strings and nothing is altered on the way (cjson would turn `[]` into
`{}` and round large numbers); `_decode_record` turns it back into plain JSON. The key
layout is in `keys.py`, the return codes in each `lua/*.lua` header.

`Store` is composed of one group of verbs per concern, each over the same client, `Keys` and
`Scripts` (`base.py`); import everything from here:

    records.py      NewRun, RunState, SaveResult, ... : what the verbs take and return
    registry.py     apps, function configs, cron claims and cursors
    events.py       store, read and page events
    runs.py         create, load, start, memoize steps, finish a run
    run_views.py    a run with its step history, pages of runs (the API's reads)
    pauses.py       save, find, consume and delete pauses
    jobs.py         the durable job records: enqueue, lease, finish, fail, release when due
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from app.state.base import RETRIES, _dumps, _opt_int
from app.state.events import EventVerbs, _event_record
from app.state.jobs import JobVerbs
from app.state.keys import Keys
from app.state.lua_files import LuaScripts
from app.state.lua_files import lua_dir as locate_lua
from app.state.pauses import PauseVerbs, _pause_ref
from app.state.records import (
    BrokerMessage,
    ConsumeResult,
    EventRecord,
    Ingested,
    MemoizedSteps,
    NewEvent,
    NewRun,
    Page,
    Position,
    QueuedJob,
    RunEnd,
    RunState,
    RunView,
    SaveResult,
    T,
)
from app.state.registry import RegistryVerbs
from app.state.run_views import RunViewVerbs, _run_view
from app.state.runs import RunVerbs, Suspended, _decode_record, _encode_info
from app.state.scripts import Scripts

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "DEFAULT_LUA_DIR",
    "RETRIES",
    "BrokerMessage",
    "ConsumeResult",
    "EventRecord",
    "Ingested",
    "MemoizedSteps",
    "NewEvent",
    "NewRun",
    "Page",
    "Position",
    "QueuedJob",
    "RunEnd",
    "RunState",
    "RunView",
    "SaveResult",
    "Store",
    "Suspended",
    "T",
    "_decode_record",
    "_dumps",
    "_encode_info",
    "_event_record",
    "_opt_int",
    "_pause_ref",
    "_run_view",
]

DEFAULT_LUA_DIR = locate_lua()
"""The shipped scripts (`app/state/lua_files.py`); `STEPLINE_LUA_DIR` (Settings.lua_dir)
overrides it through the `lua_dir` argument."""


def server_of(connection_kwargs: Mapping[str, Any]) -> tuple[object, ...]:
    """A redis-py connection pool's server and database (host, port, unix path, db), to tell
    whether two clients write to the same keys (a broker client and a store's)."""
    return tuple(connection_kwargs.get(name) for name in ("host", "port", "path", "db"))


class Store(RegistryVerbs, EventVerbs, RunVerbs, RunViewVerbs, PauseVerbs, JobVerbs):
    """Verbs over Redis. Construct with a redis URL (or client) and a key prefix."""

    def __init__(
        self,
        redis_url: str,
        prefix: str = "sl",
        lua_dir: Path | None = None,
        *,
        client: Redis[str] | None = None,
    ) -> None:
        if client is None:
            client = redis.Redis.from_url(redis_url, decode_responses=True)
        self._client = client
        self._keys = Keys(prefix)
        self.lua = LuaScripts(client, lua_dir)
        """The one script loader over this client: the other stores over it run theirs here."""
        self.lua_dir = self.lua.directory
        """Where this store's scripts come from."""
        self._scripts = Scripts(self.lua, self._keys)

    @classmethod
    def from_client(
        cls, client: Redis[str], prefix: str = "sl", lua_dir: Path | None = None
    ) -> Store:
        """A store over an existing client (which must have `decode_responses=True`)."""
        return cls("", prefix, lua_dir, client=client)

    @property
    def keys(self) -> Keys:
        return self._keys

    def close(self) -> None:
        self._client.close()

    def server(self) -> tuple[object, ...]:
        """Which Redis server and database this store talks to (`server_of`)."""
        return server_of(self._client.connection_pool.connection_kwargs)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False
