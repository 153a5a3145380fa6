"""Posting transfers as balanced entries with running balances; keys; statement paging."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from libs.errors import InvalidArgument
from services.billing.domain.errors import LedgerInvariantViolated
from services.billing.domain.ids import BatchId, TaskId, TenantId
from services.billing.domain.ledger import (
    OutcomeKind,
    RefType,
    StatementLine,
    TaskOutcome,
    Transfer,
    page_size,
    parse_cursor,
    post_transfers,
    statement_page,
    task_outcome_key,
    tracked_accounts,
)

TENANT = TenantId(uuid.UUID(int=1))
BATCH = BatchId(uuid.UUID(int=2))
GRANTS, REVENUE, AVAILABLE, HOLD = 1, 2, 10, 11


def transfer(key: str, debit: int, credit: int, amount: int, ref_type: RefType = RefType.TOPUP) -> Transfer:
    return Transfer(key, ref_type, key, TENANT, BATCH, debit, credit, amount)


def test_a_posted_transfer_is_two_entries_that_sum_to_zero() -> None:
    posting = post_transfers([(7, transfer("t", AVAILABLE, HOLD, 200))], {AVAILABLE: 500, HOLD: 0})

    assert [(e.account_id, e.amount, e.balance_after) for e in posting.entries] == [
        (AVAILABLE, -200, 300),
        (HOLD, 200, 200),
    ]
    assert sum(e.amount for e in posting.entries) == 0
    assert {e.transfer_id for e in posting.entries} == {7}
    assert posting.balances == {AVAILABLE: 300, HOLD: 200}


def test_running_balances_follow_transfer_id_order_whatever_the_input_order() -> None:
    transfers = [
        (3, transfer("c", HOLD, AVAILABLE, 10)),
        (1, transfer("a", GRANTS, AVAILABLE, 100)),
        (2, transfer("b", AVAILABLE, HOLD, 30)),
    ]

    posting = post_transfers(transfers, {AVAILABLE: 0, HOLD: 0})

    available_after = [e.balance_after for e in posting.entries if e.account_id == AVAILABLE]
    assert available_after == [100, 70, 80]
    assert posting.balances == {AVAILABLE: 80, HOLD: 20}


def test_system_accounts_get_no_running_balance() -> None:
    posting = post_transfers([(1, transfer("cap", HOLD, REVENUE, 10))], {HOLD: 10})

    revenue_entry = next(e for e in posting.entries if e.account_id == REVENUE)
    assert revenue_entry.balance_after is None
    assert REVENUE not in posting.balances


def test_a_tracked_account_never_goes_negative() -> None:
    with pytest.raises(LedgerInvariantViolated):
        post_transfers([(1, transfer("t", AVAILABLE, HOLD, 11))], {AVAILABLE: 10, HOLD: 0})


@pytest.mark.parametrize(
    ("debit", "credit", "amount"), [(AVAILABLE, HOLD, 0), (AVAILABLE, HOLD, -5), (HOLD, HOLD, 5)]
)
def test_a_transfer_moves_a_positive_amount_between_two_accounts(
    debit: int, credit: int, amount: int
) -> None:
    with pytest.raises(LedgerInvariantViolated):
        transfer("bad", debit, credit, amount)


def test_tracked_accounts_are_the_non_system_ones_in_lock_order() -> None:
    transfers = (t for t in [transfer("a", HOLD, REVENUE, 1), transfer("b", HOLD, AVAILABLE, 1)])

    assert tracked_accounts(transfers, [REVENUE, GRANTS]) == [AVAILABLE, HOLD]


def test_capture_and_refund_of_one_task_share_one_key() -> None:
    capture = TaskOutcome(BATCH, TaskId("t1"), "m", OutcomeKind.CAPTURE)
    refund = TaskOutcome(BATCH, TaskId("t1"), "m", OutcomeKind.REFUND)

    assert capture.key == refund.key == task_outcome_key(TaskId("t1"))
    assert (capture.kind.ref_type, refund.kind.ref_type) == (RefType.BATCH_CAPTURE, RefType.BATCH_REFUND)


def test_page_size_defaults_and_is_bounded() -> None:
    assert page_size(0) == 50
    assert page_size(1000) == 1000
    for bad in (-1, 1001):
        with pytest.raises(InvalidArgument):
            page_size(bad)


@pytest.mark.parametrize("garbage", ["abc", "-3", "0", "1.5", "١٢", str(2**63), "9" * 30])
def test_garbage_cursors_are_rejected(garbage: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_cursor(garbage)


def test_a_page_has_a_next_cursor_only_when_more_lines_follow() -> None:
    lines = [
        StatementLine(n, RefType.TOPUP, "r", None, 1, n, datetime(2025, 1, 1, tzinfo=UTC)) for n in (9, 8, 7)
    ]

    assert statement_page(lines, 2).next_cursor == "8"
    assert parse_cursor(statement_page(lines, 2).next_cursor) == 8
    assert statement_page(lines[:2], 2).next_cursor == ""
    assert parse_cursor("") is None
    assert parse_cursor(str(2**63 - 1)) == 2**63 - 1
