"""The bounds of a create request: the limits the contract publishes, with the configured ones."""

from __future__ import annotations

from reelbatch.proto.batch.v1 import batch_pb2

from services.batch.domain.validation import CreateLimits


def create_limits(*, max_batch_items: int, max_prompt_chars: int) -> CreateLimits:
    """The contract's fixed bounds (batch.proto's CreateBatchLimit) and the configured batch size
    and prompt length (REELBATCH_MAX_BATCH_ITEMS, REELBATCH_MAX_PROMPT_CHARS)."""
    return CreateLimits(
        max_items=max_batch_items,
        max_prompt_chars=max_prompt_chars,
        max_model_chars=batch_pb2.CREATE_BATCH_LIMIT_MAX_MODEL_CHARS,
        max_duration_seconds=batch_pb2.CREATE_BATCH_LIMIT_MAX_DURATION_SECONDS,
        max_webhook_url_chars=batch_pb2.CREATE_BATCH_LIMIT_MAX_WEBHOOK_URL_CHARS,
        max_deadline_seconds=batch_pb2.CREATE_BATCH_LIMIT_MAX_DEADLINE_SECONDS,
        max_request_id_chars=batch_pb2.CREATE_BATCH_LIMIT_MAX_REQUEST_ID_CHARS,
        max_custom_id_chars=batch_pb2.CREATE_BATCH_LIMIT_MAX_CUSTOM_ID_CHARS,
        max_metadata_pairs=batch_pb2.CREATE_BATCH_LIMIT_MAX_METADATA_PAIRS,
        # The contract publishes a key's bound as a custom_id's (enum values must differ).
        max_metadata_key_chars=batch_pb2.CREATE_BATCH_LIMIT_MAX_CUSTOM_ID_CHARS,
        max_metadata_value_chars=batch_pb2.CREATE_BATCH_LIMIT_MAX_METADATA_VALUE_CHARS,
        max_name_chars=batch_pb2.CREATE_BATCH_LIMIT_MAX_NAME_CHARS,
    )
