"""SQL of a tenant's console settings (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.billing.adapters.sql.base import TransactionQueries
from services.billing.adapters.tables import tenant_console_settings
from services.billing.domain.console_settings import ConsoleSettings
from services.billing.domain.ids import TenantId


class ConsoleSettingsQueries(TransactionQueries):
    """Read and replace a tenant's console settings, inside one transaction."""

    async def get(self, tenant_id: TenantId) -> ConsoleSettings:
        """The tenant's settings; the defaults when it never changed them."""
        row = (
            await self._conn.execute(
                select(tenant_console_settings.c.finance_may_buy_credits).where(
                    tenant_console_settings.c.tenant_id == tenant_id
                )
            )
        ).first()
        if row is None:
            return ConsoleSettings(tenant_id)
        return ConsoleSettings(tenant_id, finance_may_buy_credits=bool(row[0]))

    async def put(self, settings: ConsoleSettings) -> None:
        """Stores the tenant's settings (insert or replace)."""
        statement = pg_insert(tenant_console_settings).values(
            tenant_id=settings.tenant_id, finance_may_buy_credits=settings.finance_may_buy_credits
        )
        await self._conn.execute(
            statement.on_conflict_do_update(
                index_elements=[tenant_console_settings.c.tenant_id],
                set_={
                    "finance_may_buy_credits": statement.excluded.finance_may_buy_credits,
                    "updated_at": func.now(),
                },
            )
        )
