"""Spreadsheets and JSONL files into batch items: every column, both JSONL shapes, and precise,
line-numbered errors for what cannot be sent (nothing reaches the API then)."""

from __future__ import annotations

import gzip
import inspect
from pathlib import Path

import pytest
from reelbatch_client import AsyncClient, Client, FileFormatError
from reelbatch_client.inputs import items_from_csv, items_from_jsonl, read_items


def test_every_csv_column_lands_in_its_field() -> None:
    sheet = (
        "prompt,model,custom_id,duration_seconds,aspect_ratio,resolution,seed,negative_prompt,audio,"
        "first_frame_url,last_frame_url,metadata.scene\n"
        "a fox,kling,f1,8,9:16,1080p,42,blur,yes,http://x/a.png,http://x/b.png,dusk\n"
        "a hen,,,,,,,,,,,\n"
    )
    fox, hen = items_from_csv(sheet, default_model="sora-2")
    assert fox.model_dump(exclude_none=True) == {
        "prompt": "a fox",
        "model": "kling",
        "custom_id": "f1",
        "duration_seconds": 8,
        "metadata": {"scene": "dusk"},
        "settings": {
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "seed": 42,
            "negative_prompt": "blur",
            "audio": True,
            "first_frame": {"url": "http://x/a.png"},
            "last_frame": {"url": "http://x/b.png"},
        },
    }
    assert hen.model_dump(exclude_none=True) == {"prompt": "a hen", "model": "sora-2"}


@pytest.mark.parametrize(
    ("sheet", "message"),
    [
        ("text,model\nhi,sora-2\n", "line 1: the CSV needs a header row with a `prompt` column"),
        ("prompt,modle\nhi,sora-2\n", "line 1: unknown column(s) modle"),
        ("prompt\nhi\n", "line 2: no model"),
        ("prompt,model,seed\nhi,sora-2,many\n", "line 2: settings.seed"),
        ("prompt,model,audio\nhi,sora-2,loud\n", "line 2: audio must be true or false"),
        ("prompt,model\n", "the file holds no items"),
    ],
)
def test_a_bad_sheet_is_refused_with_its_line(sheet: str, message: str) -> None:
    with pytest.raises(FileFormatError) as raised:
        items_from_csv(sheet)
    assert str(raised.value).startswith(message)


def test_jsonl_takes_the_api_shape_and_openai_batch_lines() -> None:
    text = (
        '{"prompt": "a", "model": "sora-2", "custom_id": "x"}\n\n'
        '{"custom_id": "y", "method": "POST", "url": "/v1/videos", "body": {"prompt": "b"}}\n'
    )
    first, second = items_from_jsonl(text, default_model="veo-3")
    assert (first.custom_id, first.model, second.custom_id, second.prompt, second.model) == (
        "x",
        "sora-2",
        "y",
        "b",
        "veo-3",
    )
    with pytest.raises(FileFormatError, match="line 2: not JSON"):
        items_from_jsonl('{"prompt": "a", "model": "m"}\n{oops\n')
    with pytest.raises(FileFormatError, match="line 1: prompt"):
        items_from_jsonl('{"model": "m"}\n')


def test_files_are_read_by_their_suffix_gzip_included(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl.gz").write_bytes(gzip.compress(b'{"prompt": "a", "model": "m"}\n'))
    assert read_items(tmp_path / "p.jsonl.gz")[0].prompt == "a"
    (tmp_path / "p.txt").write_text("prompt\na\n")
    with pytest.raises(FileFormatError, match=r"expected a \.csv or \.jsonl"):
        read_items(tmp_path / "p.txt")


def test_the_async_client_offers_what_the_sync_client_does() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose")
        }

    sync, asynchronous = public(Client), public(AsyncClient)
    assert set(sync) == set(asynchronous)
    for name, signature in sync.items():
        assert list(signature.parameters) == list(asynchronous[name].parameters), name
