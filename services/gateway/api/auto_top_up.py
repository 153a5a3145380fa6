"""Automatic top-up under /api/enterprise (issue 29 item 5; billing's ADR-135): the tenant's settings.

Reading needs the `read` scope; changing them needs `billing` (`http.key_scopes`), like a budget.
Billing detects the crossing in the freeze's transaction and charges the saved card off-session;
credits arrive only through the verified Stripe webhook, as for every pack.

No `from __future__ import annotations` in route modules: FastAPI must resolve the annotations of
endpoints defined inside the router factories.
"""

from typing import Annotated

from fastapi import APIRouter, Depends
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import ApiCaller, ApiKeyAuthenticator, caller_dependency
from services.gateway.http.params import documented, error_responses
from services.gateway.schemas.auto_top_up import AutoTopUpUpdate, AutoTopUpView, update_request

_DESCRIPTION = (
    "When a batch's freeze takes the available credits below `threshold_credits`, billing buys the "
    "chosen pack with the card saved with Stripe (an off-session PaymentIntent, one per crossing: "
    "concurrent batches buy one pack), at most `max_per_month` times per UTC month. The credits "
    "arrive through Stripe's verified webhook, like any pack. A declined payment turns it off, sends "
    "the signed webhook `auto_top_up.failed` and shows a banner in the console."
)


def auto_top_up_router(
    settings: Settings, backends: Backends, authenticator: ApiKeyAuthenticator
) -> APIRouter:
    """GET and PUT /api/enterprise/auto-top-up for the calling key's tenant."""
    router = APIRouter(
        prefix="/api/enterprise", tags=["customer"], responses=error_responses(401, 403, 429, 500, 503)
    )
    customer = Depends(caller_dependency(authenticator))
    deadline = settings.grpc_deadline_seconds
    billing = backends.billing

    @router.get(
        "/auto-top-up",
        **documented(AutoTopUpView, "The tenant's automatic top-up", description=_DESCRIPTION),
    )
    async def get_auto_top_up(caller: Annotated[ApiCaller, customer]) -> AutoTopUpView:
        answer = await billing.GetAutoTopUp(
            billing_pb2.GetAutoTopUpRequest(tenant_id=caller.tenant_id), timeout=deadline
        )
        return AutoTopUpView.from_proto(answer)

    @router.put(
        "/auto-top-up",
        **documented(
            AutoTopUpView,
            "Set the tenant's automatic top-up",
            409,
            422,
            description=_DESCRIPTION
            + " Needs a key with the `billing` scope. Turning it on without a saved card is a 409"
            " `no_saved_payment_method`; without Stripe configured, 409 `payments_not_configured`.",
        ),
    )
    async def set_auto_top_up(caller: Annotated[ApiCaller, customer], body: AutoTopUpUpdate) -> AutoTopUpView:
        answer = await billing.SetAutoTopUp(update_request(caller.tenant_id, body), timeout=deadline)
        return AutoTopUpView.from_proto(answer)

    return router
