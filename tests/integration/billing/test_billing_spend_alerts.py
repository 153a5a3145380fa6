"""Spend alerts against a real PostgreSQL (issue 29 item 3, ADR-125): each crossing of a tenant's
low-balance or budget threshold is one `billing.alert` outbox row, written by the freeze that
crossed it, however many freezes run concurrently; a top-up or a refund re-arms it.
"""

from __future__ import annotations

import asyncio

import pytest
from reelbatch.proto.events.v1 import events_pb2
from sqlalchemy import text

from libs.db import Database
from libs.errors import InvalidArgument
from services.billing.domain.errors import InsufficientCredits
from services.billing.domain.ids import TaskId, TenantId
from services.billing.domain.ledger import OutcomeKind, TaskOutcome
from services.billing.domain.pricing import QuoteLine
from services.billing.use_cases.handlers import BillingHandlers

from .billing_testkit import assert_ledger_invariants, funded_tenant, new_batch_id

SORA = "sora-2"  # 10 credits per video in the default price list


async def alerts_of(database: Database, tenant: TenantId) -> list[events_pb2.SpendAlert]:
    """The tenant's `billing.alert` events waiting in billing's outbox (no relay runs here)."""
    async with database.connection() as conn:
        rows = await conn.execute(
            text("SELECT body FROM billing.outbox WHERE routing_key = 'billing.alert' ORDER BY id")
        )
        bodies = [bytes(row.body) for row in rows]
    found = [events_pb2.SpendAlert.FromString(body) for body in bodies]
    return [alert for alert in found if alert.tenant_id == str(tenant)]


async def freeze(handlers: BillingHandlers, tenant: TenantId, videos: int) -> None:
    await handlers.reserve(tenant, new_batch_id(), [QuoteLine(SORA, videos)])


async def test_concurrent_freezes_crossing_the_low_balance_line_alert_once(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1_000)
    await handlers.set_alert_thresholds(tenant, 500, None)

    # 20 batches of 30 credits, concurrently: 1000 -> 400, crossing 500 once.
    await asyncio.gather(*(freeze(handlers, tenant, 3) for _ in range(20)))

    [alert] = await alerts_of(database, tenant)
    assert alert.alert_type == "credits.low"
    assert alert.threshold_credits == 500
    # The group commit may freeze several in one transaction: the value is where it left them.
    assert 400 <= alert.value_credits < 500
    assert (await handlers.get_balance(tenant)).available_credits == 400
    await assert_ledger_invariants(database)


async def test_a_top_up_re_arms_the_low_balance_alert(handlers: BillingHandlers, database: Database) -> None:
    tenant = await funded_tenant(handlers, 100)
    await handlers.set_alert_thresholds(tenant, 50, None)
    await freeze(handlers, tenant, 6)  # 100 -> 40: crossed
    await freeze(handlers, tenant, 1)  # 40 -> 30: still below, nothing new
    assert len(await alerts_of(database, tenant)) == 1

    await handlers.top_up(tenant, 100, "top-up-1")  # 130: back over the line
    await freeze(handlers, tenant, 5)  # 130 -> 80: above, nothing
    assert len(await alerts_of(database, tenant)) == 1
    await freeze(handlers, tenant, 4)  # 80 -> 40: crossed again
    alerts = await alerts_of(database, tenant)
    assert [alert.value_credits for alert in alerts] == [40, 40]
    assert len({alert.alert_id for alert in alerts}) == 2
    with pytest.raises(InsufficientCredits):
        await freeze(handlers, tenant, 5)
    assert len(await alerts_of(database, tenant)) == 2, "a refused freeze crosses nothing"


async def test_the_budget_alert_fires_at_80_percent_of_the_cap(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 10_000)
    await handlers.set_budget(tenant, "tenant", "", 1_000)
    await handlers.set_alert_thresholds(tenant, None, 80)

    await asyncio.gather(*(freeze(handlers, tenant, 5) for _ in range(15)))  # 750 used: below
    assert await alerts_of(database, tenant) == []
    await asyncio.gather(*(freeze(handlers, tenant, 1) for _ in range(10)))  # 850: crossed once

    [alert] = await alerts_of(database, tenant)
    assert alert.alert_type == "budget.threshold"
    assert (alert.threshold_credits, alert.threshold_percent, alert.monthly_credits) == (800, 80, 1_000)
    assert alert.budget_scope == "tenant"
    assert 800 <= alert.value_credits <= 850
    assert alert.period_end.endswith("+00:00")
    await assert_ledger_invariants(database)


async def test_a_refund_under_the_percent_re_arms_the_budget_alert(
    handlers: BillingHandlers, database: Database
) -> None:
    tenant = await funded_tenant(handlers, 1_000)
    await handlers.set_budget(tenant, "tenant", "", 100)
    await handlers.set_alert_thresholds(tenant, None, 80)
    batch = new_batch_id()
    await handlers.reserve(tenant, batch, [QuoteLine(SORA, 8)])  # 80 of 100: crossed
    assert len(await alerts_of(database, tenant)) == 1
    refunded = TaskOutcome(batch_id=batch, task_id=TaskId(f"{batch}-a"), model=SORA, kind=OutcomeKind.REFUND)
    await handlers.charge_task(refunded)  # 70 of 100: back under the line
    await freeze(handlers, tenant, 1)  # 80 again: crossed again
    assert [alert.value_credits for alert in await alerts_of(database, tenant)] == [80, 80]
    await assert_ledger_invariants(database)


async def test_thresholds_are_read_back_with_the_tenants_state_and_bad_ones_refused(
    handlers: BillingHandlers,
) -> None:
    tenant = await funded_tenant(handlers, 10)
    cleared = await handlers.set_alert_thresholds(tenant, None, None)
    assert await handlers.get_alert_thresholds(tenant) == cleared
    assert not cleared.credits_low and cleared.budgets_reached == ()
    await handlers.set_budget(tenant, "tenant", "", 10)
    await freeze(handlers, tenant, 1)  # 10 credits: the balance is 0, the whole budget used
    stored = await handlers.set_alert_thresholds(tenant, 25, 90)
    assert (stored.thresholds.low_balance_credits, stored.thresholds.budget_percent) == (25, 90)
    assert stored.credits_low and [key.scope.value for key in stored.budgets_reached] == ["tenant"]
    for low, percent, field in ((0, None, "low_balance_credits"), (None, 101, "budget_percent")):
        with pytest.raises(InvalidArgument) as refused:
            await handlers.set_alert_thresholds(tenant, low, percent)
        assert refused.value.details["field"] == field
