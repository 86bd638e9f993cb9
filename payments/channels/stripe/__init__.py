"""Stripe channel: Checkout Sessions (a provider-hosted payment page), refunds, signed webhook events (SDK `stripe`)."""
