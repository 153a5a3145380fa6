"""The console's HTTP edges on fake backends: when billing does not answer, pages say so with a
503 and Retry-After (never a 500, never a stack trace) and JSON answers the API's 503 body; a
signed-out request never reaches a backend; cookies are Secure behind an https public URL; an
address with too many failed sign-ins is turned away before billing is asked."""

from __future__ import annotations

import grpc
import pytest
from fastapi.testclient import TestClient
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from libs.errors import Unauthenticated
from services.gateway.entrypoints.app import create_app
from tests.unit.gateway.gateway_fakes import (
    FakeBatch,
    FakeBilling,
    FakeWebhook,
    Readiness,
    fake_backends,
    rpc_error,
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


class SigningBilling(FakeBilling):
    """Billing that signs anyone in (the cookie's flags are the gateway's business)."""

    async def SignInConsole(
        self, request: billing_pb2.SignInConsoleRequest, timeout: float | None = None
    ) -> billing_pb2.ConsoleSessionIssued:
        return billing_pb2.ConsoleSessionIssued(session_token="new-session-token")


def test_cookies_are_secure_when_the_public_url_is_https(settings: Settings) -> None:
    https = settings.model_copy(update={"public_base_url": "https://console.studio.example"})
    backends = fake_backends(SigningBilling(), FakeBatch(), Readiness(), FakeWebhook())
    browser = TestClient(create_app(https, backends), base_url="https://testserver", follow_redirects=False)
    form = browser.get("/console/login")
    login_cookie = form.headers["set-cookie"]
    token = form.text.split('name="login_token" value="')[1].split('"')[0]
    signed = browser.post(
        "/console/login", data={"email": "a@b.example", "password": "x", "login_token": token}
    )
    assert signed.status_code == 303
    session_cookie = next(
        header for header in signed.headers.get_list("set-cookie") if header.startswith("reelbatch_console=")
    )
    for cookie, same_site in ((login_cookie, "strict"), (session_cookie, "lax")):
        flags = [flag.strip().lower() for flag in cookie.split(";")]
        assert {"secure", "httponly", "path=/console", f"samesite={same_site}"} <= set(flags), cookie


class RefusingBilling(FakeBilling):
    """Billing that refuses every password, counting the attempts it was asked."""

    attempts = 0

    async def SignInConsole(
        self, request: billing_pb2.SignInConsoleRequest, timeout: float | None = None
    ) -> billing_pb2.ConsoleSessionIssued:
        RefusingBilling.attempts += 1
        raise rpc_error(Unauthenticated("wrong email or password"))


def test_an_address_with_too_many_failed_sign_ins_is_turned_away_before_billing_is_asked(
    settings: Settings,
) -> None:
    strict = settings.model_copy(update={"admin_auth_max_failures": 2})
    RefusingBilling.attempts = 0
    backends = fake_backends(RefusingBilling(), FakeBatch(), Readiness(), FakeWebhook())
    browser = TestClient(create_app(strict, backends), follow_redirects=False)
    answers = []
    for _ in range(4):
        form = browser.get("/console/login")
        token = form.text.split('name="login_token" value="')[1].split('"')[0]
        answer = browser.post(
            "/console/login", data={"email": "a@b.example", "password": "guess", "login_token": token}
        )
        answers.append(answer.status_code)
    assert answers == [401, 401, 429, 429]
    assert RefusingBilling.attempts == 2
    assert int(answer.headers["retry-after"]) > 0
