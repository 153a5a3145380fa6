"""The one way billing builds its Stripe API client (Checkout and off-session payments alike)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import stripe


class LazyStripeClient:
    """A `stripe.StripeClient` made on first use: the SDK costs ~0.5 s of CPU to import (see
    stripe_webhooks), which a billing replica that never sells anything should not pay."""

    def __init__(
        self, secret_key: str, api_base: str | None, *, timeout_seconds: float, network_retries: int
    ) -> None:
        self._secret_key = secret_key
        self._api_base = api_base
        self._timeout_seconds = timeout_seconds
        self._network_retries = network_retries
        self._client: stripe.StripeClient | None = None

    def get(self) -> stripe.StripeClient:
        """The client (built on the first call); `api_base` points it at a local fake in tests."""
        if self._client is None:
            import stripe

            self._client = stripe.StripeClient(
                self._secret_key,
                base_addresses={"api": self._api_base} if self._api_base else None,
                http_client=stripe.HTTPXClient(timeout=self._timeout_seconds),
                max_network_retries=self._network_retries,
            )
        return self._client
