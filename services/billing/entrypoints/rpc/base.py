"""What every topic's RPCs share: the handlers they translate to, and protobuf timestamps."""

from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.billing.adapters.invalidation_hub import InvalidationHub
from services.billing.use_cases.handlers import BillingHandlers

Context = grpc.aio.ServicerContext[object, object]


class BillingRpcs:
    """Base of the topic mixins that `BillingServicer` combines: proto in, handler call, proto out."""

    def __init__(self, handlers: BillingHandlers, invalidations: InvalidationHub | None = None) -> None:
        self._handlers = handlers
        # None in tests that serve no invalidation stream.
        self._invalidations = invalidations


def timestamp(moment: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def optional_timestamp(moment: datetime | None) -> Timestamp | None:
    """`timestamp`, or None (the field left unset) for None."""
    return None if moment is None else timestamp(moment)
