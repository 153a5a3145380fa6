"""Alembic wiring shared by the services: each service migrates its own schema, under a lock.

Every service's bootstrap imports this module (for its `migrate`), so alembic is imported only
inside the functions that migrate: only `reelbatch migrate` (and embedded mode) needs it, and
importing it (with mako) costs about 0.3-0.7 s of CPU at every service process's start.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from sqlalchemy import MetaData, create_engine, make_url, text

from libs.db import libpq_url, sync_url


def ensure_database(database_url: str) -> bool:
    """Creates the database named in `database_url` if it is missing; returns True if it did.

    Connects to the server's `postgres` database for that; needs CREATEDB rights, which a local
    development server has. Production databases are provisioned beforehand and left untouched.
    """
    import psycopg
    from psycopg import sql

    url = make_url(database_url)
    name = url.database
    assert name, "the database URL names no database"
    admin_dsn = libpq_url(url.set(database="postgres").render_as_string(hide_password=False))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            return False  # another process created it a moment ago
        return True


def upgrade_to_head(script_location: Path, database_url: str) -> None:
    """Applies a service's migrations (idempotent; safe when several processes start at once)."""
    upgrade_to(script_location, database_url, "head")


def upgrade_to(script_location: Path, database_url: str, revision: str) -> None:
    """Applies a service's migrations up to `revision` (a migration's test starts from the one
    before it)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    command.upgrade(config, revision)


def run_migrations(target_metadata: MetaData, schema: str) -> None:
    """Body of a service's `env.py`: online migrations of `schema`, serialized by an advisory lock."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url)
    lock_id = zlib.crc32(f"reelbatch-migrate-{schema}".encode())
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        try:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            connection.commit()
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                version_table_schema=schema,
                include_schemas=True,
                include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            connection.commit()
    engine.dispose()
