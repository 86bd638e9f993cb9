"""The ledger's view of a collected payment: its channel account and the fee that channel keeps."""

from __future__ import annotations

import pytest

from core.money import Money
from payments import facade
from payments.contracts import PaymentStatus
from tests.factories.payments import EpayAccountFactory, PaymentFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("amount", "rate_bp", "fixed", "fee"),
    [
        (999, 60, 0, 6),  # 5.994 -> 6 (half up)
        (1000, 60, 0, 6),
        (83, 60, 0, 0),  # 0.498 -> 0
        (84, 60, 0, 1),  # 0.504 -> 1
        (999, 290, 30, 59),  # Stripe-like 2.9 % + 0.30: 28.971 -> 29, + 30
        (20, 20, 100, 20),  # a fixed fee above a tiny sale takes the sale, never more
    ],
)
def test_the_fee_is_the_accounts_rate_and_fixed_part_rounded_half_up(amount, rate_bp, fixed, fee):
    account = EpayAccountFactory(fee_rate_bp=rate_bp, fee_fixed_minor=fixed)
    payment = PaymentFactory(account=account, amount_minor=amount, currency="CNY", status=PaymentStatus.SUCCEEDED)
    facts = facade.payment_fee_facts(out_trade_no=payment.out_trade_no)
    assert (facts.account_id, facts.channel_code, facts.reference) == (account.pk, account.code, payment.reference)
    assert facts.amount == Money(amount, "CNY") and facts.fee == Money(fee, "CNY")


def test_whether_the_channel_returns_its_fee_on_refund_is_per_account_and_stripe_keeps_it():
    import importlib

    from django.apps import apps

    from payments.models import ChannelAccount
    from payments.services.accounts import channel_account_configure

    for code in ("stripe", "epay"):
        channel_account_configure(
            code=code, name=code, merchant_no="m", base_url="http://127.0.0.1:9", currency="CNY", credentials={}
        )
    assert dict(ChannelAccount.objects.values_list("code", "refund_returns_fee")) == {"stripe": False, "epay": True}
    epay = ChannelAccount.objects.get(code="epay")
    payment = PaymentFactory(account=epay, amount_minor=999, currency="CNY", status=PaymentStatus.SUCCEEDED)
    assert facade.payment_fee_facts(out_trade_no=payment.out_trade_no).refund_returns_fee is True
    ChannelAccount.objects.filter(pk=epay.pk).update(refund_returns_fee=False)  # an operator's setting
    assert facade.payment_fee_facts(out_trade_no=payment.out_trade_no).refund_returns_fee is False

    # Accounts that existed before the setting: the migration turns it off for Stripe only.
    ChannelAccount.objects.update(refund_returns_fee=True)
    migration = importlib.import_module("payments.migrations.0013_channelaccount_refund_returns_fee")
    migration.stripe_keeps_its_fee(apps, None)
    assert dict(ChannelAccount.objects.values_list("code", "refund_returns_fee")) == {"stripe": False, "epay": True}
