"""The spend control invariants of issue 29, checked from billing's tables alone (ADR-127).

I7 spend within each budget per period: for every budget, the net spend (frozen - refunded -
released) of the holds frozen in each UTC month and attributed to it is at most its cap. (A cap
lowered below a month's use after the fact is not a breach; the tests never do that.)
I8 every quote honoured or refused: a used quote froze exactly its total for its batch, of its own
tenant, before it expired, and no batch honoured two quotes; a batch refused for its quote or its
budget froze nothing (checked with the batch schema by `tests.invariants`).

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
}

# Needs both schemas: a batch rejected for its budget or its quote has no hold (nothing frozen).
REFUSED_BUT_FROZEN = (
    "SELECT b.id, b.rejection_reason FROM batch.batches b JOIN billing.batch_holds h ON h.batch_id = b.id"
    " WHERE b.status = 'rejected' AND (b.rejection_reason = 'budget_exceeded'"
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
    return problems


def refused_but_frozen_discrepancies(rows: Sequence[Sequence[Any]]) -> list[str]:
    """What the rows of `REFUSED_BUT_FROZEN` say is broken."""
    return [
        f"I8: batch {batch_id} was refused ({reason}) but credits were frozen" for batch_id, reason in rows
    ]
