"""The docs stay in step with the code: docs/openapi.yaml is a valid OpenAPI 3.1 document that
documents exactly the routes of `/v1` and `/metrics` (each endpoint's tests validate its
answers against it), and the README's configuration table lists every environment variable read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from app.api import create_app
from app.config import environment_names
from tests.api.openapi_check import SPEC_URI, registry, spec

METHODS = {"get", "post", "put", "patch", "delete"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_it_is_an_openapi_3_1_document() -> None:
    doc = spec()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    for name, schema in doc["components"]["schemas"].items():
        assert name and Draft202012Validator.check_schema(schema) is None


def test_every_ref_resolves() -> None:
    resolver = registry().resolver()
    refs = set(_refs(spec()))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        resolver.lookup(SPEC_URI + ref)  # raises if unresolvable


def test_every_operation_documents_its_answers() -> None:
    for path, item in spec()["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            assert operation.get("operationId"), (method, path)
            assert any(code.startswith("2") for code in operation["responses"]), (method, path)


def _flask_routes() -> set[tuple[str, str]]:
    app = create_app(engine=None)
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        if not (path.startswith("/v1/") or path == "/metrics"):
            continue
        for method in rule.methods or ():
            if method.lower() in METHODS:
                routes.add((method.lower(), path))
    return routes


def _documented() -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in spec()["paths"].items()
        for method in item
        if method in METHODS and (path.startswith("/v1/") or path == "/metrics")
    }


def test_the_spec_documents_exactly_the_routes() -> None:
    routes = _flask_routes()
    documented = _documented()
    assert routes - documented == set(), "routes missing from docs/openapi.yaml"
    assert documented - routes == set(), "documented routes the app does not serve"


ROOT = Path(__file__).resolve().parents[2]
ENV_READ = re.compile(
    r"""(?:environ\.get|getenv|_env_(?:int|float|list))\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def test_configuration_doc_lists_every_variable_the_code_reads() -> None:
    sources = [*ROOT.joinpath("app").rglob("*.py"), *ROOT.joinpath("tasks").rglob("*.py")]
    direct = {name for path in sources for name in ENV_READ.findall(path.read_text())}
    # Stepline's settings are read through app/config.py's Settings only; the in-process SDK
    # reads the official SDK's INNGEST_* variables itself, as the SDK does.
    assert {name for name in direct if not name.startswith("INNGEST_")} == set()
    read = direct | set(environment_names().values())
    assert {"REDIS_URL", "STEPLINE_API_TOKEN", "STEPLINE_LUA_DIR", "PORT"} <= read
    doc = ROOT.joinpath("README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)`", doc, re.MULTILINE))
    documented |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", doc))
    assert read - documented == set()
