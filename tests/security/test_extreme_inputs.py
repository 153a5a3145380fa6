"""Every parameter of every operation, fed the values at the edges of what storage holds: no 5xx.

The walk reads the live `/openapi.json` and `/admin/openapi.json` (customer and operator operations)
plus the dashboard's and the customer console's pages (hidden from the document; the console's signed in
as the customer's owner), and for each path, query and header parameter and
each JSON body field sends, one at a time with the others valid, a table of extreme values chosen
by the parameter's type: integers past int32/int64, datetimes at years 1 and 9999 with +-14:00
offsets (outside the calendar once in UTC), months past the calendar, 10 KB and crafted cursors
(a ledger id past bigint, a task index past bigint, a page position at year 1), control bytes and
lone surrogates. The backends are up, so neither a 500 nor a 503 is acceptable: every answer is a
success or a 4xx, and a JSON 4xx has the error envelope.

It runs against the real services and PostgreSQL, where those values used to become 500s.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from services.gateway.console.auth import SESSION_COOKIE
from tests.console_users import accept, invite_url
from tests.rest_api import Api, Customer
from tests.stack import ADMIN_TOKEN, Stack

Json = Any

# The Stripe webhook is signed by Stripe, not by our credentials: its own tests cover its input.
SKIPPED_PATHS = frozenset({"/api/payments/stripe/webhook"})

LONE_SURROGATE = "\ud800"
BIG_INTEGERS: tuple[int, ...] = (-1, 0, 2**31, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63) - 1)
DATETIMES = (
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
    "9999-12-31T23:59:59+14:00",
    "9999-12-31T23:59:59.999999Z",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2026-01-01T00:00:00+24:00",
)
MONTHS = ("0000-01", "0001-01", "9999-12", "10000-01", "2026-00", "2026-13", "0001-00")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _b64_json(payload: dict[str, Any]) -> str:
    return _b64(json.dumps(payload, separators=(",", ":"))).rstrip("=")


CRAFTED_CURSORS = (
    "x" * 10_240,
    "9" * 30,  # a ledger entry id past bigint
    str(2**63),
    "0",
    _b64_json({"k": "t", "n": 2**63}),  # a task index past bigint
    _b64_json({"k": "t", "n": 10**30}),
    _b64_json({"k": "b", "t": "0001-01-01T00:00:00+14:00", "i": str(uuid.UUID(int=0))}),
    _b64_json({"k": "b", "t": "9999-12-31T23:59:59-14:00", "i": str(uuid.UUID(int=0))}),
    _b64("0001-01-01T00:00:00+14:00|x"),
    _b64("9999-12-31T23:59:59-14:00|x"),
    _b64("0001-01-01T00:00:00|x"),
    _b64(f"2026-01-01T00:00:00+00:00|{'9' * 30}"),
    LONE_SURROGATE,
    "\x00",
)
# Sent to every body field besides the values of its own type.
WRONG_JSON_TYPES: tuple[Any, ...] = (None, 2**64, -(2**64), 1e308, [], {})
STRINGS: tuple[Any, ...] = ("", "\x00", "\x01\x1f\x7f", LONE_SURROGATE, "a" * 10_240, "é" * 300)


@dataclass(frozen=True)
class Probe:
    """One request: an operation with exactly one parameter or body field at an extreme value."""

    label: str
    method: str
    url: str
    headers: dict[str, str | bytes] = field(default_factory=dict)
    body: bytes | None = None


def _resolve(document: Json, schema: Json) -> Json:
    while isinstance(schema, dict) and "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    if isinstance(schema, dict) and "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        return _resolve(document, options[0]) if options else schema
    return schema


def extremes(name: str, schema: Json) -> tuple[Any, ...]:
    """The table of extreme values for a parameter of this name and (resolved) schema."""
    kind = schema.get("type")
    if kind == "integer":
        return (*BIG_INTEGERS, "6", 6.0, 1.5, True)
    if kind == "number":
        return (-1, 0, 1e308, 2**64)
    if kind == "boolean":
        return (2**63, "x")
    if kind == "array":
        return ([], [None], ["x"] * 10_000)
    if kind == "object":
        return ({}, [])
    if name == "cursor":
        return CRAFTED_CURSORS
    if name == "month" or "\\d{4}-\\d{2}" in schema.get("pattern", ""):
        return MONTHS
    if schema.get("format") == "date-time" or name.startswith("created_"):
        return (*DATETIMES, "2026-01-01")
    if name.endswith("_id") or name == "reference":
        return (*STRINGS, str(uuid.UUID(int=0)), "ffffffff-ffff-ffff-ffff-ffffffffffff", str(2**63))
    return STRINGS


def _query_or_path_text(value: Any) -> str:
    """A value as it travels in a URL: lone surrogates as the bytes a client would send (%ED%A0%80)."""
    text = json.dumps(value) if isinstance(value, bool) else str(value)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _header_bytes(value: Any) -> bytes | None:
    """A header value as raw bytes; None when no HTTP client can put it on the wire at all."""
    raw = str(value).encode("utf-8", "surrogatepass")
    if any(byte < 0x20 or byte == 0x7F for byte in raw):
        return None  # control bytes in headers: test_malformed_requests.py sends them over a raw socket
    return raw


@dataclass
class Operation:
    """An operation of the document with a valid value for each of its parameters."""

    method: str
    path: str
    parameters: list[Json]
    body_schema: Json | None

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"


class Walk:
    """Builds the probes of every operation from its document and the stack's real objects."""

    def __init__(self, document: Json, valid: dict[str, str], credentials: dict[str, str]) -> None:
        self.document = document
        self.valid = valid
        self.credentials = credentials

    def operations(self) -> Iterator[Operation]:
        for path, methods in self.document["paths"].items():
            if path in SKIPPED_PATHS:
                continue
            for method, operation in methods.items():
                content = operation.get("requestBody", {}).get("content", {})
                body = content.get("application/json", {}).get("schema")
                yield Operation(method, path, operation.get("parameters", []), body)

    def valid_parameter(self, parameter: Json) -> str | None:
        """A value the parameter accepts; None leaves an optional one out."""
        name = parameter["name"]
        if name in self.valid:
            return self.valid[name]
        if parameter["in"] == "path":
            return str(uuid.uuid4())
        if parameter.get("required"):
            schema = _resolve(self.document, parameter.get("schema", {}))
            return str(self.valid_value(name, schema))
        return None

    def valid_value(self, name: str, schema: Json) -> Any:
        """A plausible valid value of a body field (defaults, enums, known names, then by type)."""
        if name in self.valid:
            return self.valid[name]
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "integer":
            return max(1, int(schema.get("minimum", 1)))
        if kind == "array":
            item = _resolve(self.document, schema.get("items", {}))
            return [self.valid_value(name, item)] if schema.get("minItems") else []
        if kind == "object":
            return self.valid_body(schema)
        if kind == "boolean":
            return False
        return f"probe-{uuid.uuid4().hex[:12]}"

    def valid_body(self, schema: Json) -> dict[str, Any]:
        schema = _resolve(self.document, schema)
        required = set(schema.get("required", []))
        body: dict[str, Any] = {}
        for name, field_schema in schema.get("properties", {}).items():
            if name in required or name in self.valid:
                body[name] = self.valid_value(name, _resolve(self.document, field_schema))
        return body

    def body_fields(
        self, schema: Json, prefix: tuple[str | int, ...] = ()
    ) -> Iterator[tuple[tuple[str | int, ...], str, Json]]:
        """Every leaf field of a body (into the first element of arrays of objects)."""
        schema = _resolve(self.document, schema)
        for name, field_schema in schema.get("properties", {}).items():
            resolved = _resolve(self.document, field_schema)
            yield (*prefix, name), name, resolved
            if resolved.get("type") == "array":
                item = _resolve(self.document, resolved.get("items", {}))
                if item.get("type") == "object":
                    yield from self.body_fields(item, (*prefix, name, 0))
            elif resolved.get("type") == "object":
                yield from self.body_fields(resolved, (*prefix, name))

    def probes(self, operation: Operation) -> Iterator[Probe]:
        valid = {parameter["name"]: self.valid_parameter(parameter) for parameter in operation.parameters}
        body = self.valid_body(operation.body_schema) if operation.body_schema is not None else None
        for parameter in operation.parameters:
            if parameter["in"] not in ("path", "query", "header"):
                continue
            schema = _resolve(self.document, parameter.get("schema", {}))
            for value in extremes(parameter["name"], schema):
                yield from self._probe(operation, valid, body, parameter, value)
        if operation.body_schema is None or body is None:
            return
        for location, name, schema in self.body_fields(operation.body_schema):
            for value in (*extremes(name, schema), *WRONG_JSON_TYPES):
                changed = json.loads(json.dumps(body))
                _place(changed, location, value)
                label = f"{operation.label} body {'.'.join(map(str, location))}={_short(value)}"
                yield self._request(operation, valid, changed, label)

    def _probe(
        self,
        operation: Operation,
        valid: dict[str, str | None],
        body: Json,
        parameter: Json,
        value: Any,
    ) -> Iterator[Probe]:
        label = f"{operation.label} {parameter['in']} {parameter['name']}={_short(value)}"
        if parameter["in"] == "header":
            raw = _header_bytes(value)
            if raw is not None:
                probe = self._request(operation, valid, body, label)
                probe.headers[parameter["name"]] = raw
                yield probe
            return
        yield self._request(
            operation, {**valid, parameter["name"]: value}, body, label, raw_names={parameter["name"]}
        )

    def _request(
        self,
        operation: Operation,
        values: dict[str, Any],
        body: Json,
        label: str,
        raw_names: frozenset[str] | set[str] = frozenset(),
    ) -> Probe:
        path = operation.path
        query: list[str] = []
        headers: dict[str, str | bytes] = {**self.credentials, "X-Request-ID": f"probe-{uuid.uuid4()}"}
        for parameter in operation.parameters:
            name = parameter["name"]
            value = values.get(name)
            if value is None:
                continue
            text = _query_or_path_text(value) if name in raw_names else quote(str(value), safe="")
            if parameter["in"] == "path":
                path = path.replace("{" + name + "}", text)
            elif parameter["in"] == "query":
                query.append(f"{quote(name)}={text}")
            elif parameter["in"] == "header" and name not in headers:
                headers[name] = str(value)
        url = path + ("?" + "&".join(query) if query else "")
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return Probe(label, operation.method.upper(), url, headers, content)


def _place(document: Json, location: tuple[str | int, ...], value: Any) -> None:
    target = document
    for step in location[:-1]:
        if isinstance(step, str) and step not in target:
            target[step] = [{}] if isinstance(location[location.index(step) + 1], int) else {}
        target = target[step]
    target[location[-1]] = value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...({len(text)} chars)"


# The dashboard's pages are hidden from the document; their parameters are listed here, one
# operation per tab so that each tab's cursor reaches the backend that reads it.
def _query(name: str, *values: str) -> Json:
    schema: Json = {"type": "string", "enum": list(values)} if values else {"type": "string"}
    return {"name": name, "in": "query", "required": bool(values), "schema": schema}


def _path(name: str) -> Json:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


DASHBOARD_OPERATIONS = (
    Operation("get", "/admin/sign-in", [_query("next")], None),
    Operation(
        "get",
        "/admin/batches",
        [_query(name) for name in ("status", "settlement_status", "tenant_id", "cursor")],
        None,
    ),
    Operation("get", "/admin/tenants", [_query("cursor")], None),
    Operation("get", "/admin/tenants/{tenant_id}", [_path("tenant_id"), _query("cursor")], None),
    *(
        Operation(
            "get",
            "/admin/batches/{batch_id}",
            [
                _path("batch_id"),
                _query("tab", tab),
                *(_query(name) for name in ("status", "failure_type", "limit", "cursor")),
            ],
            None,
        )
        for tab in ("overview", "tasks", "provider_jobs", "billing", "webhooks")
    ),
)


# The customer console's pages (hidden from the document too), probed signed in as the customer's
# owner: every GET route of its route table with its query parameters.
CONSOLE_OPERATIONS = (
    Operation("get", "/console/login", [_query("next")], None),
    Operation("get", "/console/invites/{token}", [_path("token")], None),
    Operation(
        "get",
        "/console/batches",
        [
            _query(name)
            for name in ("status", "created_from", "created_to", "name", "meta_key", "meta_value", "cursor")
        ],
        None,
    ),
    *(
        Operation(
            "get",
            "/console/batches/{batch_id}",
            [
                _path("batch_id"),
                _query("tab", tab),
                *(_query(name) for name in ("status", "failure_type", "cursor")),
            ],
            None,
        )
        for tab in ("overview", "tasks", "ledger", "webhooks")
    ),
    Operation("get", "/console/batches/{batch_id}/progress", [_path("batch_id")], None),
    *(
        Operation("get", f"/console/batches/{{batch_id}}/{kind}.{suffix}", [_path("batch_id")], None)
        for kind in ("results", "errors")
        for suffix in ("csv", "jsonl")
    ),
    Operation(
        "get",
        "/console/batches/{batch_id}/tasks/{task_id}/video",
        [_path("batch_id"), _path("task_id"), _query("mode")],
        None,
    ),
    Operation("get", "/console/team", [], None),
    Operation("get", "/console", [], None),
    *(
        Operation("get", path, [_query(name) for name in ("created_from", "created_to")], None)
        for path in ("/console/usage", "/console/usage.csv")
    ),
    *(
        Operation(
            "get",
            path,
            [_query(name) for name in ("batch_id", "ref_type", "created_from", "created_to", "cursor")],
            None,
        )
        for path in ("/console/books", "/console/books.csv")
    ),
    Operation("get", "/console/books/statements", [_query("month")], None),
    *(
        Operation("get", path, [_path("month")], None)
        for path in (
            "/console/books/statements/{month}",
            "/console/books/statements/{month}/csv",
            "/console/books/statements/{month}/print",
        )
    ),
    Operation("get", "/console/credits", [_query("checkout"), _query("cursor")], None),
    Operation("get", "/console/credits/receipts/{payment_id}", [_path("payment_id")], None),
    Operation("get", "/console/developers", [], None),
    Operation(
        "get",
        "/console/developers/deliveries",
        [_query(name) for name in ("batch_id", "cursor", "replayed")],
        None,
    ),
    *(
        Operation(
            "get", path, [_query(name) for name in ("action", "occurred_from", "occurred_to", "cursor")], None
        )
        for path in ("/console/activity", "/console/activity.csv")
    ),
)


@pytest.fixture(scope="module")
def customer(api: Api) -> Customer:
    return api.new_customer(credits=1_000_000)


@pytest.fixture(scope="module")
def valid_values(api: Api, customer: Customer) -> dict[str, str]:
    """Real objects of the stack, so that a probe's other parameters reach the storage."""
    created = api.create_batch(customer, [{"prompt": "a lighthouse at dusk", "model": "sora-2"}] * 3)
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)
    task_id = api.tasks(customer, batch_id)[0]["task_id"]
    return {
        "batch_id": batch_id,
        "task_id": task_id,
        "tenant_id": customer.tenant_id,
        "month": time.strftime("%Y-%m", time.gmtime()),
        "model": "sora-2",
        "prompt": "a lighthouse at dusk",
        "url": "https://hooks.example.com/reelbatch",
        "webhook_url": "https://hooks.example.com/reelbatch",
        "role": "finance",
    }


# Credentials are not parameters of the document; each is sent at extreme values on a customer
# route, an operator route, a dashboard page and a console page.
CREDENTIAL_PATHS = ("/api/enterprise/credits", "/api/admin/tenants", "/admin/batches", "/console/batches")
CREDENTIAL_VALUES: tuple[bytes, ...] = (
    b"",
    b"x" * 10_240,
    "\u00e9".encode("latin-1"),
    b"\xed\xa0\x80",
    b"\xff\xfe",
    b"rb_live_" + b"A" * 43,
)


def credential_probes() -> Iterator[Probe]:
    for path in CREDENTIAL_PATHS:
        for value in CREDENTIAL_VALUES:
            for name, prefix in (
                ("X-API-Key", b""),
                ("Authorization", b"Bearer "),
                ("Cookie", b"rb_admin="),
                ("Cookie", f"{SESSION_COOKIE}=".encode()),
            ):
                yield Probe(
                    f"GET {path} header {name}={_short(value)}",
                    "GET",
                    path,
                    {name: (prefix + value).rstrip()},
                )


def test_a_top_up_past_the_largest_balance_is_a_422_in_the_envelope(api: Api) -> None:
    tenant = api.new_customer(credits=0)
    url = f"/api/admin/tenants/{tenant.tenant_id}/credits"
    first = api.http.post(url, json={"credits": 2**62, "reference": "whale-1"}, headers=api.admin)
    second = api.http.post(url, json={"credits": 2**62, "reference": "whale-2"}, headers=api.admin)
    payment = api.http.post(
        f"/api/admin/tenants/{tenant.tenant_id}/payments",
        json={"reference": "INV-whale", "credits": 2**62, "amount_usd_cents": 1},
        headers=api.admin,
    )

    assert first.status_code == 200, first.text
    for refused in (second, payment):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "validation_error"
        assert "largest balance" in refused.json()["error"]["message"]
    balance = api.http.get(f"/api/admin/tenants/{tenant.tenant_id}/credits", headers=api.admin).json()
    assert balance["available_credits"] == 2**62


@pytest.mark.timeout(240)
def test_no_parameter_at_an_extreme_value_reaches_a_server_error(
    stack: Stack, api: Api, customer: Customer, valid_values: dict[str, str]
) -> None:
    document = api.http.get("/openapi.json").json()
    # The operator API has a document of its own (ADR-093): the walk covers both.
    operator = api.http.get("/admin/openapi.json").json()
    document["paths"].update(operator["paths"])
    document["components"]["schemas"].update(operator["components"]["schemas"])
    email = f"owner-{uuid.uuid4().hex[:8]}@studio.example"
    console = accept(stack.base_url, invite_url(api, customer.tenant_id, email, "owner"))
    credentials = {
        "X-API-Key": customer.api_key,
        "Authorization": f"Bearer {ADMIN_TOKEN}",
        "Cookie": f"{SESSION_COOKIE}={console.cookies[SESSION_COOKIE]}",
    }
    walk = Walk(document, valid_values, credentials)
    failures: list[str] = []
    started = time.monotonic()
    log_offsets = {path: path.stat().st_size for path in stack.workdir.glob("*.log")}
    operations = [*walk.operations(), *DASHBOARD_OPERATIONS, *CONSOLE_OPERATIONS]
    probes = [*(probe for operation in operations for probe in walk.probes(operation)), *credential_probes()]
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        for probe in probes:
            request = http.build_request(
                probe.method, httpx.URL(probe.url), headers=_raw(probe.headers), content=probe.body
            )
            problem = _problem(http.send(request))
            if problem:
                failures.append(f"{probe.label}: {problem}")
    elapsed = time.monotonic() - started
    failures += _logged_faults(log_offsets)
    assert len(operations) > 50
    assert len(probes) > 1200
    assert not failures, f"{len(failures)} of {len(probes)} probes failed ({elapsed:.0f} s):\n" + "\n".join(
        failures[:200]
    )


# What a service logs when a request's value reached a failure no rule of ours refused: the
# last-resort 500, or a value only the database refused (answered 422 by the safety net, but
# the domain should have named it).
LOGGED_FAULTS = ("unhandled error", "refused by the database")


def _logged_faults(offsets: dict[Path, int]) -> list[str]:
    """Lines the services logged since `offsets` that name a fault."""
    found: list[str] = []
    for path, offset in offsets.items():
        with path.open("rb") as log:
            log.seek(offset)
            for line in log.read().decode(errors="replace").splitlines():
                if any(fault in line for fault in LOGGED_FAULTS):
                    found.append(f"{path.name}: {line[:300]}")
    return found


def _raw(headers: dict[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (name.encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in headers.items()
    ]


def _problem(response: httpx.Response) -> str | None:
    if response.status_code >= 500:
        return f"{response.status_code} {response.text[:200]}"
    if 400 <= response.status_code < 500 and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        body = response.json()
        if body.get("ok") is not False or not isinstance(body.get("error", {}).get("code"), str):
            return f"{response.status_code} without the error envelope: {response.text[:200]}"
    return None
