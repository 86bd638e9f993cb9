"""Channel layer: adapters over provider protocols, the payment FSM, verified idempotent callbacks.

Knows payments, never orders: a payment points up at its order only by the plain `reference` string.
Other apps use `payments.facade` and `payments.contracts` only.
"""
