"""gRPC client channels, configured once, and the trace context every call carries."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace

from libs.rpc.tls import TlsFiles

# Retries transparently when a server is briefly unreachable (restart, deploy); the calls we
# make are idempotent by design (business keys), so a retried call never doubles an effect.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


_CHANNEL_OPTIONS = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
]


_tracer = trace.get_tracer("reelbatch.rpc")


class TraceContextInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Sends the current trace context as W3C `traceparent` metadata, inside a CLIENT span when
    spans are recorded; when they are not, only the ids travel (no span work per call, ADR-027)."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if not trace.get_current_span().is_recording():
            return await continuation(_with_trace_context(client_call_details), request)
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else method
        service, _, rpc_method = name.lstrip("/").rpartition("/")
        with _tracer.start_as_current_span(
            name.lstrip("/"),
            kind=trace.SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc_method},
        ):
            return await continuation(_with_trace_context(client_call_details), request)


def _with_trace_context(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return details
    metadata = [*(details.metadata or ()), *carrier.items()]
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


def open_channel(target: str, *, tls: TlsFiles | None = None) -> grpc.aio.Channel:
    """A channel to `target` (host:port) with retries on UNAVAILABLE and trace propagation;
    mutual TLS when `tls` is given."""
    # grpc-stubs types channel interceptors as a placeholder to cast to.
    interceptors: Any = [TraceContextInterceptor()]
    if tls is None:
        return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.secure_channel(
        target, tls.channel_credentials(), options=_CHANNEL_OPTIONS, interceptors=interceptors
    )
