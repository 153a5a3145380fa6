"""Verifying a webhook and reading it as a typed event (needs the `[webhooks]` extra).

    from reelbatch_client.webhooks import verify_event
    event = verify_event(request_body, request_headers, secret)   # raises InvalidSignature
    if event.type == "batch.completed": ...

Reelbatch signs every webhook the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
`webhook-signature`); the check, including the 5-minute replay window, is the `standardwebhooks`
library's. The secret is the tenant's signing secret (`Client.signing_secret()`) for a batch's
`webhook_url`, or the endpoint's own (`create_webhook_endpoint`) for a registered endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field, TypeAdapter

from reelbatch_client.errors import ReelbatchError
from reelbatch_client.models import WebhookEvent

try:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError("webhook verification needs: pip install 'reelbatch-client[webhooks]'") from missing

_EVENT = TypeAdapter[WebhookEvent](Annotated[WebhookEvent, Field(discriminator="type")])


class InvalidSignature(ReelbatchError):
    """The body was not signed with this secret, was altered, or is outside the replay window."""


def verify(body: bytes | str, headers: Mapping[str, str], secret: str) -> None:
    """Raises `InvalidSignature` unless `body` carries a valid signature of `secret`."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        Webhook(secret).verify(body, lowered, json_parse=False)
    except WebhookVerificationError as error:
        raise InvalidSignature(str(error)) from error


def parse_event(body: bytes | str) -> WebhookEvent:
    """The typed event of a (verified) body."""
    return _EVENT.validate_json(body)


def verify_event(body: bytes | str, headers: Mapping[str, str], secret: str) -> WebhookEvent:
    """Verifies the signature, then reads the body as a typed event."""
    verify(body, headers, secret)
    return parse_event(body)
