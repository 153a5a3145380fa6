"""Request Timestamps outside the calendar are the caller's error, not an INTERNAL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from reelbatch.proto.billing.v1 import billing_pb2

from libs.errors import InvalidArgument
from libs.rpc.timestamps import request_instant


def test_an_unset_timestamp_is_none_and_a_set_one_is_its_utc_datetime() -> None:
    request = billing_pb2.ExportLedgerRequest()
    request.created_to.FromDatetime(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))

    assert request_instant(request, "created_from") is None
    assert request_instant(request, "created_to") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize("seconds", [-62135596801, 253402300800, 2**62])
def test_a_timestamp_outside_years_1_to_9999_is_invalid_argument_naming_the_field(seconds: int) -> None:
    request = billing_pb2.ExportLedgerRequest()
    request.created_from.seconds = seconds

    with pytest.raises(InvalidArgument) as refused:
        request_instant(request, "created_from")

    assert refused.value.details == {"field": "created_from"}
