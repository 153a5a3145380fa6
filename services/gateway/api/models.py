"""The model catalogue: `GET /api/enterprise/models`, every model with its price, its length
limits and the generation settings it takes (what each priced choice adds); `/pricing` is the
same answer under its older name.

No `from __future__ import annotations`: FastAPI must resolve the endpoints' local annotations.
"""

from typing import Annotated

from fastapi import APIRouter, Depends
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import ApiKeyAuthenticator, tenant_dependency
from services.gateway.http.params import error_responses
from services.gateway.schemas.generation import ModelSettingsView
from services.gateway.schemas.pricing import ModelView, PriceList

_MODELS_DESCRIPTION = (
    "Every model with its price in credits (per video, or per second of `duration_seconds` within "
    "min..max), and the settings an item of it may set: aspect ratios and resolutions offered (the "
    "default first, each with its extra credits), seed, negative prompt, audio on/off (with its extra "
    "credits), and image inputs (first frame, last frame, up to N reference images, by HTTPS URL or "
    "uploaded `file_id`). Extra credits are per video, or per second for a model priced per second. "
    "An item is priced and checked against this list when its batch is created."
)


def model_view(price: billing_pb2.ModelPrice) -> ModelView:
    """A model of billing's price list as the API shows it."""
    settings = ModelSettingsView.from_proto(price.capabilities)
    # Which models are real, and through which provider (ADR-146).
    provider = price.provider or "simulated"
    made_by = {"provider": provider, "simulated": provider == "simulated"}
    if not price.credits_per_second:
        return ModelView(
            model=price.model, credits_per_video=price.credits_per_video, settings=settings, **made_by
        )
    return ModelView(
        model=price.model,
        credits_per_video=price.credits_per_video,
        **made_by,
        pricing_unit="second",
        credits_per_second=price.credits_per_second,
        min_seconds=price.min_seconds,
        max_seconds=price.max_seconds,
        default_seconds=price.default_seconds,
        settings=settings,
    )


def models_router(settings: Settings, backends: Backends, authenticator: ApiKeyAuthenticator) -> APIRouter:
    """`/models` and its alias `/pricing`."""
    router = APIRouter(
        prefix="/api/enterprise", tags=["models"], responses=error_responses(401, 429, 500, 503)
    )
    authenticated = Depends(tenant_dependency(authenticator))
    deadline = settings.grpc_deadline_seconds

    async def price_list() -> PriceList:
        response = await backends.billing.GetPricing(billing_pb2.GetPricingRequest(), timeout=deadline)
        return PriceList(items=[model_view(price) for price in response.models])

    @router.get(
        "/models",
        response_model=PriceList,
        summary="Models, their settings, limits and prices",
        description=_MODELS_DESCRIPTION,
    )
    async def list_models(_: Annotated[str, authenticated]) -> PriceList:
        return await price_list()

    @router.get(
        "/pricing",
        response_model=PriceList,
        summary="The price list (alias of GET /api/enterprise/models)",
        description=(
            "The same answer as `GET /api/enterprise/models`, under its older name (kept for its clients)."
        ),
    )
    async def get_pricing(_: Annotated[str, authenticated]) -> PriceList:
        return await price_list()

    return router
