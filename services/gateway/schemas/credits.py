"""Credits: balances, top-ups, the tenant's ledger and a batch's money movements."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from reelbatch.proto.billing.v1 import billing_pb2

from services.gateway.schemas.fields import MAX_CREDITS_PER_REQUEST, NonBlankLine
from services.gateway.schemas.pages import CursorPage
from services.gateway.schemas.proto_views import MessageView, ProtoView


class TopUpRequest(BaseModel):
    """Credits added to a tenant's available balance; idempotent on `reference`."""

    model_config = ConfigDict(extra="forbid")

    credits: int = Field(
        strict=True, gt=0, le=MAX_CREDITS_PER_REQUEST, description="Whole credits to add (> 0)."
    )
    reference: NonBlankLine = Field(
        max_length=255,
        description="Business key of the payment or grant; repeating it returns the first result.",
    )


class TopUpResult(BaseModel):
    """The balance after a top-up."""

    balance: int = Field(description="Available balance after the top-up.")
    replayed: bool = Field(description="True when this reference had been applied before (no new credits).")


class CreditsView(MessageView[billing_pb2.GetBalanceResponse]):
    """A tenant's balances."""

    available_credits: int = Field(description="Credits that new batches can use.")
    held_credits: int = Field(description="Credits frozen for batches still running.")
    debt_credits: int = Field(
        description=(
            "Credits owed: refunded or disputed payments whose credits were already spent. While above 0, "
            "new batches are refused with 402 `debt_outstanding`; the next payment pays it first."
        )
    )


class LedgerEntryView(MessageView[billing_pb2.LedgerEntry]):
    """One change of the tenant's available balance."""

    entry_id: str = Field(description="Identifier of the ledger entry.")
    ref_type: str = Field(description="topup, batch_upfront, batch_refund or batch_settle.")
    ref_id: str = Field(description="Business key of the movement (payment reference, batch or task id).")
    batch_id: str | None = Field(description="The batch concerned; null for top-ups.")
    credits_delta: int = Field(description="Change of the available balance (negative when credits leave).")
    balance_after: int = Field(description="Available balance after this entry.")
    created_at: AwareDatetime = Field(description="When the entry was written (RFC 3339, UTC).")
    ledger_transfer_id: str = Field(
        description=(
            "Public id of the transfer this entry belongs to (a UUIDv5 of its ledger key); on a task's "
            "refund it equals the task's `ledger_transfer_id` (webhook, task view, errors file)."
        )
    )


class LedgerPage(CursorPage[LedgerEntryView]):
    """One page of ledger entries, newest first."""

    @classmethod
    def from_proto(cls, page: billing_pb2.ListLedgerEntriesResponse) -> Self:
        """Builds the page from billing's answer."""
        return cls(
            items=[LedgerEntryView.from_proto(entry) for entry in page.entries],
            next_cursor=page.next_cursor or None,
        )


class BatchTransferView(MessageView[billing_pb2.BatchTransfer]):
    """One movement of a batch's credits."""

    transfer_id: str = Field(description="Sequence number of the transfer (its order in the ledger).")
    ledger_transfer_id: str = Field(
        description=(
            "Public id of the transfer (a UUIDv5 of its ledger key): on a task's capture or refund it "
            "equals the task's `ledger_transfer_id` (webhook, task view, results and errors files)."
        )
    )
    ref_type: str = Field(description="batch_upfront, batch_capture, batch_refund or batch_settle.")
    ref_id: str = Field(description="The batch (freeze, release) or task (capture, refund) concerned.")
    amount: int = Field(description="Credits moved.")
    from_account: str = Field(description="available, hold or revenue.")
    to_account: str = Field(description="available, hold or revenue.")
    credits_delta: int = Field(description="Change of the tenant's available balance (0 for captures).")
    created_at: AwareDatetime = Field(description="When the transfer was written.")

    proto_names: ClassVar[dict[str, str]] = {"credits_delta": "available_delta"}


class BatchBillingView(ProtoView):
    """A batch's money: totals per kind of movement and its ledger entries (paged)."""

    batch_id: str
    tenant_id: str
    upfront_total: int = Field(description="Credits frozen when the batch was accepted.")
    capture_total: int = Field(description="Credits captured for delivered videos.")
    refund_total: int = Field(description="Credits refunded for failed or cancelled videos.")
    release_total: int = Field(description="Credits released at settlement (normally 0).")
    net_spent: int = Field(description="upfront - refunds - release: what the customer paid.")
    held_credits: int = Field(description="Still frozen (0 once settled).")
    settlement_status: str = Field(description="pending, settled or refunded.")
    entries: list[BatchTransferView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page of entries.")

    @classmethod
    def from_proto(cls, ledger: billing_pb2.BatchLedger) -> Self:
        """Builds the view from billing's BatchLedger."""
        return cls.by_name(ledger, entries=[BatchTransferView.from_proto(entry) for entry in ledger.entries])
