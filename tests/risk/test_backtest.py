"""Issue 13, proof 2 (backtest): a draft is run over the last orders' assessments before it can be published, and
the result says how many orders and how much money it would have stopped, split by what really became of them."""

from __future__ import annotations

import pytest

from cardshop.models import Order, OrderState
from cardshop.services.checkout import RiskBlocked
from risk.backtest import draft_backtest, ruleset_backtest
from risk.models import Rule
from risk.versions import ruleset_draft, ruleset_publish
from tests.cardshop.helpers import buy
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


def test_a_draft_is_backtested_over_the_last_orders_by_what_became_of_them(merchant, epay_account):
    product = make_product(merchant, secrets_count=20, max_quantity=5)
    fates = {
        (1, "a@example.com"): OrderState.DELIVERED,
        (2, "b@example.com"): OrderState.DELIVERED,
        (2, "c@example.com"): OrderState.REFUNDED,
        (3, "d@example.com"): OrderState.EXPIRED,
        (1, "e@example.com"): OrderState.PENDING,
    }
    for (qty, email), state in fates.items():
        order = buy(product, qty=qty, email=email, ip=None)
        Order.objects.filter(pk=order.pk).update(state=state)
    # A checkout the live rules blocked: it made no order, and counts as blocked.
    draft = ruleset_draft(actor="op")
    Rule.objects.create(
        version=draft, name="x", expression="email_domain == 'blocked.test'", action="block", reason_code="x"
    )
    ruleset_backtest(number=draft.number, rows=[])
    ruleset_publish(number=draft.number, actor="op")
    with pytest.raises(RiskBlocked):
        buy(product, qty=2, email="bot@blocked.test", ip=None)

    draft = ruleset_draft(actor="op")
    rule = Rule(version=draft, name="bulk", expression="quantity >= 2", action="review", reason_code="bulk")
    rule.full_clean()
    rule.save()
    result = draft_backtest(number=draft.number)

    assert result["orders"] == 6 and result["hit"] == 4  # qty 2, 2, 3 and the blocked 2
    by = result["by_outcome"]
    assert (by["paid"]["orders"], by["paid"]["hit"], by["paid"]["hit_amount"]) == (2, 1, {"CNY": 2 * 990})
    assert (by["refunded"]["hit"], by["expired"]["hit"], by["blocked"]["hit"]) == (1, 1, 1)
    assert (by["open"]["orders"], by["open"]["hit"]) == (1, 0)
    assert result["by_decision"]["block"] == 1 and result["by_decision"]["review"] == 3  # the old block rule stays
    ruleset_publish(number=draft.number, actor="op")  # backtested as it stands: publishable
