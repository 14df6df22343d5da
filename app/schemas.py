"""marshmallow schemas for request and response bodies (HTTP edge only)."""

from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

# Ranges mirror the engine's OPTION_LIMITS; kept here so the web never imports the engine.
DETECT_RESOLUTION = (0, 2048)
IMAGE_RESOLUTION = (64, 4096)
OUTPUT_FORMATS = ("png", "webp", "jpeg")
DRAW_MODES = ("full-pose", "body-pose", "face-pose", "hand-pose", "face-hand-mask", "face-mask",
              "hand-mask")
"""fal's seven, as app.engine.draw.MODES draws them."""
KEYPOINTS_FORMATS = ("openpose", "coco_wholebody")
"""As app.engine.KEYPOINTS_FORMATS; the first is the default."""
SMOOTHING = ("off", "one_euro")
"""Temporal smoothing of video keypoints (app.engine.smoothing.MODES)."""
FAL_DRAW_MODE = "body-pose"
"""fal's own default for fal-ai/dwpose; the native API's is full-pose."""


def _range(low: int, high: int) -> validate.Range:
    return validate.Range(min=low, max=high, error=f"must be between {low} and {high}")


def _choice(values: tuple[str, ...], default: str | None = None) -> fields.String:
    """An optional string that must be one of ``values``, the error listing them.

    Without a default an absent option stays absent (and a JSON null is refused).
    """
    extra = {} if default is None else {"load_default": default}
    return fields.String(validate=validate.OneOf(
        values, error="must be one of: " + ", ".join(values)), **extra)


class WholeNumber(fields.Integer):
    """A JSON integer as JSON Schema reads one: 326 or 326.0, never 326.5, "326" or true.

    marshmallow's own Integer truncates 326.5 and parses strings; strict, it refuses 326.0,
    which the contract (``type: integer``) allows.
    """

    def _validated(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                isinstance(value, float) and not value.is_integer()):
            raise self.make_error("invalid")
        return int(value)


class JSONNumber(fields.Float):
    """A JSON number: 1 or 1.5, never "1.5" or true."""

    def _validated(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._validated(value)


class JSONBoolean(fields.Boolean):
    """A JSON true or false, not marshmallow's "yes", "on", 1 or "1"."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class PoseInputSchema(Schema):
    """What to run: fal's ``image_url`` plus our optional options.

    An option left out is absent from the result; none of them may be null (marshmallow
    would take a null for any field whose default is None; the contract does not).
    """

    class Meta:
        unknown = RAISE

    image_url = fields.String(required=True, validate=validate.Length(min=1, max=40_000_000),
                              error_messages={"required": "image_url is required"})
    detect_resolution = WholeNumber(validate=_range(*DETECT_RESOLUTION))
    image_resolution = WholeNumber(validate=_range(*IMAGE_RESOLUTION))
    include_body = JSONBoolean()
    include_hands = JSONBoolean()
    include_face = JSONBoolean()
    output_format = _choice(OUTPUT_FORMATS)
    return_keypoints = JSONBoolean()
    keypoints_format = _choice(KEYPOINTS_FORMATS)
    draw_mode = _choice(DRAW_MODES)


class FalInputSchema(PoseInputSchema):
    """fal's dwpose input: fields fal does not know are dropped; fal's default draw_mode."""

    class Meta:
        unknown = EXCLUDE

    draw_mode = _choice(DRAW_MODES, FAL_DRAW_MODE)


class VideoInputSchema(Schema):
    """A video to pose: fal's ``video_url`` and ``draw_mode``, plus our options.

    ``smoothing`` (default one_euro) filters each tracked person's keypoints over time with
    ``smoothing_params`` (min_cutoff, beta, d_cutoff; ranges as app.engine.smoothing.LIMITS).
    """

    class Meta:
        unknown = RAISE

    video_url = fields.String(required=True, validate=validate.Length(min=1, max=40_000_000),
                              error_messages={"required": "video_url is required"})
    draw_mode = _choice(DRAW_MODES)
    detect_resolution = WholeNumber(validate=_range(*DETECT_RESOLUTION))
    include_body = JSONBoolean()
    include_hands = JSONBoolean()
    include_face = JSONBoolean()
    return_keypoints = JSONBoolean()
    keypoints_format = _choice(KEYPOINTS_FORMATS)
    smoothing = _choice(SMOOTHING)
    smoothing_params = fields.Nested(lambda: SmoothingParamsSchema())


class SmoothingParamsSchema(Schema):
    """The One Euro filter's parameters (each optional: its default otherwise)."""

    class Meta:
        unknown = RAISE

    min_cutoff = JSONNumber(validate=validate.Range(0.01, 100.0,
                                                      error="must be between 0.01 and 100"))
    beta = JSONNumber(validate=validate.Range(0.0, 1000.0, error="must be between 0 and 1000"))
    d_cutoff = JSONNumber(validate=validate.Range(0.01, 100.0,
                                                    error="must be between 0.01 and 100"))


class FalVideoInputSchema(VideoInputSchema):
    """fal's dwpose/video input: fields fal does not know are dropped; fal's default mode."""

    class Meta:
        unknown = EXCLUDE

    draw_mode = _choice(DRAW_MODES, FAL_DRAW_MODE)


class InputField(fields.Field):
    """A request's ``input``: a video (``video_url``) or a photo (``image_url``)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("input must be an object")
        schema = VideoInputSchema() if "video_url" in value else PoseInputSchema()
        return schema.load(value)


class RequestCreateSchema(Schema):
    """Body of ``POST /v1/requests``: ``input`` is a photo's or a video's."""

    class Meta:
        unknown = RAISE

    input = InputField(required=True, error_messages={
        "required": "input is required, e.g. {{\"image_url\": ...}} or {{\"video_url\": ...}}"})
    webhook_url = fields.Url(schemes={"http", "https"}, require_tld=False)
    webhook_events = fields.List(fields.String(validate=lambda v: _event_filter(v)),
                                 validate=validate.Length(min=1, max=20))


class ListQuerySchema(Schema):
    """Query of ``GET /v1/requests``."""

    class Meta:
        unknown = RAISE

    status = fields.String(load_default=None, validate=validate.OneOf(
        ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]))
    limit = fields.Integer(load_default=20, validate=_range(1, 100))
    # Empty is the first page, as when a client passes on a null next_cursor.
    cursor = fields.String(load_default=None, validate=validate.Regexp(
        r"\A(?:[0-9]{1,20}-[0-9a-f]{1,64})?\Z",
        error="cursor must be a next_cursor from a list answer"))


def compact(data: dict) -> dict:
    """Drop unset (None) options so stored inputs hold only what the caller sent."""
    return {k: v for k, v in data.items() if v is not None}


def load(schema: Schema, data: object) -> dict:
    """Validate a body; a non-object body is a ValidationError too."""
    if not isinstance(data, dict):
        raise ValidationError({"_": ["the body must be a JSON object"]})
    return schema.load(data)


__all__ = ["RequestCreateSchema", "ListQuerySchema", "FalInputSchema", "compact", "load",
           "validates_schema"]


def _event_filter(value: str) -> None:
    """Accept known event types and the ``*`` / ``request.*`` wildcards."""
    from app.models import EVENT_TYPES, PROGRESS_EVENT

    if value not in (*EVENT_TYPES, PROGRESS_EVENT, "*", "request.*"):
        raise ValidationError(f"unknown event type {value!r}; use one of "
                              + ", ".join((*EVENT_TYPES, PROGRESS_EVENT, "request.*", "*")))


class SubscriptionCreateSchema(Schema):
    """Body of ``POST /v1/subscriptions``."""

    class Meta:
        unknown = RAISE

    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
    events = fields.List(fields.String(validate=_event_filter), required=True,
                         validate=validate.Length(min=1, max=20))
    description = fields.String(load_default="", validate=validate.Length(max=500))


class SubscriptionUpdateSchema(Schema):
    """Body of ``PATCH /v1/subscriptions/{id}``."""

    class Meta:
        unknown = RAISE

    url = fields.Url(schemes={"http", "https"}, require_tld=False)
    events = fields.List(fields.String(validate=_event_filter),
                         validate=validate.Length(min=1, max=20))
    enabled = JSONBoolean()
    description = fields.String(validate=validate.Length(max=500))


class ProxyTokenSchema(Schema):
    """Body of ``POST /v1/proxy-tokens`` (optional)."""

    class Meta:
        unknown = RAISE

    ttl_seconds = WholeNumber(load_default=900, validate=validate.Range(
        min=60, max=3600, error="ttl_seconds must be a whole number from 60 to 3600"))


class RecoverSchema(Schema):
    """Body of ``POST /v1/subscriptions/{id}/recover``."""

    class Meta:
        unknown = RAISE

    since = fields.AwareDateTime(required=True, default_timezone=None)
