"""The reads every announced event makes: remembered batch URLs and the tenants' enabled endpoints
(plain psycopg SQL on the autocommit reader, without the SQLAlchemy layers: the hot path)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from psycopg.rows import namedtuple_row

from services.webhook.adapters.sql.records import endpoint_of
from services.webhook.adapters.sql.topic import TopicQueries
from services.webhook.adapters.tables import SCHEMA
from services.webhook.domain.records import Endpoint

_BATCH_URLS = f"SELECT batch_id, webhook_url FROM {SCHEMA}.batch_destinations WHERE batch_id = ANY(%s)"
_ENABLED_ENDPOINTS = f"""
SELECT id, tenant_id, url, event_types, status, created_at, description FROM {SCHEMA}.endpoints
WHERE tenant_id = ANY(%s) AND status = 'enabled'
"""


class FanoutQueries(TopicQueries):
    """Where an event goes: the batch's remembered URL and the tenant's endpoints."""

    async def batch_urls(self, batch_ids: Sequence[str]) -> dict[str, str]:
        """The remembered webhook_urls of those of the batches that have one, in one read."""
        if not batch_ids:
            return {}
        async with self._database.raw_connection() as conn:
            cursor = await conn.execute(_BATCH_URLS, ([uuid.UUID(batch_id) for batch_id in batch_ids],))
            rows = await cursor.fetchall()
        return {str(row[0]): row[1] for row in rows}

    async def enabled_endpoints_of(self, tenant_ids: Collection[str]) -> dict[str, list[Endpoint]]:
        """The endpoints that receive deliveries, per tenant (every tenant asked has its list).

        One statement on the autocommit reader: every batch and task event looks this up.
        """
        found: dict[str, list[Endpoint]] = {tenant_id: [] for tenant_id in tenant_ids}
        if not found:
            return found
        async with self._database.raw_connection() as conn, conn.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(_ENABLED_ENDPOINTS, ([uuid.UUID(tenant_id) for tenant_id in found],))
            rows: list[Any] = await cursor.fetchall()
        for row in rows:
            found[str(row.tenant_id)].append(endpoint_of(row))
        return found
