"""Conventions of lua/: one file per state change, each with its contract header."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from app.state.archive import ArchiveStore
from app.state.connect import ConnectStore
from app.state.flow import FlowStore
from app.state.keys import Keys
from app.state.scripts import Scripts, read_script
from app.state.slots import SlotStore
from app.state.store import DEFAULT_LUA_DIR, Store

LUA = DEFAULT_LUA_DIR
NAMES = (
    *Scripts.NAMES,
    *FlowStore.NAMES,
    *SlotStore.NAMES,
    *ConnectStore.NAMES,
    *ArchiveStore.NAMES,
)
"""Every script of lua/, whichever module's wrapper loads it."""


def test_every_script_is_loaded_and_every_file_is_a_script() -> None:
    files = sorted(p.stem for p in LUA.glob("*.lua"))
    assert files == sorted(NAMES)


def test_every_script_has_a_contract_header() -> None:
    for name in NAMES:
        text = (LUA / f"{name}.lua").read_text()
        header = text.split("]]", 1)[0]
        assert header.startswith(f"--[[ {name}:"), name
        assert "KEYS[1]" in header and "Returns" in header, name
        if "ARGV[" in text:
            assert "ARGV[" in header, name


def test_includes_are_pasted_and_scripts_never_build_keys() -> None:
    for name in NAMES:
        text = read_script(LUA, name)
        assert "@include" not in text, name
        # Keys come in KEYS only: no call takes a key made by concatenation in Lua.
        assert not re.search(r"redis\.call\('\w+',\s*[^,)]*\.\.", text), name
        # Lua never reads the clock.
        assert "'TIME'" not in text, name


def test_lua_dir_comes_from_the_environment(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    monkeypatch.setenv("STEPLINE_LUA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        Store.from_client(client)
    for path in [*LUA.glob("*.lua"), *LUA.glob("include/*.lua")]:
        target = tmp_path / path.relative_to(LUA)
        target.parent.mkdir(exist_ok=True)
        target.write_text(path.read_text())
    store = Store.from_client(client, prefix="other")
    assert store.keys == Keys("other")
    assert store.ping()
    client.close()
