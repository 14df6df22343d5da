"""posehook: a self-hostable pose-prediction service (Flask + RQ + Redis)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None, *, fal_hosts: bool = False) -> Flask:
    """Create the Flask application; ``config`` overrides settings (tests).

    ``fal_hosts`` makes the app of the fal-hosts listener instead (fal's own paths only:
    ``gunicorn 'app:create_app(fal_hosts=True)'``).
    """
    from flask import Flask

    from app import api
    from app.config import load_settings
    from app.services import Services

    settings = load_settings(config)
    app = Flask(__name__, static_folder=None)
    # Biggest body we take: an upload, or a data URI of one (base64 adds a third).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes * 4 // 3 + 64 * 1024
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    app.extensions["posehook"] = Services.from_settings(settings)
    if fal_hosts:
        api.register_fal_hosts(app)
    else:
        api.register(app)
    from app import cli

    cli.register(app)
    return app
