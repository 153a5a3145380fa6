"""The connections a backend service (batch, billing, webhook) opens from Settings: its database
pool, the bus, and a gRPC channel to the one service it calls. Nothing connects at import time."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from libs.config import Settings
from libs.db import Database
from libs.messaging.contract import Bus
from libs.messaging.transport import connect_bus
from libs.rpc.client import open_channel
from libs.rpc.tls import tls_from_settings


@dataclass(frozen=True)
class ServiceConnections:
    """What a backend service runs on; its process closes them (bus, channel, then database)."""

    database: Database
    bus: Bus
    # To the service this one calls (billing calls batch, batch calls billing, webhook calls batch).
    channel: grpc.aio.Channel


async def open_connections(settings: Settings, peer_address: str) -> ServiceConnections:
    """The database pool, the configured bus (RabbitMQ, or PostgreSQL in embedded mode) and a
    channel to the service at `peer_address` (mutual TLS when the settings name certificates)."""
    database = Database(settings.database_url, pool_size=settings.database_pool_size)
    bus = await connect_bus(settings)
    channel = open_channel(peer_address, tls=tls_from_settings(settings))
    return ServiceConnections(database, bus, channel)
