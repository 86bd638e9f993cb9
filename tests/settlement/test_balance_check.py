"""The balance check of a channel account: the ledger's channel clearing balance against what the provider says it
holds, after a real paid order (checkout, the epay simulator paid, its signed callback applied, the sale booked)
and its refund; a payment the ledger has not heard of yet, a provider that cannot be asked, payouts in transit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import payment_notification_handle
from cardshop.services.refunds import order_refund_request, refund_sync
from core.money import Money
from settlement import facade
from settlement.balance_check import balance_check, balance_checks, explain
from settlement.contracts import BalanceCheck
from settlement.models import LedgerEntry
from tests.cardshop.helpers import as_lists, buy, signed_notify
from tests.conftest import make_product
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


@pytest.fixture
def panel(epay_sim) -> Iterator:
    """The shared epay panel keeps the same 0.6 % fee as the channel account (restored afterwards)."""
    epay_sim.faults.reset()
    before, epay_sim.fee_rate_bp = epay_sim.fee_rate_bp, 60
    yield epay_sim
    epay_sim.fee_rate_bp = before
    epay_sim.faults.reset()


@pytest.fixture
def shop(merchant, epay_account, panel):
    FeePlanFactory(merchant=merchant)
    epay_account.fee_rate_bp = 60
    epay_account.save(update_fields=["fee_rate_bp"])
    return merchant, epay_account


def _paid_order(merchant, epay_sim, *, notified: bool = True):
    """A 9.99 order paid at the panel; its signed callback applied (the sale booked) unless `notified` is False."""
    order = buy(make_product(merchant, secrets_count=2, price_minor=999))
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    epay_sim.faults.drop_notify = 1  # the callback is applied below, in this test's transaction
    epay_sim.pay(payment.out_trade_no)
    if notified:
        payment_notification_handle(
            channel_code="epay", params=as_lists(signed_notify(epay_sim, payment.out_trade_no)), body=b""
        )
    return order


def test_after_a_paid_order_the_ledger_and_the_provider_agree(shop, panel):
    merchant, account = shop
    _paid_order(merchant, panel)

    check = balance_check(account.pk)

    # The sale debited clearing with 9.99 less the 0.06 fee; the panel credited the merchant the same 9.93.
    assert check == BalanceCheck(
        channel_account_id=account.pk,
        currency="CNY",
        ledger=cny(993),
        payouts_in_transit=cny(0),
        provider_available=cny(993),
        provider_pending=None,
        explanation="The provider holds what the ledger says.",
    )
    assert (check.provider, check.difference, check.matches) == (cny(993), cny(0), True)
    assert panel.merchant_money(account.merchant_no) == 993
    assert facade.balance_check(channel_account_id=account.pk) == check


def test_after_the_refund_both_are_back_to_zero(shop, panel):
    merchant, account = shop
    order = _paid_order(merchant, panel)
    view = order_refund_request(order_no=order.order_no, actor="operator", reason="buyer asked")
    assert refund_sync(refund_no=view.refund_no) == "succeeded"

    check = balance_check(account.pk)

    assert (check.ledger, check.provider, check.difference) == (cny(0), cny(0), cny(0))
    assert check.matches


def test_a_payment_the_ledger_has_not_heard_of_is_a_difference_with_its_usual_causes(shop, panel):
    merchant, account = shop
    _paid_order(merchant, panel)
    _paid_order(merchant, panel, notified=False)  # paid at the panel, its callback still on its way

    check = balance_check(account.pk)

    assert (check.ledger, check.provider, check.difference) == (cny(993), cny(1986), cny(993))
    assert not check.matches
    # The row points at the usual causes, which the page lists once under the table (admin test).
    assert check.explanation.startswith("Not explained by payouts in transit")


def test_a_provider_that_cannot_be_asked_gives_its_error_and_the_ledger_still_shows(shop, panel):
    merchant, account = shop
    _paid_order(merchant, panel)
    entries = LedgerEntry.objects.count()
    panel.faults.fail_5xx = 1

    check = balance_check(account.pk)

    assert (check.ledger, check.provider_available, check.difference) == (cny(993), None, None)
    assert (check.error_code, check.matches, check.explanation) == ("http_5xx", False, "Ask again later.")
    assert LedgerEntry.objects.count() == entries  # a read: nothing was written


def test_several_accounts_are_read_in_three_queries_before_the_providers_are_asked(
    shop, panel, django_assert_num_queries
):
    merchant, account = shop
    _paid_order(merchant, panel)
    panel.faults.fail_5xx = 1  # the provider call itself reads the account row: keep it out of the count

    with django_assert_num_queries(3 + 1):  # currencies, clearing sums, payouts in transit; the adapter's account
        (check,) = balance_checks(channel_account_ids=[account.pk, 999_999])  # an unknown account is left out

    assert check.ledger == cny(993)


def test_payouts_in_transit_that_explain_the_difference_exactly_are_named():
    taken = BalanceCheck(1, "CNY", ledger=cny(5_000), payouts_in_transit=cny(1_200), provider_available=cny(3_800))

    assert explain(taken) == "The difference is the payouts in transit (12.00 CNY): it goes once they are final."
    assert explain(BalanceCheck(1, "CNY", cny(0), cny(0))) == ""  # the provider was not asked
