"""Alerts to merchants: a sale, a refund, low stock, by email and by a Telegram bot message (Bot API
`sendMessage`), each switchable in the merchant's alert settings.

An alert is made from a merchant event in the publisher's transaction (`merchant_alerts_queue`, one row per
channel, unique per event and channel) and handed to the worker after commit; the send is made with no lock or
transaction open, after the alert is claimed (its next attempt moved past the call's longest duration), so the
sweeper does not send it twice meanwhile. A refusal that a retry cannot cure (a revoked token, an unknown chat, a
bot the merchant blocked) fails the alert at once; a throttle (429) waits what Telegram asks; anything else is
tried again on a short ladder, then failed. The alert log keeps each one's state and last error.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from cardshop import jobs
from cardshop.models import Product, WebhookEvent
from cardshop.models.merchant_alerts import (
    ALERT_OF_EVENT,
    AlertChannel,
    AlertKind,
    AlertState,
    MerchantAlert,
    MerchantAlertSettings,
)
from core.audit import audit_record
from core.models import Merchant
from core.money import Money

log = logging.getLogger(__name__)

RETRY_SCHEDULE = (0, 30, 300, 1800, 7200)  # seconds before attempt 1, 2, ...; after the last, failed
CLAIM = timedelta(seconds=60)
TIMEOUT = (3.0, 10.0)


class AlertRefused(Exception):
    """The channel refused the alert for good (retrying sends the same refusal)."""


class AlertLater(Exception):
    """Not sent this time; `after` seconds is how long the channel asked us to wait (None: our own ladder)."""

    def __init__(self, message: str, after: int | None = None) -> None:
        super().__init__(message)
        self.after = after


def merchant_alerts_queue(events: list[WebhookEvent]) -> list[MerchantAlert]:
    """In the caller's transaction: an alert per channel each event's merchant wants, sent after commit."""
    wanted = [e for e in events if e.type in ALERT_OF_EVENT]
    if not wanted:
        return []
    chosen = {
        s.merchant_id: s for s in MerchantAlertSettings.objects.filter(merchant_id__in={e.merchant_id for e in wanted})
    }
    now = timezone.now()
    alerts = [
        MerchantAlert(
            merchant_id=e.merchant_id, event=e, channel=channel, kind=ALERT_OF_EVENT[e.type], next_attempt_at=now
        )
        for e in wanted
        if e.merchant_id in chosen
        for channel in AlertChannel.values
        if chosen[e.merchant_id].wants(channel, ALERT_OF_EVENT[e.type])
    ]
    MerchantAlert.objects.bulk_create(alerts)
    for alert in alerts:
        jobs.merchant_alert_send(alert.pk)
    return alerts


def alert_text(alert: MerchantAlert) -> tuple[str, str]:
    """(subject, text) in the shop's language, from the event's payload (which never holds a card secret)."""
    data = alert.event.payload.get("data", {})
    with translation.override(settings.LANGUAGE_CODE):
        if alert.kind == AlertKind.LOW_STOCK:
            facts = {"product": data.get("name", ""), "stock": data.get("stock", 0)}
            return _("Low stock: %(product)s") % facts, _(
                "Low stock: %(product)s has %(stock)s codes left. Upload more in your console or through the API."
            ) % facts
        amount = (data.get("refund") or {}).get("amount") or data.get("amount") or {}  # a part: what went back
        product = Product.objects.filter(pk=data.get("product")).values_list("name", flat=True).first() or ""
        facts = {
            "product": product,
            "quantity": data.get("quantity", 1),
            "amount": Money(int(amount.get("amount_minor", 0)), amount.get("currency", "CNY")).display(),
            "order": data.get("id", ""),
        }
        if alert.kind == AlertKind.SALE:
            return _("New sale: %(amount)s") % facts, _(
                "New sale: %(product)s × %(quantity)s, %(amount)s. Order %(order)s."
            ) % facts
        return _("Refunded: %(amount)s") % facts, _("Refunded: order %(order)s, %(amount)s (%(product)s).") % facts


def _claim(alert_id: int, now: datetime) -> MerchantAlert | None:
    with transaction.atomic(durable=True):
        alert = (
            MerchantAlert.objects.filter(pk=alert_id, state=AlertState.PENDING, next_attempt_at__lte=now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("event")
            .first()
        )
        if alert is None:
            return None
        alert.next_attempt_at = now + CLAIM
        alert.save(update_fields=["next_attempt_at"])
    return alert


def _send_email(alert: MerchantAlert, chosen: MerchantAlertSettings, subject: str, text: str) -> None:
    to = chosen.email or Merchant.objects.filter(pk=alert.merchant_id).values_list("email", flat=True).first()
    if not to:
        raise AlertRefused("no email address to send to")
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    except Exception as exc:  # the SMTP server's trouble: try again later
        raise AlertLater(f"{type(exc).__name__}: {exc}") from exc


def _send_telegram(chosen: MerchantAlertSettings, text: str) -> None:
    url = f"{settings.CARDSHOP_TELEGRAM_API.rstrip('/')}/bot{chosen.telegram_bot_token}/sendMessage"
    body = {"chat_id": chosen.telegram_chat_id, "text": text, "disable_web_page_preview": True}
    try:
        answer = requests.post(url, json=body, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        raise AlertLater(f"{type(exc).__name__}") from exc  # not the URL: it holds the bot's token
    try:
        reply = answer.json()
    except ValueError:
        reply = {}
    if answer.status_code == 200 and reply.get("ok") is True:
        return
    description = str(reply.get("description") or f"HTTP {answer.status_code}")[:250]
    if answer.status_code == 429:
        raise AlertLater(description, after=int((reply.get("parameters") or {}).get("retry_after") or 30))
    if answer.status_code in (400, 401, 403, 404):
        raise AlertRefused(description)
    raise AlertLater(description)


def merchant_alert_send(*, alert_id: int) -> str:
    """Try one due alert once; its state after the try ("skipped" when it was not due or is being sent)."""
    now = timezone.now()
    alert = _claim(alert_id, now)
    if alert is None:
        return "skipped"
    chosen = MerchantAlertSettings.objects.filter(merchant_id=alert.merchant_id).first()
    error, after = "", None
    try:
        if chosen is None or not chosen.wants(alert.channel, alert.kind):
            raise AlertRefused("switched off since it was made")
        subject, text = alert_text(alert)
        if alert.channel == AlertChannel.EMAIL:
            _send_email(alert, chosen, subject, text)
        else:
            _send_telegram(chosen, text)
        state = AlertState.SENT
    except AlertRefused as exc:
        state, error = AlertState.FAILED, str(exc)
    except AlertLater as exc:
        state, error, after = AlertState.PENDING, str(exc), exc.after
    with transaction.atomic(durable=True):
        alert = MerchantAlert.objects.select_for_update(of=("self",)).get(pk=alert_id)
        alert.attempts += 1
        alert.last_error = error[:300]
        if state == AlertState.PENDING and alert.attempts >= len(RETRY_SCHEDULE):
            state = AlertState.FAILED
        alert.state = state
        if state == AlertState.PENDING:
            wait = after if after is not None else RETRY_SCHEDULE[alert.attempts]
            alert.next_attempt_at = now + timedelta(seconds=wait)
        else:
            alert.next_attempt_at = None
            alert.sent_at = now if state == AlertState.SENT else None
        alert.save(update_fields=["attempts", "last_error", "state", "next_attempt_at", "sent_at"])
    if state == AlertState.FAILED:
        log.warning("alert %s to merchant %s by %s failed: %s", alert_id, alert.merchant_id, alert.channel, error)
    return state


def merchant_alerts_due(*, limit: int = 200) -> int:
    """The sweeper: hand every due alert to the worker (lost hand-overs and retries whose time has come)."""
    due = list(
        MerchantAlert.objects.filter(state=AlertState.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    with transaction.atomic():
        for alert_id in due:
            jobs.merchant_alert_send(alert_id)
    return len(due)


def merchant_alert_settings_save(*, merchant_id: int, fields: dict, actor: str) -> MerchantAlertSettings:
    """Create or change where the merchant's alerts go (the form validated `fields`); audited, the token never
    written to the audit row. Joins the admin's own transaction when called from it."""
    with transaction.atomic():
        chosen, _made = MerchantAlertSettings.objects.select_for_update().get_or_create(merchant_id=merchant_id)
        for name, value in fields.items():
            setattr(chosen, name, value)
        chosen.full_clean()
        chosen.save()
        shown = {k: v for k, v in fields.items() if k != "telegram_bot_token"}
        audit_record(actor=actor, action="merchant_alerts_set", target=f"merchant:{merchant_id}", **shown)
    return chosen
