"""The architecture stays visible: imports flow one way and each outside system has one seam."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _uses(names: set[str], root: str) -> bool:
    return any(name == root or name.startswith(root + ".") for name in names)


def test_only_the_state_package_talks_to_redis() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _modules("app")
        if _uses(_imports(p), "redis")
        and "state" not in p.relative_to(ROOT).parts
        and p.name != "devredis.py"
    ]
    assert offenders == []


def test_only_the_queue_module_and_tasks_know_celery() -> None:
    allowed = {"app/queue.py"}
    offenders = [
        str(p.relative_to(ROOT))
        for p in _modules("app")
        if _uses(_imports(p), "celery") and str(p.relative_to(ROOT)) not in allowed
    ]
    assert offenders == []


def test_drivers_never_import_state() -> None:
    offenders = [
        str(p.relative_to(ROOT)) for p in _modules("app/drivers") if _uses(_imports(p), "app.state")
    ]
    assert offenders == []


def test_app_never_imports_tasks() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _modules("app") if _uses(_imports(p), "tasks")]
    assert offenders == []


def test_every_lua_script_has_a_contract_header() -> None:
    scripts = sorted((ROOT / "lua").glob("*.lua"))
    assert scripts, "no Lua scripts found"
    for script in scripts:
        head = script.read_text().split("]]", 1)[0]  # the opening --[[ ... ]] comment
        assert "KEYS" in head and "ARGV" in head, f"{script.name} lacks a KEYS/ARGV header"
