"""The ledger's business keys and the public transfer id each one determines (ADR-003, ADR-104).

Billing makes each credit movement at most once by a unique key: `batch_upfront:{batch}` freezes a
batch, `task_outcome:{task}` captures or refunds one task (one key for both, so never both),
`batch_settle:{batch}` releases the rest, `topup:{tenant}:{reference}` adds credits; payments that
go back are keyed by the payment and the dispute or refund level (`reversal_key`, ADR-134). The public
id of a transfer is a UUIDv5 of its key in a fixed namespace: anyone who knows a task's id knows
its ledger transfer id, so the webhook and results line of a task can name the ledger line billing
writes after they were sent, with no call to billing. Billing stores its transfers with a
sequential id (its page order); this id is derived from the stored key when a line is read, so
transfers written before it existed have one too.
"""

from __future__ import annotations

import hashlib
import uuid

# Fixed forever: changing it changes every receipt id ever published.
TRANSFER_ID_NAMESPACE = uuid.UUID("210b89de-45d3-479c-806c-fab33ee69a4c")


def topup_key(tenant_id: uuid.UUID | str, reference: str) -> str:
    """One top-up per (tenant, payment reference)."""
    return f"topup:{tenant_id}:{reference}"


def upfront_key(batch_id: uuid.UUID | str) -> str:
    """One freeze per batch."""
    return f"batch_upfront:{batch_id}"


def task_outcome_key(task_id: uuid.UUID | str) -> str:
    """One key for both capture and refund, so a task is never both captured and refunded."""
    return f"task_outcome:{task_id}"


def settle_key(batch_id: uuid.UUID | str) -> str:
    """One release of the remainder per batch."""
    return f"batch_settle:{batch_id}"


def reversal_key(provider: str, payment_reference: str, source: str) -> str:
    """One reversal of a payment per source: a dispute id, or a refund's cumulative level
    (`refunded:<cents>`, Stripe's `amount_refunded`) (ADR-134). The part taken from the debt account
    is keyed `<this>:debt`."""
    return f"payment_reversal:{provider}:{payment_reference}:{source}"


def reinstatement_key(provider: str, payment_reference: str, source: str) -> str:
    """One return of a reversal's credits per source (a dispute won); `<this>:debt` for the part
    that cancels debt."""
    return f"payment_reinstated:{provider}:{payment_reference}:{source}"


def debt_payment_key(provider: str, payment_reference: str) -> str:
    """One payment of debt per incoming payment: the payment's credits pay the debt first."""
    return f"debt_payment:{provider}:{payment_reference}"


_NAMESPACE_BYTES = TRANSFER_ID_NAMESPACE.bytes


def transfer_id(key: str) -> str:
    """The public id of the transfer whose business key is `key`: `uuid.uuid5(TRANSFER_ID_NAMESPACE,
    key)` in its canonical text form (RFC 9562 section 5.5)."""
    # The same bytes uuid5 makes, without building a UUID object and formatting it: a results file
    # or a page of 1,000 tasks derives one id per line, and this is three times faster.
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + key.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def task_transfer_id(task_id: uuid.UUID | str) -> str:
    """The public id of a task's capture or refund: its per-item receipt. A task id given as text
    must be the hyphenated form the services write (case does not matter): the key is billing's."""
    return transfer_id(task_outcome_key(task_id if isinstance(task_id, uuid.UUID) else task_id.lower()))
