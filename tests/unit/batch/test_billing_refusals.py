"""Billing's refusals in the batch service's terms: only billing's unknown model is read as a
model that left the price list (which rejects a stored batch for good)."""

from __future__ import annotations

import grpc

from libs.errors import ErrorCategory, ServiceError
from libs.rpc.errors import RemoteError
from services.batch.adapters.billing_client import _refused
from services.batch.domain.errors import ModelUnavailable


def test_billing_unknown_model_is_model_unavailable_with_its_message_and_details() -> None:
    refused = _refused(
        RemoteError(
            grpc.StatusCode.INVALID_ARGUMENT, "validation_error", "unknown model 'veo-9'", {"model": "veo-9"}
        )
    )
    assert isinstance(refused, ModelUnavailable)
    assert (refused.reason, refused.message, refused.details) == (
        "validation_error",
        "unknown model 'veo-9'",
        {"model": "veo-9"},
    )


def test_other_refusals_that_name_a_model_stay_what_they_are() -> None:
    # Billing's "count must be positive" names the model and the field: not a withdrawn model.
    refused = _refused(
        RemoteError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "validation_error",
            "count must be positive",
            {"field": "count", "model": "sora-2"},
        )
    )
    assert isinstance(refused, ServiceError) and not isinstance(refused, ModelUnavailable)
    assert (refused.category, refused.reason, refused.details) == (
        ErrorCategory.INVALID_ARGUMENT,
        "validation_error",
        {"field": "count", "model": "sora-2"},
    )
