"""The one mapping between `ServiceError` and gRPC status: a `google.rpc.ErrorInfo` detail (reason and
string facts) and, for the fields at fault, gRPC's standard `google.rpc.BadRequest` detail."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.dependency_down import is_dependency_down
from libs.errors import ErrorCategory, FieldViolation, ServiceError, field_location

log = logging.getLogger(__name__)

ERROR_DOMAIN = "reelbatch"

# The field violations a status carries, in bytes: gRPC clients refuse trailing metadata over 8 KiB
# by default (and see RESOURCE_EXHAUSTED instead of the refusal), so the BadRequest detail keeps
# the first violations that fit and leaves room for the status message and the ErrorInfo.
MAX_VIOLATION_BYTES = 6 * 1024

STATUS_BY_CATEGORY: dict[ErrorCategory, grpc.StatusCode] = {
    ErrorCategory.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCategory.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCategory.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCategory.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCategory.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCategory.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCategory.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCategory.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def _packed(detail: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


def _bad_request(violations: tuple[FieldViolation, ...]) -> error_details_pb2.BadRequest:
    """The violations as a BadRequest, the first ones that fit in MAX_VIOLATION_BYTES."""
    bad_request = error_details_pb2.BadRequest()
    size = 0
    for violation in violations:
        found = error_details_pb2.BadRequest.FieldViolation(
            field=violation.field, reason=violation.code, description=violation.message
        )
        size += found.ByteSize() + 3  # the entry's tag and length
        if size > MAX_VIOLATION_BYTES:
            break
        bad_request.field_violations.append(found)
    return bad_request


def _status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    details: dict[str, str],
    violations: tuple[FieldViolation, ...] = (),
) -> grpc.Status:
    packed = [_packed(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=details))]
    if violations:
        packed.append(_packed(_bad_request(violations)))
    proto = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return rpc_status.to_status(proto)


def status_for(error: ServiceError) -> grpc.Status:
    """The gRPC status that carries `error` to the caller (its violations as a BadRequest)."""
    return _status(
        STATUS_BY_CATEGORY[error.category], error.message, error.reason, error.details, error.violations
    )


def status_code_for(error: ServiceError) -> grpc.StatusCode:
    """The status code of `error` (an item's refusal inside a many-item answer carries its name)."""
    return STATUS_BY_CATEGORY[error.category]


def _is_value_refused_by_storage(error: BaseException) -> bool:
    # PostgreSQL's "data exception" class (SQLSTATE 22: a number past bigint, NUL in text, a date
    # out of range) judges a value, never the system's state: the request's value, when a rule
    # of the domain missed it.
    import psycopg
    from sqlalchemy.exc import DataError

    return isinstance(error, DataError | psycopg.DataError)


def failure_status(error: Exception, method: str) -> grpc.Status:
    """The status a unary handler's escaping exception is answered with; never leaks a traceback.

    A refusal keeps its category, reason and details; a dependency that is down becomes
    UNAVAILABLE (the caller retries); a value the database cannot store becomes INVALID_ARGUMENT
    (logged: the domain should have refused it first); anything else is logged and becomes INTERNAL.
    """
    if isinstance(error, ServiceError):
        return status_for(error)
    if is_dependency_down(error):
        log.warning("dependency unavailable in %s: %s", method, error)
        return _status(grpc.StatusCode.UNAVAILABLE, "a dependency is unavailable", "unavailable", {})
    if _is_value_refused_by_storage(error):
        log.warning("a value was refused by the database in %s: %s", method, error.__cause__ or error)
        message = "a value is out of the range that can be stored"
        return _status(grpc.StatusCode.INVALID_ARGUMENT, message, "validation_error", {})
    log.error("unhandled error in %s", method, exc_info=error)
    return _status(grpc.StatusCode.INTERNAL, "internal error", "internal", {})


@dataclass(frozen=True)
class RemoteError(Exception):
    """A failed gRPC call, decoded: status code, stable reason, string details and the fields at
    fault (from a `google.rpc.BadRequest` detail)."""

    code: grpc.StatusCode
    reason: str
    message: str
    details: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()

    def __str__(self) -> str:
        return f"{self.code.name}/{self.reason}: {self.message}"


def remote_error(error: grpc.aio.AioRpcError) -> RemoteError:
    """Decodes the ErrorInfo and BadRequest a server attached with `status_for` (or infers them)."""
    code = error.code()
    reason = code.name.lower()
    details: dict[str, str] = {}
    violations: list[FieldViolation] = []
    trailing: Any = error.trailing_metadata() or ()
    for key, value in trailing:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for packed in status.details:
                info = error_details_pb2.ErrorInfo()
                bad_request = error_details_pb2.BadRequest()
                if packed.Unpack(info):
                    reason = info.reason
                    details = dict(info.metadata)
                elif packed.Unpack(bad_request):
                    violations += (
                        FieldViolation(field_location(found.field), found.reason, found.description)
                        for found in bad_request.field_violations
                    )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        reason = "unavailable"
    return RemoteError(
        code=code,
        reason=reason,
        message=error.details() or "",
        details=details,
        violations=tuple(violations),
    )


def item_refusal(code_name: str, reason: str, message: str, details: dict[str, str]) -> RemoteError:
    """The refusal of one item of a many-item call, decoded as its own call's failure would be."""
    code = grpc.StatusCode.__members__.get(code_name, grpc.StatusCode.UNKNOWN)
    return RemoteError(code=code, reason=reason, message=message, details=dict(details))


_CATEGORY_BY_STATUS = {code: category for category, code in STATUS_BY_CATEGORY.items()}


def as_service_error(error: RemoteError) -> ServiceError:
    """Re-raises a downstream refusal as our own, keeping its category, reason and details.

    A dependency that is down (or an unknown failure) becomes UNAVAILABLE.
    """
    category = _CATEGORY_BY_STATUS.get(error.code, ErrorCategory.UNAVAILABLE)
    translated = ServiceError(error.message or error.reason, **error.details)
    translated.category = category
    translated.reason = error.reason if category is not ErrorCategory.UNAVAILABLE else "unavailable"
    translated.violations = error.violations
    return translated


__all__ = [
    "STATUS_BY_CATEGORY",
    "RemoteError",
    "as_service_error",
    "failure_status",
    "item_refusal",
    "remote_error",
    "status_code_for",
    "status_for",
]
