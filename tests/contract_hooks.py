"""schemathesis hooks for tests/test_contract_fuzz.py (loaded with SCHEMATHESIS_HOOKS).

A schema cannot say which URLs lead somewhere: a well-formed subscription URL on a host
that does not resolve is refused (422 blocked_url), as is an image_url that is no photo.
Before each call, a well-formed value of those fields is swapped for one the service can
take (the test's sink, the test photo, an hour ago for ``since``); a malformed one is left
as generated, so the refusals are still fuzzed. schemathesis re-reads the case after the
hook, so a case is judged by what was sent.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import schemathesis

SINK_URL = os.environ.get("CONTRACT_SINK_URL", "")
PHOTO = os.environ.get("CONTRACT_PHOTO", "")
VIDEO = os.environ.get("CONTRACT_VIDEO", "")


def _is_url(value: Any) -> bool:
    """The schema's own test (``pattern: "^https?://"``): what it calls a valid URL."""
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _is_time(value: Any) -> bool:
    try:
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _data_uri(path: str, content_type: str) -> str:
    return f"data:{content_type};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _photo() -> str:
    return _data_uri(PHOTO, "image/jpeg")


def _video() -> str:
    return _data_uri(VIDEO, "video/mp4")


def _replace(body: dict, key: str, test: Any, value: Any) -> None:
    if key in body and test(body[key]):
        body[key] = value() if callable(value) else value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Point well-formed URLs at the sink and the photo, and ``since`` at an hour ago."""
    body = case.body
    if not isinstance(body, dict):
        return
    operation = f"{case.method.upper()} {case.operation.path}"
    if operation == "POST /v1/requests":
        _replace(body, "webhook_url", _is_url, SINK_URL)
        if isinstance(body.get("input"), dict):
            for key, value in (("image_url", _photo), ("video_url", _video)):
                _replace(body["input"], key,
                         lambda v: _is_url(v) or str(v).startswith("data:"), value)
    elif operation in ("POST /v1/subscriptions", "PATCH /v1/subscriptions/{subscription_id}"):
        _replace(body, "url", _is_url, SINK_URL)
    elif operation == "POST /v1/subscriptions/{subscription_id}/recover":
        _replace(body, "since", _is_time,
                 lambda: (datetime.now(UTC) - timedelta(hours=1)).isoformat())
