"""What the Redis server is and whether it suits Stepline (read-only; for `app/release.py`).

server_info(store)     version, maxmemory-policy, AOF, from INFO (allowed on managed Redis,
                       where CONFIG is often disabled)
lua_works(store)       EVAL of a trivial script
load_scripts(store)    SCRIPT LOAD of every script of the store's Lua directory (a script
                       this server cannot compile shows here, not in the middle of a run)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from app.state.lua_files import read_script
from app.state.store import Store


@dataclass(frozen=True)
class ServerInfo:
    version: str
    """`redis_version`, e.g. "7.0.15"; "" when INFO does not say."""
    maxmemory_policy: str
    """"noeviction", "allkeys-lru", ...; "" when INFO does not say."""
    aof_enabled: bool | None
    """Append-only file on; None when INFO does not say."""

    @property
    def version_tuple(self) -> tuple[int, ...]:
        parts = []
        for part in self.version.split(".")[:3]:
            if not part.isdigit():
                break
            parts.append(int(part))
        return tuple(parts)


def server_info(store: Store) -> ServerInfo:
    client = store._client
    server = client.info("server")
    memory = client.info("memory")
    persistence = client.info("persistence")
    aof = persistence.get("aof_enabled")
    return ServerInfo(
        version=str(server.get("redis_version", "")),
        maxmemory_policy=str(memory.get("maxmemory_policy", "")),
        aof_enabled=None if aof is None else bool(int(aof)),
    )


def lua_works(store: Store) -> bool:
    try:
        client: Any = store._client  # redis-py leaves eval untyped
        return bool(client.eval("return 1", 0) == 1)
    except redis.RedisError:
        return False


def load_scripts(store: Store) -> dict[str, str | None]:
    """Script name -> None if the server loaded it, else its error."""
    results: dict[str, str | None] = {}
    client: Any = store._client
    for entry in sorted(store.lua_dir.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".lua"):
            continue
        name = entry.name.removesuffix(".lua")
        try:
            client.script_load(read_script(store.lua_dir, name))
            results[name] = None
        except redis.RedisError as exc:
            results[name] = str(exc)
    return results
