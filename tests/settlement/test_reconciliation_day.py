"""Issue 12, proof 4 at scale: a day of 3,000 trades on WeChat Pay's real tradebill (downloaded, hash-checked,
parsed as it streams) against our records with one discrepancy of each kind planted on our side: each is found with
its type and nothing else, and a second run of the day changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta

import pytest
from django.db import transaction

from cardshop.services.reconciliation import reconciliation_day
from payments.channels.wechatpay import wire
from payments.models import ChannelAccount, Payment
from payments.simulators.wechatpay import WechatPaySimulator
from settlement import facade
from settlement.models import ReconException, ReconRun
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db

LINES = 3000


@pytest.fixture(scope="module")
def sim() -> Iterator[WechatPaySimulator]:
    s = WechatPaySimulator().start()
    yield s
    s.stop()


def test_a_day_of_3000_trades_finds_each_planted_discrepancy_and_nothing_else(sim):
    day = datetime.now(wire.BEIJING).date() - timedelta(days=1)
    acct = sim.account()
    account = ChannelAccount.objects.create(
        code="wechatpay",
        name="wechat (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency="CNY",
        credentials=json.dumps(acct.credentials),
    )
    sim.statement_synthetic(day, LINES)
    noon = datetime.combine(day, time(12), tzinfo=wire.BEIJING)

    def ours(i: int, **change) -> Payment:
        fields = dict(
            out_trade_no=f"SYN{day:%Y%m%d}{i:010d}",
            provider_trade_no=f"4200{day:%Y%m%d}{i:016d}",
            reference=f"O{i}",
            account=account,
            channel_code="wechatpay",
            method="wxpay",
            amount_minor=sim._synthetic_amount(i),
            currency="CNY",
            status="succeeded",
            succeeded_at=noon + timedelta(seconds=i % 43_200),
        )
        return Payment(**{**fields, **change})

    planted = {100: "missing_in_ledger", 200: "amount", 300: "currency", 400: "fee"}
    rows = [
        ours(i, **({"amount_minor": sim._synthetic_amount(i) + 1} if i == 200 else {}))
        if i != 300
        else ours(i, currency="USD")
        for i in range(LINES)
        if i != 100  # we never heard of this one: the statement has it
    ]
    rows.append(ours(900_001, out_trade_no="P-NOT-AT-WECHAT", provider_trade_no="4200X1"))  # missing at channel
    rows.append(ours(900_002, out_trade_no="P-LATE", provider_trade_no="4200X2"))  # paid at 23:58: timing
    Payment.objects.bulk_create(rows, batch_size=1000)
    Payment.objects.filter(out_trade_no="P-LATE").update(succeeded_at=datetime.combine(day, time(23, 58), wire.BEIJING))
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant)
    for i in (400, 500):  # the ledger booked a fee for two of them: one fen too little on trade 400
        with transaction.atomic():
            facade.sale_post(
                out_trade_no=f"SYN{day:%Y%m%d}{i:010d}",
                order_no=f"O{i}",
                merchant_id=merchant.pk,
                gross_minor=sim._synthetic_amount(i),
                currency="CNY",
                channel_account_id=account.pk,
                channel_fee_minor=sim._fee(sim._synthetic_amount(i)) - (1 if i == 400 else 0),
                paid_at=noon,
            )

    assert reconciliation_day(channel_account_id=account.pk, day=day) == 0  # trade 100 is not ours to recover

    run = ReconRun.objects.get()
    assert (run.state, run.lines_seen) == ("done", LINES)
    found = sorted((e.kind, e.our_ref) for e in ReconException.objects.all())
    expected = sorted(
        [(kind, f"SYN{day:%Y%m%d}{i:010d}") for i, kind in planted.items()]
        + [("missing_at_channel", "P-NOT-AT-WECHAT"), ("timing", "P-LATE")]
    )
    assert found == expected  # each planted one, with its type, and not one more
    assert ReconException.objects.get(kind="fee").status == "resolved"  # adjusted: the channel's fee stands

    assert reconciliation_day(channel_account_id=account.pk, day=day) == 0
    assert ReconException.objects.count() == len(expected) and ReconRun.objects.count() == 1
