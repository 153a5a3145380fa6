"""Migration 0018 (ADR-165): a tenant that owed before it has its debt on its wallet row from then on.

Otherwise its next freeze would read nothing owed and accept a batch the debt must refuse."""

from __future__ import annotations

import uuid

import psycopg

from libs.db import libpq_url
from libs.migrations import upgrade_to
from services.billing.bootstrap import MIGRATIONS
from tests.isolation import database_at


def _tenant(conn: psycopg.Connection, debt: int | None) -> uuid.UUID:
    """A tenant with its available account and, unless `debt` is None, a debt account owing it."""
    tenant = uuid.uuid4()
    conn.execute("INSERT INTO billing.tenants (id, name) VALUES (%s, 'before 0018')", (tenant,))
    conn.execute("INSERT INTO billing.accounts (kind, tenant_id) VALUES ('available', %s)", (tenant,))
    if debt is not None:
        conn.execute(
            "INSERT INTO billing.accounts (kind, tenant_id, balance) VALUES ('debt', %s, %s)", (tenant, -debt)
        )
    return tenant


def test_the_upgrade_copies_each_debt_to_its_wallet_and_keeps_it_from_then_on() -> None:
    with database_at(MIGRATIONS, "0017") as url:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            owing, paid, never = _tenant(conn, 40), _tenant(conn, 0), _tenant(conn, None)
        upgrade_to(MIGRATIONS, url, "0018")
        owed = "SELECT owed FROM billing.accounts WHERE kind = 'available' AND tenant_id = %s"
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            assert [conn.execute(owed, (t,)).fetchone() for t in (owing, paid, never)] == [(40,), (0,), (0,)]
            conn.execute(
                "UPDATE billing.accounts SET balance = -15 WHERE kind = 'debt' AND tenant_id = %s", (owing,)
            )
            assert conn.execute(owed, (owing,)).fetchone() == (15,)
