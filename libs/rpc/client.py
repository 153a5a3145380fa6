"""gRPC client channels, configured once; OpenTelemetry's client interceptors carry the trace context."""

from __future__ import annotations

import json

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

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


def open_channel(target: str, *, tls: TlsFiles | None = None) -> grpc.aio.Channel:
    """A channel to `target` (host:port) with retries on UNAVAILABLE and trace propagation;
    mutual TLS when `tls` is given."""
    interceptors = aio_client_interceptors()  # type: ignore[no-untyped-call]
    if tls is None:
        return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.secure_channel(
        target, tls.channel_credentials(), options=_CHANNEL_OPTIONS, interceptors=interceptors
    )
