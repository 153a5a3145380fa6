"""The customer console's security, on the whole system (every service its own process).

The role matrix, the cross-tenant matrix, the signed-out matrix and the CSRF matrix are generated
from the console's route table (`services.gateway.console.route_table.ROUTES`): a route added to
the table is tested here without anyone writing a test for it, and a route served under /console
but missing from the table fails `test_every_console_route_is_declared_in_the_route_table`.

Two tenants, A and B, each with an owner, a developer and a finance user (invited through the
operator API, signed up through the invite link) and a settled batch.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from libs.config import Settings
from services.gateway.console.route_table import ALL_ROLES, ROUTES, ConsoleRoute
from services.gateway.entrypoints.app import create_app
from tests.console_users import CSRF, PASSWORD, accept, csrf_of, invite_url, sign_in, signed_in
from tests.rest_api import Api, Customer
from tests.security.console_objects import a_message, a_payment, fresh_api_key, fresh_endpoint
from tests.stack import ADMIN_TOKEN, Stack
from tests.unit.gateway.gateway_fakes import FakeBatch, FakeBilling, FakeWebhook, Readiness, fake_backends

ROLES = sorted(ALL_ROLES)
BATCH_NAME = "harbour-teaser"
# The per-email lock-out of the stack (the default of REELBATCH_CONSOLE_SIGN_IN_MAX_FAILURES).
MAX_FAILURES = Settings().console_sign_in_max_failures


@dataclass
class Tenant:
    """A tenant of the matrix: its API customer, users by role, a settled batch."""

    customer: Customer
    batch_id: str
    # A task of that batch with a video.
    task_id: str
    emails: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)
    clients: dict[str, httpx.Client] = field(default_factory=dict)


def _tenant(api: Api, stack: Stack) -> Tenant:
    customer = api.new_customer(1000)
    items = [
        {"prompt": f"A lighthouse, take {n}", "model": "sora-2", "custom_id": f"shot-{n}"} for n in range(3)
    ]
    items.append({"prompt": "Forbidden #fail", "model": "sora-2", "custom_id": "shot-forbidden"})
    # Named and labelled (batch I/O), so the console's name and metadata filters have a batch to find.
    created = api.http.post(
        "/api/enterprise/video-batch",
        json={
            "items": items,
            "name": BATCH_NAME,
            "metadata": {"project": "harbour", "tenant": customer.tenant_id},
        },
        headers=customer.headers,
    )
    assert created.status_code == 202, created.text
    batch_id = created.json()["batch_id"]
    api.wait_until_settled(customer, batch_id)
    delivered = [task for task in api.tasks(customer, batch_id) if task["status"] == "succeeded"]
    tenant = Tenant(customer, batch_id, delivered[0]["task_id"])
    for role in ROLES:
        email = f"{role}-{uuid.uuid4().hex[:8]}@studio.example"
        client = accept(stack.base_url, invite_url(api, customer.tenant_id, email, role))
        tenant.emails[role] = email
        tenant.clients[role] = client
    with psycopg.connect(stack.database_url.replace("+psycopg", "")) as conn:
        for role, email in tenant.emails.items():
            row = conn.execute("SELECT id FROM billing.console_users WHERE email = %s", (email,)).fetchone()
            assert row is not None
            tenant.user_ids[role] = str(row[0])
    # The owner lets finance buy credits, so the matrix sees each role the route table admits served.
    owner = tenant.clients["owner"]
    allowed = owner.post(
        "/console/credits/settings", data={"csrf_token": csrf_of(owner), "finance_may_buy_credits": "on"}
    )
    assert allowed.status_code == 303, allowed.text
    return tenant


@pytest.fixture(scope="module")
def tenants(api: Api, stack: Stack) -> Iterator[tuple[Tenant, Tenant]]:
    pair = (_tenant(api, stack), _tenant(api, stack))
    yield pair
    for tenant in pair:
        for client in tenant.clients.values():
            client.close()


def _fresh_member(api: Api, stack: Stack, tenant: Tenant) -> str:
    email = f"member-{uuid.uuid4().hex[:8]}@studio.example"
    accept(stack.base_url, invite_url(api, tenant.customer.tenant_id, email, "developer")).close()
    with psycopg.connect(stack.database_url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT id FROM billing.console_users WHERE email = %s", (email,)).fetchone()
    assert row is not None
    return str(row[0])


def _fresh_invite(api: Api, tenant: Tenant) -> str:
    """A new open invite of the tenant; returns its id."""
    email = f"invitee-{uuid.uuid4().hex[:8]}@studio.example"
    response = api.http.post(
        f"/api/admin/tenants/{tenant.customer.tenant_id}/console-invites",
        json={"email": email, "role": "finance"},
        headers=api.admin,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["invite_id"])


def _fresh_token(api: Api, stack: Stack, tenant: Tenant) -> str:
    email = f"x-{uuid.uuid4().hex[:8]}@studio.example"
    return invite_url(api, tenant.customer.tenant_id, email, "finance").rsplit("/", 1)[1]


# Each path parameter of the route table: how to make (or find) an object of a tenant to put there.
OBJECT_MAKERS: dict[str, Callable[[Api, Stack, Tenant], str]] = {
    "batch_id": lambda api, stack, tenant: tenant.batch_id,
    "task_id": lambda api, stack, tenant: tenant.task_id,
    "invite_id": lambda api, stack, tenant: _fresh_invite(api, tenant),
    "user_id": lambda api, stack, tenant: _fresh_member(api, stack, tenant),
    "token": _fresh_token,
    "month": lambda api, stack, tenant: f"{datetime.now(UTC):%Y-%m}",
    "payment_id": lambda api, stack, tenant: a_payment(api, stack.database_url, tenant.customer),
    "key_id": lambda api, stack, tenant: fresh_api_key(api, tenant.customer),
    "endpoint_id": lambda api, stack, tenant: fresh_endpoint(api, tenant.customer),
    "message_id": lambda api, stack, tenant: a_message(api, tenant.customer),
}


def _path(route: ConsoleRoute, api: Api, stack: Stack, owner_of_objects: Tenant) -> str:
    """The route's path with a fresh (or the standing) object of `owner_of_objects` in it."""
    path = route.path
    for name in re.findall(r"{(\w+)}", route.path):
        # A new kind of path parameter needs its maker above, or no matrix could test the route.
        assert name in OBJECT_MAKERS, f"no fresh-object maker for {{{name}}} of {route.path}"
        path = path.replace("{" + name + "}", OBJECT_MAKERS[name](api, stack, owner_of_objects))
    return path


# The fields a form needs to succeed (besides its CSRF token), by route name; none when absent.
FORM_FIELDS: dict[str, Callable[[], dict[str, str]]] = {
    "invite_member": lambda: {"email": f"new-{uuid.uuid4().hex[:8]}@studio.example", "role": "developer"},
    "buy_credits": lambda: {"pack_id": "pilot"},
    # The owner keeps finance allowed to buy, so `buy_credits` serves every role it admits.
    "credit_settings": lambda: {"finance_may_buy_credits": "on"},
    # A URL of its own each time: a tenant registers one URL once.
    "create_webhook_endpoint": lambda: {
        "url": f"http://127.0.0.1:9/hooks/{uuid.uuid4().hex[:12]}",
        "event_types": "batch.completed",
    },
    "replay_failed": lambda: {"since": "2000-01-01T00:00"},
    "change_role": lambda: {"role": "finance"},
    # Saved turned off: turning it on needs a card saved with Stripe.
    "set_auto_top_up": lambda: {"threshold_credits": "100", "pack_id": "pilot", "max_per_month": "1"},
}


def _form_for(route: ConsoleRoute) -> dict[str, str]:
    return FORM_FIELDS.get(route.name, dict)()


def _request(client: httpx.Client, route: ConsoleRoute, path: str, *, csrf: str | None) -> httpx.Response:
    if route.method == "GET":
        return client.get(path)
    data = _form_for(route)
    if csrf is not None:
        data["csrf_token"] = csrf
    return client.post(path, data=data)


PROTECTED = [route for route in ROUTES if not route.public]
FORMS = [route for route in PROTECTED if route.method == "POST"]
TENANT_OBJECTS = [route for route in ROUTES if route.tenant_object]


def _route_id(route: ConsoleRoute) -> str:
    return f"{route.method} {route.path}"


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute of an app, included routers too (FastAPI keeps those as included-router
    nodes; ours are included without a prefix, so their paths are the served ones)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def test_every_path_parameter_of_the_route_table_has_a_maker() -> None:
    for route in ROUTES:
        for name in re.findall(r"{(\w+)}", route.path):
            assert name in OBJECT_MAKERS, f"{route.path}: add a fresh-object maker for {{{name}}}"


def test_every_console_route_is_declared_in_the_route_table() -> None:
    backends = fake_backends(FakeBilling(), FakeBatch(), Readiness(), FakeWebhook())
    app = create_app(Settings(), backends)
    served = {
        (method, route.path)
        for route in _api_routes(getattr(app, "routes", []))
        if route.path.startswith("/console")
        for method in route.methods or ()
    }
    declared = {(route.method, route.path) for route in ROUTES}
    assert served == declared


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", PROTECTED, ids=_route_id)
def test_role_matrix(
    route: ConsoleRoute, role: str, tenants: tuple[Tenant, Tenant], api: Api, stack: Stack
) -> None:
    """Each route, each role, on the user's own tenant: allowed roles are served, others get 403."""
    own, _ = tenants
    # A form post acts: on a fresh session (sign-out would end the shared one) and fresh objects.
    client = signed_in(stack.base_url, own.emails[role]) if route.method == "POST" else own.clients[role]
    response = _request(
        client, route, _path(route, api, stack, own), csrf=csrf_of(client) if route.method == "POST" else None
    )
    if role in route.roles:
        assert response.status_code in (200, 201, 303), (response.status_code, response.text[:500])
        assert "/console/login?next=" not in response.headers.get("location", "")
    else:
        assert response.status_code == 403, (response.status_code, response.text[:500])


@pytest.mark.parametrize("route", TENANT_OBJECTS, ids=_route_id)
def test_cross_tenant_matrix(
    route: ConsoleRoute, tenants: tuple[Tenant, Tenant], api: Api, stack: Stack
) -> None:
    """Tenant A's users asking for tenant B's object get the 404 of an unknown one, with nothing
    of B in the answer, whatever their role."""
    own, other = tenants
    for role in sorted(route.roles or ALL_ROLES):
        client = signed_in(stack.base_url, own.emails[role]) if route.method == "POST" else own.clients[role]
        path = _path(route, api, stack, other)
        response = _request(client, route, path, csrf=csrf_of(client) if route.method == "POST" else None)
        if route.public:
            # Invite links carry no tenant: a valid link is a valid link (for its own tenant).
            continue
        assert response.status_code == 404, (role, response.status_code, response.text[:500])
        for secret in (
            other.batch_id,
            other.customer.tenant_id,
            *other.emails.values(),
            *other.user_ids.values(),
        ):
            assert secret not in response.text
        unknown_path = route.path.replace("{" + route.tenant_object + "}", str(uuid.uuid4()))
        csrf = csrf_of(client) if route.method == "POST" else None
        assert _request(client, route, unknown_path, csrf=csrf).status_code == 404


@pytest.mark.parametrize("route", [route for route in PROTECTED if route.method == "GET"], ids=_route_id)
def test_no_page_shows_another_tenants_data(
    route: ConsoleRoute, tenants: tuple[Tenant, Tenant], api: Api, stack: Stack
) -> None:
    own, other = tenants
    path = _path(route, api, stack, own)
    response = own.clients["owner"].get(path)
    assert response.status_code in (200, 303)
    for secret in (other.batch_id, other.customer.tenant_id, *other.emails.values()):
        assert secret not in response.text


@pytest.mark.parametrize("route", PROTECTED, ids=_route_id)
def test_signed_out_matrix(
    route: ConsoleRoute, tenants: tuple[Tenant, Tenant], api: Api, stack: Stack
) -> None:
    """Without a session: pages redirect to the sign-in page, JSON and exports answer 401."""
    own, _ = tenants
    with httpx.Client(base_url=stack.base_url, timeout=30) as anonymous:
        response = _request(anonymous, route, _path(route, api, stack, own), csrf="forged")
    if route.kind == "page":
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=")
    else:
        assert response.status_code == 401
    assert own.batch_id not in response.text


@pytest.mark.parametrize("route", FORMS, ids=_route_id)
def test_csrf_matrix(route: ConsoleRoute, tenants: tuple[Tenant, Tenant], api: Api, stack: Stack) -> None:
    """Every form refuses a post without the session's token, with another session's token, and
    from another origin even with the right token."""
    own, _ = tenants
    role = sorted(route.roles)[0]
    client = signed_in(stack.base_url, own.emails[role])
    other_session = signed_in(stack.base_url, own.emails[role])
    path = _path(route, api, stack, own)
    assert _request(client, route, path, csrf=None).status_code == 403
    assert _request(client, route, path, csrf=csrf_of(other_session)).status_code == 403
    cross_site = client.post(
        path,
        data={**_form_for(route), "csrf_token": csrf_of(client)},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    # The session was not ended by any refused post.
    assert client.get("/console/batches").status_code == 200


def test_session_cookie_flags(tenants: tuple[Tenant, Tenant], stack: Stack) -> None:
    own, _ = tenants
    response = sign_in(stack.base_url, own.emails["finance"])
    cookie = response.headers["set-cookie"]
    assert "reelbatch_console=" in cookie
    for flag in ("HttpOnly", "Path=/console", "SameSite=lax"):
        assert flag.lower() in cookie.lower(), cookie
    # http://: no Secure flag (a browser would drop the cookie); https public URLs get it.
    assert "secure" not in cookie.lower()


def test_sign_in_locks_the_account_after_repeated_failures(
    api: Api, stack: Stack, tenants: tuple[Tenant, Tenant]
) -> None:
    own, _ = tenants
    email = f"locked-{uuid.uuid4().hex[:8]}@studio.example"
    accept(stack.base_url, invite_url(api, own.customer.tenant_id, email, "finance")).close()
    for _ in range(MAX_FAILURES):
        assert sign_in(stack.base_url, email, "not the password at all").status_code == 401
    locked = sign_in(stack.base_url, email)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert "reelbatch_console=" not in locked.headers.get("set-cookie", "")


def test_an_invite_link_works_once(api: Api, stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    own, _ = tenants
    url = invite_url(api, own.customer.tenant_id, f"once-{uuid.uuid4().hex[:8]}@studio.example", "developer")
    accept(stack.base_url, url).close()
    with httpx.Client(base_url=stack.base_url, timeout=30) as second:
        assert second.get(url).status_code == 404
        reused = second.post(url, data={"password": PASSWORD, "password_confirmation": PASSWORD})
        assert reused.status_code == 404
        assert "reelbatch_console=" not in reused.headers.get("set-cookie", "")


def test_an_idle_or_too_old_session_ends(stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    own, _ = tenants
    idle = signed_in(stack.base_url, own.emails["developer"])
    old = signed_in(stack.base_url, own.emails["developer"])
    assert idle.get("/console/batches").status_code == 200
    with psycopg.connect(stack.database_url.replace("+psycopg", "")) as conn:
        for client, column in ((idle, "last_seen_at"), (old, "expires_at")):
            token = client.cookies["reelbatch_console"]
            conn.execute(
                f"UPDATE billing.console_sessions SET {column} = now() - interval '1 day' "
                "WHERE token_hash = encode(sha256(%s::bytea), 'hex')",
                (token.encode(),),
            )
    for client in (idle, old):
        response = client.get("/console/batches")
        assert response.status_code == 303 and response.headers["location"].startswith("/console/login")


def test_signing_out_everywhere_ends_every_session(
    api: Api, stack: Stack, tenants: tuple[Tenant, Tenant]
) -> None:
    own, _ = tenants
    email = f"everywhere-{uuid.uuid4().hex[:8]}@studio.example"
    accept(stack.base_url, invite_url(api, own.customer.tenant_id, email, "finance")).close()
    first = signed_in(stack.base_url, email)
    second = signed_in(stack.base_url, email)
    ended = first.post("/console/logout", data={"csrf_token": csrf_of(first), "everywhere": "1"})
    assert ended.status_code == 303
    for client in (first, second):
        assert client.get("/console/batches").status_code == 303
    # Other users' sessions are untouched.
    assert own.clients["finance"].get("/console/batches").status_code == 200


def test_the_operator_invite_endpoint_refuses_precisely(api: Api, tenants: tuple[Tenant, Tenant]) -> None:
    own, other = tenants
    url = f"/api/admin/tenants/{own.customer.tenant_id}/console-invites"
    cases = [
        (url, {"email": "someone@studio.example", "role": "admin"}, 422, "validation_error"),
        (url, {"email": "someone@studio.example"}, 422, "validation_error"),
        (url, {"email": "not an email", "role": "owner"}, 422, "validation_error"),
        # An email that already signs in (to any tenant's console) cannot be invited again.
        (url, {"email": other.emails["owner"], "role": "owner"}, 409, "console_user_exists"),
        (
            f"/api/admin/tenants/{uuid.uuid4()}/console-invites",
            {"email": "someone@studio.example", "role": "owner"},
            404,
            "not_found",
        ),
    ]
    for path, body, status, code in cases:
        response = api.http.post(path, json=body, headers=api.admin)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    assert api.http.post(url, json={"email": "a@b.example", "role": "owner"}).status_code == 401
    finance_key = api.http.post(
        "/api/admin/admin-keys", json={"role": "finance", "name": "books"}, headers=api.admin
    )
    assert finance_key.status_code == 201, finance_key.text
    read_only = {"Authorization": f"Bearer {finance_key.json()['api_key']}"}
    assert (
        api.http.post(url, json={"email": "a@b.example", "role": "owner"}, headers=read_only).status_code
        == 403
    )


def test_the_cli_prints_a_working_invite_link(api: Api, stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    own, _ = tenants
    email = f"cli-{uuid.uuid4().hex[:8]}@studio.example"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.launcher",
            "console-invite",
            own.customer.tenant_id,
            email,
            "--role",
            "developer",
        ],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    link = done.stdout.strip()
    assert link.startswith(f"{stack.base_url}/console/invites/")
    client = accept(stack.base_url, link)
    assert email in client.get("/console/team").text
    client.close()


def test_the_admin_tenant_page_invites_to_the_console(stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    own, _ = tenants
    with httpx.Client(base_url=stack.base_url, timeout=30) as operator:
        signed = operator.post("/admin/sign-in", data={"token": ADMIN_TOKEN, "next": "/admin/tenants"})
        assert signed.status_code == 303
        page = operator.get(f"/admin/tenants/{own.customer.tenant_id}")
        csrf = CSRF.search(page.text)
        assert csrf is not None and 'id="console-invite"' in page.text
        email = f"button-{uuid.uuid4().hex[:8]}@studio.example"
        path = f"/admin/tenants/{own.customer.tenant_id}/console-invites"
        forged = operator.post(path, data={"csrf_token": "forged", "email": email, "role": "finance"})
        assert forged.status_code == 403
        created = operator.post(path, data={"csrf_token": csrf.group(1), "email": email, "role": "finance"})
        assert created.status_code == 201
        link = re.search(r'id="invite-url" class="mono" readonly value="([^"]+)"', created.text)
        assert link is not None
    accept(stack.base_url, link.group(1)).close()


def test_an_owner_invites_a_member_who_joins_and_the_activity_log_shows_it(
    stack: Stack, tenants: tuple[Tenant, Tenant]
) -> None:
    own, other = tenants
    owner = own.clients["owner"]
    email = f"joiner-{uuid.uuid4().hex[:8]}@studio.example"
    created = owner.post(
        "/console/team/invites", data={"csrf_token": csrf_of(owner), "email": email, "role": "finance"}
    )
    assert created.status_code == 201
    link = re.search(r'id="invite-url" class="mono" readonly value="([^"]+)"', created.text)
    assert link is not None
    accept(stack.base_url, link.group(1)).close()
    joined = signed_in(stack.base_url, email)
    assert joined.get("/console/activity").status_code == 200  # finance reads the log
    export = joined.get("/console/activity.csv")
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    invited = [row for row in rows if row["action"] == "member.invited" and email in row["detail"]]
    assert [row["actor"] for row in invited] == [own.emails["owner"]]
    assert any(row["action"] == "member.joined" and row["actor"] == email for row in rows)
    assert any(row["action"] == "console.signed_in" and row["actor"] == email for row in rows)
    for secret in other.emails.values():
        assert secret not in export.text
    joined.close()


def test_an_owner_changes_a_members_role_but_never_the_last_owners(
    api: Api, stack: Stack, tenants: tuple[Tenant, Tenant]
) -> None:
    own, _ = tenants
    owner = own.clients["owner"]
    member_id = _fresh_member(api, stack, own)
    path = f"/console/team/members/{member_id}/role"
    forged = owner.post(path, data={"csrf_token": "forged", "role": "finance"})
    assert forged.status_code == 403
    changed = owner.post(path, data={"csrf_token": csrf_of(owner), "role": "finance"})
    assert changed.status_code == 303, changed.text[:300]
    team = owner.get("/console/team").text
    row = team[team.index(f'data-member="{member_id}"') :].split("</tr>", 1)[0]
    assert '<option value="finance" selected>' in row
    unknown = owner.post(path, data={"csrf_token": csrf_of(owner), "role": "admin"})
    assert unknown.status_code == 422
    # The tenant's only owner cannot demote themselves (nor be removed).
    owner_path = f"/console/team/members/{own.user_ids['owner']}"
    demoted = owner.post(f"{owner_path}/role", data={"csrf_token": csrf_of(owner), "role": "developer"})
    assert demoted.status_code == 409 and "last owner" in demoted.text
    removed = owner.post(f"{owner_path}/remove", data={"csrf_token": csrf_of(owner)})
    assert removed.status_code == 409
    assert owner.get("/console/team").status_code == 200  # still an owner: the page and its forms
    assert "Change role" in owner.get("/console/team").text
    assert "Change role" not in own.clients["developer"].get("/console/team").text
    log = owner.get("/console/activity.csv")
    rows = [row for row in csv.DictReader(io.StringIO(log.text)) if row["action"] == "member.role_changed"]
    by_owner = [row for row in rows if row["actor"] == own.emails["owner"]]
    assert any("developer -> finance" in row["detail"] for row in by_owner), rows


def test_the_batch_list_filters_by_status_and_date_range(tenants: tuple[Tenant, Tenant]) -> None:
    own, _ = tenants
    client = own.clients["finance"]
    today = datetime.now(UTC).date()
    shown = {
        "": True,
        "?status=partial": True,
        "?status=completed": False,
        f"?created_from={today.isoformat()}&created_to={today.isoformat()}": True,
        f"?created_from={(today + timedelta(days=1)).isoformat()}": False,
        f"?created_to={(today - timedelta(days=1)).isoformat()}": False,
    }
    for query, listed in shown.items():
        page = client.get(f"/console/batches{query}")
        assert page.status_code == 200
        assert (f'data-batch="{own.batch_id}"' in page.text) is listed, query


def test_the_batch_list_filters_by_name_and_metadata(tenants: tuple[Tenant, Tenant]) -> None:
    own, other = tenants
    client = own.clients["developer"]
    tenant_id = own.customer.tenant_id
    shown = {
        f"?name={BATCH_NAME}": True,
        "?name=another-name": False,
        "?metadata[project]=harbour": True,
        f"?metadata[project]=harbour&metadata[tenant]={tenant_id}": True,
        "?metadata[project]=lighthouse": False,
        "?meta_key=project&meta_value=harbour": True,
        "?meta_key=project&meta_value=elsewhere": False,
        f"?name={BATCH_NAME}&meta_key=tenant&meta_value={other.customer.tenant_id}": False,
    }
    for query, listed in shown.items():
        page = client.get(f"/console/batches{query}")
        assert page.status_code == 200, (query, page.text[:300])
        assert (f'data-batch="{own.batch_id}"' in page.text) is listed, query
        # The other tenant's batch has the same name and project: never listed here.
        assert other.batch_id not in page.text, query
    listed_page = client.get(f"/console/batches?name={BATCH_NAME}")
    assert f'<small class="batch-name">{BATCH_NAME}</small>' in listed_page.text
    # The form carries the metadata filter on (to the next filter and the pager).
    assert (
        'name="metadata[project]" value="harbour"'
        in client.get("/console/batches?meta_key=project&meta_value=harbour").text
    )


def test_the_batch_page_shows_its_name_and_each_items_custom_id(tenants: tuple[Tenant, Tenant]) -> None:
    own, _ = tenants
    client = own.clients["finance"]
    overview = client.get(f"/console/batches/{own.batch_id}")
    assert f'id="batch-name">{BATCH_NAME}<' in overview.text
    tasks = client.get(f"/console/batches/{own.batch_id}?tab=tasks")
    shown = re.findall(r'class="custom-id mono">([^<]+)<', tasks.text)
    assert sorted(shown) == ["shot-0", "shot-1", "shot-2", "shot-forbidden"]


def test_the_results_and_errors_files_match_the_batch_and_its_ledger(
    api: Api, tenants: tuple[Tenant, Tenant]
) -> None:
    own, _ = tenants
    ledger = api.http.get(f"/api/admin/batches/{own.batch_id}/billing", headers=api.admin).json()
    tasks = {task["task_id"]: task for task in api.tasks(own.customer, own.batch_id)}
    for role in ROLES:
        client = own.clients[role]
        files: dict[str, list[dict[str, Any]]] = {}
        for kind in ("results", "errors"):
            jsonl = client.get(f"/console/batches/{own.batch_id}/{kind}.jsonl")
            assert jsonl.status_code == 200, jsonl.text[:300]
            assert jsonl.headers["content-type"].startswith("application/jsonl")
            lines = [json.loads(line) for line in jsonl.text.splitlines()]
            as_csv = client.get(f"/console/batches/{own.batch_id}/{kind}.csv")
            assert as_csv.status_code == 200, as_csv.text[:300]
            rows = list(csv.DictReader(io.StringIO(as_csv.text)))
            assert [row["custom_id"] for row in rows] == [line["custom_id"] for line in lines]
            assert [int(row["credits_charged"]) for row in rows] == [
                line["credits_charged"] for line in lines
            ]
            files[kind] = lines
        assert [line["custom_id"] for line in files["results"]] == ["shot-0", "shot-1", "shot-2"]
        [failed] = files["errors"]
        assert (failed["custom_id"], failed["status"], failed["fault"]) == (
            "shot-forbidden",
            "failed",
            "customer_input",
        )
        every = files["results"] + files["errors"]
        # Each line is the batch's task (same custom_id), and the sums are the ledger's.
        assert {line["task_id"]: line["custom_id"] for line in every} == {
            task_id: task["custom_id"] for task_id, task in tasks.items()
        }
        charged = sum(line["credits_charged"] for line in every)
        refunded = sum(line["credits_refunded"] for line in every)
        assert (charged, refunded) == (ledger["capture_total"], ledger["refund_total"])
        assert charged > 0 and refunded > 0


def test_the_activity_page_filters_by_action(tenants: tuple[Tenant, Tenant]) -> None:
    own, _ = tenants
    page = own.clients["owner"].get("/console/activity?action=member.joined")
    actions = re.findall(r'<tr data-action="([^"]+)">', page.text)
    assert actions and set(actions) == {"member.joined"}


@pytest.mark.parametrize(
    "path",
    [
        "/console/batches?created_from=0001-01-01&created_to=9999-12-31",
        "/console/batches?created_from=not-a-day&status=nonsense",
        "/console/batches?name=" + "x" * 1000,
        "/console/batches?metadata[" + "k" * 2000 + "]=" + "v" * 2000,
        "/console/batches?meta_key=%00&meta_value=%ff",
        "/console/activity?occurred_from=0001-01-01&occurred_to=9999-12-31",
        "/console/activity?action=" + "x" * 64,
        "/console/batches/not-a-uuid",
        "/console/batches/00000000-0000-0000-0000-000000000000?tab=nonsense",
        "/console/activity?cursor=99999999999999999999999",
    ],
)
def test_odd_filter_values_get_a_page_or_a_precise_4xx(path: str, tenants: tuple[Tenant, Tenant]) -> None:
    own, _ = tenants
    response = own.clients["owner"].get(path)
    assert response.status_code in (200, 404, 422), (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
