"""Input files: an uploaded image checked (type from its bytes, size), stored and recorded."""

from __future__ import annotations

from libs.errors import FieldViolation, InvalidArgument
from services.batch.adapters.input_files import InputFileStore
from services.batch.adapters.sql.input_files import InputFiles
from services.batch.domain.batch import parse_tenant_id
from services.batch.domain.generation import INVALID_VALUE, image_problem, image_type
from services.batch.domain.input_files import StoredInputFile, display_name, new_file_id


class InputFileUploads:
    """Stores tenants' input images."""

    def __init__(self, rows: InputFiles, store: InputFileStore, *, max_bytes: int) -> None:
        self._rows = rows
        self._store = store
        self._max_bytes = max_bytes

    async def upload(self, tenant_id: str, filename: str, content: bytes) -> StoredInputFile:
        """Checks, stores and records one image; InvalidArgument (field "file") when refused."""
        tenant = parse_tenant_id(tenant_id)
        problem = image_problem(content, self._max_bytes)
        mime = image_type(content)
        if problem is not None or mime is None:
            raise InvalidArgument.of([FieldViolation(("file",), INVALID_VALUE, problem or "not an image")])
        file = StoredInputFile(
            file_id=new_file_id(), filename=display_name(filename), content_type=mime, size_bytes=len(content)
        )
        # Bytes first, row second: a row always names stored bytes (a crash between leaves an
        # orphan object no id names, never an id without its image).
        await self._store.put(str(tenant), file.file_id, content, mime)
        return await self._rows.record(tenant, file)
