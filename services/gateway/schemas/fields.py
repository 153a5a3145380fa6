"""Field bounds and conversions every schema module shares: the wire's limits, times, JSON bytes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AfterValidator, AwareDatetime, Field, ValidationInfo
from reelbatch.proto.batch.v1 import batch_pb2

# The idempotency key's bound, as the batch service's contract publishes it.
MAX_REQUEST_ID_CHARS = batch_pb2.CREATE_BATCH_LIMIT_MAX_REQUEST_ID_CHARS
# What an int32 field of the batch contract can carry: a larger JSON integer cannot be sent at all.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# The most credits one request may add (a top-up, an offline payment). A balance is bounded
# further by billing, which refuses a credit that would take it past a bigint (422).
MAX_CREDITS_PER_REQUEST = 2**62
# One line of text without control characters: PostgreSQL refuses NUL in text, and names and
# references are shown in the dashboard and CSV exports.
SINGLE_LINE_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"


def _not_blank(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError(f"{info.field_name} must not be empty")
    return value


# A required line of text that is not only white space (a tenant's name, a top-up's reference);
# each field adds its own `max_length` and description.
NonBlankLine = Annotated[
    str, Field(min_length=1, pattern=SINGLE_LINE_TEXT_PATTERN), AfterValidator(_not_blank)
]


def _within_calendar(moment: datetime) -> datetime:
    # 0001-01-01T00:00:00+14:00 is a valid RFC 3339 text but before year 1 once in UTC: no
    # datetime, protobuf Timestamp or comparison downstream can hold it.
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z") from None


Instant = Annotated[AwareDatetime, AfterValidator(_within_calendar)]
"""An RFC 3339 instant with its offset, within years 1..9999 in UTC (answered in UTC)."""


_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


def is_valid_request_id(value: str) -> bool:
    """True for 1..255 printable ASCII characters (an acceptable X-Request-ID)."""
    return 0 < len(value) <= MAX_REQUEST_ID_CHARS and _PRINTABLE_ASCII.fullmatch(value) is not None


def optional_timestamp(moment: datetime | None) -> Timestamp | None:
    """A bound of a time filter for the backends: unset (None) when the client gave none."""
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def none_if_empty(value: str) -> str | None:
    return value or None


def json_bytes(document: Mapping[str, Any]) -> bytes:
    """JSON of a view's fields, written as pydantic writes the model (UTC times end in `Z`)."""
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)
