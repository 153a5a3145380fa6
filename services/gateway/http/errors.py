"""The one translation of failures into HTTP: gRPC status -> HTTP status and JSON error body.

Every error the gateway answers has the shape `{"ok": false, "error": {"code", "message", ...}}`
where `code` is a stable, machine-readable reason. Backend refusals keep their reason and details
(e.g. `required_credits`); anything unexpected becomes a bare 500 `internal` without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from libs.errors import MAX_FIELD_VIOLATIONS, FieldViolation, violations_summary
from libs.rpc.errors import RemoteError, remote_error

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying when a backend is down or busy.
RETRY_AFTER_SECONDS = 2

# Details that carry amounts: sent as integers, not the strings gRPC metadata is limited to.
_INTEGER_DETAILS = frozenset(
    {
        "required_credits",
        "available_credits",
        "retry_after_seconds",
        "remaining_credits",
        "monthly_credits",
        "debt_credits",
    }
)

# Keys of the error object that backend details may never overwrite.
_RESERVED_KEYS = frozenset({"code", "message"})


@dataclass(frozen=True)
class HttpErrorRule:
    """How one kind of gRPC failure is answered over HTTP.

    `code` is the JSON error code; None keeps the reason the backend sent.
    """

    status: int
    code: str | None
    retry_after: bool = False


# Looked up by (status code, reason) first, then by (status code, None).
HTTP_RULES: Mapping[tuple[grpc.StatusCode, str | None], HttpErrorRule] = {
    (grpc.StatusCode.INVALID_ARGUMENT, None): HttpErrorRule(422, "validation_error"),
    # A payment-provider webhook that does not verify: 400, as the provider expects.
    (grpc.StatusCode.INVALID_ARGUMENT, "invalid_signature"): HttpErrorRule(400, "invalid_signature"),
    (grpc.StatusCode.NOT_FOUND, None): HttpErrorRule(404, "not_found"),
    (grpc.StatusCode.NOT_FOUND, "quote_not_found"): HttpErrorRule(404, "quote_not_found"),
    (grpc.StatusCode.ALREADY_EXISTS, None): HttpErrorRule(409, None),
    (grpc.StatusCode.FAILED_PRECONDITION, "insufficient_credits"): HttpErrorRule(402, "insufficient_credits"),
    # A monthly budget would be exceeded (issue 29): payment required, as for credits.
    (grpc.StatusCode.FAILED_PRECONDITION, "budget_exceeded"): HttpErrorRule(402, "budget_exceeded"),
    # A refunded or disputed payment already spent is owed (ADR-134): pay it before new batches.
    (grpc.StatusCode.FAILED_PRECONDITION, "debt_outstanding"): HttpErrorRule(402, "debt_outstanding"),
    # A quote past its validity is gone for good: quote again.
    (grpc.StatusCode.FAILED_PRECONDITION, "quote_expired"): HttpErrorRule(410, "quote_expired"),
    (grpc.StatusCode.FAILED_PRECONDITION, None): HttpErrorRule(409, None),
    (grpc.StatusCode.UNAUTHENTICATED, None): HttpErrorRule(401, "unauthorized"),
    (grpc.StatusCode.PERMISSION_DENIED, None): HttpErrorRule(403, None),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, None): HttpErrorRule(429, "rate_limited", retry_after=True),
    (grpc.StatusCode.UNAVAILABLE, None): HttpErrorRule(503, "unavailable", retry_after=True),
    (grpc.StatusCode.DEADLINE_EXCEEDED, None): HttpErrorRule(503, "unavailable", retry_after=True),
}

INTERNAL_RULE = HttpErrorRule(500, "internal")
UNAVAILABLE_RULE = HTTP_RULES[(grpc.StatusCode.UNAVAILABLE, None)]

# Generic codes for errors raised by the HTTP layer itself (routing, auth, limits).
_CODE_BY_HTTP_STATUS: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """An HTTP error answered with the standard JSON error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra: dict[str, object] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})


def error_body(code: str, message: str, extra: Mapping[str, object] | None = None) -> dict[str, object]:
    """The JSON error document: `{"ok": false, "error": {"code", "message", ...extra}}`."""
    error: dict[str, object] = {"code": code, "message": message}
    for key, value in (extra or {}).items():
        if key not in _RESERVED_KEYS:
            error[key] = value
    return {"ok": False, "error": error}


def error_response(error: ApiError) -> JSONResponse:
    """Renders an `ApiError` as its JSON response."""
    return JSONResponse(
        error_body(error.code, error.message, error.extra), status_code=error.status, headers=error.headers
    )


def rule_for(error: RemoteError) -> HttpErrorRule:
    """The HTTP rule for a decoded gRPC failure (500 `internal` when no rule matches)."""
    return HTTP_RULES.get((error.code, error.reason)) or HTTP_RULES.get((error.code, None)) or INTERNAL_RULE


def _detail_value(key: str, value: str) -> object:
    if key in _INTEGER_DETAILS:
        try:
            return int(value)
        except ValueError:
            return value
    return value


def api_error_from_remote(error: RemoteError) -> ApiError:
    """Translates a backend refusal into the HTTP error the client sees."""
    rule = rule_for(error)
    if rule is INTERNAL_RULE:
        # The backend's text may describe internals; the client only learns that it failed.
        return ApiError(500, "internal", "internal error")
    if rule.status == UNAVAILABLE_RULE.status:
        return unavailable_error("a backend service is unavailable, retry later")
    headers: dict[str, str] = {}
    if rule.retry_after:
        retry_after = error.details.get("retry_after_seconds", "")
        headers["Retry-After"] = retry_after if retry_after.isdigit() else str(RETRY_AFTER_SECONDS)
    extra: dict[str, object] = {key: _detail_value(key, value) for key, value in error.details.items()}
    if error.violations:
        extra["errors"] = field_errors(error.violations)
    return ApiError(
        rule.status, rule.code or error.reason, error.message or error.reason, extra=extra, headers=headers
    )


def unavailable_error(message: str, extra: Mapping[str, object] | None = None) -> ApiError:
    """A 503 `unavailable` with Retry-After (a backend could not be reached)."""
    return ApiError(
        UNAVAILABLE_RULE.status,
        "unavailable",
        message,
        extra=extra,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})


def field_errors(violations: Sequence[FieldViolation]) -> list[dict[str, object]]:
    """The `error.errors` list: `{"loc", "code", "message", "field"}` per violation."""
    return [
        {
            "loc": list(violation.location),
            "code": violation.code,
            "message": violation.message,
            "field": violation.field,
        }
        for violation in violations
    ]


# The prefixes pydantic puts before the text of an error a validator raised: the client reads
# what is wrong, not which Python exception said so.
_LIBRARY_PREFIXES = ("Value error, ", "Assertion failed, ")


def _message(text: str) -> str:
    for prefix in _LIBRARY_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def _violation(error: Mapping[str, Any]) -> FieldViolation:
    location = tuple(error.get("loc", ()))
    if location and location[0] in _REQUEST_PARTS:
        location = location[1:]  # where in the request is clear from `loc` itself
    message = _message(str(error.get("msg", "")))
    return FieldViolation(location or ("body",), str(error.get("type", "invalid")), message)


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """A 422 `validation_error` listing every invalid input (pydantic's errors, at most 100), in the
    shape the backends' field violations are answered in."""
    violations = [_violation(error) for error in errors[:MAX_FIELD_VIOLATIONS]]
    return ApiError(
        422, "validation_error", violations_summary(violations), extra={"errors": field_errors(violations)}
    )


def failure_response(error: Exception, method: str, path: str) -> JSONResponse | None:
    """The answer to a failure of a request's work: an `ApiError` as it says, a backend refusal
    translated, a backend out of reach as 503; None for anything else (a bug: the last-resort 500
    of `middleware.RequestContextMiddleware` answers it)."""
    if isinstance(error, ApiError):
        return error_response(error)
    if isinstance(error, grpc.aio.AioRpcError):
        decoded = remote_error(error)
        translated = api_error_from_remote(decoded)
        if translated.status >= 500:
            log.warning("backend call failed for %s %s: %s", method, path, decoded)
        return error_response(translated)
    if isinstance(error, ConnectionError | TimeoutError):
        log.warning("backend unreachable for %s %s: %r", method, path, error)
        return error_response(unavailable_error("a backend service is unavailable, retry later"))
    return None


async def _handle_failure(request: Request, error: Exception) -> JSONResponse:
    response = failure_response(error, request.method, request.url.path)
    assert response is not None, "registered only for the failures failure_response answers"
    return response


async def _handle_request_validation(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return error_response(validation_error(error.errors()))


async def _handle_http_exception(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _CODE_BY_HTTP_STATUS.get(error.status_code, "internal" if error.status_code >= 500 else "error")
    message = error.detail if isinstance(error.detail, str) else code
    return error_response(ApiError(error.status_code, code, message, headers=error.headers))


def install_error_handlers(app: FastAPI) -> None:
    """Registers the handlers that give every failure the standard JSON error shape.

    Exceptions no handler takes are answered by `middleware.RequestContextMiddleware`.
    """
    app.add_exception_handler(RequestValidationError, _handle_request_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    for failure in (ApiError, grpc.aio.AioRpcError, ConnectionError, TimeoutError):
        app.add_exception_handler(failure, _handle_failure)
