"""Error categories shared by every service, free of any transport.

Domain errors subclass `ServiceError` and name a category and a stable `reason`
(`insufficient_credits`, `idempotency_key_reused`, ...). The gRPC layer turns the category into a
status code in one table (`libs.rpc.errors`), the gateway turns status codes into HTTP in another.
"""

from __future__ import annotations

from enum import Enum


class ErrorCategory(Enum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    FAILED_PRECONDITION = "failed_precondition"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"


class ServiceError(Exception):
    """A refusal a caller can act on. `details` are string facts (e.g. required_credits)."""

    category: ErrorCategory = ErrorCategory.FAILED_PRECONDITION
    reason: str = "failed_precondition"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, str] = {key: str(value) for key, value in details.items()}


class InvalidArgument(ServiceError):
    category = ErrorCategory.INVALID_ARGUMENT
    reason = "validation_error"


class NotFound(ServiceError):
    category = ErrorCategory.NOT_FOUND
    reason = "not_found"


class Unauthenticated(ServiceError):
    category = ErrorCategory.UNAUTHENTICATED
    reason = "unauthorized"
