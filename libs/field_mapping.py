"""One way to build a dataclass, a pydantic model or a protobuf message from an object whose
attributes carry the same names (a domain record, a table row, a settings entry, a message).

Transports turn records into messages, adapters turn rows into records, and most of those fields
carry the same name on both sides; `from_fields` copies them by name and takes only the fields
that differ (a renamed counter, an id as text, an enum's value) as keywords, so a field added to
both sides needs no third edit. A field the source has no attribute for is left to the target's
default, as a constructor call that does not name it would (a message field unset; a dataclass
field without a default is then a TypeError).

Cost: the target's field names are read once per type; each call is one getattr per field and one
keyword call, a few microseconds (3 to 5 times a hand-written constructor of a four-field message,
measured with timeit). Fine per request, per batch or per page of a cold list; the per-task hot
paths (claims, outcomes, the read model's task rows) keep their hand-written constructors.

`to_message` is its counterpart for a protobuf message built from a domain record: the field's
wire type decides the conversion (ids and enums as text, datetimes as Timestamps, None unset), so
a record's converter names only the fields that are another rule. `to_record` is the way back
for a dataclass read from a row: a field typed by an enum gets the member of the stored value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar, cast

from google.protobuf.timestamp_pb2 import Timestamp

T = TypeVar("T")

_ABSENT = object()
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(target: type) -> tuple[str, ...]:
    """The constructor fields of a dataclass, or the fields of a pydantic model or a protobuf message."""
    names = _FIELD_NAMES.get(target)
    if names is None:
        if dataclasses.is_dataclass(target):
            names = tuple(field.name for field in dataclasses.fields(target) if field.init)
        elif isinstance(model_fields := getattr(target, "model_fields", None), dict):
            names = tuple(model_fields)
        elif hasattr(target, "DESCRIPTOR"):
            names = tuple(target.DESCRIPTOR.fields_by_name)
        else:
            raise TypeError(f"{target.__name__} is not a dataclass, a pydantic model or a protobuf message")
        _FIELD_NAMES[target] = names
    return names


def from_fields(target: type[T], source: object, /, **differing: Any) -> T:
    """A `target` whose fields are read by name from `source`, except the `differing` ones given."""
    values = {
        name: value
        for name in field_names(target)
        if name not in differing and (value := getattr(source, name, _ABSENT)) is not _ABSENT
    }
    values.update(differing)
    construct = cast("Callable[..., T]", target)
    return construct(**values)


def to_message(target: type[T], source: object, /, **differing: Any) -> T:
    """`from_fields` for a protobuf message built from a domain record, each copied value in its wire
    form: an id, a number or an enum as text in a string field, an aware datetime as a Timestamp;
    None leaves the field unset (an empty string, an absent time). Fields whose wire form is another
    rule (a nested record, a repeated field) come as `differing` keywords, as with `from_fields`.
    """
    values: dict[str, Any] = {}
    for name, to_wire in _wire_forms(target):
        if name in differing or (value := getattr(source, name, None)) is None:
            continue
        values[name] = to_wire(value)
    values.update(differing)
    construct = cast("Callable[..., T]", target)
    return construct(**values)


def _as_is(value: Any) -> Any:
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    return value if isinstance(value, str) else str(value)


def _as_timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


_WIRE_FORMS: dict[type, tuple[tuple[str, Callable[[Any], Any]], ...]] = {}


def _wire_forms(target: type) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """Each field of a message with the conversion into its wire form (read once per type)."""
    forms = _WIRE_FORMS.get(target)
    if forms is None:
        descriptor: Any = getattr(target, "DESCRIPTOR", None)
        if descriptor is None:
            raise TypeError(f"{target.__name__} is not a protobuf message")
        forms = tuple((field.name, _wire_form(field)) for field in descriptor.fields)
        _WIRE_FORMS[target] = forms
    return forms


def _wire_form(field: Any) -> Callable[[Any], Any]:
    if field.is_repeated:
        return _as_is
    if field.type == field.TYPE_STRING:
        return _as_text
    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
        return _as_timestamp
    return _as_is


def to_record(target: type[T], source: object, /, **differing: Any) -> T:
    """`from_fields` for a domain dataclass read from a row: a field typed by an enum (optional or
    not) gets the member of the stored value; ids typed by a `NewType` pass as stored (a NewType is
    its base type at run time). Fields built from several columns come as `differing` keywords.
    """
    values: dict[str, Any] = {}
    for name, from_stored in _stored_forms(target):
        if name in differing or (value := getattr(source, name, _ABSENT)) is _ABSENT:
            continue
        values[name] = value if value is None else from_stored(value)
    values.update(differing)
    construct = cast("Callable[..., T]", target)
    return construct(**values)


_STORED_FORMS: dict[type, tuple[tuple[str, Callable[[Any], Any]], ...]] = {}


def _stored_forms(target: type) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """Each constructor field of a dataclass with the conversion from its stored value (once per type)."""
    forms = _STORED_FORMS.get(target)
    if forms is None:
        if not dataclasses.is_dataclass(target):
            raise TypeError(f"{target.__name__} is not a dataclass")
        hints = typing.get_type_hints(target)
        forms = tuple(
            (field.name, _stored_form(hints[field.name]))
            for field in dataclasses.fields(target)
            if field.init
        )
        _STORED_FORMS[target] = forms
    return forms


def _stored_form(annotation: Any) -> Callable[[Any], Any]:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    enums = [member for member in members if isinstance(member, type) and issubclass(member, Enum)]
    return enums[0] if len(enums) == 1 else _as_is
