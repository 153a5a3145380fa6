"""The money invariants I1-I5 of ARCHITECTURE.md, I6 of retry-failed, I7-I8 of spend control
(`tests.spend_invariants`) and I9 of provider jobs, checked straight from the database.

docs/architecture.md (section 3) states each invariant and lists every test that checks it; this
module is the check run after every end-to-end, chaos and benchmark run.

This is an auditor's view: it reads both services' schemas directly (no service does that) and
returns every discrepancy it finds, so a failing test says exactly what is wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from tests.spend_invariants import (
    REFUSED_BUT_FROZEN,
    SPEND_QUERIES,
    refused_but_frozen_discrepancies,
    spend_control_discrepancies,
)

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class InvariantReport:
    discrepancies: list[str]
    batches_checked: int
    tenants_checked: int

    def assert_clean(self) -> None:
        assert not self.discrepancies, "money invariants broken:\n" + "\n".join(self.discrepancies)


def check_invariants(database_url: str, *, require_settled: bool = True) -> InvariantReport:
    """Checks I1-I9 over everything in the database; with `require_settled`, also that every task
    has finished and every batch is settled (without it, money in flight is checked as it stands:
    each hold adds up, counters match tasks, nothing is applied twice)."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    problems: list[str] = []
    with psycopg.connect(dsn) as conn:
        # I2: every transfer is two entries summing to zero; the whole ledger sums to zero.
        total = conn.execute("SELECT coalesce(sum(amount), 0) FROM billing.ledger_entries").fetchone()
        assert total is not None
        if total[0] != 0:
            problems.append(f"I2: ledger entries sum to {total[0]}, not 0")
        for transfer_id, count, amount_sum in conn.execute(
            "SELECT t.id, count(e.id), coalesce(sum(e.amount), 0) FROM billing.transfers t "
            "LEFT JOIN billing.ledger_entries e ON e.transfer_id = t.id GROUP BY t.id "
            "HAVING count(e.id) <> 2 OR coalesce(sum(e.amount), 0) <> 0"
        ):
            problems.append(f"I2: transfer {transfer_id} has {count} entries summing to {amount_sum}")
        # I2: tracked balances equal the sum of their entries and are never negative.
        for account_id, kind, balance, entries_sum, last_after in conn.execute(
            "SELECT a.id, a.kind, a.balance, coalesce(sum(e.amount), 0), "
            "(SELECT e2.balance_after FROM billing.ledger_entries e2 WHERE e2.account_id = a.id "
            " ORDER BY e2.id DESC LIMIT 1) "
            "FROM billing.accounts a LEFT JOIN billing.ledger_entries e ON e.account_id = a.id "
            "WHERE a.kind IN ('available', 'hold') GROUP BY a.id"
        ):
            if balance != entries_sum:
                problems.append(f"I2: {kind} account {account_id} balance {balance} != entries {entries_sum}")
            if balance < 0:
                problems.append(f"I2: {kind} account {account_id} is negative ({balance})")
            if last_after is not None and last_after != balance:
                problems.append(
                    f"I2: {kind} account {account_id} last balance_after {last_after} != {balance}"
                )
        tenants = conn.execute("SELECT count(*) FROM billing.accounts WHERE kind = 'available'").fetchone()

        # I3: one freeze per batch, one outcome per task, one settle per batch, one top-up per key.
        for key, count in conn.execute(
            "SELECT key, count(*) FROM billing.transfers GROUP BY key HAVING count(*) > 1"
        ):
            problems.append(f"I3: transfer key {key} applied {count} times")
        for ref_type, ref_id, count in conn.execute(
            "SELECT ref_type, ref_id, count(*) FROM billing.transfers "
            "WHERE ref_type IN ('batch_upfront', 'batch_settle') "
            "GROUP BY ref_type, ref_id HAVING count(*) > 1"
        ):
            problems.append(f"I3: {ref_type} for {ref_id} applied {count} times")
        for ref_id, count in conn.execute(
            "SELECT ref_id, count(*) FROM billing.transfers "
            "WHERE ref_type IN ('batch_capture', 'batch_refund') GROUP BY ref_id HAVING count(*) > 1"
        ):
            problems.append(f"I3: task {ref_id} has {count} outcome transfers")

        # I5: one batch per (tenant, request id), enforced by a unique index.
        for tenant_id, request_id, count in conn.execute(
            "SELECT tenant_id, request_id, count(*) FROM batch.batches WHERE request_id IS NOT NULL "
            "GROUP BY tenant_id, request_id HAVING count(*) > 1"
        ):
            problems.append(f"I5: request {request_id} of tenant {tenant_id} made {count} batches")

        # I6 (retry-failed, ADR-048): a batch has at most one retry that was not rejected (a
        # rejected one froze nothing), and a retry holds no more items than its source failed.
        for source_id, count in conn.execute(
            "SELECT retry_of, count(*) FROM batch.batches WHERE retry_of IS NOT NULL"
            " AND status <> 'rejected' GROUP BY retry_of HAVING count(*) > 1"
        ):
            problems.append(f"I6: batch {source_id} has {count} retries that froze credits")
        for retry_id, source_id, total_count, failed in conn.execute(
            "SELECT r.id, r.retry_of, r.total_count,"
            " (SELECT count(*) FROM batch.tasks t WHERE t.batch_id = r.retry_of AND t.status = 'failed')"
            " FROM batch.batches r WHERE r.retry_of IS NOT NULL"
        ):
            if total_count > failed:
                problems.append(
                    f"I6: retry {retry_id} holds {total_count} items, its source {source_id} failed {failed}"
                )

        # I7 and I8 (spend control, issue 29): budgets per period, quotes honoured or refused.
        problems += spend_control_discrepancies(
            {name: conn.execute(sql).fetchall() for name, sql in SPEND_QUERIES.items()}
        )
        problems += refused_but_frozen_discrepancies(conn.execute(REFUSED_BUT_FROZEN).fetchall())

        # I1 and I4 per accepted batch.
        batches = conn.execute(
            "SELECT id, status, total_count, settlement_status, succeeded_count, failed_count,"
            " cancelled_count, credits_spent, refunded_credits, undispatched_count FROM batch.batches "
            "WHERE status NOT IN ('rejected', 'reserving')"
        ).fetchall()
        for batch_id, status, total_count, settlement_status, *stored_counters in batches:
            counts: dict[str, int] = dict(
                conn.execute(
                    "SELECT status, count(*) FROM batch.tasks WHERE batch_id = %s GROUP BY status",
                    (batch_id,),
                ).fetchall()
            )
            undispatched = conn.execute(
                "SELECT count(*) FROM batch.tasks WHERE batch_id = %s AND status = 'queued'"
                " AND dispatched_at IS NULL",
                (batch_id,),
            ).fetchone()
            money: dict[str, int] = dict(
                conn.execute(
                    "SELECT status, coalesce(sum(unit_price), 0) FROM batch.tasks WHERE batch_id = %s "
                    "GROUP BY status",
                    (batch_id,),
                ).fetchall()
            )
            # The counters a batch keeps on its row (ADR-031, ADR-042) are what its tasks say.
            counted = [
                counts.get("succeeded", 0),
                counts.get("failed", 0),
                counts.get("cancelled", 0),
                money.get("succeeded", 0),
                money.get("failed", 0) + money.get("cancelled", 0),
                undispatched[0] if undispatched else 0,
            ]
            if stored_counters != counted:
                problems.append(f"I4: batch {batch_id} counters {stored_counters} != its tasks' {counted}")
            if sum(counts.values()) != total_count:
                problems.append(
                    f"I4: batch {batch_id} has {sum(counts.values())} tasks, expected {total_count}"
                )
            open_tasks = {s: n for s, n in counts.items() if s not in TERMINAL}
            if open_tasks and require_settled:
                problems.append(f"I4: batch {batch_id} ({status}) has unfinished tasks {open_tasks}")
            hold = conn.execute(
                "SELECT h.frozen, h.captured, h.refunded, h.released, h.settlement_status, a.balance "
                "FROM billing.batch_holds h JOIN billing.accounts a ON a.id = h.hold_account_id "
                "WHERE h.batch_id = %s",
                (batch_id,),
            ).fetchone()
            if hold is None:
                problems.append(f"I1: accepted batch {batch_id} has no hold in billing")
                continue
            frozen, captured, refunded, released, billing_settlement, held = hold
            if frozen != captured + refunded + released + held:
                problems.append(
                    f"I1: batch {batch_id} frozen {frozen} != captured {captured} + refunded {refunded}"
                    f" + released {released} + held {held}"
                )
            if require_settled:
                expected_captured = money.get("succeeded", 0)
                expected_refunded = money.get("failed", 0) + money.get("cancelled", 0)
                if billing_settlement == "pending" or settlement_status == "pending":
                    problems.append(f"I1: batch {batch_id} ({status}) not settled yet")
                if held != 0 and billing_settlement != "pending":
                    problems.append(f"I1: settled batch {batch_id} still holds {held}")
                if captured != expected_captured:
                    problems.append(
                        f"I1: batch {batch_id} captured {captured}, succeeded tasks cost {expected_captured}"
                    )
                if refunded + released != expected_refunded:
                    problems.append(
                        f"I1: batch {batch_id} refunded {refunded} + released {released},"
                        f" failed/cancelled tasks cost {expected_refunded}"
                    )
                if billing_settlement != settlement_status:
                    problems.append(
                        f"I1: batch {batch_id} settlement {settlement_status} in batch,"
                        f" {billing_settlement} in billing"
                    )
        # I9 (issue 26, ADR-110, ADR-145): no attempt of a task holds more than one provider job
        # its provider bills (a failed or cancelled one where the provider bills failures; in
        # doubt jobs are reported by the audit, not counted here).
        for task_id, attempt, jobs in conn.execute(
            "SELECT task_id, attempt, count(*) FROM batch.provider_jobs "
            "WHERE status IN ('running', 'succeeded', 'abandoned') "
            "OR (failures_billed AND status IN ('failed', 'cancelled')) "
            "GROUP BY task_id, attempt HAVING count(*) > 1"
        ):
            problems.append(f"I9: task {task_id} attempt {attempt} has {jobs} billable provider jobs")
        # I9 in the books (ADR-144): the provider spend billing recorded for a task is what the
        # batch service summed from the task's billed jobs when it ended.
        for task_id, in_billing, in_batch in conn.execute(
            "SELECT c.task_id, c.provider_cost_usd_micros, t.provider_cost_usd_micros "
            "FROM billing.task_provider_costs c JOIN batch.tasks t ON c.task_id = t.id::text "
            "WHERE c.provider_cost_usd_micros <> t.provider_cost_usd_micros"
        ):
            problems.append(f"I9: task {task_id} provider spend {in_billing} in billing, {in_batch} in batch")
    return InvariantReport(problems, len(batches), int(tenants[0]) if tenants else 0)


def wait_for_all_settled(database_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        report = check_invariants(database_url, require_settled=True)
        if not report.discrepancies or time.monotonic() > deadline:
            report.assert_clean()
            return
        time.sleep(0.2)
