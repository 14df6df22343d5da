"""Typed records and the request state table; dicts only at the edges.

Every field each record keeps in Redis is declared here, so what a record holds is read in
one place. Requests are hashes (one field per attribute); subscriptions and deliveries are
JSON strings; callbacks are hashes written once.
"""

from __future__ import annotations

import fnmatch
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any, Literal, TypedDict


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
        return not any(self in sources for sources in TRANSITIONS.values())

    @property
    def event(self) -> str:
        """Return the event type that announces a request reaching this state."""
        return EVENT_OF[self]


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.IN_QUEUE: frozenset({Status.IN_PROGRESS}),  # requeue: its worker was lost
    Status.IN_PROGRESS: frozenset({Status.IN_QUEUE}),  # start
    Status.COMPLETED: frozenset({Status.IN_QUEUE, Status.IN_PROGRESS}),
    Status.FAILED: frozenset({Status.IN_QUEUE, Status.IN_PROGRESS}),
    Status.CANCELLED: frozenset({Status.IN_QUEUE, Status.IN_PROGRESS}),
}
"""Target state → the states a request may move to it from. Nothing leaves a terminal state."""

EVENT_OF = {Status.IN_QUEUE: "request.queued", Status.IN_PROGRESS: "request.started",
            Status.COMPLETED: "request.completed", Status.FAILED: "request.failed",
            Status.CANCELLED: "request.cancelled"}
STATUS_OF = {event: status for status, event in EVENT_OF.items()}
EVENT_TYPES = tuple(EVENT_OF.values())
TERMINAL = tuple(s for s in Status if s.is_terminal)
TERMINAL_EVENTS = tuple(s.event for s in TERMINAL)
PROGRESS_EVENT = "request.progress"
"""A running video's frames done so far, at most once a second: sent only where a filter
names it (``*`` and ``request.*`` do not take it)."""


def _decode(kind: Any, text: str) -> Any:
    """Turn one stored hash field back into its declared type."""
    if kind is Status:
        return Status(text)
    if kind in (float, float | None):
        return float(text)
    if kind in (int, int | None):
        return int(text)
    if kind is str:
        return text
    return json.loads(text)


def _encode(value: Any) -> str:
    if isinstance(value, Status):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, float | int) and not isinstance(value, bool):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


class HashRecord:
    """A dataclass stored as a Redis hash: one field per attribute, None left out."""

    def to_redis(self) -> dict[str, str]:
        """Return the hash fields to store (None fields left out)."""
        return {f.name: _encode(getattr(self, f.name)) for f in fields(self)  # type: ignore[arg-type]
                if getattr(self, f.name) is not None}

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> Any:
        """Build the record from a stored hash (unknown fields ignored)."""
        kinds = typing.get_type_hints(cls)
        return cls(**{k: _decode(kinds[k], v) for k, v in raw.items() if k in kinds})

    @classmethod
    def encode_fields(cls, values: dict[str, Any]) -> dict[str, str]:
        """Return ``values`` (declared field names only) as stored strings."""
        kinds = typing.get_type_hints(cls)
        unknown = set(values) - set(kinds)
        if unknown:
            raise KeyError(f"{cls.__name__} has no field {sorted(unknown)}")
        return {k: _encode(v) for k, v in values.items()}


@dataclass
class Request(HashRecord):
    """One pose request as stored in Redis."""

    id: str
    key_id: str
    status: Status
    input: dict[str, Any]
    created_at: float
    provider: str = "local"
    provider_ref: str = ""
    """The provider's id for it (ours for local, fal's for fal), once submitted."""
    webhook_url: str = ""
    webhook_events: list[str] | None = None
    """The events the per-request webhook wants (None: the terminal ones)."""
    fal_webhook: str = ""
    """A fal-protocol caller's own webhook: it gets fal's callback body when we finish."""
    started_at: float | None = None
    completed_at: float | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    engine: str = ""
    attempts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    event_seq: int = 0
    """The sequence number of the last event announced; the transition that makes an
    event takes the next one, so events are numbered in the order things happened."""
    local_result: str = ""
    """The local provider's callback body, kept so a failed callback is sent again
    instead of running the model again."""
    settle_failures: int = 0
    fal_submitted_at: float | None = None
    """Set before the submit to fal is sent: a second submit is never made."""
    fal_submit_lost: str = ""
    """Why the answer to our submit to fal never came, if it did not."""
    start_deadline: float | None = None
    """fal's ``x-fal-request-timeout``: a request still queued then fails (request_timeout)."""
    no_retry: bool = False
    """fal's ``x-fal-no-retry``: a worker lost during the job fails it instead of a retry."""
    priority: str = "normal"
    """fal's ``x-fal-queue-priority``: ``low`` waits in its own inference queue."""


@dataclass
class Callback(HashRecord):
    """A verified webhook callback, stored raw before anything acts on it."""

    id: str
    provider_request_id: str
    body: str
    headers: dict[str, str]
    source: str
    """``local`` (our own inference worker) or ``fal``."""
    received_at: float
    settled: str = "0"
    request_id: str = ""
    """Our request id when the callback URL named it (with a token only we can make)."""
    outcome: str = ""

    @property
    def payload(self) -> Any:
        """Return the parsed body."""
        return json.loads(self.body)


def matches(event_type: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Return True when one of the event filters (``*``, ``request.*``, exact) matches."""
    if event_type == PROGRESS_EVENT:  # asked for by name only: wildcards predate it
        return PROGRESS_EVENT in patterns
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


class JsonRecord:
    """A dataclass stored as one JSON string."""

    def to_json(self) -> str:
        """Return the stored JSON."""
        # Fields as they are, not asdict's deep copy: the values are JSON already (no nested
        # dataclasses), and a delivery's attempt log is written at every attempt.
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)})  # type: ignore

    @classmethod
    def from_json(cls, raw: str) -> Any:
        """Build the record from its stored JSON."""
        return cls(**json.loads(raw))


@dataclass
class Subscription(JsonRecord):
    """One subscriber endpoint; ``secrets`` are [{"secret", "expires_at"}], newest first."""

    id: str
    key_id: str
    url: str
    events: list[str]
    description: str = ""
    enabled: bool = True
    created_at: float = 0.0
    failing_since: float | None = None
    last_failure_at: float | None = None
    """When the last failed attempt was (internal: forgives a failing period gone quiet)."""
    disabled_reason: str = ""
    secrets: list[dict[str, Any]] = field(default_factory=list)

    def live_secrets(self, now: float) -> list[str]:
        """Return the secrets that still sign: the current one and those in their grace time."""
        return [s["secret"] for s in self.secrets
                if s.get("expires_at") is None or s["expires_at"] > now]

    def wants(self, event_type: str) -> bool:
        """Return True when one of the filters (``*``, ``request.*``, exact) matches."""
        return matches(event_type, self.events)

    def public(self) -> dict[str, Any]:
        """Return the API view (never the secrets)."""
        view = asdict(self)
        for private in ("secrets", "key_id", "last_failure_at"):
            view.pop(private)
        return view


Trigger = Literal["scheduled", "manual", "sweep"]


class Attempt(TypedDict, total=False):
    """One attempt of a delivery, as logged in its ``attempts`` list."""

    at: float
    url: str
    trigger: Trigger
    """What made it: the schedule (first try and retries), a person (redeliver), the sweeper."""
    status_code: int | None
    error_class: str
    response: str
    retry_after: float | None
    duration_ms: int


@dataclass
class Delivery(JsonRecord):
    """An event bound for one URL; ``kind`` is subscription, request (webhook_url) or fal."""

    id: str
    event_id: str
    event_type: str
    kind: str
    url: str
    key_id: str
    body: str
    created_at: float
    subscription_id: str = ""
    request_id: str = ""
    status: str = "pending"
    attempts: list[Attempt] = field(default_factory=list)
    next_attempt_at: float | None = None

    def public(self) -> dict[str, Any]:
        """Return the API view of the delivery and its attempt log."""
        view = asdict(self)
        view["payload"] = json.loads(view.pop("body"))
        view.pop("key_id")
        return view
