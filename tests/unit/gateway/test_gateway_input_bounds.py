"""The HTTP edge's input rules, one per kind of value: integers of JSON bodies are integers (as the
OpenAPI document says), cursors are printable ASCII, instants lie within years 1..9999 in UTC,
months are real months. A refusal is a 422 in the error envelope naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.gateway.gateway_fakes import ADMIN, BATCH_ID, CUSTOMER, TENANT_ID

CREATE_URL = "/api/enterprise/video-batch"
ITEM = {"prompt": "a cat", "model": "sora-2"}


def _refused_field(response: Any) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["ok"] is False and body["error"]["code"] == "validation_error", body
    fields: list[str] = [error["field"] for error in body["error"]["errors"]]
    return fields[0]


@pytest.mark.parametrize("value", ["6", 6.0, 6.5, True], ids=repr)
@pytest.mark.parametrize(
    ("path", "body", "field", "headers"),
    [
        (CREATE_URL, {"items": [{**ITEM, "duration_seconds": None}]}, "items[0].duration_seconds", CUSTOMER),
        (CREATE_URL, {"items": [ITEM], "deadline_seconds": None}, "deadline_seconds", CUSTOMER),
        (f"/api/admin/tenants/{TENANT_ID}/credits", {"reference": "r-1", "credits": None}, "credits", ADMIN),
        (
            f"/api/admin/tenants/{TENANT_ID}/payments",
            {"reference": "INV-1", "credits": None},
            "credits",
            ADMIN,
        ),
        (
            f"/api/admin/tenants/{TENANT_ID}/payments",
            {"reference": "INV-1", "credits": 6, "amount_usd_cents": None},
            "amount_usd_cents",
            ADMIN,
        ),
    ],
    ids=["item duration", "batch deadline", "top-up credits", "payment credits", "payment amount"],
)
def test_an_integer_field_refuses_strings_floats_and_booleans(
    client: TestClient, path: str, body: dict[str, Any], field: str, headers: dict[str, str], value: object
) -> None:
    document = _with(body, field, value)

    response = client.post(path, json=document, headers=headers)

    assert _refused_field(response) == field


def _with(body: dict[str, Any], field: str, value: object) -> dict[str, Any]:
    """`body` with its None placeholder (the field under test) replaced by `value`."""
    if field.startswith("items[0]."):
        return {**body, "items": [{**body["items"][0], field.split(".", 1)[1]: value}]}
    return {**body, field: value}


@pytest.mark.parametrize("cursor", ["a b", "a\x01b", "\ud800", "é", "x" * 1025], ids=repr)
@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/enterprise/video-batch", CUSTOMER),
        ("/api/enterprise/ledger", CUSTOMER),
        ("/api/enterprise/webhook-endpoints", CUSTOMER),
        ("/api/admin/tenants", ADMIN),
        (f"/api/admin/batches/{BATCH_ID}/billing", ADMIN),
        ("/api/admin/video-access", ADMIN),
    ],
)
def test_a_cursor_that_is_not_printable_ascii_is_refused_at_the_edge(
    client: TestClient, path: str, headers: dict[str, str], cursor: str
) -> None:
    raw = cursor.encode("utf-8", "surrogatepass")
    query = "".join(f"%{byte:02X}" for byte in raw)

    response = client.get(f"{path}?cursor={query}", headers=headers)

    assert _refused_field(response) == "cursor"


def test_a_dashboard_cursor_that_is_not_printable_ascii_is_refused_with_the_envelope(
    client: TestClient,
) -> None:
    response = client.get("/admin/tenants?cursor=%00", headers=ADMIN)

    assert _refused_field(response) == "cursor"


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+00:01"],
)
@pytest.mark.parametrize("parameter", ["created_from", "created_to"])
@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/enterprise/ledger.csv", CUSTOMER),
        ("/api/admin/ledger.csv", ADMIN),
        ("/api/admin/batches", ADMIN),
    ],
)
def test_an_instant_outside_the_calendar_once_in_utc_is_refused(
    client: TestClient, path: str, headers: dict[str, str], parameter: str, moment: str
) -> None:
    response = client.get(path, params={parameter: moment}, headers=headers)

    assert _refused_field(response) == parameter


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-00:00", "0001-01-01T00:00:00-14:00"]
)
def test_an_instant_at_the_calendars_ends_in_utc_is_accepted(client: TestClient, moment: str) -> None:
    response = client.get("/api/admin/batches", params={"created_from": moment}, headers=ADMIN)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("month", ["2026-00", "2026-13", "10000-01", "2026-1"])
@pytest.mark.parametrize(
    ("path", "headers"), [("/api/enterprise/statement", CUSTOMER), ("/api/admin/margins", ADMIN)]
)
def test_a_month_that_is_not_a_calendar_month_is_refused(
    client: TestClient, path: str, headers: dict[str, str], month: str
) -> None:
    response = client.get(path, params={"month": month}, headers=headers)

    assert _refused_field(response) == "month"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/admin/tenants", {"name": "a\x00b"}, "name"),
        (f"/api/admin/tenants/{TENANT_ID}/credits", {"reference": "r\x00", "credits": 1}, "reference"),
        (f"/api/admin/tenants/{TENANT_ID}/payments", {"reference": "INV\n1", "credits": 1}, "reference"),
        (f"/api/admin/tenants/{TENANT_ID}/payments", {"reference": "INV-1", "pack_id": "p\x00"}, "pack_id"),
    ],
)
def test_a_stored_name_or_reference_with_a_control_character_is_refused(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(path, json=body, headers=ADMIN)

    assert _refused_field(response) == field
