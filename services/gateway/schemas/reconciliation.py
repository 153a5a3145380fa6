"""Reconciliation: the check of every credit against the invariants I1-I3, and what it found."""

from __future__ import annotations

from typing import Self

from pydantic import AwareDatetime, Field
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.proto_views import ProtoView


class DiscrepancyView(ProtoView):
    """One broken money invariant."""

    invariant: str = Field(
        description="I1 (batch money), I2 (balances and entries) or I3 (each effect once)."
    )
    subject: str = Field(description="What is wrong: a batch, an account, a transfer or the ledger.")
    message: str = Field(description="What does not add up.")


class ReconciliationView(ProtoView):
    """The result of checking every credit: empty `discrepancies` means the books balance."""

    discrepancies: list[DiscrepancyView]
    accounts_checked: int
    batches_checked: int
    checked_at: AwareDatetime

    @classmethod
    def from_proto(cls, report: billing_pb2.ReconcileResponse) -> Self:
        """Builds the view from billing's report."""
        discrepancies = [DiscrepancyView.by_name(found) for found in report.discrepancies]
        return cls.by_name(report, discrepancies=discrepancies)
