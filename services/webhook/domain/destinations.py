"""Where we agree to send webhooks: the shared SSRF rule (`libs.outbound`), checked at
registration and again at delivery, its refusals spoken as the webhook service's own error."""

from __future__ import annotations

from collections.abc import Sequence

from libs.outbound import destinations as rule
from libs.outbound.destinations import DestinationPolicy as DestinationPolicy
from libs.outbound.destinations import IpAddress as IpAddress
from libs.outbound.destinations import OutboundTarget
from libs.outbound.destinations import is_forbidden_address as is_forbidden_address
from libs.outbound.destinations import literal_address as literal_address
from services.webhook.domain.errors import UnsafeWebhookUrl

# A URL split for delivery (the shared rule's target, under the name the webhook code uses).
WebhookTarget = OutboundTarget

_SUBJECT = "webhook URL"


def _webhook_refusal(refused: rule.UnsafeUrl) -> UnsafeWebhookUrl:
    return UnsafeWebhookUrl(refused.message, **refused.details)


def parse_target(url: str, policy: DestinationPolicy) -> WebhookTarget:
    """Checks the URL's shape and scheme (no DNS); raises UnsafeWebhookUrl."""
    try:
        return rule.parse_target(url, policy, _SUBJECT)
    except rule.UnsafeUrl as refused:
        raise _webhook_refusal(refused) from None


def normalized_host(host: str, url: str) -> str:
    """The host as delivery reaches it (see `libs.outbound.destinations.normalized_host`)."""
    try:
        return rule.normalized_host(host, url, _SUBJECT)
    except rule.UnsafeUrl as refused:
        raise _webhook_refusal(refused) from None


def check_resolved(target: WebhookTarget, addresses: Sequence[IpAddress], policy: DestinationPolicy) -> None:
    """Refuses a host that resolved to nothing, or to any address we must not reach."""
    try:
        rule.check_resolved(target, addresses, policy, _SUBJECT)
    except rule.UnsafeUrl as refused:
        raise _webhook_refusal(refused) from None
