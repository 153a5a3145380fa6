"""A small HTML renderer that escapes every value unless it is already `Markup`.

Templates are `str.format` strings; each replacement field is formatted, then escaped, so a value
can only ever inject markup by being built from templates itself.
"""

from __future__ import annotations

import html
import string
from collections.abc import Iterable
from typing import Any


class Markup(str):
    """A string of trusted HTML (produced by `render` or `join`), inserted without escaping."""

    __slots__ = ()


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        formatted = format(value, format_spec)
        return formatted if isinstance(value, Markup) else html.escape(formatted, quote=True)


_FORMATTER = _EscapingFormatter()


def render(template: str, /, **values: Any) -> Markup:
    """`template` with each `{name}` replaced by its escaped value."""
    return Markup(_FORMATTER.vformat(template, (), values))


def join(parts: Iterable[Markup]) -> Markup:
    """Concatenates fragments that are already markup."""
    return Markup("".join(parts))
