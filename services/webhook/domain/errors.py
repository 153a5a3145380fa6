"""Refusals of the webhook service, each with a stable reason."""

from __future__ import annotations

from libs.errors import ErrorCategory, InvalidArgument, NotFound, ServiceError


class UnsafeWebhookUrl(InvalidArgument):
    """The URL is not one we deliver to (scheme, or an address that would reach our own network)."""

    reason = "unsafe_webhook_url"


class UnknownEventType(InvalidArgument):
    """An endpoint asked for an event type that does not exist."""


class EndpointNotFound(NotFound):
    """No such endpoint for this tenant (another tenant's endpoint is not found either)."""

    reason = "endpoint_not_found"


class MessageNotFound(NotFound):
    """No such webhook message for this tenant."""

    reason = "message_not_found"


class EndpointAlreadyRegistered(ServiceError):
    """The tenant already has a live endpoint at this URL (its id is in `endpoint_id`): a second
    one would deliver every message twice."""

    category = ErrorCategory.ALREADY_EXISTS
    reason = "endpoint_already_registered"
