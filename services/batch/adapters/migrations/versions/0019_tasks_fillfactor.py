"""New tasks fill their heap pages to 90%, so a batch's COPY appends instead of filling old holes
(ADR-163).

With the default fillfactor of 100 every page of `batch.tasks` is filled to the brim, and what a
page has left (a few hundred bytes, shorter than the next row, or what VACUUM freed of updated
versions) is recorded in the free space map. A COPY of 10,000 tasks asks that map for room before
it extends the table and gets one old page per row: on the 5,000,000-task history, 10,000 pages
read and dirtied (one full-page image each in the WAL) per accept, ~4x the COPY of day one.
With fillfactor 90 a new row goes only to a page with its length plus 10% of a page free, which
those remnants never have; the 10% left on each new page takes a task's updates (queued, running,
finished) on its own page. Metadata only: existing pages are not rewritten.

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE batch.tasks SET (fillfactor = 90)")


def downgrade() -> None:
    op.execute("ALTER TABLE batch.tasks RESET (fillfactor)")
