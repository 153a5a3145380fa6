"""`from_fields`: dataclasses and protobuf messages built from same-named attributes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from pydantic import BaseModel
from reelbatch.proto.billing.v1 import billing_pb2

from libs.field_mapping import field_names, from_fields


@dataclass(frozen=True)
class Line:
    model: str
    count: int
    unit_price: int = 0


def test_a_message_takes_every_field_the_source_has_and_the_differing_ones_given() -> None:
    message = from_fields(billing_pb2.QuoteLine, Line("veo", 3, 40), duration_seconds=8)

    assert message == billing_pb2.QuoteLine(model="veo", count=3, unit_price=40, duration_seconds=8)


def test_a_dataclass_is_built_from_a_message_and_attributes_it_lacks_keep_their_default() -> None:
    line = from_fields(Line, billing_pb2.QuoteLine(model="veo", count=2, unit_price=5, duration_seconds=4))
    unpriced = from_fields(Line, billing_pb2.ModelUsage(model="veo"), count=1)

    assert line == Line("veo", 2, 5)
    assert unpriced == Line("veo", 1, 0)


def test_a_required_field_the_source_lacks_is_a_type_error_not_a_silent_default() -> None:
    with pytest.raises(TypeError):
        from_fields(Line, billing_pb2.ModelUsage(model="veo"))
    with pytest.raises(TypeError):
        field_names(int)


class LineView(BaseModel):
    model: str
    count: int


def test_a_pydantic_model_is_built_from_its_field_names() -> None:
    view = from_fields(LineView, billing_pb2.QuoteLine(model="veo", count=2, unit_price=5))

    assert view == LineView(model="veo", count=2)
