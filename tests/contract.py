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
    served = _media_type(response)
    if "application/json" not in content or (served != "application/json"
                                               and _covers(content, served)):
        return  # (a file of another documented type: check_served says so)
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


def _media_type(response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _covers(content: dict, served: str) -> bool:
    """Return True when a documented media range (``image/*``, ``*/*``) covers ``served``."""
    return served in content or f"{served.split('/')[0]}/*" in content or "*/*" in content


def check_served(response, method: str, path: str) -> None:
    """``check``, and that the answer's Content-Type is one the status documents (a status
    documented with no content has no body)."""
    check(response, method, path)
    documented = spec()["paths"][path][method.lower()]["responses"][str(response.status_code)]
    if "$ref" in documented:
        documented = spec()["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    content = documented.get("content", {})
    if not content:
        assert not response.content, f"{method} {path} {response.status_code} has a body"
    else:
        assert _covers(content, _media_type(response)), (
            f"{method} {path} {response.status_code} served undocumented "
            f"{_media_type(response)}")
