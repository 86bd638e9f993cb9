"""Reconciliation's automatic actions that reach across apps: a trade the provider took money for and our records
do not show paid (a lost callback) is queried and applied through the normal paid path, so its order is
delivered. Everything else a run finds waits for an operator in the admin."""

from __future__ import annotations

import logging
from datetime import date

from cardshop.services.orders import payment_sync
from payments import facade as payments
from settlement import facade as settlement

log = logging.getLogger(__name__)


def reconciliation_day(*, channel_account_id: int, day: date) -> int:
    """Reconcile the account's `day` (idempotent) and recover what it can. Returns how many trades were
    recovered (paid and delivered now)."""
    run = settlement.reconcile_day(channel_account_id=channel_account_id, day=day)
    recovered = 0
    for our_ref in settlement.recon_missing_payments(run_id=run.run_id):
        if not payments.payment_exists(out_trade_no=our_ref):
            continue  # a trade we never created: an operator looks
        try:
            paid = payment_sync(out_trade_no=our_ref)
        except Exception:  # one provider error must not stop the others; the exception stays open
            log.exception("reconciliation %s: query of %s failed", run.run_id, our_ref)
            continue
        if paid or payments.payment_succeeded(out_trade_no=our_ref):
            recovered += settlement.recon_exception_resolve(
                run_id=run.run_id,
                our_ref=our_ref,
                kind="missing_in_ledger",
                resolution="recovered: queried and applied through the paid path",
                actor="reconciliation",
            )
    return recovered
