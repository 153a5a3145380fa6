"""The dashboard's pages: each renders its Jinja2 template (services/gateway/templates/admin/) with
the views it shows, and answers with the pages' security headers.

Templates are files with autoescape on: every value from the backends is escaped; only the
templates' own markup (and their macros') is not. Formatting lives in `views`, not in templates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from services.gateway.admin_ui import views
from services.gateway.schemas.admin_batches import AdminBatchDetail, AdminBatchView
from services.gateway.schemas.admin_webhooks import DeliveryPage
from services.gateway.schemas.console_invites import CONSOLE_ROLES
from services.gateway.schemas.credits import BatchBillingView, CreditsView, LedgerPage
from services.gateway.schemas.model_health import DegradedModelView, ProviderRouteView
from services.gateway.schemas.provider_jobs import ProviderJobPage
from services.gateway.schemas.reconciliation import ReconciliationView
from services.gateway.schemas.tasks import TaskPage
from services.gateway.schemas.tenants import TenantPage

TEMPLATES_DIR = Path(__file__).parents[1] / "templates"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # Inline style attributes only carry progress-bar widths; no inline scripts at all.
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "same-origin",
}


def template_environment() -> jinja2.Environment:
    """The Jinja2 environment of every HTML page, with the views' formatting filters."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        # A misspelt name fails the page (and its test) instead of rendering as nothing.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship with the code: no stat() of the file on every render.
        auto_reload=False,
    )
    environment.filters.update(views.FILTERS)
    return environment


TEMPLATES = Jinja2Templates(env=template_environment())


def _page(
    request: Request,
    template: str,
    *,
    csrf_token: str | None,
    active: str = "",
    live: bool = False,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """`template` rendered inside the admin frame (navigation, sign-out form, self-refresh when live)."""
    context = {
        "csrf_token": csrf_token,
        "navigation": views.navigation(active),
        "refresh_seconds": views.LIVE_REFRESH_SECONDS if live else None,
        **values,
    }
    return TEMPLATES.TemplateResponse(
        request, template, context, status_code=status_code, headers=SECURITY_HEADERS
    )


def sign_in(request: Request, next_path: str, error: str | None, status_code: int = 200) -> HTMLResponse:
    """The sign-in form (the admin token, exchanged for a session cookie)."""
    return _page(
        request,
        "admin/sign_in.html",
        csrf_token=None,
        status_code=status_code,
        next_path=next_path,
        error=error,
    )


def not_found(request: Request, message: str, *, csrf_token: str | None) -> HTMLResponse:
    """A friendly 404."""
    return _page(request, "admin/not_found.html", csrf_token=csrf_token, status_code=404, message=message)


def batches(
    request: Request,
    items: Sequence[AdminBatchView],
    next_cursor: str | None,
    filters: Mapping[str, str],
    degraded: Sequence[DegradedModelView] = (),
    *,
    routes: Sequence[ProviderRouteView] = (),
    csrf_token: str | None,
) -> HTMLResponse:
    """Every batch, newest first, with badges and a progress bar per batch; above them, the
    models whose provider is down (ADR-113) and, below, what each provider route of a model
    did (ADR-149)."""
    return _page(
        request,
        "admin/batches.html",
        csrf_token=csrf_token,
        active="batches",
        live=any(views.is_live(batch) for batch in items),
        batches=items,
        degraded=degraded,
        routes=routes,
        status_options=views.options(views.BATCH_STATUSES, filters.get("status", ""), "any"),
        settlement_options=views.options(
            views.SETTLEMENT_STATUSES, filters.get("settlement_status", ""), "any"
        ),
        tenant_id=filters.get("tenant_id", ""),
        pages=views.pager("/admin/batches", filters, on_later_page=False, next_cursor=next_cursor),
    )


def _batch_tab(
    request: Request, batch: AdminBatchDetail, tab: str, *, csrf_token: str | None, **values: Any
) -> HTMLResponse:
    """A batch page: header with progress, the tab bar and `tab`'s template."""
    live = views.is_live(batch)
    return _page(
        request,
        f"admin/batch/{tab}.html",
        csrf_token=csrf_token,
        active="batches",
        # Only the overview refreshes itself: a refresh would lose the place in a long task list.
        live=live and tab == "overview",
        batch=batch,
        live_batch=live,
        active_tab=tab,
        tabs=views.batch_tabs(batch.batch_id, tab),
        **values,
    )


def batch_overview(request: Request, batch: AdminBatchDetail, *, csrf_token: str | None) -> HTMLResponse:
    """Status, counts, money, margin, timing and whose fault the failures were."""
    return _batch_tab(
        request,
        batch,
        "overview",
        csrf_token=csrf_token,
        fault_groups=views.failures_by_fault(batch.failures),
    )


def batch_tasks(
    request: Request,
    batch: AdminBatchDetail,
    tasks: TaskPage,
    filters: Mapping[str, str],
    *,
    csrf_token: str | None,
) -> HTMLResponse:
    """A page of the batch's tasks with status and failure type filters."""
    base = f"/admin/batches/{batch.batch_id}"
    return _batch_tab(
        request,
        batch,
        "tasks",
        csrf_token=csrf_token,
        base=base,
        tasks=tasks.items,
        status_options=views.options(views.TASK_STATUSES, filters.get("status", ""), "any"),
        failure_type_options=views.options(views.FAILURE_TYPES, filters.get("failure_type", ""), "any"),
        limit_options=views.options(views.TASK_PAGE_SIZES, filters.get("limit", ""), "default"),
        pages=views.pager(
            base, filters, on_later_page=bool(filters.get("cursor")), next_cursor=tasks.next_cursor
        ),
    )


def batch_provider_jobs(
    request: Request, batch: AdminBatchDetail, jobs: ProviderJobPage, cursor: str, *, csrf_token: str | None
) -> HTMLResponse:
    """The batch's provider jobs per task: attempt, job id, status and cost (ADR-144)."""
    return _batch_tab(
        request,
        batch,
        "provider_jobs",
        csrf_token=csrf_token,
        jobs=jobs,
        pages=_tab_pages(batch, "provider_jobs", cursor, jobs.next_cursor, "More jobs →"),
    )


def batch_billing(
    request: Request,
    batch: AdminBatchDetail,
    billing: BatchBillingView,
    cursor: str,
    *,
    csrf_token: str | None,
) -> HTMLResponse:
    """Upfront, captures, refunds, net and the batch's ledger entries."""
    return _batch_tab(
        request,
        batch,
        "billing",
        csrf_token=csrf_token,
        billing=billing,
        pages=_tab_pages(batch, "billing", cursor, billing.next_cursor, "More entries →"),
    )


def _tab_pages(
    batch: AdminBatchDetail, tab: str, cursor: str, next_cursor: str | None, next_label: str
) -> list[views.Link]:
    """The pager of a batch tab listed by cursor alone (its links keep only the tab)."""
    return views.pager(
        f"/admin/batches/{batch.batch_id}",
        {"tab": tab},
        on_later_page=bool(cursor),
        next_cursor=next_cursor,
        next_label=next_label,
    )


def batch_webhooks(
    request: Request, batch: AdminBatchDetail, deliveries: DeliveryPage | None, *, csrf_token: str | None
) -> HTMLResponse:
    """Deliveries with every attempt; `deliveries` is None when the webhook service is unreachable."""
    return _batch_tab(request, batch, "webhooks", csrf_token=csrf_token, deliveries=deliveries)


def tenants(request: Request, page: TenantPage, *, csrf_token: str | None) -> HTMLResponse:
    """Every tenant with its balances."""
    return _page(
        request,
        "admin/tenants.html",
        csrf_token=csrf_token,
        active="tenants",
        tenants=page.items,
        pages=views.pager("/admin/tenants", {}, on_later_page=False, next_cursor=page.next_cursor),
    )


def tenant(
    request: Request,
    tenant_id: str,
    balance: CreditsView,
    ledger: LedgerPage,
    recent_batches: Sequence[AdminBatchView],
    *,
    csrf_token: str | None,
    invite: views.InviteNotice | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """One tenant: balances, recent batches, the ledger of its available balance, and the console
    invite form (with the link just created, or why not)."""
    return _page(
        request,
        "admin/tenant.html",
        csrf_token=csrf_token,
        active="tenants",
        status_code=status_code,
        invite=invite,
        console_roles=CONSOLE_ROLES,
        tenant_id=tenant_id,
        balance=balance,
        ledger=ledger,
        batches=recent_batches,
        pages=views.pager(
            f"/admin/tenants/{tenant_id}",
            {},
            on_later_page=False,
            next_cursor=ledger.next_cursor,
            next_label="Older entries →",
        ),
    )


def reconciliation(request: Request, report: ReconciliationView, *, csrf_token: str | None) -> HTMLResponse:
    """The result of checking every credit."""
    return _page(
        request, "admin/reconciliation.html", csrf_token=csrf_token, active="reconciliation", report=report
    )
