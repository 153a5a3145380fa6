"""Wiring of the batch service from Settings. Nothing connects at import time."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from reelbatch.proto.billing.v1 import billing_pb2_grpc

from libs.config import Settings
from libs.connections import ServiceConnections, open_connections
from libs.db import Database
from libs.invalidations import InvalidationFeed
from libs.messaging.contract import Bus
from libs.messaging.outbox import OutboxRelay
from libs.messaging.transport import connect_bus
from libs.migrations import upgrade_to_head
from libs.outbound.destinations import DestinationPolicy
from libs.price_list import ModelPricing
from libs.s3 import S3Bucket, S3Client, S3Credentials
from services.batch.adapters.billing_client import GrpcBilling, MemoizedQuotes
from services.batch.adapters.input_files import InputFileStore, LocalInputFiles, S3InputFiles
from services.batch.adapters.input_images import InputImageResolver, UrlScreener
from services.batch.adapters.providers._remote import AdapterWiring, RemoteJobSettings
from services.batch.adapters.providers.fal import FalProvider
from services.batch.adapters.providers.openai_videos import OpenAIVideosProvider
from services.batch.adapters.providers.replicate import ReplicateProvider
from services.batch.adapters.providers.simulated import SimulatedProvider
from services.batch.adapters.providers.veo import VeoProvider
from services.batch.adapters.s3 import S3Storage
from services.batch.adapters.sql.queueing import DispatchWindows
from services.batch.adapters.sql.store import BatchStore
from services.batch.adapters.storage import AssetStorage, LocalDirectoryStorage
from services.batch.adapters.tables import outbox
from services.batch.domain.breaker import BreakerPolicy
from services.batch.domain.execution import ModelPolicy
from services.batch.domain.generation import ModelCapabilities, UrlPolicy
from services.batch.domain.provider import VideoProvider
from services.batch.domain.retry import BackoffPolicy
from services.batch.domain.routing import RoutePolicy, breaker_key, budget_key
from services.batch.handlers import BatchHandlers
from services.batch.use_cases.execution import ClaimPacing, TaskExecutor
from services.batch.use_cases.input_files import InputFileUploads
from services.batch.use_cases.item_settings import ItemSettings
from services.batch.use_cases.orphan_jobs import OrphanedJobs
from services.batch.use_cases.outcomes import OutcomeWriter

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def migrate(database_url: str) -> None:
    """Brings the batch schema to the latest revision (safe to run from several processes)."""
    upgrade_to_head(MIGRATIONS, database_url)


@dataclass
class BatchServer:
    """Everything the batch server process runs: API handlers, settlement intake, relay, recovery.

    Its process (entrypoints/main.py) closes the connections.
    """

    # The channel goes to the billing service.
    connections: ServiceConnections
    repository: BatchStore
    handlers: BatchHandlers
    relay: OutboxRelay
    invalidations: InvalidationFeed


@dataclass
class BatchWorker:
    """Everything a worker process runs: the executor, its outcome writer and an outbox relay."""

    database: Database
    bus: Bus
    repository: BatchStore
    executor: TaskExecutor
    writer: OutcomeWriter
    relay: OutboxRelay
    orphaned_jobs: OrphanedJobs


def _repository(settings: Settings, database: Database) -> BatchStore:
    return BatchStore.open(
        database,
        DispatchWindows(
            chunk_size=settings.dispatch_chunk_size,
            batch_window_chunks=settings.dispatch_window_chunks,
            tenant_window_chunks=settings.tenant_dispatch_window_chunks,
        ),
    )


def worker_identity() -> str:
    """Who claimed a task (tasks.claimed_by): host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def build_storage(settings: Settings) -> AssetStorage:
    """Where videos are kept: the local asset directory, or an S3 bucket (REELBATCH_STORAGE=s3)."""
    if settings.video_storage == "s3":
        return S3Storage(s3_client(settings), settings.public_base_url)
    return LocalDirectoryStorage(Path(settings.asset_dir), settings.public_base_url)


def s3_client(settings: Settings) -> S3Client:
    """A client of the configured video bucket (its HTTP pool lives as long as the process); the
    launcher's migrate step uses it too, to create the bucket."""
    return S3Client(
        S3Bucket(settings.s3_endpoint_url, settings.s3_bucket, settings.s3_region),
        S3Credentials(settings.s3_access_key_id, settings.s3_secret_access_key.get_secret_value()),
        timeout_seconds=settings.provider_http_timeout_seconds,
    )


def build_providers(settings: Settings) -> Mapping[str, VideoProvider]:
    """Provider adapters by the name the price list uses; real ones only when their key is set."""
    storage = build_storage(settings)
    remote = RemoteJobSettings(
        poll_seconds=settings.provider_poll_seconds,
        max_poll_seconds=max(settings.provider_poll_seconds, settings.provider_poll_max_seconds),
        max_retry_after_seconds=settings.provider_max_retry_after_seconds,
        max_asset_bytes=settings.max_asset_bytes,
        http_timeout_seconds=settings.provider_http_timeout_seconds,
        connections=settings.provider_connections,
    )

    def wiring(provider: str) -> AdapterWiring:
        model_ids = {
            model: price.provider_model or model
            for model, price in settings.pricing.items()
            if price.provider == provider
        }
        # A model sold here as a fallback route is sent under the route's own model id.
        for model, price in settings.pricing.items():
            for route in price.fallback_routes:
                if route.provider == provider:
                    model_ids[model] = route.provider_model or model
        return AdapterWiring(storage=storage, model_ids=model_ids, settings=remote)

    providers: dict[str, VideoProvider] = {
        "simulated": SimulatedProvider(
            latency_seconds=settings.simulated_latency_seconds,
            asset_dir=Path(settings.asset_dir),
            public_base_url=settings.public_base_url,
            storage=storage,
            call_log=Path(settings.simulated_call_log) if settings.simulated_call_log else None,
        )
    }
    # Each real provider: the credential that enables it, and how it connects with that credential
    # (the adapters name their credential and URL in their own API's words).
    remote_providers: dict[str, tuple[SecretStr | None, Callable[[str, AdapterWiring], VideoProvider]]] = {
        "veo": (
            settings.gemini_api_key,
            lambda key, wired: VeoProvider.connect(api_key=key, base_url=settings.gemini_base_url, **wired),
        ),
        "replicate": (
            settings.replicate_api_token,
            lambda key, wired: ReplicateProvider.connect(
                api_token=key, base_url=settings.replicate_base_url, **wired
            ),
        ),
        "fal": (
            settings.fal_key,
            lambda key, wired: FalProvider.connect(api_key=key, queue_url=settings.fal_queue_url, **wired),
        ),
        # OpenAI's own Videos API is shut down (ADR-146): only a service still serving its
        # contract, named by REELBATCH_OPENAI_BASE_URL, can be called.
        "openai": (
            settings.openai_api_key if settings.openai_base_url else None,
            lambda key, wired: OpenAIVideosProvider.connect(
                api_key=key, base_url=settings.openai_base_url or "", **wired
            ),
        ),
    }
    for name, (credential, connect) in remote_providers.items():
        if credential is not None:
            providers[name] = connect(credential.get_secret_value(), wiring(name))
    return providers


def build_input_files(settings: Settings) -> InputFileStore:
    """Where uploaded input images are kept: beside the videos."""
    if settings.video_storage == "s3":
        return S3InputFiles(s3_client(settings))
    return LocalInputFiles(Path(settings.asset_dir))


def input_url_policy(settings: Settings) -> DestinationPolicy:
    """The SSRF rule's switches for input image URLs (both off in production)."""
    return DestinationPolicy(
        allow_http=settings.input_url_allow_http, allow_private=settings.input_url_allow_private
    )


def model_capabilities(settings: Settings) -> dict[str, ModelCapabilities]:
    """What each priced model takes, from the price list (libs.price_list.ModelSettings)."""
    return {
        model: ModelCapabilities(**price.settings.as_fields()) for model, price in settings.pricing.items()
    }


def model_policies(settings: Settings) -> dict[str, ModelPolicy]:
    """Provider, routes and attempt limit of every priced model."""
    return {
        model: ModelPolicy(
            provider=price.provider,
            max_attempts=price.max_attempts,
            provider_cost_usd_micros=price.provider_cost_usd_micros,
            per_second=price.credits_per_second is not None,
            default_seconds=price.default_seconds,
            resolution_costs=dict(price.provider_cost_by_resolution_usd_micros),
            failures_billed=price.provider_bills_failures,
            routes=model_routes(model, price),
        )
        for model, price in settings.pricing.items()
    }


def model_routes(model: str, price: ModelPricing) -> tuple[RoutePolicy, ...]:
    """A model's routes in order: its own provider's, then its fallback routes (ADR-149)."""
    declared = [
        (price.provider, price.provider_model, price.provider_cost_usd_micros, price.requests_per_minute),
        *(
            (route.provider, route.provider_model, route.provider_cost_usd_micros, route.requests_per_minute)
            for route in price.fallback_routes
        ),
    ]
    return tuple(
        RoutePolicy(
            provider=provider,
            breaker_key=breaker_key(model, provider, position),
            budget_key=budget_key(provider, provider_model or model),
            requests_per_minute=requests_per_minute,
            provider_cost_usd_micros=cost,
        )
        for position, (provider, provider_model, cost, requests_per_minute) in enumerate(declared)
    )


async def build_server(settings: Settings) -> BatchServer:
    """Connects the database pool, the bus and the billing channel of a batch server."""
    connections = await open_connections(settings, settings.grpc_target("billing"))
    repository = _repository(settings, connections.database)
    url_policy = input_url_policy(settings)
    # Billing's invalidation stream: a new price list empties the quote memo at once (ADR-130).
    invalidations = InvalidationFeed(billing_pb2_grpc.BillingServiceStub(connections.channel))
    handlers = BatchHandlers.build(
        repository,
        MemoizedQuotes(
            GrpcBilling(connections.channel, deadline_seconds=settings.grpc_deadline_seconds),
            feed=invalidations,
        ),
        max_batch_items=settings.max_batch_items,
        max_prompt_chars=settings.max_prompt_chars,
        item_settings=ItemSettings(
            model_capabilities(settings),
            repository.input_files,
            UrlScreener(url_policy),
            UrlPolicy(allow_http=url_policy.allow_http),
        ),
        input_files=InputFileUploads(
            repository.input_files, build_input_files(settings), max_bytes=settings.max_input_image_bytes
        ),
    )
    relay = OutboxRelay.configured(settings, connections.database, outbox, connections.bus)
    return BatchServer(connections, repository, handlers, relay, invalidations)


async def build_worker(
    settings: Settings, providers: Mapping[str, VideoProvider] | None = None
) -> BatchWorker:
    """Connects the database pool and the bus of a worker; `providers` replaces the configured ones."""
    database = Database(settings.database_url, pool_size=settings.database_pool_size)
    bus = await connect_bus(settings)
    repository = _repository(settings, database)
    writer = OutcomeWriter(repository.claims)
    providers = providers if providers is not None else build_providers(settings)
    executor = TaskExecutor(
        repository.claims,
        repository.cancels,
        writer,
        providers,
        model_policies(settings),
        concurrency=settings.worker_concurrency,
        lease_seconds=settings.task_lease_seconds,
        provider_timeout_seconds=settings.provider_timeout_seconds,
        backoff=BackoffPolicy(settings.retry_base_seconds, settings.retry_max_seconds),
        slot_limits={model: price.max_in_flight for model, price in settings.pricing.items()},
        worker_id=worker_identity(),
        pacing=ClaimPacing(settings.claim_wait_seconds, settings.claim_wait_max_seconds),
        cancel_check_seconds=settings.cancel_check_seconds,
        images=InputImageResolver(
            build_input_files(settings),
            input_url_policy(settings),
            max_bytes=settings.max_input_image_bytes,
            timeout_seconds=settings.input_fetch_timeout_seconds,
        ),
        provider_jobs=repository.provider_jobs,
        breakers=repository.breakers,
        breaker_policy=BreakerPolicy(
            failure_threshold=settings.breaker_failure_threshold,
            open_seconds=settings.breaker_open_seconds,
            outage_limit_seconds=settings.breaker_outage_limit_seconds,
            probe_seconds=settings.provider_timeout_seconds,
        ),
        rate_budgets=repository.rate_budgets,
        rate_window_seconds=settings.provider_rate_window_seconds,
    )
    relay = OutboxRelay.configured(settings, database, outbox, bus)
    orphaned = OrphanedJobs(
        repository.provider_jobs,
        providers,
        interval_seconds=settings.recovery_interval_seconds,
        grace_seconds=settings.task_lease_seconds,
    )
    return BatchWorker(database, bus, repository, executor, writer, relay, orphaned)
