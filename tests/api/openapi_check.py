"""Validate API responses against `docs/openapi.yaml` (the contract the UI is built on).

`check(response, "get", "/v1/runs/{run_id}")` finds the operation, the documented response for
the status code (404 if it is not documented), and validates the JSON body against its schema
(JSON Schema 2020-12, as OpenAPI 3.1 uses) with every `$ref` resolved in the spec document.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.test import TestResponse

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SPEC_URI = "urn:stepline:openapi"


@functools.cache
def spec() -> dict[str, Any]:
    loaded = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@functools.cache
def registry() -> Registry:
    resource = Resource.from_contents(spec(), default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


def resolve(obj: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (`#/components/...`) of a non-schema object."""
    while "$ref" in obj:
        node: Any = spec()
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


def pointer(*parts: str) -> str:
    return "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def validator_for(method: str, path: str, status: int) -> Draft202012Validator:
    operation = spec()["paths"][path][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method.upper()} {path}: status {status} is not documented"
    response = resolve(responses[str(status)])
    content = response["content"]
    media = "application/json" if "application/json" in content else next(iter(content))
    schema = content[media]["schema"]
    if "$ref" in responses[str(status)]:
        ref = responses[str(status)]["$ref"]
        target = ref + "/" + "/".join(["content", media.replace("/", "~1"), "schema"])
    else:
        target = pointer("paths", path, method.lower(), "responses", str(status), "content", media)
        target += "/schema"
    assert schema is not None
    return Draft202012Validator({"$ref": SPEC_URI + target}, registry=registry())


def check(response: TestResponse, method: str, path: str) -> Any:
    """Validate `response` against the spec; returns its JSON body."""
    body = response.get_json()
    validator = validator_for(method, path, response.status_code)
    errors = sorted(validator.iter_errors(body), key=lambda error: list(error.path))
    assert not errors, (
        f"{method.upper()} {path} -> {response.status_code} does not match docs/openapi.yaml:\n"
        + "\n".join(f"  at {list(e.path)}: {e.message}" for e in errors[:10])
        + f"\nbody: {body!r}"[:2000]
    )
    return body
