"""An item's generation settings as the fields of a JSON document: the stored `tasks.settings`
column and each provider's input, every document under its own names.

Only what the item set is written (an empty text or None takes the model's default), so that rule
lives here once and the documents differ only in what they call each setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from services.batch.domain.generation import GenerationSettings

_Image = TypeVar("_Image")
_Image_co = TypeVar("_Image_co", covariant=True)


class SettingNames(NamedTuple):
    """What one document calls each of the item's scalar settings."""

    aspect_ratio: str
    resolution: str
    negative_prompt: str
    seed: str
    audio: str


class ImageNames(NamedTuple):
    """What one document calls each of the item's input image fields."""

    first_frame: str
    last_frame: str
    reference_images: str


class ItemImages(Protocol[_Image_co]):
    """The input images of an item: its settings' references, or the images fetched for a job."""

    @property
    def first_frame(self) -> _Image_co | None:
        """The first frame (image-to-video), if any."""
        ...

    @property
    def last_frame(self) -> _Image_co | None:
        """The last frame, if any."""
        ...

    @property
    def reference_images(self) -> tuple[_Image_co, ...]:
        """The reference images (none for most items)."""
        ...


def add_settings(document: dict[str, Any], settings: GenerationSettings, names: SettingNames) -> None:
    """Adds the scalar settings the item set to `document`, under the document's names (an unset
    text is "", an unset seed or audio None; a seed of 0 and audio off are set)."""
    if settings.aspect_ratio:
        document[names.aspect_ratio] = settings.aspect_ratio
    if settings.resolution:
        document[names.resolution] = settings.resolution
    if settings.negative_prompt:
        document[names.negative_prompt] = settings.negative_prompt
    if settings.seed is not None:
        document[names.seed] = settings.seed
    if settings.audio is not None:
        document[names.audio] = settings.audio


def add_images(
    document: dict[str, Any],
    images: ItemImages[_Image],
    names: ImageNames,
    encode: Callable[[_Image], Any],
    *,
    encode_reference: Callable[[_Image], Any] | None = None,
) -> None:
    """Adds the input images the item set to `document`, each in the document's form (`encode`;
    reference images by `encode_reference` when the document wraps them apart), under its names."""
    if images.first_frame is not None:
        document[names.first_frame] = encode(images.first_frame)
    if images.last_frame is not None:
        document[names.last_frame] = encode(images.last_frame)
    if images.reference_images:
        document[names.reference_images] = list(map(encode_reference or encode, images.reference_images))
