"""Typed errors: every non-2xx answer becomes the exception of its `error.code`, carrying its fields.

`except InsufficientCredits as e: e.required_credits` reads the 402's figures; `ValidationFailed.errors`
lists every located problem of a 422 (`loc` like `["items", 150, "prompt"]`). Unknown codes fall
back to the class of their HTTP status, so a code the API adds later is still the right family.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from pydantic import ValidationError as _PydanticError

from reelbatch_client.models import ErrorDetail, FieldError


class ReelbatchError(Exception):
    """Everything this package raises."""


class APIConnectionError(ReelbatchError):
    """The API could not be reached (after the retries): DNS, refused connection, time-out, reset."""


class FileFormatError(ReelbatchError):
    """An input file (CSV or JSONL) this package cannot turn into batch items; `line` is 1-based."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.line = line


class WaitTimeout(ReelbatchError):
    """`wait()` gave up before the batch finished."""


class APIError(ReelbatchError):
    """A non-2xx answer: `status`, the API's `code` and `message`, and the whole `detail`."""

    def __init__(self, status: int, detail: ErrorDetail, headers: Mapping[str, str]) -> None:
        super().__init__(f"{status} {detail.code}: {detail.message}")
        self.status = status
        self.code = detail.code
        self.message = detail.message
        self.detail = detail
        self.request_id = headers.get("x-request-id")
        self.headers = dict(headers)


class BadRequest(APIError):
    """400, 413 or 415: a body the API cannot read."""


class AuthenticationFailed(APIError):
    """401: no API key, or one that is unknown or revoked."""


class PermissionDenied(APIError):
    """403: the key lacks the scope, or a signed link is refused."""


class NotFound(APIError):
    """404: no such object for this tenant (another tenant's objects are 404 too)."""


class Conflict(APIError):
    """409: e.g. `idempotency_key_reused` (the same key with a different body)."""


class Gone(APIError):
    """410: e.g. `video_expired` (past the retention period)."""


class ValidationFailed(APIError):
    """422: every problem of the request, located (`errors`)."""

    @property
    def errors(self) -> list[FieldError]:
        """The located problems (item index in `loc`)."""
        return list(self.detail.errors or [])


class PaymentRequired(APIError):
    """402: the batch cannot be paid for."""


class InsufficientCredits(PaymentRequired):
    """402 `insufficient_credits`: nothing was charged; top up `required_credits - available_credits`."""

    @property
    def required_credits(self) -> int:
        """What the batch costs."""
        return self.detail.required_credits or 0

    @property
    def available_credits(self) -> int:
        """What the wallet holds."""
        return self.detail.available_credits or 0


class BudgetExceeded(PaymentRequired):
    """402 `budget_exceeded`: the monthly budget of the tenant or the key would be passed."""


class RetryableError(APIError):
    """429 or 503, still so after the retries; `retry_after` is the API's advice in seconds."""

    @property
    def retry_after(self) -> float | None:
        """The Retry-After header in seconds, when the API sent one."""
        return retry_after_seconds(self.headers)


class RateLimited(RetryableError):
    """429 `rate_limited`: too many requests or open batches for this key."""


class Unavailable(RetryableError):
    """503 `unavailable`: a backend is down or overloaded."""


class ServerError(APIError):
    """Any other 5xx."""


_BY_CODE: dict[str, type[APIError]] = {
    "insufficient_credits": InsufficientCredits,
    "budget_exceeded": BudgetExceeded,
    "idempotency_key_reused": Conflict,
    "validation_error": ValidationFailed,
    "rate_limited": RateLimited,
    "unavailable": Unavailable,
    "unauthorized": AuthenticationFailed,
    "forbidden": PermissionDenied,
    "not_found": NotFound,
    "video_expired": Gone,
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    402: PaymentRequired,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: BadRequest,
    415: BadRequest,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After as seconds (the API sends whole seconds; an HTTP date is not used by it)."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> APIError:
    """The typed exception of a non-2xx answer (a body that is not the API's error shape still maps)."""
    try:
        detail = ErrorDetail.model_validate(response.json()["error"])
    except (ValueError, KeyError, TypeError, _PydanticError):
        detail = ErrorDetail(code=f"http_{response.status_code}", message=response.text[:500] or "no body")
    cls = _BY_CODE.get(detail.code) or _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else APIError
    return cls(response.status_code, detail, response.headers)
