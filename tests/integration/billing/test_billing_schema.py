"""Schema properties the ledger's performance depends on, read from the migrated database."""

from __future__ import annotations

import psycopg

from libs.db import libpq_url

# Each foreign key that references billing.accounts, and whether an index starts with its column.
_ACCOUNT_REFERENCES = """
SELECT c.conrelid::regclass::text, a.attname,
    EXISTS (
        SELECT 1 FROM pg_index AS i
        WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1]
    ) AS indexed
FROM pg_constraint AS c
JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND c.confrelid = 'billing.accounts'::regclass
ORDER BY 1, 2
"""


def test_every_reference_to_an_account_is_indexed(billing_database_url: str) -> None:
    # A reservation refused with 402 deletes the hold account it created, and PostgreSQL checks
    # every reference to it: without an index each check scans its whole table (migration 0005).
    with psycopg.connect(libpq_url(billing_database_url)) as conn:
        references = conn.execute(_ACCOUNT_REFERENCES).fetchall()
    assert {(table, column) for table, column, _ in references} >= {
        ("billing.transfers", "debit_account_id"),
        ("billing.transfers", "credit_account_id"),
        ("billing.ledger_entries", "account_id"),
        ("billing.batch_holds", "hold_account_id"),
    }
    assert [(table, column) for table, column, indexed in references if not indexed] == []
