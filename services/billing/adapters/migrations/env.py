"""Alembic environment of the billing schema."""

from libs.migrations import run_migrations
from services.billing.adapters.tables import SCHEMA, metadata

run_migrations(metadata, schema=SCHEMA)
