"""Generation settings of an item, input files and the model catalogue, as the REST API shows them.

The create body's settings are checked here for their JSON shape only; what a model takes (and
what each choice costs) is the price list's, checked by the batch service and published by
`GET /api/enterprise/models`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.fields import none_if_empty
from services.gateway.schemas.proto_views import MessageView, ProtoView


class ImageInputIn(BaseModel):
    """An input image: an HTTPS URL (fetched when the item runs) or an uploaded file's id."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None,
        strict=True,
        description=(
            "Absolute https URL of a PNG, JPEG or WebP image, fetched when the item runs (no redirects "
            "followed; loopback, private and metadata addresses refused). A fetch that fails fails the "
            "item as `invalid_input`, refunded."
        ),
        examples=["https://images.example/first-frame.png"],
        json_schema_extra={"maxLength": 2048},
    )
    file_id: str | None = Field(
        default=None,
        strict=True,
        description="The `file_id` of an image uploaded with `POST /api/enterprise/files`.",
        examples=["file-4f1c0e5a9b2d4c7e8f00112233445566"],
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.url is None) == (self.file_id is None):
            raise ValueError("give exactly one of url and file_id")
        return self

    def to_proto(self) -> batch_pb2.ImageInput:
        """The contract's message."""
        return batch_pb2.ImageInput(url=self.url or "", file_id=self.file_id or "")


class GenerationSettingsIn(BaseModel):
    """What the item sets beyond prompt and duration; see `GET /api/enterprise/models` for what each
    model takes and what a choice costs. Anything a model does not take is a 422 naming the item."""

    model_config = ConfigDict(extra="forbid")

    aspect_ratio: str | None = Field(
        default=None, strict=True, examples=["16:9"], description="e.g. 16:9, 9:16."
    )
    resolution: str | None = Field(
        default=None, strict=True, examples=["1080p"], description="e.g. 720p, 1080p (may cost more)."
    )
    seed: int | None = Field(
        default=None, strict=True, ge=0, le=2**32 - 1, description="Seed for reproducible output."
    )
    negative_prompt: str | None = Field(
        default=None,
        strict=True,
        description="What the video must not show.",
        json_schema_extra={"maxLength": 2000},
    )
    audio: bool | None = Field(default=None, strict=True, description="Audio on or off (may cost more).")
    first_frame: ImageInputIn | None = Field(default=None, description="The video's first frame.")
    last_frame: ImageInputIn | None = Field(default=None, description="Its last frame (needs a first frame).")
    reference_images: list[ImageInputIn] | None = Field(
        default=None,
        description="Reference images for subject consistency.",
        json_schema_extra={"maxItems": 8},
    )

    def to_proto(self) -> batch_pb2.GenerationSettings:
        """The contract's message (unset fields stay unset: the model's defaults)."""
        message = batch_pb2.GenerationSettings(
            aspect_ratio=self.aspect_ratio or "",
            resolution=self.resolution or "",
            negative_prompt=self.negative_prompt or "",
            reference_images=[image.to_proto() for image in self.reference_images or []],
        )
        if self.seed is not None:
            message.seed = self.seed
        if self.audio is not None:
            message.audio = self.audio
        if self.first_frame is not None:
            message.first_frame.CopyFrom(self.first_frame.to_proto())
        if self.last_frame is not None:
            message.last_frame.CopyFrom(self.last_frame.to_proto())
        return message


def settings_view(message: batch_pb2.GenerationSettings) -> dict[str, Any] | None:
    """A task's settings as JSON (only what was set); None for none."""
    if message.ByteSize() == 0:
        return None
    view: dict[str, Any] = {}
    for name in ("aspect_ratio", "resolution", "negative_prompt"):
        if getattr(message, name):
            view[name] = getattr(message, name)
    if message.HasField("seed"):
        view["seed"] = message.seed
    if message.HasField("audio"):
        view["audio"] = message.audio
    if message.HasField("first_frame"):
        view["first_frame"] = _image_view(message.first_frame)
    if message.HasField("last_frame"):
        view["last_frame"] = _image_view(message.last_frame)
    if message.reference_images:
        view["reference_images"] = [_image_view(image) for image in message.reference_images]
    return view


def _image_view(image: batch_pb2.ImageInput) -> dict[str, str]:
    return {"url": image.url} if image.url else {"file_id": image.file_id}


class InputFileView(MessageView[batch_pb2.InputFile]):
    """An uploaded input image (as OpenAI's file object)."""

    proto_names: ClassVar[dict[str, str]] = {"bytes": "size_bytes"}

    file_id: str = Field(description="Name it as an image's `file_id` in items.")
    object: str = Field(default="file", description="Always `file`.")
    filename: str = Field(description="The name it was uploaded with.")
    content_type: str = Field(description="image/png, image/jpeg or image/webp (from its bytes).")
    bytes: int = Field(description="Its size.")
    purpose: str = Field(default="video_input", description="Always `video_input`.")
    created_at: AwareDatetime | None = Field(description="When it was stored (RFC 3339, UTC).")


class PricedChoice(BaseModel):
    """One value of a priced setting."""

    value: str = Field(description="The value, e.g. 1080p.")
    extra_credits: int = Field(description="Credits added to the base price (per video, or per second).")


class ModelSettingsView(ProtoView):
    """The settings a model takes; an empty list or false means it does not take that setting."""

    proto_names: ClassVar[dict[str, str]] = {"audio_extra_credits": "audio_credits"}

    aspect_ratios: list[str] = Field(description="Aspect ratios offered, the default first.")
    resolutions: list[PricedChoice] = Field(description="Resolutions offered, the default first.")
    seed: bool = Field(description="Whether `seed` is taken.")
    negative_prompt: bool = Field(description="Whether `negative_prompt` is taken.")
    audio: bool = Field(description="Whether `audio` can be switched on and off.")
    audio_default: bool | None = Field(description="Audio when an item does not say; null if not switchable.")
    audio_extra_credits: int = Field(description="Credits added with audio on (per video, or per second).")
    first_frame: bool = Field(description="Whether a `first_frame` image is taken (image-to-video).")
    last_frame: bool = Field(description="Whether a `last_frame` image is taken (with a first frame).")
    max_reference_images: int = Field(description="How many `reference_images` are taken (0: none).")

    @classmethod
    def from_proto(cls, capabilities: billing_pb2.ModelCapabilities) -> Self:
        """The view of the price list's capabilities."""
        return cls.by_name(
            capabilities,
            resolutions=[
                PricedChoice(value=choice.value, extra_credits=choice.credits)
                for choice in capabilities.resolutions
            ],
            audio_default=capabilities.audio_default if capabilities.audio else None,
        )


__all__ = [
    "GenerationSettingsIn",
    "ImageInputIn",
    "InputFileView",
    "ModelSettingsView",
    "PricedChoice",
    "none_if_empty",
    "settings_view",
]
