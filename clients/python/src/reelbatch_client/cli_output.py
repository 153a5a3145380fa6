"""How `reelbatch-client` shows things: JSON on stdout with `--json`, else rich tables and progress bars.

Progress bars and notes go to stderr, so stdout carries only the answer (a table, or one JSON
document a script can parse) whatever the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

try:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
    from rich.table import Table
except ImportError as missing:  # pragma: no cover - depends on the install
    raise SystemExit("the command line needs: pip install 'reelbatch-client[cli]'") from missing

from reelbatch_client.downloads import DownloadProgress
from reelbatch_client.models import Batch


def plain(value: Any) -> Any:
    """Models, dataclasses' fields and paths as JSON-ready values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


@dataclass
class Output:
    """Where a command writes: JSON or human text."""

    as_json: bool
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True))

    def document(self, value: Any) -> None:
        """The command's answer as one JSON document (with `--json`)."""
        sys.stdout.write(json.dumps(plain(value), indent=2, sort_keys=False) + "\n")

    def note(self, message: str) -> None:
        """A line for a person, on stderr (silent with `--json`)."""
        if not self.as_json:
            self.err.print(message, highlight=False)

    def fields(self, title: str, values: dict[str, Any]) -> None:
        """A two-column table of a record."""
        table = Table(title=title, show_header=False, title_justify="left")
        for key, value in values.items():
            table.add_row(key, "" if value is None else str(value))
        self.out.print(table)

    def rows(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table of records."""
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*("" if cell is None else str(cell) for cell in row))
        self.out.print(table)


class BatchProgress:
    """A progress bar over a batch's items, then over its videos (rich, on stderr)."""

    def __init__(self, output: Output) -> None:
        self._enabled = not output.as_json
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=output.err,
            disable=not self._enabled,
        )
        self._items: TaskID | None = None
        self._videos: TaskID | None = None

    @contextmanager
    def shown(self) -> Iterator[BatchProgress]:
        """The bars are drawn while inside."""
        with self._progress:
            yield self

    def batch(self, batch: Batch) -> None:
        """A poll of the batch (the `wait()` progress callback)."""
        detail = f"ok {batch.success_count}  failed {batch.failed_count}  {batch.status}"
        if self._items is None:
            self._items = self._progress.add_task("items ", total=batch.total_count, detail=detail)
        self._progress.update(self._items, completed=batch.done_count, detail=detail)

    def videos(self, progress: DownloadProgress) -> None:
        """A video downloaded (the `download_results()` progress callback)."""
        detail = f"{progress.bytes_downloaded} bytes  skipped {progress.videos_skipped}"
        if self._videos is None:
            self._videos = self._progress.add_task("videos", total=progress.videos_total, detail=detail)
        self._progress.update(self._videos, completed=progress.videos_done, detail=detail)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """`--json`, `--api-key` and `--base-url`, taken by every command."""
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout, no progress bars")
    parser.add_argument("--api-key", help="else REELBATCH_API_KEY, else the config file")
    parser.add_argument(
        "--base-url", help="else REELBATCH_BASE_URL, else the config file, else http://127.0.0.1:8000"
    )
