"""Conventions of lua/: one file per state change, each with its contract header."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from app.state.archive import ArchiveStore
from app.state.bulk import BulkStore
from app.state.connect import ConnectStore
from app.state.flow import FlowStore
from app.state.keys import Keys
from app.state.liveness import LivenessStore
from app.state.lua_files import lua_dir, read_script
from app.state.run_logs import RunLogStore
from app.state.scripts import Scripts
from app.state.slots import SlotStore
from app.state.store import Store

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "lua"
NAMES = (
    *Scripts.NAMES,
    *FlowStore.NAMES,
    *SlotStore.NAMES,
    *LivenessStore.NAMES,
    *ConnectStore.NAMES,
    *ArchiveStore.NAMES,
    *BulkStore.NAMES,
    *RunLogStore.NAMES,
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


def test_a_checkout_reads_the_top_level_lua_directory() -> None:
    # An installed wheel has them in app/lua/ instead: tests/e2e/test_wheel.py runs one.
    assert Path(str(lua_dir())) == LUA


def test_a_given_lua_dir_is_used_by_every_store(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(FileNotFoundError):
        Store.from_client(client, lua_dir=tmp_path)
    for path in [*LUA.glob("*.lua"), *LUA.glob("include/*.lua")]:
        target = tmp_path / path.relative_to(LUA)
        target.parent.mkdir(exist_ok=True)
        target.write_text(path.read_text())
    store = Store.from_client(client, prefix="other", lua_dir=tmp_path)
    assert store.keys == Keys("other")
    assert store.lua_dir == tmp_path
    (tmp_path / "slots_renew.lua").unlink()
    with pytest.raises(FileNotFoundError):
        SlotStore.over(store)  # loads from the store's directory, not the default one
    (tmp_path / "flow_singleton.lua").unlink()
    with pytest.raises(FileNotFoundError):
        FlowStore(store)
    assert store.ping()
    client.close()


def test_every_store_over_a_store_shares_its_one_loader(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store.from_client(client)
    loaded = dict(store.lua._scripts)
    assert sorted(loaded) == sorted(Scripts.NAMES)
    others = [
        FlowStore(store),
        SlotStore.over(store),
        LivenessStore(store),
        ConnectStore(store),
        ArchiveStore(store),
        BulkStore(store, 1000),
        RunLogStore(store),
    ]
    assert all(other._lua is store.lua for other in others)
    assert sorted(store.lua._scripts) == sorted(NAMES)
    # Each script was read and registered once: the store's own are the same objects.
    assert all(store.lua._scripts[name] is script for name, script in loaded.items())
