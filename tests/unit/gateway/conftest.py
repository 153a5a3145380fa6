"""Fixtures of the gateway tests: fake backends and a TestClient on the real app (no network)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from libs.config import Settings
from services.gateway.entrypoints.app import create_app
from tests.unit.gateway.gateway_fakes import (
    ADMIN_TOKEN,
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    Readiness,
    fake_backends,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        admin_token=ADMIN_TOKEN,
        grpc_deadline_seconds=3.5,
        max_body_bytes=64 * 1024,
        max_create_body_bytes=64 * 1024,
        max_batch_items=10_000,
        max_prompt_chars=100,
        asset_dir=str(tmp_path / "assets"),
    )


@pytest.fixture
def billing() -> FakeBilling:
    return FakeBilling()


@pytest.fixture
def batch() -> FakeBatch:
    return FakeBatch()


@pytest.fixture
def webhook() -> FakeWebhook:
    return FakeWebhook()


@pytest.fixture
def readiness() -> Readiness:
    return Readiness()


@pytest.fixture
def client(
    settings: Settings,
    billing: FakeBilling,
    batch: FakeBatch,
    readiness: Readiness,
    webhook: FakeWebhook,
) -> Iterator[TestClient]:
    backends = fake_backends(billing, batch, readiness, webhook)
    with TestClient(create_app(settings, backends)) as test_client:
        yield test_client


@pytest.fixture
def roomy_client(
    settings: Settings,
    billing: FakeBilling,
    batch: FakeBatch,
    readiness: Readiness,
    webhook: FakeWebhook,
) -> Iterator[TestClient]:
    """A client whose body limit is the production one (8 MiB), for 10,000-item batches."""
    roomy = settings.model_copy(
        update={"max_body_bytes": 8 * 1024 * 1024, "max_create_body_bytes": 8 * 1024 * 1024}
    )
    backends = fake_backends(billing, batch, readiness, webhook)
    with TestClient(create_app(roomy, backends)) as test_client:
        yield test_client
