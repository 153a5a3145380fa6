"""New tasks fill their heap pages to 90%, so a batch's COPY appends instead of filling old holes
(ADR-163); batch lists filtered by status or settlement read an index in their keyset order
(ADR-164).

Tasks: with the default fillfactor of 100 every page of `batch.tasks` is filled to the brim, and
what a page has left (a few hundred bytes, shorter than the next row, or what VACUUM freed of
updated versions) is recorded in the free space map. A COPY of 10,000 tasks asks that map for room
before it extends the table and gets one old page per row: on the 5,000,000-task history, ~10,000
pages read and dirtied per accept (each a full-page image in the WAL after a checkpoint). With
fillfactor 90 a new row goes only to a page with its length plus 10% of a page free, which those
remnants never have; the 10% left on each new page takes a task's own updates (queued, running,
finished) on its page. Metadata only: existing pages are not rewritten.

Batches: a list filtered by a status few batches have (cancelled, rejected) walked
`ix_batches_created` backwards to the end, or scanned the table (70-100 ms at 100,000 batches,
growing with them). `(status | settlement_status, created_at, id)` answer any such page in its
order, and `(tenant_id, status, created_at, id)` a tenant's (the customer list and console).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "batch"
LIST_INDEXES = {
    "ix_batches_status_created": ["status", "created_at", "id"],
    "ix_batches_settlement_created": ["settlement_status", "created_at", "id"],
    "ix_batches_tenant_status_created": ["tenant_id", "status", "created_at", "id"],
}


def upgrade() -> None:
    op.execute("ALTER TABLE batch.tasks SET (fillfactor = 90)")
    # Built CONCURRENTLY: creates and outcomes keep writing batches meanwhile.
    with op.get_context().autocommit_block():
        for name, columns in LIST_INDEXES.items():
            op.create_index(
                name, "batches", columns, schema=SCHEMA, postgresql_concurrently=True, if_not_exists=True
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in LIST_INDEXES:
            op.drop_index(
                name, table_name="batches", schema=SCHEMA, postgresql_concurrently=True, if_exists=True
            )
    op.execute("ALTER TABLE batch.tasks RESET (fillfactor)")
