"""Response views read from a gRPC message field by field, by name.

Most views of the REST contract are a backend message with its fields renamed nowhere: the same
names, a protobuf time as a UTC datetime, an empty string as null. `ProtoView.by_name` reads them
so, and a view states only what differs (a renamed or computed field): the fields that need a
conversion or a rename are read here, the rest copied by `libs.field_mapping.from_fields`
(ADR-070). Which field needs which is worked out once per class, from its annotations. The polled
batch and task reads keep their own `fields_of` (ADR-064): they build no model at all.
A view that is its message and nothing more is a `MessageView[TheMessage]`: its `from_proto` is
`by_name`, so it states no converter at all.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar, Union, get_args, get_origin

from google.protobuf.message import Message
from pydantic import AwareDatetime, BaseModel

from libs.field_mapping import from_fields

MessageT = TypeVar("MessageT", bound=Message)

# Reads one field's value from a message, given the message and the field's name there.
_Reader = Callable[[Message, str], Any]


def utc_or_none(value: Any, present: bool) -> datetime | None:
    """A protobuf time as a UTC datetime, None when the field is not set."""
    return value.ToDatetime(tzinfo=UTC) if present else None


def _plain(message: Message, name: str) -> Any:
    return getattr(message, name)


def _text_or_none(message: Message, name: str) -> str | None:
    return getattr(message, name) or None


def _time(message: Message, name: str) -> datetime:
    moment: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return moment


def _time_or_none(message: Message, name: str) -> datetime | None:
    return utc_or_none(getattr(message, name), message.HasField(name))


def _listed(message: Message, name: str) -> list[Any]:
    return list(getattr(message, name))


def _reader(annotation: Any) -> _Reader:
    """How a field of this type is read from its message field."""
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    optional = type(None) in options
    kind = next((option for option in options if option is not type(None)), annotation)
    if kind is AwareDatetime or kind is datetime:
        return _time_or_none if optional else _time
    if kind is str and optional:
        return _text_or_none
    if get_origin(kind) is list:
        return _listed
    return _plain


class ProtoView(BaseModel):
    """A view whose fields are its message's fields of the same name (see the module's docstring).

    `proto_names` maps a field to its message field where the names differ.
    """

    proto_names: ClassVar[dict[str, str]] = {}
    _readers: ClassVar[tuple[tuple[str, str, _Reader], ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        readers = (
            (name, cls.proto_names.get(name, name), _reader(field.annotation))
            for name, field in cls.model_fields.items()
        )
        # A same-named field read as it is needs nothing here: `from_fields` copies it.
        cls._readers = tuple(
            reader for reader in readers if reader[2] is not _plain or reader[0] != reader[1]
        )

    @classmethod
    def by_name(cls, message: Message, **computed: Any) -> Self:
        """The view of `message`: every field read by name, but those given in `computed`."""
        converted = {
            name: read(message, proto_name) for name, proto_name, read in cls._readers if name not in computed
        }
        return from_fields(cls, message, **converted, **computed)


class MessageView(ProtoView, Generic[MessageT]):
    """A ProtoView built from its message by name alone (`MessageT`: the message it views)."""

    @classmethod
    def from_proto(cls, message: MessageT) -> Self:
        """Builds the view from its backend message."""
        return cls.by_name(message)
