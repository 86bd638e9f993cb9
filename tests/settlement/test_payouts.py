"""Issue 12, payouts: a merchant's available money is held for one payout at a time, and the provider's answer
either pays it (in transit to the channel's clearing) or gives it back; never below zero, never twice."""

from __future__ import annotations

from datetime import datetime, time

import pytest
from django.db import transaction
from django.utils import timezone

from core.models import AuditEvent
from payments.contracts import PayoutOutcome, PayoutResult
from settlement import facade
from settlement.checks import ledger_check
from settlement.contracts import SettlementError
from settlement.ledger import account_balance
from settlement.models import LedgerAccount, LedgerTransaction, Payout, PayoutDestination, PayoutSchedule
from settlement.payouts import payout_create, payout_outcome_apply, payout_retry, payouts_create_due
from tests.factories.core import MerchantFactory
from tests.factories.payments import EpayAccountFactory, PaymentFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db

PAID = PayoutOutcome(result=PayoutResult.PAID, provider_payout_no="T1", provider_status="SUCCESS")


def balance(party_kind, party_id, kind):
    account = LedgerAccount.objects.filter(party_kind=party_kind, party_id=party_id, kind=kind).first()
    return account_balance(account).amount_minor if account else 0


def sold(merchant, account, *, gross=999):
    """A paid T+0 sale: 839 of 9.99 reaches the merchant's available balance at once."""
    payment = PaymentFactory(account=account, status="succeeded", succeeded_at=timezone.now(), amount_minor=gross)
    with transaction.atomic():
        facade.sale_post(
            out_trade_no=payment.out_trade_no,
            order_no=payment.reference,
            merchant_id=merchant.pk,
            gross_minor=gross,
            currency="CNY",
            channel_account_id=account.pk,
            channel_fee_minor=6,
        )


@pytest.fixture
def shop():
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant, cycle="T+0", agent_commission_bp=[], reserve_bp=0, reserve_days=0)
    account = EpayAccountFactory()
    destination = PayoutDestination.objects.create(
        party_kind="merchant",
        party_id=merchant.pk,
        currency="CNY",
        channel_account=account,
        payee="shop@example.com",
        payee_name="张三",
    )
    sold(merchant, account)
    return merchant, account, destination


def test_a_due_payout_holds_the_whole_available_balance(shop):
    merchant, account, destination = shop
    assert balance("merchant", merchant.pk, "merchant_available") == 939  # 9.99 - 500 bp - 0.10

    payout = payout_create(destination_id=destination.pk)

    assert (payout.state, payout.amount_minor, payout.currency) == ("created", 939, "CNY")
    assert (payout.payee, payout.channel_account_id) == ("shop@example.com", account.pk)
    assert balance("merchant", merchant.pk, "merchant_available") == 0
    assert balance("merchant", merchant.pk, "payouts_in_transit") == 939
    hold = LedgerTransaction.objects.get(idempotency_key=f"payout:{payout.payout_no}")
    assert hold.kind == "payout" and hold.reference == payout.payout_no
    assert ledger_check().ok


def test_no_payout_below_the_minimum_while_frozen_outside_the_window_or_while_one_is_on_its_way(shop):
    merchant, account, destination = shop
    PayoutSchedule.objects.create(currency="CNY", minimum_minor=1000)
    assert payout_create(destination_id=destination.pk) is None  # 9.39 < 10.00

    PayoutSchedule.objects.filter(currency="CNY").update(minimum_minor=100)
    PayoutDestination.objects.filter(pk=destination.pk).update(frozen=True, frozen_reason="KYC review")
    assert payout_create(destination_id=destination.pk) is None

    PayoutDestination.objects.filter(pk=destination.pk).update(frozen=False)
    PayoutSchedule.objects.filter(currency="CNY").update(window_start=time(9, 0), window_end=time(18, 0))
    night = timezone.make_aware(datetime(2026, 12, 3, 22, 0))
    assert payout_create(destination_id=destination.pk, now=night) is None  # after the cut-off

    noon = timezone.make_aware(datetime(2026, 12, 3, 12, 0))
    assert payouts_create_due(now=noon) != []
    sold(merchant, account)  # more money arrives while the first payout is on its way
    assert payouts_create_due(now=noon) == []  # one payout on its way per party at most
    assert Payout.objects.count() == 1 and balance("merchant", merchant.pk, "merchant_available") == 939


def test_a_paid_payout_leaves_the_providers_balance(shop):
    merchant, account, destination = shop
    payout = payout_create(destination_id=destination.pk)

    assert payout_outcome_apply(payout_no=payout.payout_no, outcome=PAID) == "paid"

    payout.refresh_from_db()
    assert (payout.provider_payout_no, payout.provider_status) == ("T1", "SUCCESS")
    assert balance("merchant", merchant.pk, "payouts_in_transit") == 0
    assert balance("channel_account", account.pk, "channel_clearing") == 993 - 939  # what the provider still holds
    assert ledger_check().ok
    # Late or repeated answers change nothing: a paid payout stays paid, posted once.
    failed = PayoutOutcome(result=PayoutResult.FAILED, failure_reason="late")
    assert payout_outcome_apply(payout_no=payout.payout_no, outcome=failed) == "paid"
    assert payout_outcome_apply(payout_no=payout.payout_no, outcome=PAID) == "paid"
    assert LedgerTransaction.objects.filter(reference=payout.payout_no).count() == 2  # hold + paid


def test_a_failed_payout_gives_the_hold_back_and_waits_for_an_operators_retry_under_a_new_number(shop):
    merchant, _, destination = shop
    first = payout_create(destination_id=destination.pk)

    refused = PayoutOutcome(result=PayoutResult.FAILED, provider_status="PAYEE_NOT_EXIST", failure_reason="no payee")
    assert payout_outcome_apply(payout_no=first.payout_no, outcome=refused) == "failed"

    assert balance("merchant", merchant.pk, "merchant_available") == 939
    assert balance("merchant", merchant.pk, "payouts_in_transit") == 0
    first.refresh_from_db()
    assert first.failure_reason == "no payee"
    assert payout_create(destination_id=destination.pk) is None  # refused again every run: not by itself

    again = payout_retry(payout_no=first.payout_no, actor="ops")

    assert again.payout_no != first.payout_no and again.amount_minor == 939 and again.retry_of == first
    assert AuditEvent.objects.get(action="payout.retry").detail == {"retry_of": first.payout_no}
    with pytest.raises(SettlementError) as refused:
        payout_retry(payout_no=first.payout_no, actor="ops")
    assert refused.value.code == "payout_retried"
    assert ledger_check().ok


def test_an_unknown_answer_holds_until_the_provider_says(shop):
    merchant, _, destination = shop
    payout = payout_create(destination_id=destination.pk)

    timeout = PayoutOutcome(result=PayoutResult.UNKNOWN, provider_status="timeout")
    assert payout_outcome_apply(payout_no=payout.payout_no, outcome=timeout) == "unknown"
    pending = PayoutOutcome(result=PayoutResult.PENDING, provider_payout_no="T9", provider_status="DEALING")
    assert payout_outcome_apply(payout_no=payout.payout_no, outcome=pending) == "submitted"
    assert balance("merchant", merchant.pk, "payouts_in_transit") == 939  # still held: nothing is known yet

    assert payout_outcome_apply(payout_no=payout.payout_no, outcome=PAID) == "paid"
    assert balance("merchant", merchant.pk, "payouts_in_transit") == 0
