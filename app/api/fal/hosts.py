"""fal's own hosts, served directly: the optional TLS listener (POSEHOOK_FAL_HOST_BIND).

fal's Python client builds ``https://{FAL_QUEUE_RUN_HOST}/{app}`` and
``https://{FAL_RUN_HOST}/{app}`` and follows the status, response and cancel URLs the
server answers with. Pointed at this listener (``FAL_QUEUE_RUN_HOST=<bind>``,
``FAL_RUN_HOST=<bind>/run``), every call lands here: the path says which fal URL it stands
for (``/run/...`` the sync host, anything else the queue host), and the same handlers as the
proxy's local mode serve it, with URLs on the host the client called.

Only posehook API keys are taken here (``Authorization: Key …``): proxy tokens are for
browser code, which goes through the proxy.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, g, request

from app.api import authenticate, services
from app.api.fal import install_error_handlers, serve_locally
from app.errors import AuthError
from app.fal_protocol import APP, QUEUE_HOST, RUN_HOST, FalError

bp = Blueprint("fal_hosts", __name__)
install_error_handlers(bp)

HOST = re.compile(r"(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?")
"""What the Host header may be: the answers' URLs are built on it."""
RUN_PREFIX = "run"
"""The first path segment that stands for fal's sync host (``FAL_RUN_HOST=<bind>/run``)."""


def fal_url(path: str, query: str) -> str:
    """Return the fal URL a path on this listener stands for."""
    head, _, rest = path.partition("/")
    url = (f"https://{RUN_HOST}/{rest}" if head == RUN_PREFIX
           else f"https://{QUEUE_HOST}/{path}")
    return url + (f"?{query}" if query else "")


@bp.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT"])
@bp.route("/<path:path>", methods=["GET", "POST", "PUT"])
def fal_host(path: str) -> Response:
    """Serve one call of fal's clients made to fal's own hosts."""
    try:
        g.api_key = authenticate()
    except AuthError as exc:
        raise FalError(401, exc.message) from exc
    if services().settings.provider != "local":
        raise FalError(501, "fal's hosts are served here only with POSEHOOK_PROVIDER=local; "
                            "use the proxy at /api/fal/proxy to reach fal")
    if not HOST.fullmatch(request.host):
        raise FalError(400, "The Host header is not a host name or address with a port")
    g.fal_queue_base = f"https://{request.host}/{APP}"
    return serve_locally(fal_url(path, request.query_string.decode("latin-1")))
