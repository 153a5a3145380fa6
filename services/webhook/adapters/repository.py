"""The webhook schema's queries, one object per topic (the SQL is in `adapters/sql/<topic>.py`).

Each query opens its own transaction: no webhook use case spans two of them.
"""

from __future__ import annotations

from libs.db import Database
from services.webhook.adapters.sql.announcements import AnnouncementQueries
from services.webhook.adapters.sql.delivery import DeliveryQueries
from services.webhook.adapters.sql.delivery_log import DeliveryLogQueries
from services.webhook.adapters.sql.endpoints import EndpointQueries
from services.webhook.adapters.sql.fanout import FanoutQueries
from services.webhook.adapters.sql.signing_secrets import SigningSecretQueries


class WebhookRepository:
    """Endpoints, secrets, messages and attempts in the `webhook` schema, by topic."""

    def __init__(self, database: Database) -> None:
        self.fanout = FanoutQueries(database)
        self.announcements = AnnouncementQueries(database)
        self.endpoints = EndpointQueries(database)
        self.signing_secrets = SigningSecretQueries(database)
        self.delivery = DeliveryQueries(database)
        self.delivery_log = DeliveryLogQueries(database)
