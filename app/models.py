"""Typed records: request status and the request itself; dicts only at the edges."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any


class Status(str, Enum):
    """A request's state; the values are fal's wire strings plus our two extra."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        """Return True for states a request never leaves."""
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


TERMINAL = tuple(s.value for s in Status if s.is_terminal)

_JSON_FIELDS = {"input", "output", "error", "metrics"}


@dataclass
class Request:
    """One pose request as stored in Redis (a hash, JSON fields encoded)."""

    id: str
    key_id: str
    status: Status
    input: dict[str, Any]
    created_at: float
    provider: str = "local"
    provider_ref: str = ""
    webhook_url: str = ""
    fal_webhook: str = ""
    started_at: float | None = None
    completed_at: float | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    engine: str = ""
    attempts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_redis(self) -> dict[str, str]:
        """Return the hash fields to store (None fields left out)."""
        out: dict[str, str] = {}
        for key, value in asdict(self).items():
            if value is None:
                continue
            if key in _JSON_FIELDS:
                out[key] = json.dumps(value, separators=(",", ":"))
            elif key == "status":
                out[key] = Status(value).value
            else:
                out[key] = str(value)
        return out

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> Request:
        """Build a Request from a stored hash."""
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, text in raw.items():
            if key not in kinds:
                continue
            if key in _JSON_FIELDS:
                values[key] = json.loads(text)
            elif key == "status":
                values[key] = Status(text)
            elif key in ("created_at", "started_at", "completed_at"):
                values[key] = float(text)
            elif key == "attempts":
                values[key] = int(text)
            else:
                values[key] = text
        return cls(**values)
