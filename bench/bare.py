"""The ingress bench's baseline: a bare Flask app, served by the Procfile's own gunicorn command.

``bench.bare:app`` stands in for ``wsgi:app``: one route at the ingress's path that reads the
body and answers 200 with a small JSON body, and /healthz; nothing of posehook.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

app = Flask("bare")


@app.post("/webhooks/fal")
def callback() -> Any:
    """Read the body, answer 200."""
    request.get_data()
    return jsonify({"ok": True})


@app.get("/healthz")
def healthz() -> Any:
    """Answer 200."""
    return jsonify({"ok": True})
