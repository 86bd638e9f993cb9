"""Stripe channel: PaymentIntents confirmed by a card form, refunds, signed webhook events (SDK `stripe`)."""
