"""The console's overview: available credits (paid and granted), this month's spend and refunds,
open batches with live progress (polled by the page's script), the last failures with reasons, and
the spend alert banner while the tenant is below one of its lines.
"""

from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import Response

from services.gateway.admin_ui import views
from services.gateway.console import pages
from services.gateway.console.auth import CurrentUser
from services.gateway.console.router import ConsoleDeps, Endpoint
from services.gateway.use_cases.console_money import ConsoleMoney


def overview_endpoints(deps: ConsoleDeps) -> dict[str, Endpoint]:
    """home (the overview)."""
    money = ConsoleMoney(deps.backends, deps.settings.grpc_deadline_seconds)

    async def overview(request: Request, user: CurrentUser) -> Response:
        figures = await money.overview(user.tenant_id, datetime.now(UTC))
        alerts = await money.alerts(user.tenant_id)
        return pages.render(
            request,
            "overview.html",
            user=user,
            active="home",
            overview=figures,
            fault_labels=views.FAULT_LABELS,
            live=any(views.is_live(batch) for batch in figures.open_batches),
            alerts=alerts,
        )

    return {"home": overview}
