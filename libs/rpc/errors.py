"""The one mapping between `ServiceError` and gRPC status (with a `google.rpc.ErrorInfo` detail)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.errors import ErrorCategory, ServiceError

log = logging.getLogger(__name__)

ERROR_DOMAIN = "reelbatch"

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


def _status(code: grpc.StatusCode, message: str, reason: str, details: dict[str, str]) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=details)
    packed = any_pb2.Any()
    packed.Pack(info)
    proto = status_pb2.Status(code=code.value[0], message=message, details=[packed])
    return rpc_status.to_status(proto)


def status_for(error: ServiceError) -> grpc.Status:
    """The gRPC status that carries `error` to the caller."""
    return _status(STATUS_BY_CATEGORY[error.category], error.message, error.reason, error.details)


def status_code_for(error: ServiceError) -> grpc.StatusCode:
    """The status code of `error` (an item's refusal inside a many-item answer carries its name)."""
    return STATUS_BY_CATEGORY[error.category]


def _is_dependency_down(error: BaseException) -> bool:
    """Whether `error` says the database (or another dependency) is out of reach for now.

    SQLAlchemy wraps the driver's errors, but the hot paths run statements on the psycopg
    connection itself, so its errors arrive unwrapped: both spellings count. PostgreSQL ending a
    connection (`pg_terminate_backend`, a restart, a failover) raises `psycopg.OperationalError`
    (`AdminShutdown` is one), as do a pool that has no connection to give and a lost socket.
    """
    # Imported here: the gateway uses this module only as a gRPC client and has no database;
    # importing SQLAlchemy would cost it ~0.7 s of CPU at start. Servers have it loaded already.
    import psycopg
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import OperationalError as WrappedOperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(error, (psycopg.OperationalError, WrappedOperationalError, PoolTimeout)):
        return True
    if isinstance(error, DBAPIError) and (
        error.connection_invalidated or isinstance(error.orig, psycopg.OperationalError)
    ):
        return True
    return isinstance(error, (ConnectionError, TimeoutError))


def failure_status(error: Exception, method: str) -> grpc.Status:
    """The status a unary handler's escaping exception is answered with; never leaks a traceback.

    A refusal keeps its category, reason and details; a dependency that is down becomes
    UNAVAILABLE (the caller retries); anything else is logged and becomes INTERNAL.
    """
    if isinstance(error, ServiceError):
        return status_for(error)
    if _is_dependency_down(error):
        log.warning("dependency unavailable in %s: %s", method, error)
        return _status(grpc.StatusCode.UNAVAILABLE, "a dependency is unavailable", "unavailable", {})
    log.error("unhandled error in %s", method, exc_info=error)
    return _status(grpc.StatusCode.INTERNAL, "internal error", "internal", {})


@dataclass(frozen=True)
class RemoteError(Exception):
    """A failed gRPC call, decoded: status code, stable reason and string details."""

    code: grpc.StatusCode
    reason: str
    message: str
    details: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name}/{self.reason}: {self.message}"


def remote_error(error: grpc.aio.AioRpcError) -> RemoteError:
    """Decodes the ErrorInfo a server attached with `status_for` (or infers one)."""
    code = error.code()
    reason = code.name.lower()
    details: dict[str, str] = {}
    trailing: Any = error.trailing_metadata() or ()
    for key, value in trailing:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for packed in status.details:
                info = error_details_pb2.ErrorInfo()
                if packed.Unpack(info):
                    reason = info.reason
                    details = dict(info.metadata)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        reason = "unavailable"
    return RemoteError(code=code, reason=reason, message=error.details() or "", details=details)


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
