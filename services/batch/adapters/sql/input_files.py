"""Input files: the row of each uploaded input image, and which ids a tenant owns.

SQL style: plain SQL run by psycopg on the autocommit pool (`Database.raw_connection`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from libs.db import Database
from services.batch.adapters.sql.statements import fetch_one
from services.batch.domain.batch import TenantId
from services.batch.domain.input_files import StoredInputFile

_INSERT = """
INSERT INTO batch.input_files (id, tenant_id, filename, content_type, size_bytes)
VALUES (%(id)s, %(tenant_id)s, %(filename)s, %(content_type)s, %(size_bytes)s)
RETURNING id, filename, content_type, size_bytes, created_at"""
_KNOWN = "SELECT id FROM batch.input_files WHERE tenant_id = %s AND id = ANY(%s)"


class InputFiles:
    """The rows of uploaded input images."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def record(self, tenant_id: TenantId, file: StoredInputFile) -> StoredInputFile:
        """Stores the row of an image whose bytes are stored; answers it with its creation time."""
        params = {
            "id": file.file_id,
            "tenant_id": tenant_id,
            "filename": file.filename,
            "content_type": file.content_type,
            "size_bytes": file.size_bytes,
        }
        async with self._db.raw_connection() as conn:
            row = await fetch_one(conn, _INSERT, params)
        return StoredInputFile(
            file_id=row.id,
            filename=row.filename,
            content_type=row.content_type,
            size_bytes=row.size_bytes,
            created_at=row.created_at.astimezone(UTC),
        )

    async def known_files(self, tenant_id: TenantId, file_ids: Sequence[str]) -> set[str]:
        """The ids among `file_ids` that are this tenant's."""
        async with self._db.raw_connection() as conn, conn.cursor() as cursor:
            await cursor.execute(_KNOWN, (tenant_id, list(file_ids)))
            return {row[0] for row in await cursor.fetchall()}
