"""A pooled connection ended by the server fails at most once, in both pools of `Database`.

PostgreSQL ends every connection of the database (`pg_terminate_backend`, as a restart or a
failover does) while the pools are full of connections just returned. The first call to find its
connection dead fails (it was sent already); every call after it gets a live connection, because
the other pooled connections are checked before their next use. Without that, each dead pooled
connection fails one call of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError

from libs import db as db_module
from libs.db import Database
from tests.isolation import create_database, drop_database, terminate_every_backend

POOL = 6


@pytest.fixture
async def database(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, Database]]:
    """A database of its own (its connections are ended), whose pools never check a connection
    for having sat idle, so only the reaction to the dead one can save the calls after it."""
    monkeypatch.setattr(db_module, "IDLE_CHECK_SECONDS", 3600.0)
    name, url = create_database()
    database = Database(url, pool_size=POOL)
    try:
        yield name, database
    finally:
        await database.close()
        drop_database(name)


async def _fill_pool(
    connection: Callable[[], AbstractAsyncContextManager[Any]], run: Callable[[Any], Any]
) -> None:
    """Holds POOL connections at once (so the pool has opened them all), then returns them."""
    holding = 0
    everyone_holds = asyncio.Event()

    async def hold() -> None:
        nonlocal holding
        async with connection() as conn:
            await run(conn)
            holding += 1
            if holding == POOL:
                everyone_holds.set()
            await asyncio.wait_for(everyone_holds.wait(), 10)

    await asyncio.gather(*(hold() for _ in range(POOL)))


async def _failures_after_a_blip(
    name: str, connection: Callable[[], AbstractAsyncContextManager[Any]], run: Callable[[Any], Any]
) -> int:
    await _fill_pool(connection, run)
    terminate_every_backend(name)
    failures = 0
    for _ in range(POOL):
        try:
            async with connection() as conn:
                await run(conn)
        except (psycopg.OperationalError, DBAPIError):
            failures += 1
    return failures


async def test_a_blip_fails_one_call_of_the_direct_pool_not_one_per_connection(
    database: tuple[str, Database],
) -> None:
    name, db = database

    async def select_one(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SELECT 1")

    assert await _failures_after_a_blip(name, db.raw_connection, select_one) <= 1
    # And the pool works as before.
    async with db.raw_connection() as conn:
        assert await (await conn.execute("SELECT 2")).fetchone() == (2,)


async def test_a_blip_fails_one_call_of_the_engine_pool_not_one_per_connection(
    database: tuple[str, Database],
) -> None:
    name, db = database

    async def select_one_on_the_driver(conn: Any) -> None:
        # As the hot paths do: a statement on the psycopg connection under the engine's.
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute("SELECT 1")

    assert await _failures_after_a_blip(name, db.connection, select_one_on_the_driver) <= 1


@pytest.mark.parametrize("pool", ["direct", "engine"])
async def test_after_a_blip_idle_connections_are_replaced_without_a_failure_or_a_wait_per_dead_one(
    database: tuple[str, Database], monkeypatch: pytest.MonkeyPatch, pool: str
) -> None:
    """Connections that sat idle (as all do when traffic is light) are checked on checkout; the
    first dead one found replaces the others, so no call fails and none waits out a doubling
    pause per dead connection (psycopg_pool's 1 s, 2 s, 4 s... after each failed check)."""
    name, db = database

    async def select_one_raw(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SELECT 1")

    async def select_one_engine(conn: Any) -> None:
        await conn.exec_driver_sql("SELECT 1")

    connection: Callable[[], AbstractAsyncContextManager[Any]] = (
        db.raw_connection if pool == "direct" else db.connection
    )
    run: Callable[[Any], Any] = select_one_raw if pool == "direct" else select_one_engine
    await _fill_pool(connection, run)
    terminate_every_backend(name)
    monkeypatch.setattr(db_module, "IDLE_CHECK_SECONDS", 0.0)
    started = time.monotonic()
    for _ in range(POOL):
        async with connection() as conn:
            await run(conn)
    assert time.monotonic() - started < 2.5
