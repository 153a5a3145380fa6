"""The console when billing does not answer: pages say so with a 503 and Retry-After (never a
500, never a stack trace); JSON and exports answer the API's 503 body."""

from __future__ import annotations

import grpc
import pytest
from fastapi.testclient import TestClient
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.entrypoints.app import create_app
from tests.unit.gateway.gateway_fakes import (
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    Readiness,
    fake_backends,
    transport_error,
)

BATCH = "6f1c5d0e-7d0b-4c8e-9a55-3f1f6f1a2b3c"


class SilentBilling(FakeBilling):
    """Billing whose session check never answers."""

    async def AuthenticateConsoleSession(
        self, request: billing_pb2.AuthenticateConsoleSessionRequest, timeout: float | None = None
    ) -> billing_pb2.ConsoleSessionInfo:
        raise transport_error(grpc.StatusCode.UNAVAILABLE, "connection refused")


@pytest.fixture
def console(settings: Settings) -> TestClient:
    backends = fake_backends(SilentBilling(), FakeBatch(), Readiness(), FakeWebhook())
    return TestClient(create_app(settings, backends), follow_redirects=False)


def _signed(console: TestClient) -> TestClient:
    console.cookies.set("reelbatch_console", "a-session-token")
    return console


@pytest.mark.parametrize("path", ["/console/batches", f"/console/batches/{BATCH}", "/console/team"])
def test_a_page_answers_503_with_retry_after_when_billing_is_down(console: TestClient, path: str) -> None:
    response = _signed(console).get(path)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith("text/html")
    assert "not answering" in response.text and "Traceback" not in response.text


def test_the_progress_json_answers_the_api_503(console: TestClient) -> None:
    response = _signed(console).get(f"/console/batches/{BATCH}/progress")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert int(response.headers["retry-after"]) > 0


def test_without_a_cookie_no_backend_is_asked_and_the_page_redirects_to_sign_in(console: TestClient) -> None:
    response = console.get("/console/batches")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fbatches"
