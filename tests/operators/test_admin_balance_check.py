"""Operators open the balance check from the reconciliation runs: every channel account whose provider reports a
balance, with the ledger's clearing balance, the provider's (asked then), the difference, and an error cell for a
provider that could not be asked."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import payment_notification_handle
from settlement.balance_check import DIFFERENCE_REASONS
from tests.cardshop.helpers import as_lists, buy, signed_notify
from tests.conftest import make_product
from tests.factories.payments import EpayAccountFactory
from tests.factories.settlement import FeePlanFactory
from tests.operators.auth import operator_login, staff_user

pytestmark = pytest.mark.django_db

URL = "admin:settlement_reconrun_balances"


@pytest.fixture
def finance(db) -> Client:
    return operator_login(Client(), staff_user("finance", "settlement.view_reconrun"))


@pytest.fixture
def accounts(merchant, epay_account, epay_sim, settings):
    """The epay account with a 9.99 order paid and booked (0.6 % fee on both sides), and an account whose panel
    cannot be reached (nothing listens on its port)."""
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    before, epay_sim.fee_rate_bp = epay_sim.fee_rate_bp, 60
    FeePlanFactory(merchant=merchant)
    epay_account.name, epay_account.fee_rate_bp = "panel A", 60
    epay_account.save(update_fields=["name", "fee_rate_bp"])
    order = buy(make_product(merchant, secrets_count=2, price_minor=999))
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    epay_sim.faults.drop_notify = 1
    epay_sim.pay(payment.out_trade_no)
    payment_notification_handle(
        channel_code="epay", params=as_lists(signed_notify(epay_sim, payment.out_trade_no)), body=b""
    )
    dead = EpayAccountFactory(name="panel B", base_url="http://127.0.0.1:9")
    yield epay_account, dead
    epay_sim.fee_rate_bp = before


def _row(page: str, account_id: int) -> str:
    match = re.search(rf'<tr id="balance-{account_id}".*?</tr>', page, re.S)
    assert match, f"no row for account {account_id}"
    return re.sub(r"\s+", " ", match.group(0))


def test_the_page_shows_the_ledger_the_provider_and_the_difference_per_account(finance, accounts):
    good, dead = accounts

    resp = finance.get(reverse(URL))

    assert resp.status_code == 200
    page = resp.content.decode()
    assert "Balance check" in page
    row = _row(page, good.pk)
    assert "panel A (epay)" in row
    # ledger 9.93, provider available 9.93 (no pending figure), provider 9.93, difference 0.00
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert [c.strip() for c in cells[1:6]] == ["9.93 CNY", "9.93 CNY", "—", "9.93 CNY", "0.00 CNY"]
    assert "The provider holds what the ledger says." in row
    broken = _row(page, dead.pk)
    assert "panel B (epay)" in broken and "0.00 CNY" in broken  # its ledger: nothing booked
    assert f'id="balance-error-{dead.pk}"' in broken
    assert "The provider could not be asked: connect:" in broken and "Ask again later." in broken
    for reason in DIFFERENCE_REASONS:  # the usual causes of a difference, listed once under the table
        assert page.count(html.escape(str(reason))) == 1


def test_the_reconciliation_runs_link_to_it_and_it_needs_the_view_right(finance, viewer):
    runs = finance.get(reverse("admin:settlement_reconrun_changelist")).content.decode()

    assert reverse(URL) in runs and "Balance check" in runs
    assert viewer.get(reverse(URL)).status_code == 403
