"""How the SQL modules run their statements (no queries of their own but the advisory lock and
the lock of batch rows).

Plain SQL runs on the psycopg connection under a SQLAlchemy one (`libs.db.run_sql`): it joins
that connection's transaction without the SQLAlchemy statement layers, arrays sent in binary
(psycopg's text format dumps arrays element by element in Python, several times slower).
SQLAlchemy Core queries pass id lists as one array parameter (`uuids`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Interval, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from libs.db import run_sql

# Advisory lock keys: one per tenant for its dispatch window, one per model for its provider slots.
_ADVISORY_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"


def locked_batch_ids(condition: str = "", *, ids: str = "ids") -> str:
    """A query of the ids among `%(ids)b` of the batches meeting `condition` (all of them when it
    is empty), their rows locked in id order: every writer of batch rows locks them in that order,
    so two writers never deadlock."""
    where = f"id = ANY(CAST(%({ids})b AS uuid[]))" + (f" AND {condition}" if condition else "")
    return f"SELECT id FROM batch.batches WHERE {where} ORDER BY id FOR UPDATE"


async def fetch_one(conn: psycopg.AsyncConnection[Any], query: str, params: Any) -> Any:
    """The first row of a statement on a psycopg connection, as a named tuple (None: no row)."""
    async with conn.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchone()


async def advisory_lock(conn: AsyncConnection, key: str) -> None:
    """Takes the transaction-scoped advisory lock named `key` (released at commit)."""
    await run_sql(conn, _ADVISORY_LOCK, {"key": key})


_UUID_ARRAY = ARRAY(PG_UUID(as_uuid=True))


def uuids(values: Iterable[uuid.UUID]) -> BindParameter[Any]:
    """Ids as a single array parameter of a Core query (= ANY(...)), not one placeholder per id."""
    ids: Any = list(values)
    return bindparam(None, ids, type_=_UUID_ARRAY)


def seconds(value: float) -> BindParameter[timedelta]:
    """A number of seconds as an interval parameter of a Core query."""
    return bindparam(None, timedelta(seconds=value), type_=Interval())
