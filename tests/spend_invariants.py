"""The spend control invariants of issue 29, checked from billing's tables alone (ADR-127, ADR-136).

I7 spend within each budget per period: for every budget, the net spend (frozen - refunded -
released) of the holds frozen in each UTC month and attributed to it is at most its cap. (A cap
lowered below a month's use after the fact is not a breach; the tests never do that.)
I8 every quote honoured or refused: a used quote froze exactly its total for its batch, of its own
tenant, before it expired, and no batch honoured two quotes; a batch refused for its quote or its
budget froze nothing (checked with the batch schema by `tests.invariants`).

I10 debt recorded, never hidden (ADR-134): no available balance is negative, no debt account is
above zero, and what each tenant's debt account records as owed equals the credits its reversed
payments took from spent credits, less what disputes won returned to the debt and what payments
paid towards it; what each tenant's available account row says it owes (`owed`, read by every
freeze with the wallet it locks, ADR-165) equals what its debt account records.
I11 no top-up applied twice (ADR-135): every automatic purchase is credited by one payment at most
(one per PaymentIntent, one PaymentIntent per purchase), a succeeded purchase was credited, and a
tenant has one open purchase at most.

The queries are plain SQL so that both the end-to-end check (psycopg) and billing's own tests
(SQLAlchemy) run them; `spend_control_discrepancies` reads their rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SPEND_QUERIES: Mapping[str, str] = {
    "over_budget": (
        "SELECT b.tenant_id, b.scope, b.scope_id, b.monthly_credits, h.budget_period,"
        " sum(h.frozen - h.refunded - h.released) AS spent"
        " FROM billing.budgets b JOIN billing.batch_holds h ON h.tenant_id = b.tenant_id"
        " AND h.budget_period IS NOT NULL"
        " AND (b.scope = 'tenant' OR (b.scope = 'api_key' AND h.api_key_id::text = b.scope_id)"
        "  OR (b.scope = 'project' AND h.project = b.scope_id))"
        " GROUP BY 1, 2, 3, 4, 5 HAVING sum(h.frozen - h.refunded - h.released) > b.monthly_credits"
    ),
    "quotes_not_honoured": (
        "SELECT q.id, q.batch_id, q.total, h.frozen, q.tenant_id = h.tenant_id, q.used_at <= q.expires_at"
        " FROM billing.quotes q LEFT JOIN billing.batch_holds h ON h.batch_id = q.batch_id"
        " WHERE q.batch_id IS NOT NULL AND (h.batch_id IS NULL OR h.frozen <> q.total"
        "  OR h.tenant_id <> q.tenant_id OR q.used_at > q.expires_at)"
    ),
    "debt_not_recorded": (
        "SELECT t.id, COALESCE(a.balance, 0), COALESCE(d.balance, 0),"
        " COALESCE(r.to_debt, 0) - COALESCE(r.back, 0) - COALESCE(p.paid, 0)"
        " FROM billing.tenants t"
        " LEFT JOIN billing.accounts a ON a.tenant_id = t.id AND a.kind = 'available'"
        " LEFT JOIN billing.accounts d ON d.tenant_id = t.id AND d.kind = 'debt'"
        " LEFT JOIN (SELECT tenant_id, sum(to_debt) AS to_debt, sum(reinstated_to_debt) AS back"
        "  FROM billing.payment_reversals GROUP BY 1) r ON r.tenant_id = t.id"
        " LEFT JOIN (SELECT tenant_id, sum(amount) AS paid FROM billing.transfers"
        "  WHERE ref_type = 'debt_payment' GROUP BY 1) p ON p.tenant_id = t.id"
        " WHERE COALESCE(a.balance, 0) < 0 OR COALESCE(d.balance, 0) > 0"
        " OR -COALESCE(d.balance, 0) <> COALESCE(r.to_debt, 0) - COALESCE(r.back, 0) - COALESCE(p.paid, 0)"
    ),
    "debt_not_on_wallet": (
        "SELECT a.tenant_id, a.owed, -COALESCE(d.balance, 0) FROM billing.accounts a"
        " LEFT JOIN billing.accounts d ON d.tenant_id = a.tenant_id AND d.kind = 'debt'"
        " WHERE a.kind = 'available' AND a.owed <> -COALESCE(d.balance, 0)"
    ),
    "top_up_twice": (
        "SELECT u.id, u.status, count(p.id) FROM billing.auto_top_ups u"
        " LEFT JOIN billing.payments p ON p.provider = 'stripe' AND p.payment_intent = u.payment_intent"
        " GROUP BY u.id, u.status HAVING count(p.id) > 1 OR (u.status = 'succeeded' AND count(p.id) <> 1)"
        " UNION ALL"
        " SELECT tenant_id, 'open', count(*) FROM billing.auto_top_ups"
        " WHERE status IN ('pending', 'submitted') GROUP BY tenant_id HAVING count(*) > 1"
    ),
}

# Needs both schemas: a batch rejected for its budget or its quote has no hold (nothing frozen).
REFUSED_BUT_FROZEN = (
    "SELECT b.id, b.rejection_reason FROM batch.batches b JOIN billing.batch_holds h ON h.batch_id = b.id"
    " WHERE b.status = 'rejected' AND (b.rejection_reason IN ('budget_exceeded', 'debt_outstanding')"
    " OR b.rejection_reason LIKE 'quote_%')"
)


def spend_control_discrepancies(rows: Mapping[str, Sequence[Sequence[Any]]]) -> list[str]:
    """What the rows of `SPEND_QUERIES` (by name) say is broken."""
    problems = [
        f"I7: {scope} budget {scope_id or ''} of tenant {tenant} ({cap}/month) spent {spent} in {period}"
        for tenant, scope, scope_id, cap, period, spent in rows["over_budget"]
    ]
    problems += [
        f"I8: quote {quote_id} used by batch {batch_id}: total {total}, frozen {frozen},"
        f" same tenant {same_tenant}, within validity {in_time}"
        for quote_id, batch_id, total, frozen, same_tenant, in_time in rows["quotes_not_honoured"]
    ]
    problems += [
        f"I10: tenant {tenant} available {available}, debt account {debt} (owes {-debt}),"
        f" its reversals and debt payments say it owes {expected}"
        for tenant, available, debt, expected in rows["debt_not_recorded"]
    ]
    problems += [
        f"I10: tenant {tenant}'s wallet says it owes {owed}, its debt account {recorded}"
        for tenant, owed, recorded in rows["debt_not_on_wallet"]
    ]
    problems += [
        f"I11: automatic top-up {purchase} ({status}) credited by {count} payments"
        if status != "open"
        else f"I11: tenant {purchase} has {count} open automatic top-ups"
        for purchase, status, count in rows["top_up_twice"]
    ]
    return problems


def refused_but_frozen_discrepancies(rows: Sequence[Sequence[Any]]) -> list[str]:
    """What the rows of `REFUSED_BUT_FROZEN` say is broken."""
    return [
        f"I8: batch {batch_id} was refused ({reason}) but credits were frozen" for batch_id, reason in rows
    ]
