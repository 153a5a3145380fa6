"""Reconciliation: the check of every credit against the invariants I1-I3, of our provider jobs
(I9: one billable job per task attempt, none in doubt), and what it found."""

from __future__ import annotations

from typing import Self

from pydantic import AwareDatetime, Field
from reelbatch.proto.batch.v1 import batch_pb2
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.proto_views import ProtoView


class DiscrepancyView(ProtoView):
    """One broken money invariant."""

    invariant: str = Field(
        description=(
            "I1 (batch money), I2 (balances and entries), I3 (each effect once) or I9 (provider "
            "jobs: more than one billable job for a task attempt, or a job in doubt)."
        )
    )
    subject: str = Field(
        description="What is wrong: a batch, an account, a transfer, the ledger or a task attempt."
    )
    message: str = Field(description="What does not add up.")


class ReconciliationView(ProtoView):
    """The result of checking every credit: empty `discrepancies` means the books balance."""

    discrepancies: list[DiscrepancyView]
    accounts_checked: int
    batches_checked: int
    checked_at: AwareDatetime

    @classmethod
    def from_proto(
        cls, report: billing_pb2.ReconcileResponse, provider_jobs: batch_pb2.AuditProviderJobsResponse
    ) -> Self:
        """Builds the view from billing's report and the batch service's provider job audit."""
        discrepancies = [DiscrepancyView.by_name(found) for found in report.discrepancies]
        discrepancies += [
            DiscrepancyView(
                invariant="I9",
                subject=f"task {found.task_id} attempt {found.attempt}",
                message=f"{found.check}: {found.message}",
            )
            for found in provider_jobs.findings
        ]
        return cls.by_name(report, discrepancies=discrepancies)
