"""Reading a create body as it arrives: JSON or JSONL, plain or gzip, into the batch's columns.

A JSONL body (`application/jsonl`) is one item per line, or an OpenAI Batch-style line
`{"custom_id": .., "body": {..item fields..}}` (`method` and `url` are accepted and ignored); the
batch's own fields are query parameters. Either form may be `Content-Encoding: gzip`. The body is
read chunk by chunk: a JSONL line becomes column entries as soon as it is complete, so the bytes
are never held whole; gzip output is bounded by the decompressed limit before it is produced (a
small body that inflates to gigabytes stops at the limit, having used one chunk of memory).
Every shape problem of every line is reported at once (capped), located by item index.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from reelbatch.proto.batch.v1 import batch_pb2

from libs.errors import MAX_FIELD_VIOLATIONS
from services.gateway.http.errors import ApiError, validation_error
from services.gateway.schemas.batches import (
    BATCH_FIELDS,
    BatchColumns,
    BatchItemIn,
    CreateBatchRequest,
    plainly_valid_batch,
)
from services.gateway.schemas.generation import GenerationSettingsIn

JSON_TYPE = "application/json"
# `application/jsonl` is the contract's; the others name the same format in other tools.
JSONL_TYPES = frozenset({"application/jsonl", "application/x-ndjson", "application/x-jsonlines"})
GZIP = "gzip"
# The keys of an OpenAI Batch-style line besides `body` (`method` and `url` name OpenAI's endpoint).
_OPENAI_LINE_KEYS = frozenset({"custom_id", "body", "method", "url"})
# gzip framing only (not zlib or raw deflate): what `Content-Encoding: gzip` means.
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def payload_too_large(limit: int) -> ApiError:
    """The 413 of a create body past `limit` bytes (as sent, or decompressed)."""
    return ApiError(413, "payload_too_large", f"request body exceeds {limit} bytes (decompressed)")


def media_type(content_type: str) -> str:
    """`application/jsonl; charset=utf-8` -> `application/jsonl` (lower case)."""
    return content_type.partition(";")[0].strip().lower()


def unsupported(message: str, status: int = 415) -> ApiError:
    """A body the create cannot read: an unknown content type (415) or encoding."""
    code = "unsupported_media_type" if status == 415 else "bad_request"
    return ApiError(status, code, message)


async def decoded(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> AsyncIterator[bytes]:
    """The body's bytes as sent (no encoding) or gunzipped, at most `limit` of them (else 413)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise payload_too_large(limit)
            yield chunk
        return
    if encoding != GZIP:
        raise unsupported(f"Content-Encoding {encoding!r} is not supported; use gzip", status=415)
    inflater = zlib.decompressobj(_GZIP_WBITS)
    produced = 0
    try:
        async for chunk in chunks:
            pending = chunk
            while pending and not inflater.eof:
                # Never more output than the limit leaves room for (+1 to notice the excess).
                out = inflater.decompress(pending, limit - produced + 1)
                produced += len(out)
                if produced > limit:
                    raise payload_too_large(limit)
                if out:
                    yield out
                pending = inflater.unconsumed_tail
            if inflater.eof and (pending or inflater.unused_data):
                raise unsupported("the gzip body has data after its end", status=400)
    except zlib.error:
        raise unsupported("the body is not valid gzip", status=400) from None
    if not inflater.eof:
        raise unsupported("the gzip body is truncated", status=400)


async def whole(chunks: AsyncIterator[bytes]) -> bytes:
    """Every chunk joined (a JSON document is parsed whole)."""
    parts = [chunk async for chunk in chunks]
    return b"".join(parts)


def parse_json_batch(body: bytes) -> BatchColumns:
    """Parses the create body and checks its shape: a plainly right one column by column (10,000
    items in a few milliseconds), anything else with the model, which names every error."""
    try:
        plain = plainly_valid_batch(orjson.loads(body))
    except orjson.JSONDecodeError:
        plain = None
    if plain is not None:
        return plain
    try:
        return BatchColumns.of(CreateBatchRequest.model_validate_json(body))
    except ValidationError as error:
        raise validation_error(
            error.errors(include_url=False, include_context=False, include_input=False)
        ) from None


def _is_int32_text(value: str) -> bool:
    digits = value[1:] if value[:1] == "-" else value
    return digits.isascii() and digits.isdigit() and -(2**31) <= int(value) < 2**31


def batch_fields_from_query(query: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A JSONL create's batch fields from its query string: `webhook_url`, `deadline_seconds`,
    `name`, and `metadata[key]=value` per pair. Unknown or repeated parameters are a 422."""
    fields: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    problems: list[dict[str, Any]] = []
    for key, value in query:
        if key.startswith("metadata[") and key.endswith("]"):
            metadata[key[len("metadata[") : -1]] = value
        elif key not in BATCH_FIELDS or key == "metadata":
            problems.append({"loc": ("query", key), "msg": "unknown parameter", "type": "extra_forbidden"})
        elif key in fields:
            problems.append({"loc": ("query", key), "msg": "given more than once", "type": "repeated"})
        elif key == "deadline_seconds":
            if _is_int32_text(value):
                fields[key] = int(value)
            else:
                message = "must be an integer"
                problems.append({"loc": ("query", key), "msg": message, "type": "int_parsing"})
        else:
            fields[key] = value
    if problems:
        raise validation_error(problems)
    if metadata:
        fields["metadata"] = metadata
    return fields


class JsonlItems:
    """Columns built line by line from a JSONL body, with every shape problem found on the way."""

    def __init__(self) -> None:
        self.columns = BatchColumns(prompts=[], models=[], durations=[])
        self._custom_ids: list[str] = []
        self._metadata: list[dict[str, str]] = []
        # Item i's generation settings (an empty message for none); sent only if some item has any.
        self._settings: list[batch_pb2.GenerationSettings] = []
        self._problems: list[dict[str, Any]] = []
        self._rest = b""

    async def read(self, chunks: AsyncIterator[bytes]) -> None:
        """Takes in every chunk of the (decoded) body."""
        async for chunk in chunks:
            lines = (self._rest + chunk).split(b"\n")
            self._rest = lines.pop()
            for line in lines:
                self._line(line)
        self._line(self._rest)
        self._rest = b""

    def finish(self, batch_fields: Mapping[str, Any]) -> BatchColumns:
        """The request's columns with the batch's own fields; a 422 with every problem found."""
        if self._problems:
            raise validation_error(self._problems)
        columns = self.columns
        if any(self._custom_ids):
            columns.custom_ids = self._custom_ids
        if any(self._metadata):
            columns.metadata = self._metadata
        if any(settings.ByteSize() for settings in self._settings):
            columns.settings = self._settings
        columns.webhook_url = batch_fields.get("webhook_url")
        columns.deadline_seconds = batch_fields.get("deadline_seconds")
        columns.name = batch_fields.get("name")
        columns.batch_metadata = batch_fields.get("metadata")
        columns.quote_id = batch_fields.get("quote_id")
        return columns

    def _problem(self, location: tuple[str | int, ...], code: str, message: str) -> None:
        if len(self._problems) < MAX_FIELD_VIOLATIONS:
            self._problems.append({"loc": location, "type": code, "msg": message})

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return  # blank lines (a trailing newline, CRLF's leftovers) hold no item
        index = len(self.columns.prompts)
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            self._problem(("items", index), "invalid_json", f"item {index} is not one JSON object: {error}")
            self._append("", "", 0, "", {})
            return
        item = self._item_of(index, document)
        if item is None:
            self._append("", "", 0, "", {})
            return
        self._append(
            item["prompt"],
            item["model"],
            item.get("duration_seconds") or 0,
            item.get("custom_id") or "",
            item.get("metadata") or {},
            item.get("settings"),
        )

    def _item_of(self, index: int, document: Any) -> Mapping[str, Any] | None:
        """The line's item (its body for an OpenAI-style line); None after recording its problems."""
        if type(document) is dict and "body" in document:
            if not document.keys() <= _OPENAI_LINE_KEYS:
                extra = sorted(document.keys() - _OPENAI_LINE_KEYS)[0]
                self._problem(("items", index, extra), "extra_forbidden", "unknown field of the line")
                return None
            body = document["body"]
            if type(body) is dict and "custom_id" in document:
                if "custom_id" in body and body["custom_id"] != document["custom_id"]:
                    message = "custom_id is given twice, with two values"
                    self._problem(("items", index, "custom_id"), "mismatch", message)
                    return None
                body = {**body, "custom_id": document["custom_id"]}
            document = body
        if type(document) is dict and plainly_valid_batch({"items": [document]}) is not None:
            return document
        try:
            return BatchItemIn.model_validate(document).model_dump()
        except ValidationError as error:
            for found in error.errors(include_url=False, include_context=False, include_input=False):
                self._problem(("items", index, *found["loc"]), found["type"], found["msg"])
            return None

    def _append(
        self,
        prompt: str,
        model: str,
        duration: int,
        custom_id: str,
        metadata: dict[str, str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        # Settings were shape-checked with the line's item; here they only become their message.
        self._settings.append(
            GenerationSettingsIn.model_validate(settings).to_proto()
            if settings
            else batch_pb2.GenerationSettings()
        )
        self.columns.prompts.append(prompt)
        self.columns.models.append(model)
        self.columns.durations.append(duration)
        self._custom_ids.append(custom_id)
        self._metadata.append(metadata)


async def read_create_body(
    chunks: AsyncIterator[bytes],
    *,
    content_type: str,
    content_encoding: str,
    query: Sequence[tuple[str, str]],
    limit: int,
) -> BatchColumns:
    """The create request's columns from its body (JSON, or JSONL with the batch's fields in the
    query), plain or gzip; 413 past `limit` bytes, 415 for another type, 422 for bad shapes."""
    kind = media_type(content_type) or JSON_TYPE
    body = decoded(chunks, content_encoding, limit)
    if kind in JSONL_TYPES:
        fields = batch_fields_from_query(query)
        items = JsonlItems()
        await items.read(body)
        return items.finish(fields)
    if kind != JSON_TYPE and not kind.endswith("+json"):
        raise unsupported(f"Content-Type {kind!r} is not supported; use {JSON_TYPE} or application/jsonl")
    return parse_json_batch(await whole(body))
