"""Tenants: creating one, and the operator's list of tenants with their balances."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.fields import NonBlankLine
from services.gateway.schemas.pages import CursorPage
from services.gateway.schemas.proto_views import MessageView


class CreateTenantRequest(BaseModel):
    """A new customer account."""

    model_config = ConfigDict(extra="forbid")

    name: NonBlankLine = Field(max_length=200, description="Display name of the tenant.")


class TenantCreated(BaseModel):
    """The new tenant."""

    tenant_id: str = Field(description="Identifier of the tenant.")


class TenantSummaryView(MessageView[billing_pb2.TenantSummary]):
    """A tenant and its balances."""

    tenant_id: str
    name: str
    available_credits: int
    held_credits: int
    created_at: AwareDatetime


class TenantPage(CursorPage[TenantSummaryView]):
    """One page of tenants, oldest first."""
