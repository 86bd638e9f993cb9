"""Celery entry points: each takes ids, calls one service, and is safe to run twice."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from celery import shared_task
from django.core.management import call_command
from django.utils import timezone

from cardshop.services import (
    merchant_alerts,
    merchant_api,
    notifications,
    orders,
    reconciliation,
    refunds,
    splits,
    webhooks,
)
from payments import facade as payments
from settlement import facade as settlement

log = logging.getLogger(__name__)


@shared_task(name="cardshop.order_delivery_notify", autoretry_for=(OSError,), retry_backoff=30, max_retries=8)
def order_delivery_notify_task(order_id: int) -> bool:
    return notifications.order_delivery_email_send(order_id=order_id)


@shared_task(name="cardshop.orders_expire_due")
def orders_expire_due_task() -> int:
    return orders.orders_expire_due()


@shared_task(name="cardshop.order_payments_close", autoretry_for=(OSError,), retry_backoff=30, max_retries=5)
def order_payments_close_task(order_no: str) -> int:
    return orders.order_payments_close(order_no=order_no)


@shared_task(name="cardshop.payments_sync_due")
def payments_sync_due_task() -> int:
    """The janitor: query payments still created/pending/unknown on their back-off ladder."""
    due = payments.payments_claim_due()
    newly = 0
    for out_trade_no in due:
        try:
            newly += orders.payment_sync(out_trade_no=out_trade_no)
        except Exception:  # one provider error must not stop the sweep; the next run retries
            log.exception("sync of %s failed", out_trade_no)
    return newly


@shared_task(name="cardshop.refund_submit", autoretry_for=(OSError,), retry_backoff=15, max_retries=5)
def refund_submit_task(refund_no: str) -> str:
    return refunds.refund_sync(refund_no=refund_no)


@shared_task(name="cardshop.refunds_sync_due")
def refunds_sync_due_task() -> int:
    return refunds.refunds_sync_due()


@shared_task(name="cardshop.split_submit", autoretry_for=(OSError,), retry_backoff=15, max_retries=5)
def split_submit_task(split_no: str) -> str:
    return splits.split_sync(split_no=split_no)


@shared_task(name="cardshop.splits_sync_due")
def splits_sync_due_task() -> int:
    return splits.splits_sync_due()


@shared_task(name="cardshop.order_delivery_emails_resend_missed")
def order_delivery_emails_resend_missed_task() -> int:
    return notifications.order_delivery_emails_resend_missed()


@shared_task(name="cardshop.order_refund_notify", autoretry_for=(OSError,), retry_backoff=30, max_retries=8)
def order_refund_notify_task(order_id: int) -> bool:
    return notifications.order_refund_email_send(order_id=order_id)


@shared_task(name="cardshop.order_refund_emails_resend_missed")
def order_refund_emails_resend_missed_task() -> int:
    return notifications.order_refund_emails_resend_missed()


@shared_task(name="cardshop.staff_sessions_clear")
def staff_sessions_clear_task() -> None:
    """Drop expired staff session rows (buyers' sessions are signed cookies and leave no row)."""
    call_command("clearsessions")


@shared_task(name="cardshop.ledger_check")
def ledger_check_task() -> int:
    """The nightly ledger invariant check; each run is stored (the admin shows the last). Returns the problems."""
    problems = settlement.ledger_check_nightly()
    if problems:
        log.error("ledger check found %d problem(s): see the last ledger check run in the admin", problems)
    return problems


@shared_task(name="cardshop.reconcile_yesterday")
def reconcile_yesterday_task() -> int:
    """Yesterday (shop time) of every account that publishes a statement, once providers have published theirs
    (Alipay from 09:00, WeChat from 10:00: this runs hourly from 10:00). A finished day is skipped; a day not
    published yet is tried at the next run. Returns how many lost trades were recovered."""
    now = timezone.localtime()
    if now.hour < 10:
        return 0
    day = now.date() - timedelta(days=1)
    recovered = 0
    for account_id in payments.channel_accounts_with("statement"):
        try:
            recovered += reconciliation.reconciliation_day(channel_account_id=account_id, day=day)
        except Exception:  # not published yet, or a broken file: the next run tries again
            log.warning("reconciliation of account %s for %s did not finish", account_id, day, exc_info=True)
    return recovered


@shared_task(name="cardshop.reconcile_day")
def reconcile_day_task(channel_account_id: int, day: str) -> int:
    """One account's day, started by an operator (settings.SETTLEMENT_RECONCILE_TASK); idempotent per day."""
    return reconciliation.reconciliation_day(channel_account_id=channel_account_id, day=date.fromisoformat(day))


@shared_task(name="cardshop.api_idempotency_sweep")
def api_idempotency_sweep_task() -> int:
    return merchant_api.idempotency_records_sweep()


@shared_task(name="cardshop.webhooks_publish")
def webhooks_publish_task() -> int:
    return webhooks.webhook_events_publish()


@shared_task(name="cardshop.webhook_deliver")
def webhook_deliver_task(delivery_id: int) -> str:
    return webhooks.webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task(name="cardshop.webhook_deliveries_due")
def webhook_deliveries_due_task() -> int:
    return webhooks.webhook_deliveries_due()


@shared_task(name="cardshop.merchant_alert_send")
def merchant_alert_send_task(alert_id: int) -> str:
    return merchant_alerts.merchant_alert_send(alert_id=alert_id)


@shared_task(name="cardshop.merchant_alerts_due")
def merchant_alerts_due_task() -> int:
    return merchant_alerts.merchant_alerts_due()
