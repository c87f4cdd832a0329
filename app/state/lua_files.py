"""Where the Lua scripts are: the one place that locates `lua/`.

    STEPLINE_LUA_DIR set   that directory (Settings.lua_dir, passed in as `override`)
    installed wheel        app/lua/ inside the package (pyproject's hatch `force-include` packs
                           the repository's top-level lua/ there), read with importlib.resources
    checkout / editable    lua/ beside app/ at the top of the repository

Every store that loads scripts (`Store`, `SlotStore`, `FlowStore`) gets its directory here.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

PACKAGE = "app"


def lua_dir(override: Traversable | None = None) -> Traversable:
    """The directory holding `<name>.lua` and `include/`."""
    if override is not None:
        return override
    package = files(PACKAGE)
    shipped = package / "lua"
    if shipped.is_dir():
        return shipped
    return Path(str(package)).parent / "lua"
