"""Key names and script loading (no Redis needed)."""

from __future__ import annotations

import re
from dataclasses import astuple
from pathlib import Path

from app.state.keys import Keys
from app.state.lua_files import read_script


def test_run_keys_share_one_hash_tag() -> None:
    keys = Keys("sl").run("01RUN")
    tags = {re.search(r"\{(.*?)\}", key).group(1) for key in astuple(keys)}  # type: ignore[union-attr]
    assert tags == {"01RUN"}
    assert keys.steps == "sl:{01RUN}:steps"


def test_prefix_is_applied_everywhere() -> None:
    keys = Keys("x")
    names = [
        keys.runs,
        keys.events,
        keys.jobs,
        keys.jobs_due,
        keys.functions,
        keys.apps,
        keys.pause("p"),
        keys.pause_index("e", "async.data.id", "7"),
        keys.cron_cursor,
        keys.job_tombstone("j"),
        keys.idempotency("fn:k"),
        *astuple(keys.run("r")),
    ]
    assert all(name.startswith("x:") for name in names)


def test_includes_are_pasted(tmp_path: Path) -> None:
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "helper.lua").write_text("local function f() return 1 end\n")
    (tmp_path / "s.lua").write_text('-- header\n-- @include "helper.lua"\nreturn f()\n')
    assert read_script(tmp_path, "s") == "-- header\nlocal function f() return 1 end\nreturn f()\n"
