"""The browser pages: ``/playground`` (try the native API on a photo) and ``/docs`` (openapi.yaml).

Both are static files from ``app/web``; the only thing made here is ``/playground/options.json``,
the request input's options read from openapi.yaml, so the page shows the contract's ranges and
defaults instead of its own copy. ``/docs`` renders with swagger-ui-dist from ``node_modules``
(pinned in package.json, installed by ``make``). No page holds a secret: the API key is typed
by the person and kept in the tab's sessionStorage.
"""

from __future__ import annotations

import functools
import os
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, send_from_directory
from werkzeug.exceptions import NotFound

from app.api import OPENAPI, services

bp = Blueprint("playground", __name__)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEB = os.path.join(ROOT, "app", "web")
SWAGGER_UI = os.path.join(ROOT, "node_modules", "swagger-ui-dist")
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")
ASSETS = ("playground.js", "playground.css", "docs.js", "docs.css")
INPUT_SCHEMA = "PoseInput"

# Scripts and styles from this origin only (no inline script, no eval); images also as data:
# and blob: (the person's own photo before it is uploaded) and from the public base URL (our
# files' URLs, when the page was opened under another name); nothing may frame the pages.
POLICY = ("default-src 'none'", "script-src 'self'", "style-src 'self'",
          "img-src 'self' data: blob:{public}", "connect-src 'self'", "font-src 'self'",
          "form-action 'none'", "base-uri 'none'", "frame-ancestors 'none'")


def policy() -> str:
    """Return the pages' Content-Security-Policy."""
    public = _public_origin()
    return "; ".join(POLICY).replace("{public}", f" {public}" if public else "")


@functools.lru_cache(maxsize=1)
def _spec() -> dict[str, Any]:
    import yaml

    with open(OPENAPI) as fh:
        return yaml.safe_load(fh)


def input_options() -> dict[str, Any]:
    """Return the request input's schema from openapi.yaml (properties, required, ranges)."""
    schema = _spec()["components"]["schemas"][INPUT_SCHEMA]
    return {"schema": INPUT_SCHEMA, "required": schema.get("required", []),
            "properties": schema["properties"], "files_origin": _public_origin()}


def _public_origin() -> str:
    parts = urlsplit(services().settings.public_base_url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else ""


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = policy()
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-cache")
    return response


def _page(name: str) -> Response:
    return send_from_directory(WEB, name, mimetype="text/html", max_age=0)


@bp.get("/playground")
def playground():
    """The playground: drop a photo, pick the options, see the pose."""
    return _page("playground.html")


@bp.get("/playground/options.json")
def options():
    """The request input's options, from openapi.yaml."""
    return jsonify(input_options())


@bp.get("/web/<name>")
def asset(name: str):
    """A script or style sheet of the pages."""
    if name not in ASSETS:
        raise NotFound("No such file")
    return send_from_directory(WEB, name, max_age=0)


@bp.get("/docs")
def docs():
    """The API reference, rendered from openapi.yaml."""
    return _page("docs.html")


@bp.get("/docs/openapi.json")
def docs_spec():
    """openapi.yaml as JSON, its server being the origin the page came from ("Try it out")."""
    spec = dict(_spec())
    spec["servers"] = [{"url": "/", "description": "this server"}]
    return jsonify(spec)


@bp.get("/docs/swagger-ui/<name>")
def swagger_ui(name: str):
    """swagger-ui-dist's bundle and style sheet, from node_modules."""
    if name not in SWAGGER_FILES:
        raise NotFound("No such file")
    if not os.path.isfile(os.path.join(SWAGGER_UI, name)):
        raise NotFound("swagger-ui-dist is not installed: run `make run` (or `npm ci`) in the "
                       "checkout; the contract itself is at /openapi.yaml")
    return send_from_directory(SWAGGER_UI, name, max_age=3600)
