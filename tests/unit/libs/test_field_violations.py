"""Field violations travel as gRPC's standard google.rpc.BadRequest detail and come back intact."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from libs.errors import FieldViolation, InvalidArgument, ServiceError
from libs.rpc.errors import as_service_error, remote_error, status_for

VIOLATIONS = (
    FieldViolation(
        ("items", 150, "prompt"), "control_character", "prompt must not contain control characters"
    ),
    FieldViolation(("webhook_url",), "invalid_url", "webhook_url must be an absolute http(s) URL"),
)


def _sent(error: ServiceError) -> grpc.aio.AioRpcError:
    status = status_for(error)
    return grpc.aio.AioRpcError(
        code=status.code,
        initial_metadata=grpc.aio.Metadata(),
        trailing_metadata=grpc.aio.Metadata(*status.trailing_metadata),
        details=status.details,
        debug_error_string="",
    )


def test_violations_are_sent_as_a_standard_bad_request_detail() -> None:
    status = status_for(InvalidArgument.of(VIOLATIONS))

    (details,) = [value for key, value in status.trailing_metadata if key == "grpc-status-details-bin"]
    sent = status_pb2.Status.FromString(details)
    bad_request = error_details_pb2.BadRequest()
    assert any(packed.Unpack(bad_request) for packed in sent.details)
    assert [(found.field, found.reason) for found in bad_request.field_violations] == [
        ("items[150].prompt", "control_character"),
        ("webhook_url", "invalid_url"),
    ]


def test_violations_come_back_with_their_locations_and_survive_a_relay() -> None:
    decoded = remote_error(_sent(InvalidArgument.of(VIOLATIONS)))

    assert decoded.code is grpc.StatusCode.INVALID_ARGUMENT
    assert decoded.reason == "validation_error"
    assert decoded.violations == VIOLATIONS
    assert remote_error(_sent(as_service_error(decoded))).violations == VIOLATIONS


def test_an_invalid_argument_naming_one_field_is_a_violation_of_that_field() -> None:
    decoded = remote_error(_sent(InvalidArgument("unknown task status", field="status")))

    assert decoded.violations == (FieldViolation(("status",), "validation_error", "unknown task status"),)
    assert decoded.details == {"field": "status"}


def test_a_status_with_many_violations_keeps_the_first_that_fit_in_grpcs_metadata_limit() -> None:
    many = [
        FieldViolation(("items", index, "prompt"), "too_long", "prompt must be at most 4000 characters")
        for index in range(1000)
    ]
    status = status_for(InvalidArgument.of(many))

    metadata_bytes = sum(len(key) + len(value) + 32 for key, value in status.trailing_metadata)
    assert metadata_bytes + len(status.details) < 8 * 1024
    kept = remote_error(_sent(InvalidArgument.of(many))).violations
    assert 60 <= len(kept) <= 100
    assert list(kept) == many[: len(kept)]
