"""Billing's outgoing events, encoded as the protobuf contracts of `events.v1`."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from reelbatch.proto.events.v1 import events_pb2

from libs.messaging.contract import Envelope
from services.billing.domain.settlement import BatchHold

BATCH_SETTLED = "batch.settled"


def batch_settled_event(hold: BatchHold) -> Envelope:
    """`batch.settled`: the hold of a batch was released and its settlement is final."""
    occurred_at = Timestamp()
    if hold.settled_at is not None:
        occurred_at.FromDatetime(hold.settled_at)
    return Envelope.of(
        BATCH_SETTLED,
        events_pb2.BatchSettled(**hold.credit_totals(), occurred_at=occurred_at),
    )
