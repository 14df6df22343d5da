"""Check live responses against openapi.yaml (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""

from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@functools.lru_cache(maxsize=1)
def spec() -> dict:
    """Return the parsed OpenAPI document."""
    return yaml.safe_load(SPEC_PATH.read_text())


def _registry() -> Registry:
    return Registry().with_resource("urn:openapi", Resource.from_contents(
        spec(), default_specification=DRAFT202012))


def _rewrite(node):
    """Point local refs at the registered document."""
    if isinstance(node, dict):
        return {k: ("urn:openapi" + v if k == "$ref" and v.startswith("#") else _rewrite(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(x) for x in node]
    return node


def check(response, method: str, path: str) -> None:
    """Assert that an httpx/werkzeug response matches the documented schema for its status."""
    operation = spec()["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path} answered undocumented {status}"
    documented = operation["responses"][status]
    if "$ref" in documented:
        name = documented["$ref"].rsplit("/", 1)[1]
        documented = spec()["components"]["responses"][name]
    content = documented.get("content", {})
    if "application/json" not in content:
        return
    body = response.json()
    schema = _rewrite(content["application/json"]["schema"])
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(body)


def check_schema(body, name: str) -> None:
    """Assert that a JSON value matches openapi.yaml's schema ``name`` (components/schemas)."""
    schema = _rewrite({"$ref": f"#/components/schemas/{name}"})
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(body)


def check_error(response) -> None:
    """Assert that a response to a path or method openapi.yaml does not list is its Error."""
    assert response.headers["Content-Type"] == "application/json", response.text
    check_schema(response.json(), "Error")
    assert response.json()["status"] == response.status_code
