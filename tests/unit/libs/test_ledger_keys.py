"""The ledger's public transfer ids (ADR-104): a UUIDv5 of each business key, stable and distinct."""

from __future__ import annotations

import uuid

from libs.ledger_keys import (
    TRANSFER_ID_NAMESPACE,
    settle_key,
    task_outcome_key,
    task_transfer_id,
    topup_key,
    transfer_id,
    upfront_key,
)

TASK = uuid.UUID("6f1c2a4e-0b7d-4c39-9a51-2d8e7f3b1c60")
BATCH = uuid.UUID("0e6e84a9-846f-4c11-8f02-c7a11fd38856")


def test_the_keys_are_the_ledgers_business_keys() -> None:
    assert task_outcome_key(TASK) == f"task_outcome:{TASK}"
    assert upfront_key(BATCH) == f"batch_upfront:{BATCH}"
    assert settle_key(BATCH) == f"batch_settle:{BATCH}"
    assert topup_key(BATCH, "payment-1") == f"topup:{BATCH}:payment-1"


def test_a_transfer_id_is_the_uuid5_of_its_key_and_never_changes() -> None:
    for key in (task_outcome_key(TASK), upfront_key(BATCH), "topup:x:paiement-é", ""):
        assert transfer_id(key) == str(uuid.uuid5(TRANSFER_ID_NAMESPACE, key))
    # Published in webhooks and files: a change of namespace or derivation would break every receipt.
    assert task_transfer_id(TASK) == "86043ac6-acf0-568e-85c9-1f0d757a1144"


def test_a_tasks_receipt_is_the_same_from_a_uuid_or_its_text_in_any_case() -> None:
    expected = transfer_id(f"task_outcome:{TASK}")

    assert (
        task_transfer_id(TASK)
        == task_transfer_id(str(TASK))
        == task_transfer_id(str(TASK).upper())
        == expected
    )
    assert uuid.UUID(expected).version == 5


def test_distinct_keys_have_distinct_ids() -> None:
    tasks = [uuid.uuid4() for _ in range(10_000)]
    batch = uuid.uuid4()
    ids = [task_transfer_id(task) for task in tasks] + [
        transfer_id(upfront_key(batch)),
        transfer_id(settle_key(batch)),
        transfer_id(task_outcome_key(batch)),
    ]

    assert len(set(ids)) == len(ids)
