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
    """An optional string that must be one of ``values``, the error listing them."""
    return fields.String(load_default=default, validate=validate.OneOf(
        values, error="must be one of: " + ", ".join(values)))


class PoseInputSchema(Schema):
    """What to run: fal's ``image_url`` plus our optional options."""

    class Meta:
        unknown = RAISE

    image_url = fields.String(required=True, validate=validate.Length(min=1, max=40_000_000),
                              error_messages={"required": "image_url is required"})
    detect_resolution = fields.Integer(load_default=None, validate=_range(*DETECT_RESOLUTION))
    image_resolution = fields.Integer(load_default=None, validate=_range(*IMAGE_RESOLUTION))
    include_body = fields.Boolean(load_default=None)
    include_hands = fields.Boolean(load_default=None)
    include_face = fields.Boolean(load_default=None)
    output_format = _choice(OUTPUT_FORMATS)
    return_keypoints = fields.Boolean(load_default=None)
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
    detect_resolution = fields.Integer(load_default=None, validate=_range(*DETECT_RESOLUTION))
    include_body = fields.Boolean(load_default=None)
    include_hands = fields.Boolean(load_default=None)
    include_face = fields.Boolean(load_default=None)
    return_keypoints = fields.Boolean(load_default=None)
    smoothing = _choice(SMOOTHING)
    smoothing_params = fields.Nested(lambda: SmoothingParamsSchema(), load_default=None)


class SmoothingParamsSchema(Schema):
    """The One Euro filter's parameters (each optional: its default otherwise)."""

    class Meta:
        unknown = RAISE

    min_cutoff = fields.Float(validate=validate.Range(0.01, 100.0,
                                                      error="must be between 0.01 and 100"))
    beta = fields.Float(validate=validate.Range(0.0, 1000.0, error="must be between 0 and 1000"))
    d_cutoff = fields.Float(validate=validate.Range(0.01, 100.0,
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
    webhook_url = fields.Url(load_default=None, schemes={"http", "https"}, require_tld=False)
    webhook_events = fields.List(fields.String(validate=lambda v: _event_filter(v)),
                                 load_default=None, validate=validate.Length(min=1, max=20))


class ListQuerySchema(Schema):
    """Query of ``GET /v1/requests``."""

    class Meta:
        unknown = RAISE

    status = fields.String(load_default=None, validate=validate.OneOf(
        ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]))
    limit = fields.Integer(load_default=20, validate=_range(1, 100))
    cursor = fields.String(load_default=None, validate=validate.Regexp(
        r"\A[0-9]{1,20}-[0-9a-f]{1,64}\Z", error="cursor must be a next_cursor from a list answer"))


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
    enabled = fields.Boolean()
    description = fields.String(validate=validate.Length(max=500))


class RecoverSchema(Schema):
    """Body of ``POST /v1/subscriptions/{id}/recover``."""

    class Meta:
        unknown = RAISE

    since = fields.AwareDateTime(required=True, default_timezone=None)
