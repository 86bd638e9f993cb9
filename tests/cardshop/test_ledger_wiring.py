"""Issue 11: the paid path books the ledger in its own transaction: a sale when the order is delivered (or paid and
waiting for manual delivery), suspense when it is undeliverable or a second payment, the sale out of suspense
when it is delivered later, and the reversal when a refund is final."""

import os
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from cardshop.models import DeliveryKind, Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import (
    order_delivery_retry,
    order_fulfil_manual,
    order_sale_book,
    orders_expire_due,
    payment_notification_handle,
)
from cardshop.services.refunds import order_refund_request, refund_sync
from cardshop.services.stock import card_secrets_import
from core.errors import DomainError
from core.parties import agent_create
from settlement.checks import ledger_check
from settlement.models import LedgerTransaction, SaleRelease
from tests.cardshop.helpers import as_lists, buy, signed_notify
from tests.conftest import make_product
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


@pytest.fixture
def shop(merchant, epay_account):
    """The worked example: 9.99 CNY, platform 500 bp + 0.10, agents 200 / 100 bp, reserve 1000 bp, channel 60 bp."""
    top = agent_create(name="Regional")
    agent = agent_create(name="City", parent_id=top.pk)
    merchant.agent = agent
    merchant.save(update_fields=["agent"])
    FeePlanFactory(merchant=merchant)
    epay_account.fee_rate_bp = 60
    epay_account.save(update_fields=["fee_rate_bp"])
    return merchant, agent, top, epay_account


def _lines(key):
    txn = LedgerTransaction.objects.get(idempotency_key=key)
    return {(e.account.party_kind, e.account.party_id, e.account.kind): e.amount_minor for e in txn.entries.all()}


def _notify(epay_sim, out_trade_no):
    return payment_notification_handle(
        channel_code="epay", params=as_lists(signed_notify(epay_sim, out_trade_no)), body=b""
    )


def _sale_lines(merchant, agent, top, account, merchant_kind="merchant_pending"):
    return {
        ("channel_account", account.pk, "channel_clearing"): 993,
        ("channel_account", account.pk, "channel_fee_expense"): 6,
        ("merchant", merchant.pk, merchant_kind): -839,
        ("merchant", merchant.pk, "merchant_reserve"): -100,
        ("agent", agent.pk, "agent_commission_payable"): -20,
        ("agent", top.pk, "agent_commission_payable"): -10,
        ("platform", 0, "platform_revenue"): -30,
    }


def test_a_delivered_order_books_its_sale_in_the_paid_transaction(shop, epay_sim):
    merchant, agent, top, account = shop
    product = make_product(merchant, secrets_count=2, price_minor=999)
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")

    assert _notify(epay_sim, payment.out_trade_no).newly_succeeded

    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    assert _lines(f"sale:{payment.out_trade_no}") == _sale_lines(merchant, agent, top, account)
    sale = LedgerTransaction.objects.get(idempotency_key=f"sale:{payment.out_trade_no}")
    assert sale.reference == order.order_no and sale.kind == "sale"
    release = SaleRelease.objects.get(sale=sale)
    assert (release.pending_minor, release.reserve_minor, release.pending_state) == (839, 100, "held")
    assert release.reserve_due_at == release.sold_at + timedelta(days=7)
    # A replayed callback books nothing more.
    assert _notify(epay_sim, payment.out_trade_no).duplicate
    assert LedgerTransaction.objects.count() == 1


def test_a_manual_order_books_its_sale_when_paid_and_fulfilment_books_nothing_more(shop, epay_sim):
    merchant, agent, top, account = shop
    product = make_product(merchant, secrets_count=0, kind=DeliveryKind.MANUAL, price_minor=999)
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    _notify(epay_sim, payment.out_trade_no)
    assert Order.objects.get(pk=order.pk).state == OrderState.PAID
    assert _lines(f"sale:{payment.out_trade_no}") == _sale_lines(merchant, agent, top, account)

    order_fulfil_manual(order_no=order.order_no, note="500 gems", actor="operator")

    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    assert list(LedgerTransaction.objects.values_list("idempotency_key", flat=True)) == [f"sale:{payment.out_trade_no}"]


def _undeliverable(merchant, epay_sim):
    product = make_product(merchant, secrets_count=1, price_minor=999)
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        orders_expire_due()
        buy(product, email="fast@example.com", ip="10.0.0.5")  # someone else takes the last secret
        epay_sim.pay(payment.out_trade_no)
        _notify(epay_sim, payment.out_trade_no)
    assert Order.objects.get(pk=order.pk).state == OrderState.UNDELIVERABLE
    return product, order, payment


def test_paid_but_undeliverable_goes_to_suspense_and_to_a_sale_when_delivered(shop, epay_sim):
    merchant, agent, top, account = shop
    product, order, payment = _undeliverable(merchant, epay_sim)
    held = LedgerTransaction.objects.get(idempotency_key=f"suspense:{payment.out_trade_no}")
    assert held.kind == "suspense" and held.memo == "undeliverable" and held.reference == order.order_no
    assert _lines(held.idempotency_key) == {
        ("channel_account", account.pk, "channel_clearing"): 993,
        ("channel_account", account.pk, "channel_fee_expense"): 6,
        ("platform", 0, "suspense"): -999,
    }
    assert not LedgerTransaction.objects.filter(kind="sale").exists()

    card_secrets_import(product_id=product.pk, text="RESTOCK-1")
    assert order_delivery_retry(order_no=order.order_no, actor="operator") is True

    sale_lines = _sale_lines(merchant, agent, top, account)
    del sale_lines[("channel_account", account.pk, "channel_clearing")]
    del sale_lines[("channel_account", account.pk, "channel_fee_expense")]
    sale_lines[("platform", 0, "suspense")] = 999  # suspense gives the gross to the split
    assert _lines(f"sale:{payment.out_trade_no}") == sale_lines
    assert LedgerTransaction.objects.count() == 2


def test_a_second_payment_goes_to_suspense_and_out_by_its_refund(
    shop, client, epay_sim, django_capture_on_commit_callbacks
):
    from payments.models import Payment, PaymentStatus

    merchant, agent, top, account = shop
    product = make_product(merchant, secrets_count=2, price_minor=999)
    order = buy(product)
    first = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    Payment.objects.filter(out_trade_no=first.out_trade_no).update(status=PaymentStatus.CLOSED, next_query_at=None)
    second = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with django_capture_on_commit_callbacks(execute=True):
        for payment in (second, first):
            epay_sim.faults.drop_notify = 1
            epay_sim.pay(payment.out_trade_no)
            assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"

    assert _lines(f"sale:{second.out_trade_no}") == _sale_lines(merchant, agent, top, account)
    held = LedgerTransaction.objects.get(idempotency_key=f"suspense:{first.out_trade_no}")
    assert held.memo == "second_payment"
    refund = LedgerTransaction.objects.get(kind="refund")  # the automatic refund of the second payment
    assert _lines(refund.idempotency_key) == {
        ("platform", 0, "suspense"): 999,
        ("channel_account", account.pk, "channel_clearing"): -993,  # epay returns its fee: 999 - 6 back
        ("channel_account", account.pk, "channel_fee_expense"): -6,
    }
    assert refund.reference == order.order_no


@pytest.mark.parametrize("returns_fee", [True, False], ids=["fee-returned", "fee-kept"])
def test_a_final_refund_reverses_the_sale_exactly(shop, epay_sim, returns_fee):
    merchant, agent, top, account = shop
    account.refund_returns_fee = returns_fee
    account.save(update_fields=["refund_returns_fee"])
    product = make_product(merchant, secrets_count=2, price_minor=999)
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    epay_sim.faults.drop_notify = 1
    epay_sim.pay(payment.out_trade_no)
    _notify(epay_sim, payment.out_trade_no)

    view = order_refund_request(order_no=order.order_no, actor="operator", reason="buyer asked")
    assert not LedgerTransaction.objects.filter(kind="refund").exists()  # asked, not final: nothing booked
    assert refund_sync(refund_no=view.refund_no) == "succeeded"

    assert Order.objects.get(pk=order.pk).state == OrderState.REFUNDED
    reversal = {spec: -amount for spec, amount in _sale_lines(merchant, agent, top, account).items()}
    if not returns_fee:  # the channel keeps its 0.06 and takes the whole 9.99 back; the platform bears the fee
        del reversal[("channel_account", account.pk, "channel_fee_expense")]
        reversal[("channel_account", account.pk, "channel_clearing")] = -999
    assert _lines(f"refund:{view.refund_no}") == reversal
    release = SaleRelease.objects.get()
    assert (release.pending_state, release.reserve_state, release.refund_key) == (
        "reversed",
        "reversed",
        f"refund:{view.refund_no}",
    )


def test_a_refund_of_an_undeliverable_order_takes_it_out_of_suspense(shop, epay_sim):
    merchant, _, _, account = shop
    _, order, payment = _undeliverable(merchant, epay_sim)

    view = order_refund_request(order_no=order.order_no, actor="operator")
    refund_sync(refund_no=view.refund_no)

    assert Order.objects.get(pk=order.pk).state == OrderState.REFUNDED
    assert _lines(f"refund:{view.refund_no}") == {
        ("platform", 0, "suspense"): 999,
        ("channel_account", account.pk, "channel_clearing"): -993,
        ("channel_account", account.pk, "channel_fee_expense"): -6,
    }


def test_a_sale_the_ledger_refuses_is_booked_to_suspense_and_the_order_still_paid(shop, epay_sim, settings):
    merchant, _, _, account = shop
    merchant.fee_plans.update(is_active=False)
    settings.SETTLEMENT_DEFAULT_CYCLE = "weekly"  # a misconfigured default plan: the sale is refused
    product = make_product(merchant, secrets_count=1, price_minor=999)
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")

    assert _notify(epay_sim, payment.out_trade_no).newly_succeeded

    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    held = LedgerTransaction.objects.get()
    assert held.idempotency_key == f"suspense:{payment.out_trade_no}" and held.memo == "sale_refused"
    assert list(order.events.filter(kind="ledger_sale_refused").values_list("detail", flat=True)) == [
        {"out_trade_no": payment.out_trade_no, "code": "fee_plan_invalid"}
    ]


def test_a_holiday_file_that_does_not_parse_never_blocks_a_payment_and_the_sale_is_booked_once_fixed(
    shop, epay_sim, settings, tmp_path
):
    merchant, agent, top, account = shop
    holidays = tmp_path / "holidays.txt"
    holidays.write_text("year 2026\n2026-10-01 of National Day\n")  # `of`: the operator's typo
    settings.SETTLEMENT_HOLIDAY_FILE = str(holidays)
    product = make_product(merchant, secrets_count=1, price_minor=999)
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")

    assert _notify(epay_sim, payment.out_trade_no).newly_succeeded

    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    assert LedgerTransaction.objects.get().memo == "sale_refused"
    assert order.events.get(kind="ledger_sale_refused").detail["code"] == "calendar_invalid"
    with pytest.raises(DomainError) as refused:  # still broken: refused again, nothing changes
        order_sale_book(order_no=order.order_no, actor="ops")
    assert refused.value.code == "calendar_invalid" and LedgerTransaction.objects.count() == 1

    holidays.write_text("year 2026\n2026-10-01 off National Day\n")
    os.utime(holidays, (holidays.stat().st_mtime + 5,) * 2)  # the calendar is re-read when the file changes
    assert order_sale_book(order_no=order.order_no, actor="ops") is True

    sale = _lines(f"sale:{payment.out_trade_no}")
    expected = _sale_lines(merchant, agent, top, account)
    del expected[("channel_account", account.pk, "channel_clearing")]
    del expected[("channel_account", account.pk, "channel_fee_expense")]
    assert sale == {**expected, ("platform", 0, "suspense"): 999}  # suspense gives the gross to the split
    assert order.events.filter(kind="ledger_booked").count() == 1
    assert order_sale_book(order_no=order.order_no, actor="ops") is False  # once only
    assert ledger_check().ok


def test_booking_a_sale_needs_a_sold_order_whose_payment_is_in_suspense(shop, epay_sim):
    merchant, *_ = shop
    product = make_product(merchant, secrets_count=2, price_minor=999)
    unpaid = buy(product)
    with pytest.raises(DomainError) as refused:
        order_sale_book(order_no=unpaid.order_no, actor="ops")
    assert refused.value.code == "not_sold"

    paid = buy(product)
    payment = order_payment_start(order_no=paid.order_no, client_ip="10.0.0.1")
    _notify(epay_sim, payment.out_trade_no)  # booked as a sale at once: nothing to do
    assert order_sale_book(order_no=paid.order_no, actor="ops") is False
    Order.objects.filter(pk=paid.pk).update(paid_by="P-BEFORE-THE-LEDGER")  # a payment that booked nothing
    with pytest.raises(DomainError) as refused:
        order_sale_book(order_no=paid.order_no, actor="ops")
    assert refused.value.code == "not_in_suspense"
