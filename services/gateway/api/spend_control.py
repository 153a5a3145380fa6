"""Spend control routes under /api/enterprise: monthly budgets (the tenant's, a key's, a project's),
spend alert thresholds and stored quotes (issue 29; contracts in ARCHITECTURE section 11).

Reading a budget needs the `read` scope; changing one needs `billing` (`http.key_scopes`), so a key
that submits batches cannot lift its own budget. The budget itself is enforced by billing, in the
transaction that freezes a batch's credits.

No `from __future__ import annotations` in route modules: FastAPI must resolve the annotations of
endpoints defined inside the router factories.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.api.api_keys import key_id_path
from services.gateway.api.customer import create_body_of
from services.gateway.http.auth import ApiCaller, ApiKeyAuthenticator, caller_dependency
from services.gateway.http.params import documented, error_responses
from services.gateway.schemas.fields import json_bytes
from services.gateway.schemas.spend_control import (
    AlertThresholdsUpdate,
    AlertThresholdsView,
    BudgetList,
    BudgetUpdate,
    BudgetView,
    QuoteView,
)
from services.gateway.use_cases.batch_creation import BatchCreation

# The quote path reads a create body: the same streamed size limit as the create's.
QUOTES_PATH = "/api/enterprise/quotes"

# A project is the batch metadata value of key `project` (bounded as metadata values are).
MAX_PROJECT_CHARS = 512
ProjectPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_PROJECT_CHARS,
        description="The project: the value of the batches' metadata key `project`.",
    ),
]


async def tenant_scope_id() -> str:
    """The scope id of the tenant's own budget: none."""
    return ""


async def project_path(project: ProjectPath) -> str:
    """The scope id of a project's budget: the project of the path."""
    return project


@dataclass(frozen=True)
class BudgetRoutes:
    """The GET and PUT routes of one budget scope: `get_{name}_budget`, `set_{name}_budget`."""

    name: str
    # The scope billing knows the budget by, and the dependency giving its id from the path.
    scope: str
    path: str
    whose: str
    scope_id: Callable[..., Awaitable[str]] | Callable[..., str]
    get_errors: tuple[int, ...]
    set_errors: tuple[int, ...]


_SET_DESCRIPTION = (
    "Sets the monthly cap (UTC calendar month) or removes it with `null`. Needs a key with the "
    "`billing` scope (403 `insufficient_scope` otherwise). Billing checks the cap in the same "
    "transaction that freezes a batch's credits, so concurrent batches never push the month's "
    "spend past it: a batch over it is refused with 402 `budget_exceeded` and nothing is charged."
)
_GET_DESCRIPTION = (
    "The cap (null when none) and this month's use: the net credits frozen this month (refunds and "
    "releases give budget back to the month of the freeze), what remains, and when the period ends."
)

_ALERTS_DESCRIPTION = (
    "Billing compares the balance and each budget's use before and after every batch freeze, in the "
    "freeze's own transaction, so each crossing sends exactly one signed webhook (`credits.low`, "
    "`budget.threshold`) to the endpoints that want it, however many batches run at once; a top-up "
    "or a refund that goes back over the line re-arms it."
)


def spend_control_router(
    settings: Settings, backends: Backends, authenticator: ApiKeyAuthenticator, creation: BatchCreation
) -> APIRouter:
    """Budget and quote routes, each for the calling key's tenant."""
    router = APIRouter(
        prefix="/api/enterprise", tags=["customer"], responses=error_responses(401, 403, 429, 500, 503)
    )
    customer = Depends(caller_dependency(authenticator))
    deadline = settings.grpc_deadline_seconds
    billing = backends.billing

    def budget_routes(budget: BudgetRoutes) -> None:
        # GET and PUT of one scope's budget; the scope id comes from the path (the tenant's: "").
        whose = budget.whose[0].upper() + budget.whose[1:]

        @router.get(
            budget.path,
            **documented(
                BudgetView,
                f"{whose} monthly budget and its use",
                *budget.get_errors,
                description=_GET_DESCRIPTION,
            ),
            name=f"get_{budget.name}_budget",
        )
        async def get_budget(
            caller: Annotated[ApiCaller, customer], scope_id: Annotated[str, Depends(budget.scope_id)]
        ) -> BudgetView:
            answer = await billing.GetBudgets(
                billing_pb2.GetBudgetsRequest(
                    tenant_id=caller.tenant_id, scope=budget.scope, scope_id=scope_id
                ),
                timeout=deadline,
            )
            return BudgetView.from_proto(answer.budgets[0])

        @router.put(
            budget.path,
            **documented(
                BudgetView,
                f"Set or remove {budget.whose} monthly budget",
                *budget.set_errors,
                description=_SET_DESCRIPTION,
            ),
            name=f"set_{budget.name}_budget",
        )
        async def set_budget(
            caller: Annotated[ApiCaller, customer],
            scope_id: Annotated[str, Depends(budget.scope_id)],
            body: BudgetUpdate,
        ) -> BudgetView:
            request = billing_pb2.SetBudgetRequest(
                tenant_id=caller.tenant_id, scope=budget.scope, scope_id=scope_id
            )
            if body.monthly_credits is not None:
                request.monthly_credits = body.monthly_credits
            return BudgetView.from_proto(await billing.SetBudget(request, timeout=deadline))

    budget_routes(BudgetRoutes("tenant", "tenant", "/budget", "the tenant's", tenant_scope_id, (), (422,)))

    @router.get(
        "/budgets",
        **documented(
            BudgetList,
            "Every budget of the tenant with its use this month",
            description=(
                "The tenant's own budget first (listed even without a cap), then keys', then projects'."
            ),
        ),
    )
    async def list_budgets(caller: Annotated[ApiCaller, customer]) -> BudgetList:
        answer = await billing.GetBudgets(
            billing_pb2.GetBudgetsRequest(tenant_id=caller.tenant_id), timeout=deadline
        )
        return BudgetList(items=[BudgetView.from_proto(status) for status in answer.budgets])

    budget_routes(
        BudgetRoutes(
            "key", "api_key", "/api-keys/{key_id}/budget", "one API key's", key_id_path, (404,), (404, 422)
        )
    )
    budget_routes(
        BudgetRoutes(
            "project", "project", "/projects/{project}/budget", "one project's", project_path, (422,), (422,)
        )
    )

    @router.get(
        "/alerts",
        **documented(
            AlertThresholdsView, "The tenant's spend alert thresholds", description=_ALERTS_DESCRIPTION
        ),
    )
    async def get_alert_thresholds(caller: Annotated[ApiCaller, customer]) -> AlertThresholdsView:
        answer = await billing.GetAlertThresholds(
            billing_pb2.GetAlertThresholdsRequest(tenant_id=caller.tenant_id), timeout=deadline
        )
        return AlertThresholdsView.from_proto(answer)

    @router.put(
        "/alerts",
        **documented(
            AlertThresholdsView,
            "Set the tenant's spend alert thresholds",
            422,
            description=_ALERTS_DESCRIPTION + " Needs a key with the `billing` scope.",
        ),
    )
    async def set_alert_thresholds(
        caller: Annotated[ApiCaller, customer], body: AlertThresholdsUpdate
    ) -> AlertThresholdsView:
        request = AlertThresholdsView(**body.model_dump()).to_request(caller.tenant_id)
        return AlertThresholdsView.from_proto(await billing.SetAlertThresholds(request, timeout=deadline))

    @router.post(
        "/quotes",
        **documented(
            QuoteView,
            "Price a batch without freezing anything, and keep the price for a while",
            413,
            415,
            422,
            status_code=201,
            description=(
                "Takes the create body (JSON or JSONL, as `POST /api/enterprise/video-batch`), validates "
                "and prices it exactly as a create would, and stores the quote: a create that cites "
                "`quote_id` before `expires_at`, with the same body, is charged exactly `required_credits` "
                "even if prices changed meanwhile. A quote is used once; cited after its expiry it is a "
                "410 `quote_expired`, with another body a 409 `quote_mismatch`, a second time a 409 "
                "`quote_used`. Nothing is frozen and no batch exists until the create."
            ),
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/CreateBatchRequest"}},
                        "application/jsonl": {"schema": {"type": "string"}},
                    },
                }
            },
        ),
    )
    async def create_quote(request: Request, caller: Annotated[ApiCaller, customer]) -> Response:
        payload = await create_body_of(request, settings)
        quote = await creation.quote(caller.tenant_id, payload, caller.key_id)
        return Response(
            json_bytes(QuoteView.from_proto(quote).model_dump(mode="json")),
            status_code=201,
            media_type="application/json",
        )

    return router
