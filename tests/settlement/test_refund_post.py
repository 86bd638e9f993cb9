"""settlement.facade.refund_post: the worked example refunded, with the channel fee returned or kept (and who bears
it), before and after the merchant's money was released; what available cannot cover is owed and netted."""

from __future__ import annotations

import pytest
from django.db import transaction

from core.parties import agent_create
from settlement import facade
from settlement.contracts import AdjustmentLine, SettlementError
from settlement.models import LedgerAccount, LedgerTransaction, SaleRelease
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db

CA = 77  # the channel account


@pytest.fixture
def example():
    top = agent_create(name="Regional")
    agent = agent_create(name="City", parent_id=top.pk)
    merchant = MerchantFactory(agent=agent)
    plan = FeePlanFactory(merchant=merchant)
    return merchant, agent, top, plan


def sale(merchant, out_trade_no="P1"):
    with transaction.atomic():
        return facade.sale_post(
            out_trade_no=out_trade_no,
            order_no=f"O-{out_trade_no}",
            merchant_id=merchant.pk,
            gross_minor=999,
            currency="CNY",
            channel_account_id=CA,
            channel_fee_minor=6,
        )


def refund(out_trade_no="P1", refund_no="R1", returns_fee=True, amount=999):
    with transaction.atomic():
        return facade.refund_post(
            refund_no=refund_no,
            out_trade_no=out_trade_no,
            amount_minor=amount,
            currency="CNY",
            channel_returns_fee=returns_fee,
        )


def lines(view):
    return {(line.party_kind, line.party_id, line.account_kind): line.amount_minor for line in view.lines}


def balances(merchant):
    b = facade.merchant_balances(merchant_id=merchant.pk, currency="CNY")
    return b.pending_minor, b.available_minor, b.reserve_minor, b.owed_minor


def common(merchant, agent, top):
    """The agents' and the platform's part of every reversal: their credits, line for line."""
    return {
        ("agent", agent.pk, "agent_commission_payable"): 20,
        ("agent", top.pk, "agent_commission_payable"): 10,
        ("platform", 0, "platform_revenue"): 30,
    }


def test_refund_before_release_with_the_fee_returned_mirrors_the_sale(example):
    merchant, agent, top, _ = example
    sale(merchant)

    view = refund()

    assert view.key == "refund:R1" and view.kind == "refund" and view.reference == "O-P1"
    assert lines(view) == {
        ("channel_account", CA, "channel_clearing"): -993,  # the channel takes 9.99 back and returns its 0.06
        ("channel_account", CA, "channel_fee_expense"): -6,
        ("merchant", merchant.pk, "merchant_pending"): 839,
        ("merchant", merchant.pk, "merchant_reserve"): 100,
        **common(merchant, agent, top),
    }
    assert balances(merchant) == (0, 0, 0, 0)
    release = SaleRelease.objects.get()
    assert (release.pending_state, release.reserve_state) == ("reversed", "reversed")


def test_a_fee_the_channel_keeps_is_borne_by_the_platform_by_default(example):
    merchant, agent, top, _ = example
    sale(merchant)

    view = refund(returns_fee=False)

    assert lines(view) == {
        ("channel_account", CA, "channel_clearing"): -999,  # Stripe: the whole 9.99 back, its fee kept
        ("merchant", merchant.pk, "merchant_pending"): 839,
        ("merchant", merchant.pk, "merchant_reserve"): 100,
        **common(merchant, agent, top),
    }
    assert balances(merchant) == (0, 0, 0, 0)
    fee = LedgerAccount.objects.get(party_id=CA, kind="channel_fee_expense")
    assert facade_balance(fee) == 6  # the platform's cost stays booked


def facade_balance(account):
    from settlement.ledger import account_balance

    return account_balance(account).amount_minor


def test_a_plan_can_make_the_merchant_bear_a_kept_fee(example):
    merchant, agent, top, plan = example
    plan.refund_fee_borne_by = "merchant"
    plan.save(update_fields=["refund_fee_borne_by"])
    sale(merchant)

    view = refund(returns_fee=False)

    assert lines(view) == {
        ("channel_account", CA, "channel_clearing"): -999,
        ("channel_account", CA, "channel_fee_expense"): -6,  # the expense is recovered from the merchant
        ("merchant", merchant.pk, "merchant_pending"): 839,
        ("merchant", merchant.pk, "merchant_reserve"): 100,
        ("merchant", merchant.pk, "merchant_owed"): 6,  # nothing available: the merchant owes the 0.06
        **common(merchant, agent, top),
    }
    assert balances(merchant) == (0, 0, 0, 6)


def test_a_refund_after_release_takes_available_to_zero_and_the_rest_is_owed_then_netted(example):
    merchant, agent, top, plan = example
    plan.cycle = "T+0"
    plan.save(update_fields=["cycle"])
    sale(merchant)
    assert balances(merchant) == (0, 839, 100, 0)
    # The merchant was paid out 8.00 of it (the payout slice books it like this).
    facade.adjustment_post(
        currency="CNY",
        lines=[
            AdjustmentLine("merchant", merchant.pk, "merchant_available", 800),
            AdjustmentLine("merchant", merchant.pk, "payouts_in_transit", -800),
        ],
        reason="payout PO1",
        actor="test",
    )

    view = refund()

    assert lines(view) == {
        ("channel_account", CA, "channel_clearing"): -993,
        ("channel_account", CA, "channel_fee_expense"): -6,
        ("merchant", merchant.pk, "merchant_available"): 39,  # all that is left, to zero
        ("merchant", merchant.pk, "merchant_owed"): 800,  # the rest of the 8.39 is owed
        ("merchant", merchant.pk, "merchant_reserve"): 100,  # still held: taken from the reserve
        **common(merchant, agent, top),
    }
    assert balances(merchant) == (0, 0, 0, 800)

    netted = sale(merchant, out_trade_no="P2")  # the next T+0 sale pays what is owed first

    assert lines(netted)[("merchant", merchant.pk, "merchant_owed")] == -800
    assert lines(netted)[("merchant", merchant.pk, "merchant_available")] == -39
    assert balances(merchant) == (0, 39, 100, 0)


def test_owed_money_cannot_be_paid_out(example):
    merchant, *_ = example
    sale(merchant)
    refund(returns_fee=False)  # nothing to take back from available
    with pytest.raises(SettlementError) as refused, transaction.atomic():
        facade.adjustment_post(
            currency="CNY",
            lines=[
                AdjustmentLine("merchant", merchant.pk, "merchant_available", 1),
                AdjustmentLine("merchant", merchant.pk, "payouts_in_transit", -1),
            ],
            reason="payout",
            actor="test",
        )
    assert refused.value.code == "insufficient_funds"
    assert not LedgerTransaction.objects.filter(kind="adjustment").exists()


def test_a_replayed_refund_is_a_no_op_and_a_second_refund_of_the_sale_is_refused(example):
    merchant, *_ = example
    sale(merchant)
    first = refund()

    again = refund()

    assert again.transaction_id == first.transaction_id and again.replayed is True
    with pytest.raises(SettlementError) as refused:
        refund(refund_no="R2")
    assert refused.value.code == "already_refunded"
    assert LedgerTransaction.objects.filter(kind="refund").count() == 1


def test_a_refund_beyond_the_sale_is_refused_and_a_payment_that_booked_nothing_books_nothing(example):
    merchant, *_ = example
    sale(merchant)
    with pytest.raises(SettlementError) as refused:
        refund(amount=1000)
    assert refused.value.code == "refund_mismatch"
    assert refund(out_trade_no="NEVER-BOOKED", refund_no="R9") is None
    assert not LedgerTransaction.objects.filter(kind="refund").exists()
    assert SaleRelease.objects.get().refund_key == ""
