"""The ASGI middleware every request goes through: its server span and latency metric, its
request id, a last-resort 500, the body size limit.

One plain ASGI layer (not `BaseHTTPMiddleware`, which buffers responses and hides exceptions from
the error handlers) for the request id, the 500 and the body limit; the span and the latency
metric are OpenTelemetry's ASGI middleware, which this layer runs its request through (ADR-061).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Mapping

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.http.errors import ApiError, error_response
from services.gateway.http.rate_limits import RateLimitReport, current_rate_limit
from services.gateway.schemas.fields import is_valid_request_id

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
TRACE_ID_HEADER = "X-Trace-ID"

_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()
_TRACE_ID = TRACE_ID_HEADER.lower().encode()
_CONTENT_LENGTH = b"content-length"
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def request_id_of(scope: Scope) -> str:
    """The id `RequestContextMiddleware` chose for this request."""
    state = scope.get("state") or {}
    request_id = state.get("request_id")
    return request_id if isinstance(request_id, str) else ""


def route_template(scope: Scope) -> str:
    """The template of the route that answered (`/api/enterprise/video-batch/{batch_id}`), or ""."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else ""


class RequestContextMiddleware:
    """What every HTTP request gets, outermost first:

    - OpenTelemetry's ASGI middleware: a SERVER span (the caller's W3C trace context continued),
      renamed after the route template once known, and the `http.server.duration` metric, except
      on the probe and scrape paths in `untraced_paths`, which would drown the traces that matter;
    - an id (the client's X-Request-ID, or a new uuid4) echoed back, with the request's trace id in
      X-Trace-ID. A malformed client id is not echoed (it could not be a safe header); a fresh one
      is used instead, and the create-batch route refuses the request;
    - a bare 500 `internal` for an exception no handler took: logged here, never shown, and still
      carrying the request id;
    - a 413 `payload_too_large` before the app parses a body larger than `max_body_bytes`.
      Content-Length is checked first; a body without it (chunked) is read and counted up front,
      so the app never sees more than the limit and is never called for an oversized body.
      A POST to a path of `streamed_bodies` has that path's own limit instead, and its body is
      not read up front: the route reads it as a stream and counts it itself (a 64 MiB create
      is never held whole).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        untraced_paths: Collection[str] = (),
        streamed_bodies: Mapping[str, int] | None = None,
        rate_limit_burst: int = 0,
    ) -> None:
        self.app = app
        self.rate_limit_burst = rate_limit_burst
        self.max_body_bytes = max_body_bytes
        self.streamed_bodies = dict(streamed_bodies or {})
        self.untraced_paths = frozenset(untraced_paths)
        # Named by method at the start (a raw path would make one span name per batch id) and by
        # route template once the app has answered; no spans of their own for ASGI messages.
        self._traced = OpenTelemetryMiddleware(
            self._serve_traced,
            default_span_details=lambda scope: (scope["method"], {}),
            exclude_spans=["receive", "send"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.untraced_paths:
            await self._serve_untraced(scope, receive, send)
            return
        await self._traced(scope, receive, send)

    async def _serve_untraced(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, declared = _read_headers(scope)
        await self._serve(scope, receive, send, request_id, declared, None)

    async def _serve_traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, declared = _read_headers(scope)
        span = trace.get_current_span()
        # Spans carry ids even when none is recorded: X-Trace-ID and the logs still name them.
        span_context = span.get_span_context()
        trace_id = format(span_context.trace_id, "032x") if span_context.is_valid else None
        try:
            await self._serve(scope, receive, send, request_id, declared, trace_id)
        finally:
            route = route_template(scope)
            if route and span.is_recording():
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        declared: bytes | None,
        trace_id: str | None,
    ) -> None:
        """The app's answer with the ids echoed (the trace id, so a customer complaint maps to a
        trace), the body limit and the last-resort 500."""
        echoed = [(_REQUEST_ID, request_id.encode())]
        if trace_id is not None:
            echoed.append((_TRACE_ID, trace_id.encode()))
        response_started = False
        # Every answer tells the caller its quota; the key's rate check fills in its own.
        quota = RateLimitReport(self.rate_limit_burst, self.rate_limit_burst)
        current_rate_limit.set(quota)

        async def send_with_ids(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                headers = [
                    (name, value) for name, value in message.get("headers", ()) if not _is_echoed(name)
                ]
                message["headers"] = headers + echoed + quota.headers()
            await send(message)

        streamed_limit = self.streamed_bodies.get(scope["path"]) if scope.get("method") == "POST" else None
        limit = self.max_body_bytes if streamed_limit is None else streamed_limit
        try:
            if declared is not None:
                length = declared.decode("latin-1")
                if not (length.isascii() and length.isdigit()):
                    await _refuse(
                        scope, receive, send_with_ids, 400, "bad_request", "invalid Content-Length header"
                    )
                elif int(length) > limit:
                    await self._refuse_too_large(scope, receive, send_with_ids)
                else:
                    await self.app(scope, receive, send_with_ids)
            elif scope.get("method") in _BODYLESS_METHODS or streamed_limit is not None:
                await self.app(scope, receive, send_with_ids)
            else:
                await self._call_with_counted_body(scope, receive, send_with_ids)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if response_started:
                # Too late for an error body; the server closes the connection.
                raise
            response = error_response(ApiError(500, "internal", "internal error"))
            await response(scope, receive, send_with_ids)

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
        limit = self.streamed_bodies.get(scope["path"], self.max_body_bytes)
        await _refuse(scope, receive, send, 413, "payload_too_large", f"request body exceeds {limit} bytes")


def _read_headers(scope: Scope) -> tuple[str, bytes | None]:
    """The request's id (stored in the scope's state) and its declared Content-Length."""
    presented = declared = None
    for name, value in scope["headers"]:
        # The first of repeated headers counts, as with Starlette's `Headers.get`.
        if name == _REQUEST_ID and presented is None:
            presented = value
        elif name == _CONTENT_LENGTH and declared is None:
            declared = value
    request_id = _request_id(presented)
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id, declared


def _request_id(presented: bytes | None) -> str:
    if presented is not None:
        # Header bytes are latin-1 (as Starlette decodes them); the check admits printable ASCII only.
        candidate = presented.decode("latin-1")
        if is_valid_request_id(candidate):
            return candidate
    return str(uuid.uuid4())


_ECHOED = frozenset({_REQUEST_ID, _TRACE_ID, b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset"})


def _is_echoed(name: bytes) -> bool:
    return name.lower() in _ECHOED


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    # The connection is closed after this answer, so the unread body does not matter.
    response = error_response(ApiError(status, code, message, headers={"Connection": "close"}))
    await response(scope, receive, send)
