"""Shared fixtures: a fresh PostgreSQL database and a fresh RabbitMQ vhost per test session.

Both are real and required: when PostgreSQL or RabbitMQ cannot be reached these fixtures fail,
they never skip. Everything they create is removed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.isolation import create_database, create_vhost, delete_vhost, drop_database


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, empty database for this test session (services migrate their own schemas)."""
    name, url = create_database()
    try:
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test session."""
    name, url = create_vhost()
    try:
        yield url
    finally:
        delete_vhost(name)
