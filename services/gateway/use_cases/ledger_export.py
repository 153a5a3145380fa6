"""Exporting the ledger: one tenant's entries (customers) or every tenant's (operators), streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from reelbatch.proto.billing.v1 import billing_pb2, billing_pb2_grpc

from services.gateway.schemas.fields import optional_timestamp

# An operator's export: no tenant filter (see billing.proto).
ALL_TENANTS = ""


async def ledger_rows(
    billing: billing_pb2_grpc.BillingServiceAsyncStub,
    tenant_id: str,
    created_from: datetime | None,
    created_to: datetime | None,
) -> AsyncIterator[billing_pb2.LedgerExportRow]:
    """Ledger entries created in [created_from, created_to), streamed from billing many to a
    message (ADR-169).

    No deadline: a large export may take a while.
    """
    call = billing.ExportLedgerPages(
        billing_pb2.ExportLedgerRequest(
            tenant_id=tenant_id,
            created_from=optional_timestamp(created_from),
            created_to=optional_timestamp(created_to),
        )
    )
    async for page in call:
        for row in page.rows:
            yield row
