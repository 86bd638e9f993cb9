"""Celery app and the beat schedule (code, not database rows)."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardshop.settings")

app = Celery("cardshop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    "orders-expire-due": {"task": "cardshop.orders_expire_due", "schedule": 30.0},
    # The janitor wakes often; each payment/refund carries its own back-off (payments/schedule.py).
    "payments-sync-due": {"task": "cardshop.payments_sync_due", "schedule": 10.0},
    "refunds-sync-due": {"task": "cardshop.refunds_sync_due", "schedule": 10.0},
    "splits-sync-due": {"task": "cardshop.splits_sync_due", "schedule": 10.0},
    "delivery-emails-resend-missed": {"task": "cardshop.order_delivery_emails_resend_missed", "schedule": 300.0},
    "refund-emails-resend-missed": {"task": "cardshop.order_refund_emails_resend_missed", "schedule": 300.0},
    # Pending money and reserves reach merchant available when due (release times are whole days: a minute is plenty).
    "settlement-releases-due": {"task": "settlement.releases_due", "schedule": 60.0},
    "settlement-payouts-create-due": {"task": "settlement.payouts_create_due", "schedule": 300.0},
    "settlement-payouts-resolve-due": {"task": "settlement.payouts_resolve_due", "schedule": 60.0},
    "staff-sessions-clear": {"task": "cardshop.staff_sessions_clear", "schedule": 24 * 3600.0},
    "api-idempotency-sweep": {"task": "cardshop.api_idempotency_sweep", "schedule": 3600.0},
    # Webhooks: the order timeline's outbox rows become events within seconds; due retries are handed over.
    "webhooks-publish": {"task": "cardshop.webhooks_publish", "schedule": 3.0},
    "webhook-deliveries-due": {"task": "cardshop.webhook_deliveries_due", "schedule": 30.0},
    "merchant-alerts-due": {"task": "cardshop.merchant_alerts_due", "schedule": 60.0},
    # Nightly at a quiet hour (Celery's time zone: UTC unless CELERY_TIMEZONE is set); each run is stored.
    "ledger-check": {"task": "cardshop.ledger_check", "schedule": crontab(hour=3, minute=30)},
    "reconcile-yesterday": {"task": "cardshop.reconcile_yesterday", "schedule": crontab(minute=20)},
}
