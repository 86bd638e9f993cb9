"""Buyer and operator texts go through i18n; the browser's language picks Simplified Chinese or English."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

PO = Path(__file__).resolve().parents[2] / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def test_browser_language_picks_the_catalog(client, product):
    zh = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert '<html lang="zh-hans">' in zh
    assert "商品列表" in zh and "订单查询" in zh
    en = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="en">' in en and "Find my order" in en


def test_buyer_can_switch_language(client, product):
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    page = client.get(f"/p/{product.slug}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "查询密码" in page and "立即购买" in page


def test_every_message_has_a_chinese_translation():
    entries = PO.read_text(encoding="utf-8").split("\n\n")[1:]
    untranslated = [e for e in entries if e.rstrip().endswith('msgstr ""') or "#, fuzzy" in e]
    assert untranslated == []


def test_mail_goes_out_in_the_language_the_buyer_shopped_in(client, product):
    from django.core import mail

    from cardshop.models import Order
    from cardshop.services.notifications import order_delivery_email_send

    client.post(
        f"/p/{product.slug}/",
        {"quantity": 1, "email": "zh@example.com", "query_password": "secret1"},
        HTTP_ACCEPT_LANGUAGE="zh-CN",
    )
    order = Order.objects.get()
    assert order.language == "zh-hans"
    Order.objects.filter(pk=order.pk).update(state="delivered")
    assert order_delivery_email_send(order_id=order.pk)
    assert mail.outbox[0].subject == f"您的订单 {order.order_no} 已发货"
