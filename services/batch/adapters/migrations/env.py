"""Alembic environment of the batch schema."""

from libs.migrations import run_migrations
from services.batch.adapters.tables import SCHEMA, metadata

run_migrations(metadata, schema=SCHEMA)
