"""The one database session factory: an async SQLAlchemy engine on psycopg 3."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)


class Database:
    """Owns an engine and hands out sessions and transactions."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No pool_pre_ping: its round trip on every checkout cost 0.1-0.2 ms of CPU per
            # transaction here (20-40% of a one-statement one). Only a connection that sat idle
            # is pinged (`_ping_if_idle`); a disconnect met in use invalidates every older pooled
            # connection (SQLAlchemy's own disconnect handling), so a blip fails once.
            pool_recycle=1800,
        )
        event.listen(self.engine.sync_engine, "checkin", _mark_checked_in)
        event.listen(self.engine.sync_engine, "checkout", _ping_if_idle)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._pool_size = pool_size
        self._direct: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._sweep: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside one transaction (for bulk statements and COPY)."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def raw_connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled psycopg connection in autocommit, for the hot paths.

        Each statement is its own snapshot, with no BEGIN/COMMIT round trips and none of the
        SQLAlchemy statement layers: a read costs about a quarter of a checkout from the engine
        (psycopg prepares repeated statements itself). Statements that must commit together go
        inside `async with conn.transaction():` (the create path's insert and billing's Reserve
        do); everything else keeps the engine's sessions and transactions.
        """
        if self._direct is None:
            self._direct = AsyncConnectionPool(
                libpq_url(self.url),
                min_size=1,
                max_size=self._pool_size,
                # UTC sessions: timestamps then decode without a time-zone conversion per row.
                kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
                open=False,
                name="direct",
                check=self._check_if_idle,
                reset=_mark_returned,
            )
            await self._direct.open(wait=False)
        async with self._direct.connection() as conn:
            try:
                yield conn
            except psycopg.OperationalError:
                if conn.broken:
                    # Shielded: a cancelled caller must not cancel the sweep half-way, which
                    # would lose the connections it had taken out of the pool.
                    await asyncio.shield(self._sweep_dead_connections())
                raise

    async def _check_if_idle(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """The pool's checkout check: a round trip only for a connection that sat idle."""
        if time.monotonic() - _returned_at.get(conn, 0.0) <= IDLE_CHECK_SECONDS:
            return
        try:
            await conn.execute("SELECT 1")
        except psycopg.OperationalError:
            if conn.broken:
                # The pool tries another after a pause; make sure that one is alive.
                await asyncio.shield(self._sweep_dead_connections())
            raise

    def _sweep_dead_connections(self) -> asyncio.Task[None]:
        """Checks every idle connection of the direct pool (in a task of its own), replacing the
        dead ones; callers that meet a dead connection while a sweep runs share it.

        The server ended this connection (restart, failover, `pg_terminate_backend`) and most
        likely its idle siblings with it. Unchecked (they were returned less than a second ago),
        each would fail a call of its own; found by the pool's checkout check, each would make
        its caller wait out the pool's growing backoff (1 s, 2 s, 4 s...). Swept, the blip fails
        the calls that met it, as SQLAlchemy's pool invalidates its connections on a disconnect.
        """
        assert self._direct is not None
        if self._sweep is None or self._sweep.done():
            self._sweep = asyncio.get_running_loop().create_task(_sweep(self._direct))
        return self._sweep

    async def ping(self) -> None:
        """Raises if the database does not answer a real query."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        if self._direct is not None:
            await self._direct.close()
        await self.engine.dispose()


# A connection back in the pool within this many seconds is handed out again without a check:
# under load that is every checkout, so the hot path pays no extra round trip. One that sat idle
# longer (as all do while PostgreSQL restarts) is checked first and replaced if it is dead.
IDLE_CHECK_SECONDS = 1.0
_returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = weakref.WeakKeyDictionary()


async def _mark_returned(conn: psycopg.AsyncConnection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


def _mark_checked_in(dbapi_connection: Any, record: Any) -> None:
    record.info["returned_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """The engine pool's checkout check, as the direct pool's: a round trip only for a connection
    that sat idle (a new one has no return time). A dead one invalidates the whole pool, which
    then hands out a new connection at once (no pause, unlike a failed check of psycopg_pool)."""
    if time.monotonic() - record.info.get("returned_at", time.monotonic()) <= IDLE_CHECK_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        # The ping opened a transaction (psycopg begins one implicitly): end it, so the caller's
        # transaction starts with the caller's first statement (which may be SET TRANSACTION).
        dbapi_connection.rollback()
    except Exception as error:
        raise InvalidatePoolError(f"idle connection is dead: {error}") from error


async def _sweep(pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]) -> None:
    try:
        await pool.check()
    except Exception as error:  # the pool's own checkout check remains; log and carry on
        log.warning("checking the direct pool after a lost connection failed: %s", error)


async def run_sql(conn: AsyncConnection, statement: str, params: Mapping[str, Any]) -> list[Any]:
    """Runs a plain SQL statement on the psycopg connection under `conn` (in its transaction,
    without SQLAlchemy's statement layers); its rows as named tuples."""
    async with (await driver(conn)).cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(statement, params)
        return await cursor.fetchall() if cursor.description is not None else []


async def driver(conn: AsyncConnection) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under a SQLAlchemy one (statements on it join its transaction)."""
    raw = await conn.get_raw_connection()
    connection = raw.driver_connection
    assert connection is not None
    return connection  # type: ignore[no-any-return]


def sync_url(url: str) -> str:
    """The same DSN for a synchronous driver (Alembic runs migrations synchronously)."""
    return url.replace("+asyncpg", "+psycopg")


def libpq_url(url: str) -> str:
    """The DSN without SQLAlchemy's driver suffix, for psycopg's own connections."""
    return url.replace("postgresql+psycopg://", "postgresql://")
