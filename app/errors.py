"""The errors posehook raises; only ``app/api/errors.py`` turns them into HTTP answers.

::

    PosehookError                 base; ``code`` is a stable machine name
    ├── InvalidInputError         the caller sent something we refuse (HTTP 422)
    │   ├── BlockedURLError       an outbound URL points where we never connect
    │   ├── TooLargeError         a body, file or image past its limit (HTTP 413)
    │   ├── NotAnImageError       bytes that no image decoder accepts
    │   ├── NotJSONError          a JSON body that does not parse (HTTP 400)
    │   └── WrongContentTypeError a body that should be JSON sent as another type (HTTP 415)
    ├── FetchError                an input could not be downloaded (HTTP 422)
    ├── AuthError                 missing, wrong or revoked API key (HTTP 401)
    ├── SignatureError            a webhook signature or timestamp that does not verify (HTTP 401)
    │   └── MissingSignatureHeader, MalformedSignature, StaleSignature, UnknownSigningKey,
    │       SigningKeysUnavailable: which check failed
    ├── NotFoundError             no such record, or not yours (HTTP 404)
    ├── ConflictError             same idempotency key with another body; busy record (HTTP 409)
    ├── InvalidStateError         the operation does not fit the record's state (HTTP 400)
    ├── TooManyRequestsError      over a queue bound or a key's rate (HTTP 429, Retry-After)
    ├── UnavailableError          a dependency we need is down (HTTP 503)
    └── ProviderError             the provider refused or failed the job
"""

from __future__ import annotations


class PosehookError(Exception):
    """Base of every error posehook raises on purpose."""

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInputError(PosehookError):
    """The caller sent something we refuse."""

    code = "invalid_input"
    http_status = 422


class BlockedURLError(InvalidInputError):
    """An outbound URL points at an address we never connect to."""

    code = "blocked_url"


class TooLargeError(InvalidInputError):
    """A body, a file or an image is past its limit."""

    code = "too_large"
    http_status = 413


class NotAnImageError(InvalidInputError):
    """Bytes that no image decoder accepts, or a format we do not take."""

    code = "not_an_image"


class NotJSONError(InvalidInputError):
    """A body sent as JSON that does not parse."""

    code = "not_json"
    http_status = 400


class WrongContentTypeError(InvalidInputError):
    """A body that must be JSON, sent without ``Content-Type: application/json``."""

    code = "wrong_content_type"
    http_status = 415


class FetchError(PosehookError):
    """An input could not be downloaded."""

    code = "fetch_failed"
    http_status = 422


class AuthError(PosehookError):
    """Missing, wrong or revoked API key."""

    code = "unauthorized"
    http_status = 401


class SignatureError(PosehookError):
    """A webhook signature or timestamp that does not verify."""

    code = "bad_signature"
    http_status = 401


class MissingSignatureHeader(SignatureError):
    """A header the signature needs is not there."""


class MalformedSignature(SignatureError):
    """The timestamp or signature header cannot be read."""


class StaleSignature(SignatureError):
    """The signed timestamp is outside the allowed window (a replay, or a skewed clock)."""


class UnknownSigningKey(SignatureError):
    """No key we have verifies the signature: another signer, or keys rotated since."""


class SigningKeysUnavailable(SignatureError):
    """The signer's published keys could not be had."""


class NotFoundError(PosehookError):
    """No such record, or one that belongs to another key."""

    code = "not_found"
    http_status = 404


class ConflictError(PosehookError):
    """The same idempotency key arrived with another body, or the record is busy."""

    code = "conflict"
    http_status = 409


class InvalidStateError(PosehookError):
    """The operation does not fit the record's current state."""

    code = "invalid_state"
    http_status = 400


class TooManyRequestsError(PosehookError):
    """The caller, or everyone, has more queued than the service takes now: come back later."""

    code = "too_many_requests"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnavailableError(PosehookError):
    """A dependency we need is not answering."""

    code = "unavailable"
    http_status = 503


class ProviderError(PosehookError):
    """The provider refused or failed the job."""

    code = "provider_error"
    http_status = 502
