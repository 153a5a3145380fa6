"""Reconciliation: the check of every credit against the invariants I1-I3, and what it found."""

from __future__ import annotations

from datetime import UTC
from typing import Self

from pydantic import AwareDatetime, BaseModel, Field
from reelbatch.proto.billing.v1 import billing_pb2


class DiscrepancyView(BaseModel):
    """One broken money invariant."""

    invariant: str = Field(
        description="I1 (batch money), I2 (balances and entries) or I3 (each effect once)."
    )
    subject: str = Field(description="What is wrong: a batch, an account, a transfer or the ledger.")
    message: str = Field(description="What does not add up.")


class ReconciliationView(BaseModel):
    """The result of checking every credit: empty `discrepancies` means the books balance."""

    discrepancies: list[DiscrepancyView]
    accounts_checked: int
    batches_checked: int
    checked_at: AwareDatetime

    @classmethod
    def from_proto(cls, report: billing_pb2.ReconcileResponse) -> Self:
        """Builds the view from billing's report."""
        return cls(
            discrepancies=[
                DiscrepancyView(invariant=found.invariant, subject=found.subject, message=found.message)
                for found in report.discrepancies
            ],
            accounts_checked=report.accounts_checked,
            batches_checked=report.batches_checked,
            checked_at=report.checked_at.ToDatetime(tzinfo=UTC),
        )
