"""Input files: `POST /api/enterprise/files` uploads an image an item can name by `file_id`
(as OpenAI's files API). The batch service checks and stores it (type from its bytes, size).

No `from __future__ import annotations`: FastAPI must resolve the endpoints' local annotations.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from reelbatch.proto.batch.v1 import batch_pb2

from libs.config import Settings
from services.gateway.adapters.backends import Backends
from services.gateway.http.auth import ApiKeyAuthenticator, tenant_dependency
from services.gateway.http.params import error_responses
from services.gateway.schemas.generation import InputFileView


def files_router(settings: Settings, backends: Backends, authenticator: ApiKeyAuthenticator) -> APIRouter:
    """The customer's input file upload."""
    router = APIRouter(
        prefix="/api/enterprise", tags=["files"], responses=error_responses(401, 413, 422, 429, 500, 503)
    )
    authenticated = Depends(tenant_dependency(authenticator))
    deadline = settings.grpc_deadline_seconds
    max_bytes = settings.max_input_image_bytes

    @router.post(
        "/files",
        status_code=201,
        response_model=InputFileView,
        summary="Upload an input image",
        description=(
            "Stores a PNG, JPEG or WebP image of at most REELBATCH_MAX_INPUT_IMAGE_BYTES "
            f"(default {max_bytes} bytes) for the caller's tenant and answers its `file_id`, which "
            "items name as `settings.first_frame.file_id` (or `last_frame`, `reference_images`). The "
            "type is read from the bytes, not from the upload's Content-Type. Another tenant's "
            "file id is unknown to yours (a 422 naming the item)."
        ),
    )
    async def upload_file(
        tenant_id: Annotated[str, authenticated],
        file: Annotated[UploadFile, File(description="The image (multipart/form-data field `file`).")],
        purpose: Annotated[
            str, Form(pattern="^video_input$", description="Always `video_input`.")
        ] = "video_input",
    ) -> InputFileView:
        content = await file.read(max_bytes + 1)
        answer = await backends.batch.UploadInputFile(
            batch_pb2.UploadInputFileRequest(
                tenant_id=tenant_id, filename=file.filename or "", content=content
            ),
            timeout=deadline,
        )
        return InputFileView.from_proto(answer)

    return router
