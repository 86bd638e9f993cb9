"""Partial refunds in the ledger (issue 14): each refund takes every part of the sale in proportion to what is left
of it, the lines balance to the minor unit, the refund that takes the rest leaves the sale reversed line for line,
a held part's release pays out only what is left, and nothing more than the sale can be refunded. (Payments and the
storefront still refund whole; this is the ledger's half.)"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from settlement import facade
from settlement.checks import _balance_rows, _currencies, _transactions
from settlement.contracts import SettlementError
from settlement.models import LedgerTransaction, SaleRelease
from tests.settlement import test_refund_post
from tests.settlement.test_refund_post import CA, balances, common, lines, refund, sale

example = test_refund_post.example  # the worked example's merchant, agents and plan (a fixture)

pytestmark = pytest.mark.django_db


def books_balance() -> bool:
    """The nightly check's bookkeeping invariants (these sales have no payments behind them, so not the rest):
    every transaction and currency balances, and every kept balance row equals the sum of its lines."""
    return not (_transactions() or _currencies() or _balance_rows()[0])


def test_the_worked_example_five_of_nine_ninety_nine_then_the_rest(example):
    merchant, agent, top, _ = example
    sale(merchant)  # 9.99: pending 8.39, reserve 1.00, agents 0.20 and 0.10, platform 0.30; the channel's fee 0.06

    first = refund(refund_no="R1", amount=500)

    # 500 / 999 of each part, by largest remainder: 10, 5, 15, 419.9 -> 420, 50; the fee's 3.003 -> 3.
    assert lines(first) == {
        ("channel_account", CA, "channel_clearing"): -497,
        ("channel_account", CA, "channel_fee_expense"): -3,
        ("merchant", merchant.pk, "merchant_pending"): 420,
        ("merchant", merchant.pk, "merchant_reserve"): 50,
        ("agent", agent.pk, "agent_commission_payable"): 10,
        ("agent", top.pk, "agent_commission_payable"): 5,
        ("platform", 0, "platform_revenue"): 15,
    }
    assert balances(merchant) == (419, 0, 50, 0)
    release = SaleRelease.objects.get()
    assert (release.refunded_minor, release.pending_state, release.refund_key) == (500, "held", "")

    with pytest.raises(SettlementError) as refused:
        refund(refund_no="R2", amount=500)  # 4.99 is left
    assert refused.value.code == "refund_mismatch"

    rest = refund(refund_no="R2", amount=499)

    assert lines(rest) == {
        ("channel_account", CA, "channel_clearing"): -496,
        ("channel_account", CA, "channel_fee_expense"): -3,
        ("merchant", merchant.pk, "merchant_pending"): 419,
        ("merchant", merchant.pk, "merchant_reserve"): 50,
        ("agent", agent.pk, "agent_commission_payable"): 10,
        ("agent", top.pk, "agent_commission_payable"): 5,
        ("platform", 0, "platform_revenue"): 15,
    }
    both = Counter(lines(first))
    both.update(lines(rest))
    whole = {
        ("channel_account", CA, "channel_clearing"): -993,
        ("channel_account", CA, "channel_fee_expense"): -6,
        ("merchant", merchant.pk, "merchant_pending"): 839,
        ("merchant", merchant.pk, "merchant_reserve"): 100,
        **common(merchant, agent, top),
    }
    assert dict(both) == whole  # the two refunds are the whole reversal, line for line
    assert balances(merchant) == (0, 0, 0, 0)
    release.refresh_from_db()
    assert (release.pending_state, release.reserve_state, release.refund_key) == ("reversed", "reversed", "refund:R2")
    with pytest.raises(SettlementError):
        refund(refund_no="R3", amount=1)
    assert refund(refund_no="R1", amount=500).replayed  # a replay is a no-op


@pytest.mark.parametrize("amounts", [[1, 998], [333, 333, 333], [998, 1], [100] * 9 + [99]])
def test_any_split_of_the_sale_balances_and_ends_reversed(example, amounts):
    merchant, agent, top, _ = example
    sale(merchant)
    for i, amount in enumerate(amounts):
        view = refund(refund_no=f"R{i}", amount=amount)
        assert sum(line.amount_minor for line in view.lines) == 0 and all(line.amount_minor for line in view.lines)
    assert balances(merchant) == (0, 0, 0, 0)
    assert SaleRelease.objects.get().refunded_minor == 999
    assert books_balance()


def test_after_a_partial_refund_the_release_pays_out_only_what_is_left(example):
    merchant, *_ = example
    sale(merchant)
    refund(refund_no="R1", amount=500)
    assert balances(merchant) == (419, 0, 50, 0)

    later = timezone.now() + timedelta(days=30)
    assert facade.releases_due(now=later) == 2
    assert balances(merchant) == (0, 469, 0, 0)  # 4.19 + 0.50, not 8.39 + 1.00

    refund(refund_no="R2", amount=499)  # the rest, now out of available
    assert balances(merchant) == (0, 0, 0, 0)
    assert books_balance()


def test_money_in_suspense_is_refunded_whole(example):
    merchant, *_ = example
    with transaction.atomic():
        facade.suspense_post(
            out_trade_no="P9",
            order_no="O-P9",
            gross_minor=999,
            currency="CNY",
            channel_account_id=CA,
            channel_fee_minor=6,
            reason="undeliverable",
        )
    with pytest.raises(SettlementError) as refused:
        refund(out_trade_no="P9", refund_no="R9", amount=500)
    assert refused.value.code == "refund_mismatch"
    assert not LedgerTransaction.objects.filter(kind="refund").exists()
