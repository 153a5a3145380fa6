"""ASGI middleware for every request: the request id, the last-resort 500, the body size limit.

Both are plain ASGI (not `BaseHTTPMiddleware`) so they neither buffer responses nor hide
exceptions from the error handlers.
"""

from __future__ import annotations

import logging
import uuid

from opentelemetry import trace
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.errors import ApiError, error_response
from services.gateway.schemas import is_valid_request_id

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
TRACE_ID_HEADER = "X-Trace-ID"


def request_id_of(scope: Scope) -> str:
    """The id `RequestIdMiddleware` chose for this request."""
    state = scope.get("state") or {}
    request_id = state.get("request_id")
    return request_id if isinstance(request_id, str) else ""


class RequestIdMiddleware:
    """Gives every request an id (the client's X-Request-ID, or a new uuid4) and echoes it back,
    with the request's trace id in X-Trace-ID.

    A malformed client id is not echoed (it could not be a safe header); a fresh one is used
    instead, and the create-batch route refuses the request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = presented if is_valid_request_id(presented) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id

        # The trace id of the request's server span, so a customer complaint maps to a trace.
        span_context = trace.get_current_span().get_span_context()
        trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else ""

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                if trace_id:
                    headers[TRACE_ID_HEADER] = trace_id
            await send(message)

        await self.app(scope, receive, send_with_request_id)


class InternalErrorMiddleware:
    """Turns an exception no handler took into a bare 500 `internal`: logged here, never shown.

    It sits inside `RequestIdMiddleware`, so even this answer carries the request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                # Too late for an error body; the server closes the connection.
                raise
            response = error_response(ApiError(500, "internal", "internal error"))
            await response(scope, receive, send)


class BodySizeLimitMiddleware:
    """Answers 413 `payload_too_large` before the app parses a body larger than `max_body_bytes`.

    Content-Length is checked first; a body without it (chunked) is read and counted up front, so
    the app never sees more than the limit and is never called for an oversized body.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(scope, receive, send, 400, "bad_request", "invalid Content-Length header")
                return
            if int(declared) > self.max_body_bytes:
                await self._refuse_too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        await self._call_with_counted_body(scope, receive, send)

    async def _call_with_counted_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                await self._refuse_too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay_body() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay_body, send)

    async def _refuse_too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._refuse(
            scope,
            receive,
            send,
            413,
            "payload_too_large",
            f"request body exceeds {self.max_body_bytes} bytes",
        )

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str
    ) -> None:
        # The connection is closed after this answer, so the unread body does not matter.
        response = error_response(ApiError(status, code, message, headers={"Connection": "close"}))
        await response(scope, receive, send)
