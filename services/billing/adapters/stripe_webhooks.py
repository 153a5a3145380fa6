"""Stripe webhook signatures, verified with the official `stripe` library (the only Stripe code)."""

from __future__ import annotations

from collections.abc import Mapping

from services.billing.domain.payments import InvalidSignature


class StripeWebhookVerifier:
    """Checks `Stripe-Signature` (HMAC-SHA256 over `t.payload`, within a tolerance) and decodes the event."""

    def __init__(self, secret: str | None, tolerance_seconds: int) -> None:
        self._secret = secret
        self._tolerance_seconds = tolerance_seconds

    def verify(self, payload: bytes, signature_header: str) -> Mapping[str, object]:
        """The event document of a correctly signed, recent delivery; InvalidSignature otherwise."""
        if not self._secret:
            raise InvalidSignature("no Stripe webhook secret is configured")
        if not signature_header:
            raise InvalidSignature("the Stripe-Signature header is missing")
        # Imported here: only a Stripe delivery needs it, and importing it (with urllib3 and the
        # rest of the SDK) costs ~0.4-0.7 s of CPU at every billing process's start.
        import stripe

        try:
            event = stripe.Webhook.construct_event(
                payload, signature_header, self._secret, tolerance=self._tolerance_seconds
            )
        except stripe.SignatureVerificationError as error:
            raise InvalidSignature(str(error.user_message or "signature mismatch")) from None
        except (ValueError, UnicodeDecodeError):
            raise InvalidSignature("the payload is not a JSON document") from None
        document: dict[str, object] = event.to_dict()
        return document
