"""What a model takes, as the price list declares it (`libs.price_list.ModelSettings`): one declaration
shared by the batch service, which validates items against it, and billing, which prices it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelCapabilities:
    """The generation settings a model takes and what its priced choices add (issue 25)."""

    aspect_ratios: tuple[str, ...] = ()
    # Resolution -> extra credits, the default first.
    resolutions: Mapping[str, int] = field(default_factory=dict)
    seed: bool = False
    negative_prompt: bool = False
    # None: audio cannot be switched; else the extra credits of audio on.
    audio_credits: int | None = None
    audio_default: bool = False
    first_frame: bool = False
    last_frame: bool = False
    max_reference_images: int = 0
