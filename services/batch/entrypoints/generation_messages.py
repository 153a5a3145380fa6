"""Generation settings and input files between protobuf and the batch domain (no rules here)."""

from __future__ import annotations

from reelbatch.proto.batch.v1 import batch_pb2

from services.batch.adapters.sql.generation_json import settings_of
from services.batch.domain.generation import NO_SETTINGS, GenerationSettings, ImageRef
from services.batch.domain.input_files import StoredInputFile

_EMPTY = batch_pb2.GenerationSettings()


def _image(message: batch_pb2.ImageInput) -> ImageRef:
    return ImageRef(url=message.url, file_id=message.file_id)


def settings_from_message(message: batch_pb2.GenerationSettings) -> GenerationSettings:
    """The domain settings of a message; `NO_SETTINGS` itself for an empty one (the common case)."""
    if message == _EMPTY:
        return NO_SETTINGS
    return GenerationSettings(
        aspect_ratio=message.aspect_ratio,
        resolution=message.resolution,
        seed=message.seed if message.HasField("seed") else None,
        negative_prompt=message.negative_prompt,
        audio=message.audio if message.HasField("audio") else None,
        first_frame=_image(message.first_frame) if message.HasField("first_frame") else None,
        last_frame=_image(message.last_frame) if message.HasField("last_frame") else None,
        reference_images=tuple(map(_image, message.reference_images)),
    )


def _image_message(image: ImageRef) -> batch_pb2.ImageInput:
    return batch_pb2.ImageInput(url=image.url, file_id=image.file_id)


def settings_message(settings: GenerationSettings) -> batch_pb2.GenerationSettings:
    """The message of domain settings (empty for none)."""
    message = batch_pb2.GenerationSettings(
        aspect_ratio=settings.aspect_ratio,
        resolution=settings.resolution,
        negative_prompt=settings.negative_prompt,
        reference_images=[_image_message(image) for image in settings.reference_images],
    )
    if settings.seed is not None:
        message.seed = settings.seed
    if settings.audio is not None:
        message.audio = settings.audio
    if settings.first_frame is not None:
        message.first_frame.CopyFrom(_image_message(settings.first_frame))
    if settings.last_frame is not None:
        message.last_frame.CopyFrom(_image_message(settings.last_frame))
    return message


def stored_settings_message(settings_json: str | None) -> batch_pb2.GenerationSettings | None:
    """A task's stored settings column as a message; None when it has none."""
    if settings_json is None:
        return None
    return settings_message(settings_of(settings_json))


def input_file_message(file: StoredInputFile) -> batch_pb2.InputFile:
    """The InputFile answer of an upload."""
    message = batch_pb2.InputFile(
        file_id=file.file_id,
        filename=file.filename,
        content_type=file.content_type,
        size_bytes=file.size_bytes,
    )
    if file.created_at is not None:
        message.created_at.FromDatetime(file.created_at)
    return message
