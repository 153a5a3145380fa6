"""Reading instants: a request's (a Timestamp a datetime cannot hold is the caller's error) and a
response's (converted fast: views convert one per row)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from libs.errors import InvalidArgument


def request_instant(request: Message, field: str) -> datetime | None:
    """The UTC datetime of the Timestamp `field` of `request`, None when unset.

    A Timestamp may carry seconds outside years 1..9999, which no datetime (nor the database's
    comparisons we make with one) holds: INVALID_ARGUMENT naming the field, never an INTERNAL.
    """
    if not request.HasField(field):
        return None
    stamp: Timestamp = getattr(request, field)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"{field} must be between years 1 and 9999", field=field) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def optional_time(value: Timestamp, present: bool) -> datetime | None:
    """The UTC datetime of a response's Timestamp, None when the field is not `present`."""
    if not present:
        return None
    # `value.ToDatetime(tzinfo=UTC)` (microseconds kept, nanoseconds below them dropped) at half
    # its cost: a page of tasks converts one per task.
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
