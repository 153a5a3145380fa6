"""Column conventions every service's tables share, declared once (the migrations spell them out).

Each factory returns a new `Column` (a column belongs to one table), exactly as the tables declared
it by hand before, so the metadata, and what alembic compares against it, is unchanged.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Uuid, func, text


def serial_id_column() -> Column[int]:
    """`id`: a BIGSERIAL primary key, for rows numbered in insertion order (logs, ledgers, queues)."""
    return Column("id", BigInteger, primary_key=True, autoincrement=True)


def uuid_id_column() -> Column[uuid.UUID]:
    """`id`: a UUID primary key the application chooses."""
    return Column("id", Uuid, primary_key=True)


def tenant_id_column(*, references: str | None = None, primary_key: bool = False) -> Column[uuid.UUID]:
    """`tenant_id`: the tenant a row belongs to, required; with `primary_key`, the key of a table of one
    row per tenant. `references` names the tenants' key (`billing.tenants.id`) in the schema that
    holds them; the other services keep the tenant id without a foreign key."""
    keys = (ForeignKey(references),) if references is not None else ()
    if primary_key:
        return Column("tenant_id", Uuid, *keys, primary_key=True)
    return Column("tenant_id", Uuid, *keys, nullable=False)


def credits_column(name: str, *, nullable: bool = False, zero_default: bool = False) -> Column[int]:
    """An amount of credits (money is a whole number of credits, a BIGINT); `zero_default` for a
    required total that starts at 0 (a balance, what a hold captured so far)."""
    if zero_default:
        if nullable:
            raise ValueError(f"{name}: a total that starts at 0 is never NULL")
        return Column(name, BigInteger, nullable=False, server_default=text("0"))
    return Column(name, BigInteger, nullable=nullable)


def timestamp_column(name: str, *, nullable: bool) -> Column[datetime]:
    """A timezone-aware timestamp: every moment the schema stores is UTC-aware, never naive."""
    return Column(name, DateTime(timezone=True), nullable=nullable)


def database_clock_column(name: str) -> Column[datetime]:
    """A timezone-aware timestamp the database's clock fills in when an insert leaves it out."""
    return Column(name, DateTime(timezone=True), nullable=False, server_default=func.now())


def created_at_column() -> Column[datetime]:
    """`created_at`: when the row was inserted, timezone-aware and set by the database's clock."""
    return database_clock_column("created_at")


def updated_at_column() -> Column[datetime]:
    """`updated_at`: set by the database's clock on insert; the statements that change the row set it."""
    return database_clock_column("updated_at")
