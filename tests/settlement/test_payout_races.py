"""Issue 12, proof 2: ten payout runs at once on PostgreSQL create one payout per party, balances exact."""

from __future__ import annotations

import pytest
from django.db import transaction

from settlement import payouts
from settlement.models import Payout, PayoutDestination
from settlement.payouts import payouts_create_due
from tests.concurrency.test_races import race
from tests.factories.core import MerchantFactory
from tests.factories.payments import EpayAccountFactory
from tests.factories.settlement import FeePlanFactory
from tests.settlement.test_payouts import balance, sold

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_ten_concurrent_payout_runs_make_one_payout_per_party(require_postgres, monkeypatch):
    account = EpayAccountFactory()
    merchants = []
    for i in range(5):
        merchant = MerchantFactory()
        FeePlanFactory(merchant=merchant, cycle="T+0", agent_commission_bp=[], reserve_bp=0, reserve_days=0)
        PayoutDestination.objects.create(
            party_kind="merchant", party_id=merchant.pk, currency="CNY", channel_account=account,
            payee=f"shop{i}@example.com", payee_name="张三",
        )  # fmt: skip
        for _ in range(i + 1):
            sold(merchant, account)
        merchants.append(merchant)
    # The submission is Celery's (after commit); here only who is dispatched, and when, is recorded.
    dispatched: list[tuple[str, str]] = []

    def record(task_name: str, payout_no: str) -> None:
        transaction.on_commit(lambda: dispatched.append((task_name, payout_no)))

    monkeypatch.setattr(payouts, "_after_commit", record)

    results = race(10, lambda i: payouts_create_due())

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    made = sorted(no for r in results for no in r)
    assert made == sorted(Payout.objects.values_list("payout_no", flat=True))
    assert len(made) == 5  # one per merchant, whatever the interleaving
    for i, merchant in enumerate(merchants):
        payout = Payout.objects.get(party_id=merchant.pk)
        assert payout.amount_minor == 939 * (i + 1)  # the whole available balance, exactly
        assert balance("merchant", merchant.pk, "merchant_available") == 0
        assert balance("merchant", merchant.pk, "payouts_in_transit") == 939 * (i + 1)
    assert sorted(dispatched) == [("settlement.payout_submit", no) for no in made]  # each sent once, after commit
