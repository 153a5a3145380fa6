"""Security of the running system (every service its own process), driven through REST like an
attacker or an auditor would: tenant isolation, key revocation, operator roles, limits on bad
input, and signed video links with their audit log."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil
import pytest

from services.gateway.use_cases.video_links import VideoLinks, VideoMode
from tests.rest_api import Api, Customer
from tests.security.conftest import VIDEO_URL_SECRET
from tests.stack import Stack

pytestmark = pytest.mark.timeout(120)

ITEM = {"prompt": "A lighthouse at dusk", "model": "sora-2"}


def _settled_batch(api: Api, customer: Customer, items: list[dict[str, str]]) -> str:
    created = api.create_batch(customer, items)
    assert created.status_code == 202, created.text
    batch_id: str = created.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)
    return batch_id


def _snapshot(api: Api, customer: Customer) -> dict[str, Any]:
    """Everything a tenant owns that an attack could change."""
    batches = api.http.get("/api/enterprise/video-batch", headers=customer.headers).json()["items"]
    return {
        "credits": api.credits(customer),
        "ledger": api.ledger(customer),
        "batches": [{k: v for k, v in batch.items()} for batch in batches],
    }


def test_another_tenant_gets_404_on_every_customer_endpoint_and_nothing_changes(api: Api) -> None:
    owner = api.new_customer(credits=1000)
    intruder = api.new_customer(credits=1000)
    batch_id = _settled_batch(api, owner, [ITEM, {"prompt": "A storm #fail", "model": "sora-2"}])
    [task, _] = api.tasks(owner, batch_id)
    owner_keys = api.http.get("/api/enterprise/api-keys", headers=owner.headers).json()["items"]
    before = _snapshot(api, owner)

    attempts = [
        ("GET", f"/api/enterprise/video-batch/{batch_id}", None),
        ("GET", f"/api/enterprise/video-batch/{batch_id}/tasks", None),
        ("POST", f"/api/enterprise/video-batch/{batch_id}/cancel", None),
        ("POST", f"/api/enterprise/video-batch/{batch_id}/retry-failed", None),
        ("GET", f"/api/enterprise/video-batch/{batch_id}/tasks/{task['task_id']}/video", None),
        ("DELETE", f"/api/enterprise/api-keys/{owner_keys[0]['key_id']}", None),
    ]
    for method, path, body in attempts:
        response = api.http.request(method, path, json=body, headers=intruder.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    # Lists and filters only ever show the intruder's own data.
    ledger = api.http.get(
        "/api/enterprise/ledger", params={"batch_id": batch_id}, headers=intruder.headers
    ).json()
    assert ledger["items"] == []
    listed = api.http.get("/api/enterprise/video-batch", headers=intruder.headers).json()["items"]
    assert batch_id not in {batch["batch_id"] for batch in listed}

    assert _snapshot(api, owner) == before
    assert api.http.get("/api/enterprise/credits", headers=owner.headers).status_code == 200


def test_a_revoked_key_is_refused_within_5_seconds(api: Api) -> None:
    customer = api.new_customer(credits=0)
    second = api.http.post(f"/api/admin/tenants/{customer.tenant_id}/api-keys", headers=api.admin).json()
    assert api.credits(customer) is not None  # warms the gateway's key cache
    [first_key] = [
        key
        for key in api.http.get("/api/enterprise/api-keys", headers=customer.headers).json()["items"]
        if key["key_id"] != second["key_id"]
    ]

    revoked = api.http.delete(
        f"/api/enterprise/api-keys/{first_key['key_id']}", headers={"X-API-Key": second["api_key"]}
    )
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    started = time.monotonic()
    while api.http.get("/api/enterprise/credits", headers=customer.headers).status_code != 401:
        assert time.monotonic() - started < 5, "revoked key still accepted after 5 s"
        time.sleep(0.1)

    listed = api.http.get("/api/enterprise/api-keys", headers={"X-API-Key": second["api_key"]}).json()
    assert {key["key_id"]: key["revoked"] for key in listed["items"]} == {
        first_key["key_id"]: True,
        second["key_id"]: False,
    }
    assert all(customer.api_key not in str(key) for key in listed["items"])


def test_a_wrong_admin_token_is_401_and_a_finance_key_only_reads(api: Api) -> None:
    customer = api.new_customer(credits=0)
    wrong = api.http.get("/api/admin/tenants", headers={"Authorization": "Bearer not-the-admin-token"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"

    finance_key = api.http.post("/api/admin/admin-keys", json={"role": "finance"}, headers=api.admin).json()
    finance = {"Authorization": f"Bearer {finance_key['api_key']}"}

    assert api.http.get("/api/admin/tenants", headers=finance).status_code == 200
    assert api.http.get("/api/admin/reconciliation", headers=finance).status_code == 200
    assert api.http.get("/api/admin/ledger.csv", headers=finance).status_code == 200
    for path, body in [
        (f"/api/admin/tenants/{customer.tenant_id}/credits", {"credits": 100, "reference": "finance-try"}),
        ("/api/admin/tenants", {"name": "finance-made"}),
        (f"/api/admin/tenants/{customer.tenant_id}/api-keys", None),
    ]:
        refused = api.http.post(path, json=body, headers=finance)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"
    assert api.credits(customer)["available_credits"] == 0


def _gateway_rss(stack: Stack) -> int:
    return int(psutil.Process(stack.processes["gateway"].pid).memory_info().rss)


def _send_huge_body(base_url: str, size: int) -> int:
    """POSTs a `size`-byte body with its Content-Length; returns the status the server answered."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        head = (
            "POST /api/enterprise/video-batch HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nX-API-Key: anything\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode())
        chunk = b"x" * (1024 * 1024)
        try:
            for _ in range(size // len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed without reading: exactly what we want
        answer = sock.recv(65536).decode("latin-1")
    return int(answer.split(" ", 2)[1])


def test_an_80_mb_body_is_413_without_the_gateway_growing_by_80_mb(api: Api, stack: Stack) -> None:
    before = _gateway_rss(stack)

    # Past the create path's own limit (64 MiB, ADR-086): refused on its Content-Length.
    status = _send_huge_body(stack.base_url, 80 * 1024 * 1024)

    assert status == 413
    assert _gateway_rss(stack) - before < 80 * 1024 * 1024 // 4
    # A chunked body (no Content-Length) past another route's limit is counted and refused the same way.
    chunked = api.http.post(
        f"/api/enterprise/video-batch/{uuid.uuid4()}/retry-failed",
        content=(b"x" * (1024 * 1024) for _ in range(12)),
        headers={"X-API-Key": "anything", "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "payload_too_large"


def test_too_many_items_or_a_nul_byte_is_422_and_nothing_is_charged(api: Api) -> None:
    customer = api.new_customer(credits=200_000)

    too_many = api.create_batch(customer, [ITEM] * 10_001)
    nul = api.create_batch(customer, [{"prompt": "A cat\u0000 on a roof", "model": "sora-2"}])
    control = api.create_batch(customer, [{"prompt": "A cat\u001b[31m", "model": "sora-2"}])
    unicode_ok = api.create_batch(customer, [{"prompt": "夜の東京、雨 🌧️ — café", "model": "sora-2"}])

    for refused in (too_many, nul, control):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "validation_error"
    assert unicode_ok.status_code == 202, unicode_ok.text
    api.wait_until_settled(customer, unicode_ok.json()["batch_id"])
    assert [entry["ref_type"] for entry in api.ledger(customer)] == ["batch_upfront", "topup"]


def _access_log(api: Api, batch_id: str) -> list[dict[str, Any]]:
    response = api.http.get("/api/admin/video-access", params={"batch_id": batch_id}, headers=api.admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_signed_video_links_serve_until_expired_or_tampered_and_every_attempt_is_audited(api: Api) -> None:
    customer = api.new_customer(credits=100)
    batch_id = _settled_batch(api, customer, [ITEM])
    [task] = api.tasks(customer, batch_id)
    anonymous = httpx.Client(timeout=10)

    download = anonymous.get(task["video_url"])
    assert download.status_code == 200
    assert download.content[4:8] == b"ftyp"
    assert download.headers["content-disposition"].startswith("attachment")

    play = api.http.get(
        f"/api/enterprise/video-batch/{batch_id}/tasks/{task['task_id']}/video",
        params={"mode": "play"},
        headers=customer.headers,
    )
    assert play.status_code == 200, play.text
    played = anonymous.get(play.json()["url"])
    assert played.status_code == 200 and played.headers["content-disposition"].startswith("inline")

    url = urlsplit(task["video_url"])
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    base = f"{url.scheme}://{url.netloc}{url.path}"
    tampered_sig = anonymous.get(base, params={**query, "sig": "0" * 64})
    longer_life = anonymous.get(base, params={**query, "exp": str(int(query["exp"]) + 3600)})
    as_embed = anonymous.get(base, params={**query, "mode": "embed"})
    # A link the server itself would have signed, but whose time is up.
    links = VideoLinks(VIDEO_URL_SECRET.encode(), 1, clock=lambda: time.time() - 3600)
    expired_path = links.signed_path(
        links.grant(batch_id, task["task_id"], VideoMode.DOWNLOAD, query["tenant"], query["key"])
    )
    expired = anonymous.get(f"{url.scheme}://{url.netloc}{expired_path}")

    for refused, reason in [
        (tampered_sig, "bad_signature"),
        (longer_life, "bad_signature"),
        (as_embed, "bad_signature"),
        (expired, "expired"),
    ]:
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == {
            "code": "forbidden",
            "message": refused.json()["error"]["message"],
            "reason": reason,
        }
    log = _access_log(api, batch_id)
    assert [(entry["via"], entry["mode"], entry["result"]) for entry in log] == [
        ("signed_url", "download", "expired"),
        ("signed_url", "embed", "bad_signature"),
        ("signed_url", "download", "bad_signature"),
        ("signed_url", "download", "bad_signature"),
        ("signed_url", "play", "allowed"),
        ("api", "play", "allowed"),
        ("signed_url", "download", "allowed"),
    ]
    assert {entry["tenant_id"] for entry in log} == {customer.tenant_id}
    assert all(entry["task_id"] == task["task_id"] and entry["client_address"] for entry in log)


def test_a_link_of_a_revoked_key_stops_working(api: Api) -> None:
    customer = api.new_customer(credits=100)
    batch_id = _settled_batch(api, customer, [ITEM])
    [task] = api.tasks(customer, batch_id)
    key_id = parse_qs(urlsplit(task["video_url"]).query)["key"][0]

    revoked = api.http.delete(f"/api/admin/api-keys/{key_id}", headers=api.admin)
    assert revoked.status_code == 200, revoked.text

    refused = httpx.get(task["video_url"], timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["reason"] == "key_revoked"
    assert _access_log(api, batch_id)[0]["result"] == "key_revoked"


def test_unknown_fields_are_rejected(api: Api) -> None:
    customer = api.new_customer(credits=100)
    response = api.http.post(
        "/api/enterprise/video-batch",
        json={"items": [{**ITEM, "colour": "red"}], "priority": "high"},
        headers={**customer.headers, "X-Request-ID": str(uuid.uuid4())},
    )
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["error"]["errors"]}
    assert fields >= {"items[0].colour", "priority"}
