"""The seed demo (`make demo`) in ten lines of the SDK: freeze, run, refund, 402, idempotent retry."""

import uuid

from reelbatch_client import Client, InsufficientCredits

items = [
    {"prompt": f"Demo video {i + 1}" + (" #fail" if i == 7 else ""), "model": "sora-2"} for i in range(20)
]
key = f"seed-demo-{uuid.uuid4()}"
with Client() as client:  # REELBATCH_API_KEY (make run: demo-key), REELBATCH_BASE_URL
    accepted = client.create_batch(items, idempotency_key=key)
    print(
        f"1. {accepted.total_count} videos, {accepted.required_credits} credits frozen before anything runs"
    )
    batch = client.wait(
        accepted.batch_id, poll_interval=0.5, on_progress=lambda b: print(f"   {b.done_count}/20 {b.status}")
    )
    print(f"2. {batch.status}: spent {batch.credits_spent}, refunded {batch.refunded_credits} automatically")
    for entry in client.iter_ledger(batch_id=batch.batch_id):
        print(f"   ledger {entry.ref_type:13} {entry.credits_delta:+5}  balance after {entry.balance_after}")
    try:
        client.create_batch(items * 500)
    except InsufficientCredits as refused:
        print(f"3. 402: needs {refused.required_credits}, has {refused.available_credits}; nothing charged")
    replay = client.create_batch(items, idempotency_key=key)
    print(f"4. same Idempotency-Key -> same batch: {replay.batch_id == batch.batch_id}, charged once")
