"""Spreadsheets and JSONL files of prompts into batch items, checked here before anything is sent.

CSV: a header row, then one item per row. Columns: `prompt` (required), `model`, `custom_id`,
`duration_seconds`, the settings `aspect_ratio`, `resolution`, `seed`, `negative_prompt`, `audio`,
`first_frame_url`, `last_frame_url`, and `metadata.KEY` for each metadata pair. An empty cell is
"not set"; a row without `model` takes the default model. An unknown column is an error (a typo
would otherwise be dropped silently).

JSONL: one item per line, in the API's item shape or OpenAI Batch-style
(`{"custom_id": .., "body": {..item..}}`); blank lines are skipped.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reelbatch_client.errors import FileFormatError
from reelbatch_client.models import BatchItem, GenerationSettings, ImageInput

ITEM_COLUMNS = ("prompt", "model", "custom_id", "duration_seconds")
SETTING_COLUMNS = ("aspect_ratio", "resolution", "seed", "negative_prompt", "audio")
FRAME_COLUMNS = {"first_frame_url": "first_frame", "last_frame_url": "last_frame"}
METADATA_PREFIX = "metadata."
_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


def read_items(path: str | Path, default_model: str | None = None) -> list[BatchItem]:
    """The items of a `.csv` or `.jsonl` (also `.ndjson`, `.jsonl.gz`) file, in file order."""
    source = Path(path)
    raw = source.read_bytes()
    if source.suffix == ".gz":
        raw = gzip.decompress(raw)
    name = source.name.removesuffix(".gz").lower()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileFormatError(f"{source.name} is not UTF-8 text") from error
    if name.endswith(".csv"):
        return items_from_csv(text, default_model)
    if name.endswith((".jsonl", ".ndjson")):
        return items_from_jsonl(text, default_model)
    raise FileFormatError(f"{source.name}: expected a .csv or .jsonl file")


def items_from_csv(text: str, default_model: str | None = None) -> list[BatchItem]:
    """Rows of a CSV with a header (see the module doc for the columns)."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [column.strip() for column in reader.fieldnames or []]
    if "prompt" not in columns:
        raise FileFormatError("the CSV needs a header row with a `prompt` column", line=1)
    known = set(ITEM_COLUMNS) | set(SETTING_COLUMNS) | set(FRAME_COLUMNS)
    unknown = [c for c in columns if c not in known and not c.startswith(METADATA_PREFIX)]
    if unknown:
        raise FileFormatError(f"unknown column(s) {', '.join(unknown)}", line=1)
    reader.fieldnames = columns
    items = []
    for row in reader:
        cells = {key: value.strip() for key, value in row.items() if key and value and value.strip()}
        items.append(_item(_csv_fields(cells, reader.line_num), default_model, reader.line_num))
    if not items:
        raise FileFormatError("the file holds no items")
    return items


def _csv_fields(cells: dict[str, str], line: int) -> dict[str, Any]:
    fields: dict[str, Any] = {key: cells[key] for key in ITEM_COLUMNS if key in cells}
    settings: dict[str, Any] = {key: cells[key] for key in SETTING_COLUMNS if key in cells}
    if "audio" in settings:
        settings["audio"] = _boolean(settings["audio"], line)
    for column, setting in FRAME_COLUMNS.items():
        if column in cells:
            settings[setting] = {"url": cells[column]}
    if settings:
        fields["settings"] = settings
    metadata = {k.removeprefix(METADATA_PREFIX): v for k, v in cells.items() if k.startswith(METADATA_PREFIX)}
    if metadata:
        fields["metadata"] = metadata
    return fields


def _boolean(value: str, line: int) -> bool:
    lowered = value.lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise FileFormatError(f"audio must be true or false, not {value!r}", line=line)


def items_from_jsonl(text: str, default_model: str | None = None) -> list[BatchItem]:
    """Lines of a JSONL file (the API's item shape, or OpenAI Batch-style)."""
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as error:
            raise FileFormatError(f"not JSON: {error.msg}", line=number) from error
        if not isinstance(fields, dict):
            raise FileFormatError("a line must be a JSON object", line=number)
        if isinstance(fields.get("body"), dict):  # OpenAI Batch-style
            fields = {
                **fields["body"],
                **({"custom_id": fields["custom_id"]} if "custom_id" in fields else {}),
            }
        items.append(_item(fields, default_model, number))
    if not items:
        raise FileFormatError("the file holds no items")
    return items


def _item(fields: dict[str, Any], default_model: str | None, line: int) -> BatchItem:
    if "model" not in fields:
        if default_model is None:
            raise FileFormatError("no model: add a `model` column/field or give a default model", line=line)
        fields = {**fields, "model": default_model}
    try:
        return BatchItem.model_validate(fields)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise FileFormatError(f"{where}: {problem['msg']}", line=line) from None


def to_jsonl(items: Iterable[BatchItem]) -> bytes:
    """The items as the API's JSONL body (unset fields left out)."""
    return b"".join(item.model_dump_json(exclude_none=True).encode() + b"\n" for item in items)


__all__ = ["GenerationSettings", "ImageInput", "items_from_csv", "items_from_jsonl", "read_items", "to_jsonl"]
