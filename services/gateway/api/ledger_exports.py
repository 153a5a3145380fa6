"""Ledger exports as CSV, streamed from billing: finance's (every entry) and a customer's own."""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from reelbatch.proto.billing.v1 import billing_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import ApiKeyAuthenticator, tenant_dependency
from services.gateway.http.csv_stream import csv_chunks
from services.gateway.http.params import error_responses
from services.gateway.schemas.fields import Instant
from services.gateway.use_cases.ledger_export import ledger_rows

CreatedFrom = Annotated[
    Instant | None, Query(description="Only what was created at or after this instant (RFC 3339).")
]
CreatedTo = Annotated[Instant | None, Query(description="Only what was created before this instant.")]

CSV_RESPONSE: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/csv": {}}, "description": "One line per ledger entry."}
}

LEDGER_CSV_COLUMNS = (
    "entry_id",
    "transfer_id",
    "created_at",
    "tenant_id",
    "account",
    "batch_id",
    "ref_type",
    "ref_id",
    "amount",
    "balance_after",
    "ledger_transfer_id",
)


def ledger_csv(rows: AsyncIterator[billing_pb2.LedgerExportRow]) -> AsyncIterator[bytes]:
    """CSV lines of exported entries, a chunk at a time (constant memory for any number of rows)."""
    return csv_chunks(LEDGER_CSV_COLUMNS, (_csv_row(row) async for row in rows))


def _csv_row(row: billing_pb2.LedgerExportRow) -> tuple[object, ...]:
    return (
        row.entry_id,
        row.transfer_id,
        row.created_at.ToJsonString(),
        row.tenant_id,
        row.account,
        row.batch_id,
        row.ref_type,
        row.ref_id,
        row.amount,
        row.balance_after if row.HasField("balance_after") else "",
        row.ledger_transfer_id,
    )


def csv_download(rows: AsyncIterator[bytes], filename: str) -> StreamingResponse:
    """A streamed CSV attachment."""
    return StreamingResponse(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def export_filename(prefix: str, created_from: datetime | None, created_to: datetime | None) -> str:
    """`<prefix>[_from-<date>][_to-<date>].csv`."""
    parts = [prefix]
    if created_from is not None:
        parts.append(f"from-{created_from:%Y%m%dT%H%M%S}")
    if created_to is not None:
        parts.append(f"to-{created_to:%Y%m%dT%H%M%S}")
    return "_".join(parts) + ".csv"


async def started(
    rows: AsyncIterator[billing_pb2.LedgerExportRow],
) -> AsyncIterator[billing_pb2.LedgerExportRow]:
    """`rows` with the first one already fetched, so a refusal is answered before the 200 starts."""
    first = await anext(rows, None)

    async def replay() -> AsyncIterator[billing_pb2.LedgerExportRow]:
        if first is None:
            return
        yield first
        async for row in rows:
            yield row

    return replay()


def customer_exports_router(
    settings: Settings, backends: Backends, authenticator: ApiKeyAuthenticator
) -> APIRouter:
    """`GET /api/enterprise/ledger.csv`: the tenant's own available-balance changes."""
    router = APIRouter(prefix="/api/enterprise", tags=["customer"], responses=error_responses(401, 500, 503))
    authenticated = Depends(tenant_dependency(authenticator))

    @router.get(
        "/ledger.csv",
        summary="Export your ledger (changes of the available balance) as CSV, oldest first",
        response_class=StreamingResponse,
        responses={**CSV_RESPONSE, **error_responses(422)},
    )
    async def export_own_ledger(
        tenant_id: Annotated[str, authenticated],
        created_from: CreatedFrom = None,
        created_to: CreatedTo = None,
    ) -> StreamingResponse:
        rows = await started(ledger_rows(backends.billing, tenant_id, created_from, created_to))
        return csv_download(ledger_csv(rows), export_filename("ledger", created_from, created_to))

    return router
