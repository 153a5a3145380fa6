"""The price list: each model's price, provider routes and settings, and the credit packs.

One declaration read by every service (ADR-090): the batch service validates items against a
model's settings and routes its tasks, billing prices them and sells the packs, and the gateway
publishes the catalogue. The defaults are the price list a fresh install runs with; an operator
replaces them with `REELBATCH_PRICING` / `REELBATCH_PACKS` (`libs.config.Settings`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator


class ModelSettings(BaseModel):
    """What an item of a model may set beyond its prompt and duration, and what each choice costs.

    The price list is the one declaration: the batch service validates items against it, billing
    prices their choices from it and `GET /api/enterprise/models` publishes it (ADR-090). A list
    or map left empty means the setting is not offered by the model; a list's first value is
    the default. Extra credits are per video (per second for a model priced per second).
    """

    aspect_ratios: list[str] = Field(default_factory=list)
    # Resolution -> extra credits over the base price (0 for the included one).
    resolutions: dict[str, int] = Field(default_factory=dict)
    seed: bool = False
    negative_prompt: bool = False
    # None: audio cannot be switched; otherwise the extra credits of a video with audio on.
    audio_credits: int | None = Field(default=None, ge=0)
    # Whether audio is on when an item does not say (for a model that can switch it); a priced
    # audio must default to off, so an item that sets nothing keeps the base price.
    audio_default: bool = False
    # Image-to-video: a first frame, a last frame (only with a first frame), reference images.
    first_frame: bool = False
    last_frame: bool = False
    max_reference_images: int = Field(default=0, ge=0, le=8)

    @field_validator("resolutions")
    @classmethod
    def _non_negative_surcharges(cls, value: dict[str, int]) -> dict[str, int]:
        if any(credits < 0 for credits in value.values()):
            raise ValueError("resolution surcharges must not be negative")
        return value

    @model_validator(mode="after")
    def _last_frame_needs_a_first(self) -> ModelSettings:
        if self.last_frame and not self.first_frame:
            raise ValueError("a model taking a last frame must take a first frame")
        # An item that sets nothing costs the model's base price: its defaults are free.
        if self.resolutions and next(iter(self.resolutions.values())) != 0:
            raise ValueError("the default (first) resolution must cost no extra credits")
        if self.audio_default and self.audio_credits:
            raise ValueError("audio on by default must cost no extra credits (or default it off)")
        return self

    def as_fields(self) -> dict[str, Any]:
        """The declaration as immutable keyword values (each service builds its own domain type)."""
        fields = self.model_dump()
        fields["aspect_ratios"] = tuple(self.aspect_ratios)
        return fields


# Providers whose jobs are remote and journaled: the only ones a route may name besides a model's
# own provider (the simulated one is never down, out of quota or rate limited).
REMOTE_PROVIDERS = frozenset({"veo", "replicate", "fal", "openai"})


class ProviderRoute(BaseModel):
    """Another provider selling the same model (failover, ADR-149): tried, in the listed order,
    when the routes before it are down (breaker open), out of quota or out of rate budget. The
    customer pays the model's price whichever route makes the video."""

    provider: str
    # The provider's own name for the model on this route; defaults to our model name.
    provider_model: str | None = None
    # Our cost of one job on this route, in US dollar micros (per video of the model's default
    # length; scaled by length for a per-second model), recorded with each job.
    provider_cost_usd_micros: int = Field(default=0, ge=0)
    # Create calls a minute this route allows, shared by every worker (ADR-148); None: no budget.
    requests_per_minute: int | None = Field(default=None, ge=1)

    @field_validator("provider")
    @classmethod
    def _remote(cls, value: str) -> str:
        if value not in REMOTE_PROVIDERS:
            raise ValueError(f"a route goes to a remote provider ({', '.join(sorted(REMOTE_PROVIDERS))})")
        return value


class ModelPricing(BaseModel):
    """One row of the price list: what a video of `model` costs the customer and us."""

    provider: str = "simulated"
    # A per-second model may leave it out: it is then the price of a video of `default_seconds`.
    credits_per_video: int = Field(default=0, ge=0)
    # Set for a model priced by duration: an item costs credits_per_second x its duration_seconds,
    # which must lie in [min_seconds, max_seconds] (default_seconds when the item gives none).
    credits_per_second: int | None = Field(default=None, gt=0)
    min_seconds: int = Field(default=1, ge=1)
    max_seconds: int = Field(default=60, ge=1)
    default_seconds: int = Field(default=8, ge=1)
    # Our cost at the provider per video, in US dollar micros (margins; never customer-facing).
    provider_cost_usd_micros: int = Field(default=0, ge=0)
    # The provider's cost of a video of `default_seconds` at a resolution that costs it more than
    # `provider_cost_usd_micros` (e.g. Veo 3.1 at 4k, Veo 3.1 Lite at 1080p); scaled by length
    # like it for a per-second model (issue 26 item 2, ADR-145).
    provider_cost_by_resolution_usd_micros: dict[str, int] = Field(default_factory=dict)
    # Whether the provider bills a job that failed on its side (Replicate bills compute time
    # used); False where its docs say only generated videos are charged (the Gemini API's Veo).
    provider_bills_failures: bool = False
    # Attempts per task, the first included, before a transient failure becomes final.
    max_attempts: int = Field(default=3, ge=1, le=10)
    # Jobs of this model running at the provider at once, across every worker process.
    max_in_flight: int = Field(default=1000, ge=1)
    # The provider's own name for the model (e.g. "veo-3.0-generate-001"); defaults to `model`.
    provider_model: str | None = None
    # Generation settings the model takes and their price effect (issue 25).
    settings: ModelSettings = Field(default_factory=ModelSettings)
    # Create calls a minute `provider` allows for this model, shared by every worker (ADR-148;
    # Veo on Vertex AI publishes 50 a minute per project, 10 for preview models); None: no budget.
    requests_per_minute: int | None = Field(default=None, ge=1)
    # Further routes to the same model at other providers, in order of preference (ADR-149).
    fallback_routes: list[ProviderRoute] = Field(default_factory=list)

    @model_validator(mode="after")
    def _routes_are_distinct_remote_providers(self) -> ModelPricing:
        if not self.fallback_routes:
            return self
        if self.provider not in REMOTE_PROVIDERS:
            raise ValueError("only a model made by a remote provider has fallback routes")
        providers = [self.provider, *(route.provider for route in self.fallback_routes)]
        if len(set(providers)) != len(providers):
            raise ValueError("a model's routes go to distinct providers")
        return self

    @model_validator(mode="after")
    def _price_per_video_or_per_second(self) -> ModelPricing:
        if self.credits_per_second is None:
            if self.credits_per_video <= 0:
                raise ValueError("credits_per_video must be positive (or set credits_per_second)")
            return self
        if not self.min_seconds <= self.default_seconds <= self.max_seconds:
            raise ValueError("min_seconds <= default_seconds <= max_seconds must hold")
        if not self.credits_per_video:
            # Margins and the price list quote a video of the default length.
            self.credits_per_video = self.credits_per_second * self.default_seconds
        return self

    @model_validator(mode="after")
    def _resolution_costs_name_offered_resolutions(self) -> ModelPricing:
        unknown = set(self.provider_cost_by_resolution_usd_micros) - set(self.settings.resolutions)
        if unknown:
            raise ValueError(f"provider costs name resolutions the model does not offer: {sorted(unknown)}")
        if any(cost < 0 for cost in self.provider_cost_by_resolution_usd_micros.values()):
            raise ValueError("provider costs must not be negative")
        return self

    @property
    def simulated(self) -> bool:
        """True for a demo model: no provider is called and nothing is paid for its videos."""
        return self.provider == "simulated"


# What the default models take, after their providers' public APIs: OpenAI's videos API (size,
# one input_reference image), Gemini's Veo (aspectRatio, resolution, negativePrompt, seed, image,
# lastFrame, up to 3 referenceImages) and fal/Replicate's Veo (generate_audio, priced per second).
_SORA_SETTINGS = ModelSettings(aspect_ratios=["16:9", "9:16"], resolutions={"720p": 0}, first_frame=True)
_VEO_SETTINGS = ModelSettings(
    aspect_ratios=["16:9", "9:16"],
    resolutions={"720p": 0, "1080p": 5},
    seed=True,
    negative_prompt=True,
    first_frame=True,
    last_frame=True,
    max_reference_images=3,
)

# Real models through the Gemini API (provider `veo`, REELBATCH_GEMINI_API_KEY), priced from
# Google's per-second list prices (ADR-145, with sources): audio is always generated; 4, 6 or 8
# seconds; 16:9 or 9:16. Our price keeps a margin of about a third over the provider's cost (a
# credit is $0.01). The Gemini API runs at most 10 Veo jobs at once per project: max_in_flight.
_VEO_31_SETTINGS = ModelSettings(
    aspect_ratios=["16:9", "9:16"],
    resolutions={"720p": 0, "1080p": 0, "4k": 30},
    negative_prompt=True,
    seed=True,
    first_frame=True,
    last_frame=True,
    max_reference_images=3,
)


def _gemini_veo(
    provider_model: str,
    credits_per_second: int,
    usd_micros_per_second: int,
    settings: ModelSettings,
    **usd_micros_per_second_at: int,
) -> ModelPricing:
    """A Veo model on the Gemini API priced per second (4..8 s, 8 by default), with its provider
    cost per second (and at the resolutions that cost more)."""
    return ModelPricing(
        provider="veo",
        provider_model=provider_model,
        credits_per_second=credits_per_second,
        min_seconds=4,
        max_seconds=8,
        default_seconds=8,
        provider_cost_usd_micros=8 * usd_micros_per_second,
        provider_cost_by_resolution_usd_micros={
            resolution.removeprefix("r"): 8 * cost for resolution, cost in usd_micros_per_second_at.items()
        },
        max_in_flight=10,
        settings=settings,
    )


# The price list. Every model's `provider` says where its videos come from. `simulated` models
# (sora-2, sora-2-pro, veo-3, veo-3-fast, veo-3-pro) call no provider: they keep the seed demo's
# names and prices (sora-2 is the demo's model; OpenAI's Sora 2 itself was shut down on
# 2026-09-24), and their provider cost is booked per delivered video as if a provider had billed
# it, so the demo's margins read as the seed's. The veo-3.1 models are real, through the Gemini API.
DEFAULT_PRICING: dict[str, ModelPricing] = {
    "sora-2": ModelPricing(credits_per_video=10, provider_cost_usd_micros=24_000, settings=_SORA_SETTINGS),
    "sora-2-pro": ModelPricing(
        credits_per_video=30,
        provider_cost_usd_micros=72_000,
        settings=ModelSettings(
            aspect_ratios=["16:9", "9:16"], resolutions={"720p": 0, "1024p": 20}, first_frame=True
        ),
    ),
    "veo-3": ModelPricing(credits_per_video=20, provider_cost_usd_micros=84_000, settings=_VEO_SETTINGS),
    # Priced per second (2 credits a second, 4..8 s): a video of the default 6 s still costs 12.
    "veo-3-fast": ModelPricing(
        credits_per_second=2,
        min_seconds=4,
        max_seconds=8,
        default_seconds=6,
        provider_cost_usd_micros=50_000,
        # Audio doubles the provider's per-second price (fal's Veo 3): 1 more credit a second.
        settings=ModelSettings(
            aspect_ratios=["16:9", "9:16"],
            resolutions={"720p": 0, "1080p": 1},
            seed=True,
            negative_prompt=True,
            audio_credits=1,
            first_frame=True,
        ),
    ),
    # The seed's "Veo-Pro": 50 credits ($0.50) against $0.21 at the provider = 58% gross margin.
    "veo-3-pro": ModelPricing(credits_per_video=50, provider_cost_usd_micros=210_000),
    # Veo 3.1 (veo-3.1-generate-preview): $0.40 a second at 720p/1080p, $0.60 at 4k.
    "veo-3.1": _gemini_veo("veo-3.1-generate-preview", 60, 400_000, _VEO_31_SETTINGS, r4k=600_000),
    # Veo 3.1 Fast (veo-3.1-fast-generate-preview): $0.15 a second at 720p/1080p, $0.35 at 4k.
    "veo-3.1-fast": _gemini_veo(
        "veo-3.1-fast-generate-preview",
        22,
        150_000,
        _VEO_31_SETTINGS.model_copy(update={"resolutions": {"720p": 0, "1080p": 0, "4k": 28}}),
        r4k=350_000,
    ),
    # Veo 3.1 Lite (veo-3.1-lite-generate-preview): $0.05 a second at 720p, $0.08 at 1080p, no 4k.
    "veo-3.1-lite": _gemini_veo(
        "veo-3.1-lite-generate-preview",
        7,
        50_000,
        ModelSettings(aspect_ratios=["16:9", "9:16"], resolutions={"720p": 0, "1080p": 4}, first_frame=True),
        r1080p=80_000,
    ),
}


class CreditPack(BaseModel):
    """A prepaid pack: `credits` sold once for `price_usd_cents` (credits never expire)."""

    name: str
    price_usd_cents: int = Field(gt=0)
    credits: int = Field(gt=0)


# At $0.01 a credit, the packs give 12%, 20% and 27% more credits than their price buys at list.
DEFAULT_PACKS: dict[str, CreditPack] = {
    "pilot": CreditPack(name="Pilot", price_usd_cents=99_900, credits=111_888),
    "growth": CreditPack(name="Growth", price_usd_cents=499_900, credits=599_880),
    "enterprise": CreditPack(name="Enterprise", price_usd_cents=1_999_900, credits=2_539_873),
}
