"""Merchant alerts (issue 14): a sale, a refund and low stock reach the merchant by email and by a Telegram bot
message sent to a loopback Bot API simulator, each switchable; sent once; a throttle waits what Telegram asks, a
refusal no retry can cure fails at once, anything else is retried and then failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from cardshop.models import CardSecret, MerchantAlert, MerchantAlertSettings
from cardshop.models.merchant_alerts import AlertState
from cardshop.services.merchant_alerts import RETRY_SCHEDULE, merchant_alert_send, merchant_alerts_due
from cardshop.simulators.telegram_bot import TelegramBotSimulator
from tests.cardshop.api.conftest import paid_via_api, publish


@pytest.fixture(scope="module")
def bot_api():
    sim = TelegramBotSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def alerts(bot_api, settings, shop_a):
    """Merchant A wants every alert, by email and on Telegram; shop_a's stock is low after 1 sale (3 codes)."""
    settings.CARDSHOP_TELEGRAM_API = bot_api.base_url
    settings.CARDSHOP_LOW_STOCK_THRESHOLD = 2
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    bot_api.sent.clear()
    bot_api.faults.throttle = bot_api.faults.fail_5xx = 0
    token, chat_id = bot_api.new_bot()
    chosen = MerchantAlertSettings.objects.create(
        merchant=shop_a.merchant, email="owner@shop.example", telegram_bot_token=token, telegram_chat_id=chat_id
    )
    return chosen


def test_a_sale_and_its_low_stock_reach_the_merchant_by_mail_and_telegram(
    api, shop_a, epay_sim, client, alerts, bot_api, django_capture_on_commit_callbacks
):
    order_no = paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    texts = bot_api.messages_to(alerts.telegram_chat_id)
    assert texts == [
        f"New sale: {shop_a.name} × 1, {shop_a.price_label}. Order {order_no}.",
        f"Low stock: {shop_a.name} has 2 codes left. Upload more in your console or through the API.",
    ]
    assert [(m.to, m.subject) for m in mail.outbox if m.to == ["owner@shop.example"]] == [
        (["owner@shop.example"], f"New sale: {shop_a.price_label}"),
        (["owner@shop.example"], f"Low stock: {shop_a.name}"),
    ]
    sold = CardSecret.objects.get(order__order_no=order_no).secret
    assert not any(sold in text for text in texts) and not any(sold in m.body for m in mail.outbox)
    assert set(MerchantAlert.objects.values_list("state", "attempts")) == {(AlertState.SENT, 1)}
    publish(django_capture_on_commit_callbacks)  # published once: nothing new
    assert merchant_alert_send(alert_id=MerchantAlert.objects.first().pk) == "skipped"  # sent once
    assert len(bot_api.sent) == 2


def test_a_refund_is_told(api, shop_a, epay_sim, client, alerts, bot_api, django_capture_on_commit_callbacks):
    alerts.telegram_on_sale = alerts.email_on_sale = alerts.email_on_low_stock = alerts.telegram_on_low_stock = False
    alerts.save()
    order_no = paid_via_api(api, shop_a, epay_sim, client)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"/api/v1/orders/{order_no}/refund/", {}, format="json").status_code == 202
    publish(django_capture_on_commit_callbacks)
    assert bot_api.messages_to(alerts.telegram_chat_id) == [
        f"Refunded: order {order_no}, {shop_a.price_label} ({shop_a.name})."
    ]
    assert [m.subject for m in mail.outbox if m.to == ["owner@shop.example"]] == [f"Refunded: {shop_a.price_label}"]


def test_each_alert_is_switchable_and_none_without_settings(
    api, shop_a, epay_sim, client, alerts, bot_api, django_capture_on_commit_callbacks
):
    alerts.email_on_sale, alerts.telegram_on_low_stock = False, False
    alerts.save()
    paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    assert sorted(MerchantAlert.objects.values_list("kind", "channel")) == [
        ("low_stock", "email"),
        ("sale", "telegram"),
    ]

    alerts.delete()
    paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    assert MerchantAlert.objects.count() == 2  # no settings: no alerts


def test_telegram_without_a_token_is_not_tried(
    api, shop_a, epay_sim, client, alerts, django_capture_on_commit_callbacks
):
    alerts.telegram_bot_token = ""
    alerts.save()
    paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    assert set(MerchantAlert.objects.values_list("channel", flat=True)) == {"email"}


def test_a_throttle_waits_what_telegram_asks(
    api, shop_a, epay_sim, client, alerts, bot_api, django_capture_on_commit_callbacks
):
    alerts.email_on_sale = alerts.email_on_low_stock = alerts.telegram_on_low_stock = False
    alerts.save()
    bot_api.faults.throttle, bot_api.faults.retry_after = 1, 7
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        paid_via_api(api, shop_a, epay_sim, client)
        publish(django_capture_on_commit_callbacks)
        alert = MerchantAlert.objects.get()
        assert (alert.state, alert.attempts, alert.next_attempt_at) == ("pending", 1, start + timedelta(seconds=7))
        assert "Too Many Requests" in alert.last_error
        with django_capture_on_commit_callbacks(execute=True):
            assert merchant_alerts_due() == 0  # not due yet
        clock.shift(7)
        with django_capture_on_commit_callbacks(execute=True):
            assert merchant_alerts_due() == 1
    alert.refresh_from_db()
    assert (alert.state, alert.attempts) == ("sent", 2) and len(bot_api.messages_to(alerts.telegram_chat_id)) == 1


def test_a_revoked_token_fails_at_once(
    api, shop_a, epay_sim, client, alerts, bot_api, django_capture_on_commit_callbacks
):
    alerts.email_on_sale = alerts.email_on_low_stock = alerts.telegram_on_low_stock = False
    alerts.save()
    del bot_api.bots[alerts.telegram_bot_token]  # the merchant revoked it at @BotFather
    paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    alert = MerchantAlert.objects.get()
    assert (alert.state, alert.attempts, alert.last_error) == ("failed", 1, "Unauthorized")
    assert alerts.telegram_bot_token not in alert.last_error


def test_telegram_down_is_retried_on_the_ladder_then_failed(
    api, shop_a, epay_sim, client, alerts, bot_api, django_capture_on_commit_callbacks
):
    alerts.email_on_sale = alerts.email_on_low_stock = alerts.telegram_on_low_stock = False
    alerts.save()
    bot_api.faults.fail_5xx = len(RETRY_SCHEDULE)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        paid_via_api(api, shop_a, epay_sim, client)
        publish(django_capture_on_commit_callbacks)
        for wait in RETRY_SCHEDULE[1:]:
            clock.shift(wait)
            with django_capture_on_commit_callbacks(execute=True):
                merchant_alerts_due()
    alert = MerchantAlert.objects.get()
    assert (alert.state, alert.attempts, alert.last_error) == ("failed", len(RETRY_SCHEDULE), "Bad Gateway")
    assert bot_api.sent == []


def test_an_operator_sets_alerts_in_the_admin_and_the_token_stays_write_only(client, shop_a, bot_api):
    from django.urls import reverse

    from core.models import AuditEvent
    from tests.operators.auth import operator_login, staff_user

    op = operator_login(client, staff_user("admin", superuser=True))
    token, chat_id = bot_api.new_bot()
    form = {
        "merchant": shop_a.merchant.pk,
        "email": "",
        "email_on_sale": "on",
        "telegram_bot_token": token,
        "telegram_chat_id": chat_id,
        "telegram_on_sale": "on",
        "telegram_on_low_stock": "on",
    }
    bad = op.post(reverse("admin:cardshop_merchantalertsettings_add"), {**form, "telegram_bot_token": "../sendX"})
    assert bad.status_code == 200 and not MerchantAlertSettings.objects.exists()  # refused, with the form again
    made = op.post(reverse("admin:cardshop_merchantalertsettings_add"), form)
    assert made.status_code == 302, made.content.decode()[:2000]
    chosen = MerchantAlertSettings.objects.get()
    assert (
        chosen.telegram_bot_token == token and chosen.wants("telegram", "sale") and not chosen.wants("email", "refund")
    )
    page = op.get(reverse("admin:cardshop_merchantalertsettings_change", args=[chosen.pk])).content.decode()
    assert token not in page and token.split(":")[1] not in page
    kept = op.post(
        reverse("admin:cardshop_merchantalertsettings_change", args=[chosen.pk]),
        {**form, "telegram_bot_token": "", "email_on_refund": "on"},
    )
    assert kept.status_code == 302
    chosen.refresh_from_db()
    assert chosen.telegram_bot_token == token and chosen.email_on_refund  # empty kept the token
    audits = list(AuditEvent.objects.filter(action="merchant_alerts_set"))
    assert len(audits) == 2 and not any(token in str(a.detail) for a in audits)
