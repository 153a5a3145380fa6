"""What `download_results()` writes where, and how it knows what is already there (no I/O to the API).

A download folder holds `results.{jsonl,csv}`, `errors.{jsonl,csv}` and `videos/NAME.mp4`, one per
succeeded item, NAME being its `custom_id` when that is a safe file name, else `item-INDEX`.
Every file is written as `NAME.part` and renamed when complete, so after a crash a final name
means "complete, skip it" and a `.part` means "resume it from its size" (an HTTP Range request).
The results and errors files of a finished batch never change, so they are fetched once.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reelbatch_client.models import ResultLine

FileFormat = Literal["jsonl", "csv"]
PART_SUFFIX = ".part"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class VideoTarget:
    """One video to have on disk: its task and its final path."""

    task_id: str
    path: Path

    @property
    def part(self) -> Path:
        """Where its bytes go until it is complete."""
        return self.path.with_name(self.path.name + PART_SUFFIX)


@dataclass
class DownloadProgress:
    """Counts of a download so far (the progress callback receives it after every video)."""

    videos_total: int = 0
    videos_downloaded: int = 0
    videos_resumed: int = 0
    videos_skipped: int = 0
    bytes_downloaded: int = 0
    files_skipped: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, what: Literal["downloaded", "resumed", "skipped"] | None, data: int = 0) -> None:
        """Adds a finished video (`what`) and/or `data` bytes (safe from several threads)."""
        with self._lock:
            self.bytes_downloaded += data
            if what == "downloaded":
                self.videos_downloaded += 1
            elif what == "resumed":
                self.videos_resumed += 1
            elif what == "skipped":
                self.videos_skipped += 1

    @property
    def videos_done(self) -> int:
        """Videos on disk, complete (fetched now, resumed or already there)."""
        return self.videos_downloaded + self.videos_resumed + self.videos_skipped


@dataclass(frozen=True)
class DownloadSummary:
    """Where a batch's results went and what it took."""

    directory: Path
    results_file: Path
    errors_file: Path
    videos: list[Path]
    progress: DownloadProgress


ProgressCallback = Callable[[DownloadProgress], None]


def sheet_path(directory: Path, which: str, fmt: FileFormat) -> Path:
    """`results.csv`, `errors.jsonl`, ..."""
    return directory / f"{which}.{fmt}"


def write_atomically(path: Path, content: bytes) -> None:
    """Writes `path` through a `.part` file, so a crash never leaves a half file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + PART_SUFFIX)
    part.write_bytes(content)
    part.replace(path)


def parse_lines(jsonl: bytes) -> list[ResultLine]:
    """The lines of a results or errors file in its JSONL form."""
    return [ResultLine.model_validate_json(line) for line in jsonl.splitlines() if line.strip()]


def read_result_lines(path: Path, fmt: FileFormat) -> list[ResultLine]:
    """The lines of a downloaded results or errors file, in either format."""
    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl":
        return parse_lines(text.encode())
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        cells = {key: value for key, value in row.items() if value != ""}
        if "metadata" in cells:
            cells["metadata"] = json.loads(cells["metadata"]) if cells["metadata"].startswith("{") else None
        rows.append(ResultLine.model_validate(cells))
    return rows


def video_name(line: ResultLine) -> str:
    """The file name of an item's video: its custom_id when safe as a file name, else its index."""
    if line.custom_id and _SAFE_NAME.match(line.custom_id) and not line.custom_id.endswith(PART_SUFFIX):
        return f"{line.custom_id}.mp4"
    return f"item-{line.batch_index}.mp4"


def video_targets(lines: list[ResultLine], directory: Path) -> list[VideoTarget]:
    """One target per line that has a video, under `directory/videos/`."""
    videos = directory / "videos"
    return [VideoTarget(line.task_id, videos / video_name(line)) for line in lines if line.video_url]


def resume_offset(target: VideoTarget) -> int:
    """Bytes already on disk in the target's `.part` file (0 when there is none)."""
    try:
        return target.part.stat().st_size
    except FileNotFoundError:
        return 0


def range_headers(offset: int) -> dict[str, str]:
    """A Range request for the rest of a file from `offset` (none from 0)."""
    return {"Range": f"bytes={offset}-"} if offset else {}
