"""Settlement status, the released remainder, and what a hold accepts as outcomes."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from services.billing.domain.errors import (
    AlreadySettled,
    LedgerInvariantViolated,
    ModelNotReserved,
    OutcomesMissing,
    TooManyOutcomes,
)
from services.billing.domain.ids import BatchId, TaskId, TenantId
from services.billing.domain.ledger import OutcomeKind, RefType, TaskOutcome
from services.billing.domain.settlement import (
    BatchHold,
    SettlementStatus,
    outcome_transfer,
    release_transfer,
    settle,
    settlement_status,
    tally_outcomes,
)

BATCH = BatchId(uuid.UUID(int=5))
HOLD = BatchHold(
    batch_id=BATCH,
    tenant_id=TenantId(uuid.UUID(int=6)),
    hold_account_id=11,
    item_count=20,
    frozen=200,
    available_before=5000,
    available_after=4800,
    unit_prices={"sora-2": 10},
)


def outcome(task: str, kind: OutcomeKind, model: str = "sora-2") -> TaskOutcome:
    return TaskOutcome(BATCH, TaskId(task), model, kind)


@pytest.mark.parametrize(
    ("refunded", "released", "expected"),
    [(0, 0, SettlementStatus.SETTLED), (10, 0, SettlementStatus.REFUNDED), (0, 5, SettlementStatus.REFUNDED)],
)
def test_a_batch_is_refunded_when_any_credit_went_back_else_settled(
    refunded: int, released: int, expected: SettlementStatus
) -> None:
    assert settlement_status(refunded, released) is expected


def test_the_seed_batch_settles_as_refunded_with_nothing_left_to_release() -> None:
    done = replace(HOLD, captured=190, refunded=10, outcomes_applied=20)

    settlement = settle(done, hold_balance=0)

    assert (settlement.remainder, settlement.status) == (0, SettlementStatus.REFUNDED)


def test_settling_releases_the_remainder_still_held() -> None:
    done = replace(HOLD, item_count=2, frozen=30, captured=20, outcomes_applied=2)

    settlement = settle(done, hold_balance=10)
    release = release_transfer(done, settlement.remainder, available_account_id=10)

    assert (settlement.remainder, settlement.status) == (10, SettlementStatus.REFUNDED)
    assert (release.debit_account_id, release.credit_account_id, release.amount) == (11, 10, 10)
    assert (release.ref_type, release.key) == (RefType.BATCH_SETTLE, f"batch_settle:{BATCH}")


def test_settling_is_refused_while_outcomes_are_missing() -> None:
    with pytest.raises(OutcomesMissing) as refused:
        settle(replace(HOLD, captured=10, outcomes_applied=19), hold_balance=190)

    assert refused.value.details["outcomes_applied"] == "19"
    assert refused.value.details["item_count"] == "20"


def test_a_hold_balance_that_disagrees_with_its_counters_is_a_bug() -> None:
    with pytest.raises(LedgerInvariantViolated):
        settle(replace(HOLD, captured=200, outcomes_applied=20), hold_balance=10)


def test_outcomes_are_tallied_at_the_reserved_price() -> None:
    tally = tally_outcomes(HOLD, [outcome("a", OutcomeKind.CAPTURE), outcome("b", OutcomeKind.REFUND)])

    assert (tally.captured, tally.refunded, tally.outcomes) == (10, 10, 2)


def test_a_settled_batch_accepts_no_new_outcome() -> None:
    settled = replace(HOLD, settlement_status=SettlementStatus.SETTLED)
    with pytest.raises(AlreadySettled):
        tally_outcomes(settled, [outcome("late", OutcomeKind.CAPTURE)])
    assert tally_outcomes(settled, []).outcomes == 0


def test_a_batch_accepts_no_more_outcomes_than_items() -> None:
    with pytest.raises(TooManyOutcomes):
        tally_outcomes(
            replace(HOLD, outcomes_applied=19),
            [outcome("a", OutcomeKind.CAPTURE), outcome("b", OutcomeKind.CAPTURE)],
        )


def test_a_capture_goes_to_revenue_and_a_refund_to_available() -> None:
    capture = outcome_transfer(
        outcome("a", OutcomeKind.CAPTURE), HOLD, revenue_account_id=1, available_account_id=10
    )
    refund = outcome_transfer(
        outcome("b", OutcomeKind.REFUND), HOLD, revenue_account_id=1, available_account_id=10
    )

    assert (capture.debit_account_id, capture.credit_account_id, capture.amount) == (11, 1, 10)
    assert (refund.debit_account_id, refund.credit_account_id, refund.amount) == (11, 10, 10)


def test_an_outcome_of_a_model_the_batch_did_not_reserve_is_refused() -> None:
    with pytest.raises(ModelNotReserved):
        HOLD.unit_price("veo-3")
    assert HOLD.unit_price("") == 10, "a single-model batch needs no model name"
    with pytest.raises(ModelNotReserved):
        replace(HOLD, unit_prices={"sora-2": 10, "veo-3": 20}).unit_price("")
