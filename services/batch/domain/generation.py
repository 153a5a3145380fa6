"""Generation settings of an item (aspect ratio, resolution, seed, audio, input images) and the
rules that check them against the capabilities the price list declares for the item's model.

The rules live here and only here (ADR-047, ADR-090): the gateway checks JSON types, billing
prices the options `price_options` names, the adapters translate settings into each provider's
own terms. Every broken rule is a field violation with the item's index, reported all at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from libs.errors import FieldViolation
from libs.model_capabilities import (
    ModelCapabilities as ModelCapabilities,
)  # re-exported: the batch domain's name for it

# Violation codes of settings (beside validation's own).
NOT_SUPPORTED = "not_supported"
INVALID_VALUE = "invalid_value"
INVALID_URL = "invalid_url"
UNKNOWN_FILE = "unknown_file"
TOO_MANY = "too_many"
TOO_LONG = "too_long"

# An uploaded input file's id: "file-" and 32 hex digits.
FILE_ID = re.compile(r"file-[0-9a-f]{32}")
MAX_IMAGE_URL_CHARS = 2048
MAX_NEGATIVE_PROMPT_CHARS = 2000
# Seeds are unsigned 32-bit integers at every provider we call.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class ImageRef:
    """An input image: an HTTPS URL fetched at execution, or an uploaded file's id (one of them)."""

    url: str = ""
    file_id: str = ""


@dataclass(frozen=True)
class GenerationSettings:
    """What an item sets beyond prompt and duration; empty/None fields take the model's default."""

    aspect_ratio: str = ""
    resolution: str = ""
    seed: int | None = None
    negative_prompt: str = ""
    # None: the model's default.
    audio: bool | None = None
    first_frame: ImageRef | None = None
    last_frame: ImageRef | None = None
    reference_images: tuple[ImageRef, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True for an item that sets nothing (most items: they share `NO_SETTINGS`)."""
        return self == NO_SETTINGS

    def images(self) -> list[tuple[str, ImageRef]]:
        """Every input image with the name of the field that holds it."""
        found: list[tuple[str, ImageRef]] = []
        if self.first_frame is not None:
            found.append(("first_frame", self.first_frame))
        if self.last_frame is not None:
            found.append(("last_frame", self.last_frame))
        found += [(f"reference_images[{index}]", image) for index, image in enumerate(self.reference_images)]
        return found


NO_SETTINGS = GenerationSettings()


@dataclass(frozen=True)
class UrlPolicy:
    """Which image URLs intake accepts: HTTPS only, unless tests allow plain http."""

    allow_http: bool = False


def _at(index: int, *path: str | int) -> tuple[str | int, ...]:
    return ("items", index, "settings", *path)


def _url_violation(location: tuple[str | int, ...], url: str, policy: UrlPolicy) -> FieldViolation | None:
    """The shape of an image URL (where it may point is checked by `UrlScreen` and at fetch)."""
    if len(url) > MAX_IMAGE_URL_CHARS:
        return FieldViolation(location, TOO_LONG, f"url must be at most {MAX_IMAGE_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return FieldViolation(location, INVALID_URL, "url is malformed")
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme.lower() not in schemes or not parts.hostname or any(c.isspace() for c in url):
        return FieldViolation(location, INVALID_URL, f"url must be an absolute {' or '.join(schemes)} URL")
    if parts.username or parts.password:
        return FieldViolation(location, INVALID_URL, "url must not carry credentials")
    return None


def _image_violations(
    index: int, name: str, image: ImageRef, policy: UrlPolicy, files: frozenset[str]
) -> list[FieldViolation]:
    location = _at(index, *field_parts(name))
    if bool(image.url) == bool(image.file_id):
        return [FieldViolation(location, INVALID_VALUE, "an image needs exactly one of url and file_id")]
    if image.file_id:
        if image.file_id not in files:
            return [FieldViolation((*location, "file_id"), UNKNOWN_FILE, "no uploaded file has this id")]
        return []
    found = _url_violation((*location, "url"), image.url, policy)
    return [found] if found is not None else []


def field_parts(name: str) -> tuple[str | int, ...]:
    """`reference_images[2]` -> ("reference_images", 2): an image's name as a field location."""
    base, _, rest = name.partition("[")
    return (base, int(rest.rstrip("]"))) if rest else (base,)


def _choice(index: int, name: str, value: str, offered: Sequence[str], model: str) -> FieldViolation | None:
    if not value or value in offered:
        return None
    if not offered:
        return FieldViolation(_at(index, name), NOT_SUPPORTED, f"{model} takes no {name}")
    return FieldViolation(_at(index, name), INVALID_VALUE, f"{name} must be one of {', '.join(offered)}")


def settings_violations(
    index: int,
    model: str,
    settings: GenerationSettings,
    capabilities: ModelCapabilities,
    policy: UrlPolicy,
    files: frozenset[str],
) -> list[FieldViolation]:
    """Every rule item `index`'s settings break against its model's capabilities.

    `files` holds the ids of the tenant's uploaded files among those the batch names.
    """
    found = [
        _choice(index, "aspect_ratio", settings.aspect_ratio, capabilities.aspect_ratios, model),
        _choice(index, "resolution", settings.resolution, list(capabilities.resolutions), model),
    ]
    if settings.seed is not None:
        if not capabilities.seed:
            found.append(FieldViolation(_at(index, "seed"), NOT_SUPPORTED, f"{model} takes no seed"))
        elif not 0 <= settings.seed <= MAX_SEED:
            found.append(FieldViolation(_at(index, "seed"), INVALID_VALUE, f"seed must be 0..{MAX_SEED}"))
    if settings.negative_prompt:
        if not capabilities.negative_prompt:
            message = f"{model} takes no negative_prompt"
            found.append(FieldViolation(_at(index, "negative_prompt"), NOT_SUPPORTED, message))
        elif len(settings.negative_prompt) > MAX_NEGATIVE_PROMPT_CHARS:
            message = f"negative_prompt must be at most {MAX_NEGATIVE_PROMPT_CHARS} characters"
            found.append(FieldViolation(_at(index, "negative_prompt"), TOO_LONG, message))
    if settings.audio is not None and capabilities.audio_credits is None:
        found.append(FieldViolation(_at(index, "audio"), NOT_SUPPORTED, f"{model} cannot switch audio"))
    found += _frame_violations(index, model, settings, capabilities)
    for name, image in settings.images():
        found += _image_violations(index, name, image, policy, files)
    return [violation for violation in found if violation is not None]


def _frame_violations(
    index: int, model: str, settings: GenerationSettings, capabilities: ModelCapabilities
) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    if settings.first_frame is not None and not capabilities.first_frame:
        found.append(
            FieldViolation(_at(index, "first_frame"), NOT_SUPPORTED, f"{model} takes no first_frame")
        )
    if settings.last_frame is not None:
        if not capabilities.last_frame:
            message = f"{model} takes no last_frame"
            found.append(FieldViolation(_at(index, "last_frame"), NOT_SUPPORTED, message))
        elif settings.first_frame is None:
            message = "last_frame needs a first_frame"
            found.append(FieldViolation(_at(index, "last_frame"), INVALID_VALUE, message))
    if len(settings.reference_images) > capabilities.max_reference_images:
        limit = capabilities.max_reference_images
        code = NOT_SUPPORTED if limit == 0 else TOO_MANY
        message = f"{model} takes no reference_images" if limit == 0 else f"at most {limit} reference_images"
        found.append(FieldViolation(_at(index, "reference_images"), code, message))
    return found


def price_options(
    settings: GenerationSettings, capabilities: ModelCapabilities
) -> tuple[tuple[str, str], ...]:
    """The choices of an item that billing prices, as (setting, value) pairs in name order: the
    effective resolution and audio of a model that offers them (the default when not set)."""
    options: list[tuple[str, str]] = []
    if capabilities.audio_credits is not None:
        audio = capabilities.audio_default if settings.audio is None else settings.audio
        options.append(("audio", "on" if audio else "off"))
    if capabilities.resolutions:
        options.append(("resolution", settings.resolution or next(iter(capabilities.resolutions))))
    return tuple(options)


def options_key(options: Sequence[tuple[str, str]]) -> str:
    """The stored form of price options (a task column, a quote line's key): `audio=on;resolution=1080p`."""
    return ";".join(f"{name}={value}" for name, value in options)


def options_of_key(key: str) -> tuple[tuple[str, str], ...]:
    """The inverse of `options_key`."""
    if not key:
        return ()
    return tuple((name, value) for name, _, value in (part.partition("=") for part in key.split(";")))


def referenced_files(settings: Sequence[GenerationSettings]) -> set[str]:
    """The uploaded file ids a batch's settings name (looked up for the tenant before validation)."""
    return {
        image.file_id
        for item in settings
        if not item.is_empty
        for _, image in item.images()
        if image.file_id and FILE_ID.fullmatch(image.file_id)
    }


# Input images: the types providers take (Gemini's Veo: JPEG and PNG; OpenAI, fal and Replicate
# also WebP), recognised by their bytes, never by a client's Content-Type.
IMAGE_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"WEBP", 8, "image/webp"),
)


def image_type(content: bytes) -> str | None:
    """The image's MIME type from its first bytes; None unless PNG, JPEG or WebP."""
    for signature, offset, mime in IMAGE_SIGNATURES:
        if content[offset : offset + len(signature)] == signature:
            if mime == "image/webp" and content[:4] != b"RIFF":
                continue
            return mime
    return None


def image_problem(content: bytes, max_bytes: int) -> str | None:
    """Why these bytes are no acceptable input image (None: they are)."""
    if not content:
        return "the image is empty"
    if len(content) > max_bytes:
        return f"the image is larger than {max_bytes} bytes"
    if image_type(content) is None:
        return "the image is not a PNG, JPEG or WebP file"
    return None


@dataclass(frozen=True)
class InputImage:
    """An input image's bytes, resolved by the worker before the first provider call."""

    content: bytes
    mime_type: str


@dataclass(frozen=True)
class ResolvedImages:
    """The images of a task's settings, fetched or read from storage (none for most tasks)."""

    first_frame: InputImage | None = None
    last_frame: InputImage | None = None
    reference_images: tuple[InputImage, ...] = ()


NO_IMAGES = ResolvedImages()
