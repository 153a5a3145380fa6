"""I1-I3 over a whole database in a handful of set-based statements.

`tests.invariants.check_invariants` reads each batch with its own queries (a few per batch): right
for a test's dozens of batches, hours for a history of 100,000. These are the same checks, each
one aggregate over a table, so millions of tasks are checked in a minute or two. Holds still
pending (batches accepted and not yet run, as the benchmark leaves them) are checked as they
stand: each adds up, nothing applied twice; settled ones must also match their tasks.
"""

from __future__ import annotations

import psycopg

# Every query answers rows of (subject, detail) describing a broken rule; none: the rule holds.
CHECKS: dict[str, str] = {
    "I2 ledger sums to zero": """
        SELECT 'ledger', 'entries sum to ' || s FROM (SELECT coalesce(sum(amount), 0) AS s
        FROM billing.ledger_entries) x WHERE s <> 0""",
    "I2 every transfer is two entries summing to zero": """
        SELECT 'transfer ' || t.id, coalesce(e.n, 0) || ' entries summing to ' || coalesce(e.s, 0)
        FROM billing.transfers t
        LEFT JOIN (SELECT transfer_id, count(*) AS n, sum(amount) AS s FROM billing.ledger_entries
                   GROUP BY transfer_id) e ON e.transfer_id = t.id
        WHERE coalesce(e.n, 0) <> 2 OR coalesce(e.s, 0) <> 0""",
    "I2 tracked balances are their entries, never negative": """
        SELECT a.kind || ' account ' || a.id,
               'balance ' || a.balance || ', entries ' || coalesce(s.total, 0) || ', last balance_after '
               || coalesce(last.balance_after::text, 'none')
        FROM billing.accounts a
        LEFT JOIN (SELECT account_id, sum(amount) AS total, max(id) AS last_id
                   FROM billing.ledger_entries GROUP BY account_id) s ON s.account_id = a.id
        LEFT JOIN billing.ledger_entries last ON last.id = s.last_id
        WHERE a.kind IN ('available', 'hold')
          AND (a.balance <> coalesce(s.total, 0) OR a.balance < 0
               OR (last.balance_after IS NOT NULL AND last.balance_after <> a.balance))""",
    "I3 one effect per business key": """
        SELECT ref_type || ' ' || ref_id, 'applied ' || count(*) || ' times' FROM billing.transfers
        WHERE ref_type IN ('batch_upfront', 'batch_settle', 'topup')
        GROUP BY ref_type, tenant_id, ref_id HAVING count(*) > 1
        UNION ALL
        SELECT 'task ' || ref_id, count(*) || ' outcome transfers' FROM billing.transfers
        WHERE ref_type IN ('batch_capture', 'batch_refund') GROUP BY ref_id HAVING count(*) > 1""",
    "I1 every hold adds up and matches its transfers": """
        SELECT 'batch ' || h.batch_id,
               'frozen ' || h.frozen || ' captured ' || h.captured || ' refunded ' || h.refunded
               || ' released ' || h.released || ' held ' || a.balance || ' transfers '
               || coalesce(m.upfront, 0) || '/' || coalesce(m.captured, 0) || '/' || coalesce(m.refunded, 0)
               || '/' || coalesce(m.released, 0)
        FROM billing.batch_holds h
        JOIN billing.accounts a ON a.id = h.hold_account_id
        LEFT JOIN (SELECT batch_id,
                          sum(amount) FILTER (WHERE ref_type = 'batch_upfront') AS upfront,
                          sum(amount) FILTER (WHERE ref_type = 'batch_capture') AS captured,
                          sum(amount) FILTER (WHERE ref_type = 'batch_refund') AS refunded,
                          sum(amount) FILTER (WHERE ref_type = 'batch_settle') AS released
                   FROM billing.transfers WHERE batch_id IS NOT NULL GROUP BY batch_id) m
            ON m.batch_id = h.batch_id
        WHERE h.frozen <> h.captured + h.refunded + h.released + a.balance
           OR h.frozen <> coalesce(m.upfront, 0) OR h.captured <> coalesce(m.captured, 0)
           OR h.refunded <> coalesce(m.refunded, 0) OR h.released <> coalesce(m.released, 0)
           OR (h.settlement_status <> 'pending' AND a.balance <> 0)""",
    "I1 every accepted batch has a hold": """
        SELECT 'batch ' || b.id, 'accepted (' || b.status || ') but billing holds nothing'
        FROM batch.batches b
        WHERE b.status NOT IN ('rejected', 'reserving')
          AND NOT EXISTS (SELECT 1 FROM billing.batch_holds h WHERE h.batch_id = b.id)""",
    "I1 settled holds match their tasks, batch counters match their tasks": """
        SELECT 'batch ' || b.id,
               'tasks ' || coalesce(t.n, 0) || ' of ' || b.total_count || ', succeeded '
               || coalesce(t.succeeded, 0) || '/' || b.succeeded_count || ', failed ' || coalesce(t.failed, 0)
               || '/' || b.failed_count || ', captured ' || h.captured || ' vs ' || coalesce(t.spent, 0)
               || ', refunded ' || (h.refunded + h.released) || ' vs ' || coalesce(t.refundable, 0)
        FROM batch.batches b
        JOIN billing.batch_holds h ON h.batch_id = b.id
        LEFT JOIN (SELECT batch_id, count(*) AS n,
                          count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                          count(*) FILTER (WHERE status = 'failed') AS failed,
                          count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                          sum(unit_price) FILTER (WHERE status = 'succeeded') AS spent,
                          sum(unit_price) FILTER (WHERE status IN ('failed', 'cancelled')) AS refundable
                   FROM batch.tasks GROUP BY batch_id) t ON t.batch_id = b.id
        WHERE coalesce(t.n, 0) <> b.total_count
           OR coalesce(t.succeeded, 0) <> b.succeeded_count OR coalesce(t.failed, 0) <> b.failed_count
           OR coalesce(t.cancelled, 0) <> b.cancelled_count
           OR (h.settlement_status <> 'pending'
               AND (h.captured <> coalesce(t.spent, 0) OR h.refunded + h.released <> coalesce(t.refundable, 0)
                    OR h.settlement_status <> b.settlement_status))""",
}


def money_discrepancies(dsn: str, *, limit: int = 20) -> list[str]:
    """Every broken I1-I3 rule found in the database at `dsn` (at most `limit` per rule)."""
    found: list[str] = []
    with psycopg.connect(dsn) as conn:
        conn.execute("SET work_mem = '256MB'")
        for rule, query in CHECKS.items():
            for subject, detail in conn.execute(f"{query} LIMIT {limit}"):
                found.append(f"{rule}: {subject}: {detail}")
    return found
