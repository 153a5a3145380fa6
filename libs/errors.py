"""Error categories shared by every service, free of any transport.

Domain errors subclass `ServiceError` and name a category and a stable `reason`
(`insufficient_credits`, `idempotency_key_reused`, ...). The gRPC layer turns the category into a
status code in one table (`libs.rpc.errors`), the gateway turns status codes into HTTP in another.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

# Every problem of a request is reported at once, up to this many (a 10,000-item batch of bad
# prompts must not answer 10,000 violations: gRPC metadata and the client's patience are finite).
MAX_FIELD_VIOLATIONS = 100

FieldLocation = tuple[str | int, ...]
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class ErrorCategory(Enum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    FAILED_PRECONDITION = "failed_precondition"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"


def field_path(location: Sequence[str | int]) -> str:
    """`("items", 150, "prompt")` -> `"items[150].prompt"` (google.rpc.BadRequest's field form)."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def field_location(path: str) -> FieldLocation:
    """`"items[150].prompt"` -> `("items", 150, "prompt")`, the inverse of `field_path`."""
    return tuple(int(index) if index else name for name, index in _PATH_PART.findall(path))


@dataclass(frozen=True)
class FieldViolation:
    """One broken rule of a request: where (`location`), a stable `code` and what is wrong."""

    location: FieldLocation
    code: str
    message: str

    @property
    def field(self) -> str:
        """The location as one path string, e.g. `items[150].prompt`."""
        return field_path(self.location)


def violations_summary(violations: Sequence[FieldViolation]) -> str:
    """A one-line message naming the first few violations (and how many more there are)."""
    summary = "; ".join(f"{violation.field}: {violation.message}" for violation in violations[:3])
    if len(violations) > 3:
        summary += f" (and {len(violations) - 3} more)"
    return f"invalid request: {summary}"


class ServiceError(Exception):
    """A refusal a caller can act on. `details` are string facts (e.g. required_credits);
    `violations` the fields at fault, each with its own code (an invalid argument's)."""

    category: ErrorCategory = ErrorCategory.FAILED_PRECONDITION
    reason: str = "failed_precondition"
    violations: tuple[FieldViolation, ...] = ()

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, str] = {key: str(value) for key, value in details.items()}


class InvalidArgument(ServiceError):
    """A request that breaks a rule. Its `violations` name each field at fault; one raised with
    just `field=` detail is a violation of that field (its code the error's reason)."""

    category = ErrorCategory.INVALID_ARGUMENT
    reason = "validation_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message, **details)
        if "field" in self.details:
            location = field_location(self.details["field"])
            self.violations = (FieldViolation(location, self.reason, message),)

    @classmethod
    def of(cls, violations: Sequence[FieldViolation]) -> InvalidArgument:
        """The refusal of a request with these violations (every one, up to the cap)."""
        refusal = cls(violations_summary(violations))
        refusal.violations = tuple(violations[:MAX_FIELD_VIOLATIONS])
        return refusal


class NotFound(ServiceError):
    category = ErrorCategory.NOT_FOUND
    reason = "not_found"


class Unauthenticated(ServiceError):
    category = ErrorCategory.UNAUTHENTICATED
    reason = "unauthorized"


class FailedPrecondition(ServiceError):
    """A well-formed request the current state refuses (credits, settlement, a batch not finished)."""

    category = ErrorCategory.FAILED_PRECONDITION


class AlreadyExists(ServiceError):
    category = ErrorCategory.ALREADY_EXISTS
    reason = "already_exists"


class Unavailable(ServiceError):
    """A dependency could not be reached; the same request may be retried."""

    category = ErrorCategory.UNAVAILABLE
    reason = "unavailable"


class InsufficientCredits(FailedPrecondition):
    """The tenant's available credits do not cover a batch: billing refuses the freeze, and the
    batch service records the batch as rejected (it owes nothing). One class for both services, so
    the reason and the details callers read (`required_credits`, `available_credits`) are written
    once; a service may word its own `summary` (a format string over the two figures)."""

    reason = "insufficient_credits"
    summary = "insufficient credits: {required_credits} required, {available_credits} available"

    def __init__(self, required_credits: int, available_credits: int) -> None:
        super().__init__(
            self.summary.format(required_credits=required_credits, available_credits=available_credits),
            required_credits=required_credits,
            available_credits=available_credits,
        )
        self.required_credits = required_credits
        self.available_credits = available_credits
