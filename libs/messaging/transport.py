"""Which transport a process's bus runs on: RabbitMQ, or PostgreSQL in embedded mode."""

from __future__ import annotations

from typing import TYPE_CHECKING

from libs.messaging.contract import Bus
from libs.messaging.postgres.bus import PostgresBus
from libs.messaging.rabbit import RabbitBus

if TYPE_CHECKING:
    from libs.config import Settings


async def connect_bus(settings: Settings) -> Bus:
    """The bus `settings.bus` names: RabbitMQ at `amqp_url`, or the Postgres bus in `database_url`."""
    if settings.bus == "postgres":
        return await PostgresBus.connect(settings.database_url)
    return await RabbitBus.connect(settings.amqp_url)
