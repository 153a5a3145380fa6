"""The dashboard's routes under /admin: sign-in, batches, a batch's tabs, tenants, reconciliation.

Pages accept the session cookie or `Authorization: Bearer <admin token>`; without either they
redirect to the sign-in page. Forms that change anything (sign-out) carry the session's CSRF token.
"""

import asyncio
import math
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import grpc
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from libs.config import Settings
from libs.rpc.errors import remote_error
from services.gateway.adapters.backends import Backends
from services.gateway.admin_ui import pages, views
from services.gateway.admin_ui.filters import BatchTabFilters
from services.gateway.http.admin_sessions import SESSION_COOKIE, SESSION_SECONDS, AdminSessions, same_origin
from services.gateway.http.params import CursorText, FilterText, is_uuid
from services.gateway.http.rate_limits import FailedAttemptLimiter, client_address
from services.gateway.schemas.admin_webhooks import DeliveryPage
from services.gateway.use_cases.admin_reads import AdminReads, BatchListQuery
from services.gateway.use_cases.console_invites import OPERATOR, create_console_invite

STATIC_DIR = Path(__file__).parent / "static"
SIGN_IN_PATH = "/admin/sign-in"


class SignInRequired(Exception):
    """Raised by a page when the request carries no admin credentials."""


def sign_in_redirect(request: Request) -> RedirectResponse:
    """To the sign-in page, which comes back to the page asked for once signed in."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{SIGN_IN_PATH}?next={quote(target, safe='')}", status_code=303)


class DashboardRoute(APIRoute):
    """A dashboard route: a page that raises `SignInRequired` answers the sign-in redirect.

    Every page asks for credentials the same way, so the answer to their absence lives here once.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler of this route, with a missing sign-in turned into the redirect."""
        handle = super().get_route_handler()

        async def handle_signed_in(request: Request) -> Response:
            try:
                return await handle(request)
            except SignInRequired:
                return sign_in_redirect(request)

        return handle_signed_in


def static_files() -> StaticFiles:
    """The dashboard's CSS (mounted at /admin/static)."""
    return StaticFiles(directory=STATIC_DIR)


async def _form(request: Request) -> dict[str, str]:
    """The fields of a small urlencoded form (first value of each); the body limit applies before."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    return {name: values[0] for name, values in fields.items() if values}


def _safe_next(path: str) -> str:
    # Only local dashboard paths: never an open redirect to another site.
    if path.startswith("/admin") and not path.startswith("//") and "\\" not in path:
        return path
    return "/admin/batches"


def dashboard_router(
    settings: Settings,
    backends: Backends,
    sessions: AdminSessions,
    *,
    sign_in_failures: FailedAttemptLimiter | None = None,
) -> APIRouter:
    """The HTML dashboard (hidden from the OpenAPI document).

    Wrong tokens at sign-in count against the client address in `sign_in_failures` (shared with
    the admin API); an address over the limit is answered 429 with Retry-After.
    """
    router = APIRouter(prefix="/admin", include_in_schema=False, route_class=DashboardRoute)
    reads = AdminReads(backends, settings.grpc_deadline_seconds)
    secure_cookie = settings.env == "production"

    def csrf_for(request: Request) -> str | None:
        """The CSRF token for forms; raises SignInRequired when the request is not an admin's."""
        session = sessions.from_request(request)
        if session is not None:
            return sessions.csrf_token(session)
        if sessions.bearer_ok(request):
            return None
        raise SignInRequired

    def not_found(request: Request, message: str, csrf: str | None) -> HTMLResponse:
        return pages.not_found(request, message, csrf_token=csrf)

    @router.get("")
    async def dashboard_home() -> RedirectResponse:
        return RedirectResponse("/admin/batches", status_code=303)

    @router.get("/sign-in")
    async def sign_in_form(
        request: Request,
        next_path: Annotated[str, Query(alias="next", max_length=2048)] = "",
    ) -> HTMLResponse:
        return pages.sign_in(request, _safe_next(next_path), None)

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await _form(request)
        token = form.get("token", "")
        target = _safe_next(form.get("next", ""))
        if not same_origin(request):
            return pages.sign_in(request, target, "The form was sent from another site.", 403)
        address = client_address(request.scope.get("client"))
        wait = await sign_in_failures.retry_after(address) if sign_in_failures is not None else 0.0
        if wait > 0:
            blocked = pages.sign_in(request, target, "Too many failed attempts; try again later.", 429)
            blocked.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return blocked
        if not sessions.is_admin_token(token):
            if sign_in_failures is not None:
                await sign_in_failures.record_failure(address)
            return pages.sign_in(request, target, "That is not the admin token.", 401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sessions.issue(),
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure_cookie,
        )
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        csrf_token = (await _form(request)).get("csrf_token", "")
        session = sessions.from_request(request)
        if session is None or not same_origin(request) or not sessions.csrf_ok(session, csrf_token):
            return pages.sign_in(request, "/admin/batches", "Your session has ended; sign in again.", 403)
        response = RedirectResponse(SIGN_IN_PATH, status_code=303)
        response.delete_cookie(
            SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure_cookie
        )
        return response

    @router.get("/batches")
    async def batches_page(
        request: Request,
        status: FilterText = "",
        settlement_status: FilterText = "",
        tenant_id: FilterText = "",
        cursor: CursorText = "",
    ) -> Response:
        csrf = csrf_for(request)
        filters = {
            "status": status if status in views.BATCH_STATUSES else "",
            "settlement_status": settlement_status if settlement_status in views.SETTLEMENT_STATUSES else "",
            "tenant_id": tenant_id if is_uuid(tenant_id) else "",
        }
        page, degraded, routes = await asyncio.gather(
            reads.batches(
                BatchListQuery(
                    status=filters["status"],
                    settlement_status=filters["settlement_status"],
                    tenant_id=filters["tenant_id"],
                    cursor=cursor,
                )
            ),
            reads.degraded_models(),
            reads.provider_routes(),
        )
        return pages.batches(
            request, page.items, page.next_cursor, filters, degraded, routes=routes, csrf_token=csrf
        )

    @router.get("/batches/{batch_id}")
    async def batch_page(
        request: Request, batch_id: str, query: BatchTabFilters, limit: FilterText = ""
    ) -> Response:
        csrf = csrf_for(request)
        if not is_uuid(batch_id):
            return not_found(request, "No such batch.", csrf)
        batch_id = batch_id.lower()
        try:
            batch = await reads.batch(batch_id)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return not_found(request, "No such batch.", csrf)
            raise
        tab, cursor = (query.tab if query.tab in dict(views.TABS) else "overview"), query.cursor
        if tab == "tasks":
            filters = {
                "tab": "tasks",
                "status": query.status,
                "failure_type": query.failure_type,
                "limit": limit if limit in views.TASK_PAGE_SIZES else "",
                "cursor": cursor,
            }
            tasks = await reads.tasks(
                batch_id,
                status=filters["status"],
                failure_type=filters["failure_type"],
                cursor=cursor,
                limit=views.TASK_PAGE_SIZES.get(limit, 50),
            )
            return pages.batch_tasks(request, batch, tasks, filters, csrf_token=csrf)
        if tab == "provider_jobs":
            jobs = await reads.provider_jobs(batch_id, cursor=cursor)
            return pages.batch_provider_jobs(request, batch, jobs, cursor, csrf_token=csrf)
        if tab == "billing":
            billing = await reads.billing(batch_id, cursor=cursor)
            return pages.batch_billing(request, batch, billing, cursor, csrf_token=csrf)
        if tab == "webhooks":
            deliveries: DeliveryPage | None
            try:
                deliveries = await reads.webhooks(batch_id, cursor=cursor)
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                deliveries = None
            return pages.batch_webhooks(request, batch, deliveries, csrf_token=csrf)
        return pages.batch_overview(request, batch, csrf_token=csrf)

    @router.get("/tenants")
    async def tenants_page(request: Request, cursor: CursorText = "") -> Response:
        csrf = csrf_for(request)
        page = await reads.tenants(cursor=cursor)
        return pages.tenants(request, page, csrf_token=csrf)

    async def show_tenant(
        request: Request,
        tenant_id: str,
        csrf: str | None,
        *,
        cursor: str = "",
        invite: views.InviteNotice | None = None,
        status_code: int = 200,
    ) -> Response:
        if not is_uuid(tenant_id):
            return not_found(request, "No such tenant.", csrf)
        try:
            credits = await reads.tenant_credits(tenant_id)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return not_found(request, "No such tenant.", csrf)
            raise
        ledger = await reads.tenant_ledger(tenant_id, cursor=cursor)
        recent = await reads.batches(BatchListQuery(tenant_id=tenant_id, limit=10))
        return pages.tenant(
            request,
            tenant_id,
            credits,
            ledger,
            recent.items,
            csrf_token=csrf,
            invite=invite,
            status_code=status_code,
        )

    @router.get("/tenants/{tenant_id}")
    async def tenant_page(request: Request, tenant_id: str, cursor: CursorText = "") -> Response:
        return await show_tenant(request, tenant_id, csrf_for(request), cursor=cursor)

    @router.post("/tenants/{tenant_id}/console-invites")
    async def invite_to_console(request: Request, tenant_id: str) -> Response:
        """The tenant page's "Invite to console" button: a single-use link shown once."""
        form = await _form(request)
        session = sessions.from_request(request)
        if (
            session is None
            or not same_origin(request)
            or not sessions.csrf_ok(session, form.get("csrf_token", ""))
        ):
            return pages.sign_in(
                request, f"/admin/tenants/{tenant_id}", "Your session has ended; sign in again.", 403
            )
        csrf = sessions.csrf_token(session)
        if not is_uuid(tenant_id):
            return not_found(request, "No such tenant.", csrf)
        try:
            created = await create_console_invite(
                backends.billing,
                settings.grpc_deadline_seconds,
                settings.public_base_url,
                tenant_id=tenant_id,
                email=form.get("email", "")[:320],
                role=form.get("role", "")[:32],
                actor=OPERATOR,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
                raise
            notice = views.InviteNotice(error=remote_error(error).message)
            return await show_tenant(request, tenant_id, csrf, invite=notice, status_code=422)
        notice = views.InviteNotice(url=created.invite_url)
        return await show_tenant(request, tenant_id, csrf, invite=notice, status_code=201)

    @router.get("/reconciliation")
    async def reconciliation_page(request: Request) -> Response:
        csrf = csrf_for(request)
        report = await reads.reconciliation()
        return pages.reconciliation(request, report, csrf_token=csrf)

    return router
