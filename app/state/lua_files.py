"""Where the Lua scripts are, and the one loader every store runs them through.

    STEPLINE_LUA_DIR set   that directory (Settings.lua_dir, passed in as `override`)
    installed wheel        app/lua/ inside the package (pyproject's hatch `force-include` packs
                           the repository's top-level lua/ there), read with importlib.resources
    checkout / editable    lua/ beside app/ at the top of the repository

A script file may pull in a shared helper with a line `-- @include "name.lua"`; the helper is
read from `lua/include/` and pasted in at load time (as BullMQ does), so each script sent to
Redis is self-contained.

`LuaScripts` is the loader: one per (client, directory), made by `Store` and shared by every
store over it (`Scripts`, `FlowStore`, `SlotStore`, `ArchiveStore`, `ConnectStore`,
`BulkStore`, `RunLogStore`, `LivenessStore`); each loads its scripts when built (`load`: a
missing file fails then, not mid-run), each script read and registered once per loader, and
runs them with EVALSHA (redis-py loads a script again if the server lost it). A pipeline
holding scripts runs through `pipelined`, in one round trip (see there).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from redis import Redis

PACKAGE = "app"
_INCLUDE = re.compile(r'^-- @include "([A-Za-z0-9_.-]+)"$', re.MULTILINE)

Arg = str | int


class Script(Protocol):
    def __call__(self, keys: Sequence[str], args: Sequence[Arg], client: Any = None) -> Any: ...


def lua_dir(override: Traversable | None = None) -> Traversable:
    """The directory holding `<name>.lua` and `include/`."""
    if override is not None:
        return override
    package = files(PACKAGE)
    shipped = package / "lua"
    if shipped.is_dir():
        return shipped
    return Path(str(package)).parent / "lua"


def read_script(directory: Traversable, name: str) -> str:
    """The text of `<directory>/<name>.lua` with its includes pasted in."""
    text = (directory / f"{name}.lua").read_text(encoding="utf-8")

    def paste(match: re.Match[str]) -> str:
        return (directory / "include" / match.group(1)).read_text(encoding="utf-8").rstrip()

    return _INCLUDE.sub(paste, text)


class LuaScripts:
    """The scripts of one directory over one client, each registered on first use."""

    def __init__(self, client: Redis[str], directory: Traversable | None = None) -> None:
        self.client = client
        self.directory = lua_dir(directory)
        self._scripts: dict[str, Script] = {}

    def script(self, name: str) -> Script:
        found = self._scripts.get(name)
        if found is None:
            text = read_script(self.directory, name)
            found = self._scripts[name] = cast(Script, self.client.register_script(text))
        return found

    def load(self, names: Sequence[str]) -> None:
        """Read and register these scripts now (FileNotFoundError if one is missing)."""
        for name in names:
            self.script(name)

    def run(self, name: str, keys: Sequence[str], args: Sequence[Arg], client: Any = None) -> Any:
        """Run script `name` (one EVALSHA); with `client` (a pipeline) only queue it there."""
        return self.script(name)(keys, args, client)

    def pipelined(self, fill: Callable[[Any], None], *, transaction: bool = False) -> list[Any]:
        """The replies of the commands and scripts `fill` queues on a fresh pipeline (a MULTI
        with `transaction`), in one round trip.

        redis-py would first ask whether each script of the pipeline is loaded (SCRIPT EXISTS,
        a second round trip per pipeline, every time). That is skipped: a server that lost the
        scripts (restarted, SCRIPT FLUSH) answers NOSCRIPT, and then they are loaded and the
        whole pipeline queued and run again: every script is safe to run twice, so its reply
        is the first run's outcome (as after a lost reply)."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=transaction)
            fill(pipe)
            scripts = list(pipe.scripts)
            pipe.scripts = set()
            try:
                return pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
                for script in scripts:
                    script.sha = self.client.script_load(script.script)  # type: ignore[no-untyped-call]
        raise AssertionError("unreachable")

    def over(self, client: Redis[str] | None, directory: Traversable | None) -> LuaScripts:
        """This loader, or one for another client or directory (a store built over them)."""
        if (client is None or client is self.client) and (
            directory is None or directory == self.directory
        ):
            return self
        return LuaScripts(client or self.client, directory or self.directory)
