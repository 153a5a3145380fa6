"""What every topic's query class holds: the webhook database, each query opening its own
transaction (no webhook use case spans two)."""

from __future__ import annotations

from libs.db import Database


class TopicQueries:
    """The queries of one topic of the webhook schema, over its database."""

    def __init__(self, database: Database) -> None:
        self._database = database
