"""Alembic environment of the webhook schema."""

from libs.migrations import run_migrations
from services.webhook.adapters.tables import SCHEMA, metadata

run_migrations(metadata, schema=SCHEMA)
