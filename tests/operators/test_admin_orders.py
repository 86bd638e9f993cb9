"""The order pages for operators: read-only, a timeline in words, badges, a payment method column, CSV export;
refund states and breaker buttons named for what they are; card secrets labelled by id and their own tail."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cardshop.admin_display import event_text
from cardshop.models import CardSecret, Order, OrderEvent, OrderState
from cardshop.services import refunds
from cardshop.services.checkout import order_payment_start
from core.money import Money
from payments.contracts import PaymentStatus, PaymentView, RefundStatus, RefundView
from payments.models import Payment
from tests.cardshop.helpers import buy
from tests.operators.auth import operator_login, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def op(db) -> Client:
    return operator_login(Client(), staff_user("op", superuser=True))


def cell(page: str, field: str) -> list[str]:
    """The texts of a change list's column, whatever classes the theme adds to its cells."""
    found = re.findall(rf'<td class="field-{field}[ "][^>]*>(.*?)</td>', page, re.S)
    return [re.sub(r"<[^>]+>", "", text).strip() for text in found]


def change_url(order: Order) -> str:
    return reverse("admin:cardshop_order_change", args=[order.pk])


def test_the_order_page_has_no_save_buttons_and_a_post_changes_nothing(op, paid_order):
    page = op.get(change_url(paid_order)).content.decode()
    assert paid_order.order_no in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    resp = op.post(change_url(paid_order), {"state": "refunded", "quantity": 3, "_save": "Save"})
    assert resp.status_code == 403
    fresh = Order.objects.get(pk=paid_order.pk)
    assert (fresh.state, fresh.quantity) == (OrderState.DELIVERED, paid_order.quantity)


def test_a_view_only_operator_reads_the_order_page_too(viewer, paid_order):
    assert viewer.get(change_url(paid_order)).status_code == 200
    assert viewer.get(reverse("admin:cardshop_order_changelist")).status_code == 200


def test_the_timeline_says_in_words_what_happened(op, paid_order, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        view = refunds.order_refund_request(order_no=paid_order.order_no, actor="alice", reason="buyer asked")
    payment = Payment.objects.get(reference=paid_order.order_no)
    page = op.get(change_url(paid_order)).content.decode()
    assert f"Order created: 1 × {paid_order.product.name}, 9.90 CNY" in page
    assert f"Paid through epay, trade {payment.out_trade_no}, 9.90 CNY" in page
    assert "Delivered 1 code" in page
    assert f"Refund {view.refund_no} of 9.90 CNY requested by alice: buyer asked" in page
    assert f"Refunded 9.90 CNY (refund {view.refund_no})" in page
    assert '"out_trade_no"' not in page and "&quot;out_trade_no&quot;" not in page  # no raw JSON detail


def _pay(trade: str, channel: str = "alipay") -> PaymentView:
    return PaymentView(trade, "O1", channel, PaymentStatus.SUCCEEDED, Money(990, "CNY"), "", "")


def _refund(no: str, trade: str) -> RefundView:
    return RefundView(no, "alipay", trade, "O1", RefundStatus.SUCCEEDED, Money(990, "CNY"))


@pytest.mark.parametrize(
    ("kind", "detail", "text"),
    [
        (
            "extra_payment",
            {"out_trade_no": "P2", "refund_no": "R2"},
            "Second payment P2 through Alipay, 9.90 CNY: refund R2 started automatically",
        ),
        ("extra_payment", {"out_trade_no": "P2", "held": True}, "held for an operator (automatic refunds are off)"),
        ("extra_payment", {"out_trade_no": "P2", "held": "no_refunds"}, "the channel cannot refund it (no_refunds)"),
        ("extra_payment_refund_succeeded", {"refund_no": "R2"}, "Second payment P2 refunded automatically"),
        ("extra_payment_refund_failed", {"refund_no": "R2"}, "Refund R2 of the second payment P2 failed"),
        ("undeliverable", {"missing": 2}, "Paid, but 2 codes short in stock"),
        ("expired", {"released": 1}, "Expired unpaid; 1 code released to stock"),
        ("refund_failed", {"refund_no": "R2"}, "Refund R2 failed: the order is paid again"),
        ("awaiting_manual_delivery", {}, "Waiting for manual delivery by an operator"),
    ],
)
def test_each_event_kind_reads_as_a_sentence(product, kind, detail, text):
    order = buy(product)
    event = OrderEvent(order=order, kind=kind, actor="system", detail=detail)
    said = event_text(event, order, {"P2": _pay("P2")}, {"R2": _refund("R2", "P2")})
    assert text in said


def test_order_list_shows_badge_amount_method_and_created_without_a_query_per_row(
    op, paid_order, product, django_assert_max_num_queries
):
    url = reverse("admin:cardshop_order_changelist")
    page = op.get(url).content.decode()
    assert '<span class="state-badge state-delivered">delivered</span>' in page
    assert "9.90 CNY" in page and cell(page, "channel_display") == ["epay"]
    assert "admin/cardshop-orders.css" in page
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        op.get(url)
    for _ in range(3):
        order = buy(product, email="b@example.com")
        order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with CaptureQueriesContext(connection) as four:
        page = op.get(url).content.decode()
    assert len(four) == len(one)
    assert page.count('class="state-badge state-pending"') == 3


def _csv(op, query: str = "") -> list[list[str]]:
    resp = op.get(reverse("admin:cardshop_order_export") + query)
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))


def test_csv_export_lists_the_filtered_orders(op, paid_order, product):
    pending = buy(product, qty=2, email="carol@example.com")
    rows = _csv(op)
    assert rows[0] == ["order_no", "created", "state", "product", "quantity", "amount", "currency", "email", "channel"]
    by_no = {r[0]: r for r in rows[1:]}
    assert set(by_no) == {paid_order.order_no, pending.order_no}
    paid = by_no[paid_order.order_no]
    assert paid[2:] == ["delivered", product.name, "1", "9.90", "CNY", "a***@example.com", "epay"]
    assert by_no[pending.order_no][2:] == ["pending", product.name, "2", "19.80", "CNY", "ca***@example.com", ""]
    assert "carol@example.com" not in str(rows)

    assert [r[0] for r in _csv(op, "?state__exact=pending")[1:]] == [pending.order_no]
    Order.objects.filter(pk=pending.pk).update(created_at=timezone.now() - timedelta(days=40))
    # The query string the date filter's "Past 7 days" link carries (an aware local midnight).
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    week = _csv(op, "?" + urlencode({"created_at__gte": str(midnight - timedelta(days=7))}))
    assert [r[0] for r in week[1:]] == [paid_order.order_no]


def test_the_list_links_the_export_with_its_filters(op, paid_order):
    page = op.get(reverse("admin:cardshop_order_changelist") + "?state__exact=delivered").content.decode()
    assert reverse("admin:cardshop_order_export") + "?state__exact=delivered" in page
    assert "Export these orders (CSV)" in page


def test_the_date_filter_offers_today_the_last_7_days_and_this_month(op, paid_order):
    page = op.get(reverse("admin:cardshop_order_changelist")).content.decode()
    for choice in ("Today", "Past 7 days", "This month"):
        assert choice in page


def test_refund_states_are_named_as_refund_states(op, paid_order, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        refunds.order_refund_request(order_no=paid_order.order_no, actor="op", reason="buyer asked")
    listing = op.get(reverse("admin:payments_refund_changelist")).content.decode()
    assert "refund requested" in listing
    assert ">requested<" not in listing
    assert "refund requested" in op.get(change_url(paid_order)).content.decode()


def test_breaker_buttons_say_what_they_do(op, epay_account):
    page = op.get(reverse("admin:payments_channel_health")).content.decode()
    buttons = [re.sub(r"\s+", " ", text).strip() for text in re.findall(r"<button[^>]*>(.*?)</button>", page, re.S)]
    assert {"Stop using", "Use", "Automatic"} <= set(buttons)
    assert "Open" not in buttons and "Close" not in buttons


def test_card_secrets_are_labelled_by_id_and_their_own_last_characters(op, product):
    secret = CardSecret.objects.filter(product=product).order_by("pk").first()
    label = f"#{secret.pk} ····{secret.secret[-4:]}"
    assert str(secret) == label
    listing = op.get(reverse("admin:cardshop_cardsecret_changelist")).content.decode()
    assert f"····{secret.secret[-4:]}" in listing and secret.secret not in listing
    short = CardSecret(pk=7, secret="AB12")
    assert str(short) == "#7 ····12"  # never more than half of a short secret


def test_a_declined_try_stays_listed_on_the_order_page(op, paid_order, product):
    order = buy(product, email="d@example.com")
    declined = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    Payment.objects.filter(out_trade_no=declined.out_trade_no).update(status="failed", error_code="card_declined")
    page = op.get(change_url(order)).content.decode()
    assert declined.out_trade_no in page and "card_declined" in page and "failed" in page


def test_the_export_needs_the_order_view_permission(paid_order, granted):
    stranger = operator_login(Client(), staff_user("stranger", "payments.view_payment"))
    assert stranger.get(reverse("admin:cardshop_order_export")).status_code == 403
    assert granted().get(reverse("admin:cardshop_order_export")).status_code == 200


def test_the_breaker_state_is_said_in_words(op, epay_account):
    url = reverse("admin:payments_channel_health")
    assert "in use (automatic)" in op.get(url).content.decode()
    op.post(url, {"account": epay_account.pk, "action": "open"})
    assert "not used (set by an operator)" in op.get(url).content.decode()


def test_the_product_list_counts_free_reserved_and_sold_codes(op, paid_order, product):
    buy(product, qty=2, email="r@example.com")  # reserves two codes while it waits for payment
    page = op.get(reverse("admin:cardshop_product_changelist")).content.decode()
    assert cell(page, "stock_free") == ["2"]
    assert cell(page, "stock_reserved") == ["2"]
    assert cell(page, "stock_sold") == ["1"]
    assert f'<a class="button" href="/admin/cardshop/product/{product.pk}/import/">Import secrets</a>' in page
