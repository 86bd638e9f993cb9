"""Issue 12: a trade the provider took money for whose callback never came is found on the next day's statement,
queried and applied through the normal paid path: the order is delivered and the exception resolved, once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.reconciliation import reconciliation_day
from settlement.models import ReconException, ReconRun
from tests.cardshop.helpers import buy

pytestmark = pytest.mark.django_db


def test_a_lost_callback_is_recovered_from_the_statement(product, epay_account, epay_sim, settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    yesterday = (timezone.localtime() - timedelta(days=1)).replace(hour=12, minute=0)
    order = buy(product)
    epay_sim.clock = lambda: yesterday  # the panel took the money yesterday noon
    try:
        payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
        epay_sim.faults.drop_notify = 1  # and its callback never reached us
        epay_sim.pay(payment.out_trade_no)
    finally:
        epay_sim.clock = None
    assert Order.objects.get(pk=order.pk).state == OrderState.PENDING

    assert reconciliation_day(channel_account_id=epay_account.pk, day=yesterday.date()) == 1

    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    lost = ReconException.objects.get(kind="missing_in_ledger", our_ref=payment.out_trade_no)
    assert lost.status == "resolved" and lost.detail["resolution"].startswith("recovered")
    assert ReconRun.objects.get().state == "done"
    assert reconciliation_day(channel_account_id=epay_account.pk, day=yesterday.date()) == 0  # once
