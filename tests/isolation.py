"""Fresh, throw-away PostgreSQL databases and RabbitMQ vhosts for test isolation."""

from __future__ import annotations

import os
import subprocess
import uuid

import psycopg

ADMIN_DSN = os.environ.get("REELBATCH_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("REELBATCH_TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


def create_database() -> tuple[str, str]:
    """Creates an empty database; returns (name, SQLAlchemy URL)."""
    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_vhost() -> tuple[str, str]:
    """Creates an empty RabbitMQ vhost for guest; returns (name, AMQP URL)."""
    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    return name, f"{AMQP_BASE}/{name}"


def delete_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, capture_output=True)
