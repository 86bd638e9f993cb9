"""Issue 12, proof 4 at scale: a day of 3,000 trades on WeChat Pay's real tradebill (downloaded, hash-checked,
parsed as it streams) against our records with one discrepancy of each kind planted on our side: each is found with
its type and nothing else, and a second run of the day changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta

import pytest
from django.db import transaction

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.reconciliation import reconciliation_day
from payments.channels.wechatpay import wire
from payments.models import ChannelAccount, Payment, Refund
from payments.simulators.wechatpay import WechatPaySimulator
from settlement import facade
from settlement.models import LedgerTransaction, ReconException, ReconRun
from tests.cardshop.helpers import buy
from tests.conftest import make_product
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db

LINES = 3000


@pytest.fixture(scope="module")
def sim() -> Iterator[WechatPaySimulator]:
    s = WechatPaySimulator().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _statement_reset(sim):
    yield
    sim.statement_reset()
    sim.faults.reset()


def _wechat_account(sim, **kw) -> ChannelAccount:
    acct = sim.account()
    return ChannelAccount.objects.create(
        code="wechatpay",
        name="wechat (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency="CNY",
        credentials=json.dumps(acct.credentials),
        **kw,
    )


def _ref(day, i: int) -> str:
    """Our number of the simulator's synthetic trade `i` of `day`."""
    return f"SYN{day:%Y%m%d}{i:010d}"


def _ours(sim, account, day, i: int, **change) -> Payment:
    """Our record of synthetic trade `i` (paid that day between noon and midnight), with `change` applied."""
    noon = datetime.combine(day, time(12), tzinfo=wire.BEIJING)
    fields = dict(
        out_trade_no=_ref(day, i),
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


def _fees_booked(sim, account, merchant, day) -> None:
    """The ledger booked a sale (and its fee) for trades 400 and 500: one fen too little on trade 400."""
    noon = datetime.combine(day, time(12), tzinfo=wire.BEIJING)
    for i in (400, 500):
        with transaction.atomic():
            facade.sale_post(
                out_trade_no=_ref(day, i),
                order_no=f"O{i}",
                merchant_id=merchant.pk,
                gross_minor=sim._synthetic_amount(i),
                currency="CNY",
                channel_account_id=account.pk,
                channel_fee_minor=sim._fee(sim._synthetic_amount(i)) - (1 if i == 400 else 0),
                paid_at=noon,
            )


def test_a_day_of_3000_trades_finds_each_planted_discrepancy_and_nothing_else(sim):
    day = datetime.now(wire.BEIJING).date() - timedelta(days=1)
    account = _wechat_account(sim)
    sim.statement_synthetic(day, LINES)

    def ours(i: int, **change) -> Payment:
        return _ours(sim, account, day, i, **change)

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
    _fees_booked(sim, account, merchant, day)

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


def test_proof_4_a_day_of_thousands_with_every_type_planted_recovers_the_lost_callback_and_runs_once(sim, settings):
    """The issue's proof 4 in one run, on WeChat Pay's real tradebill: 3,000 trades and, planted, one discrepancy
    of every type the issue names (missing in ledger, missing at channel, amount, currency, status, fee, duplicate,
    timing) plus a real order whose paid callback was lost. Each planted one is found with its type and nothing
    else; the lost callback is recovered to a delivered order; a second run of the day changes nothing."""
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"  # the simulator's callbacks reach nobody
    account = _wechat_account(sim, fee_rate_bp=60)
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant)

    # A buyer pays a real order at WeChat; its callback is lost, so our payment still waits.
    order = buy(make_product(merchant, secrets_count=2))
    lost = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", method="wxpay")
    sim.faults.drop_notify = 1
    sim.pay(lost.out_trade_no)
    assert Order.objects.get(pk=order.pk).state == OrderState.PENDING
    paid_at = datetime.fromisoformat(sim.trade_for(lost.out_trade_no)["success_time"])
    day = paid_at.astimezone(wire.BEIJING).date()  # the day of the bill that lists it

    sim.statement_synthetic(day, LINES)
    noon = datetime.combine(day, time(12), tzinfo=wire.BEIJING)

    def ours(i: int, **change) -> Payment:
        return _ours(sim, account, day, i, **change)

    def ref(i: int) -> str:
        return _ref(day, i)

    rows = [
        ours(i, amount_minor=sim._synthetic_amount(i) + 1)
        if i == 200
        else ours(i, currency="USD")
        if i == 300
        else ours(i)
        for i in range(LINES)
        if i != 100  # missing in ledger: the bill has it, we never heard of it
    ]
    rows.append(ours(900_001, out_trade_no="P-NOT-AT-WECHAT", provider_trade_no="4200X1"))  # missing at channel
    rows.append(ours(900_002, out_trade_no="P-LATE", provider_trade_no="4200X2"))  # timing
    rows.append(ours(900_003, out_trade_no="P-TWICE", provider_trade_no="4200X3", amount_minor=500))  # duplicate
    Payment.objects.bulk_create(rows, batch_size=1000)
    Payment.objects.filter(out_trade_no="P-LATE").update(succeeded_at=datetime.combine(day, time(23, 58), wire.BEIJING))
    twice = {"our_ref": "P-TWICE", "provider_ref": "4200X3", "amount": 500, "day": day, "time": noon.isoformat()}
    sim.statement_extra.append(twice)
    sim.statement_duplicate.add("P-TWICE")
    # Status: WeChat refunded trade 600, while our refund of it is still pending.
    held_open = Refund.objects.create(
        refund_no="RSYN600",
        payment=Payment.objects.get(out_trade_no=ref(600)),
        amount_minor=sim._synthetic_amount(600),
        currency="CNY",
        status="pending",
    )
    sim.statement_extra.append(
        {
            "kind": "refund",
            "our_ref": held_open.refund_no,
            "provider_ref": "50300000000000000600",
            "trade_ref": f"4200{day:%Y%m%d}{600:016d}",
            "trade_our_ref": ref(600),
            "amount": held_open.amount_minor,
            "fee": 0,
            "day": day,
            "time": noon.isoformat(),
        }
    )
    _fees_booked(sim, account, merchant, day)

    assert reconciliation_day(channel_account_id=account.pk, day=day) == 1  # the lost callback, recovered

    run = ReconRun.objects.get()
    assert (run.state, run.lines_seen) == ("done", LINES + 4)  # + the real trade, the refund, P-TWICE twice
    found = sorted((e.kind, e.our_ref) for e in ReconException.objects.all())
    wire_lost = Payment.objects.get(out_trade_no=lost.out_trade_no).wire_out_trade_no
    expected = sorted(
        [
            ("missing_in_ledger", ref(100)),
            ("missing_in_ledger", wire_lost),
            ("amount", ref(200)),
            ("currency", ref(300)),
            ("fee", ref(400)),
            ("status", "RSYN600"),
            ("missing_at_channel", "P-NOT-AT-WECHAT"),
            ("timing", "P-LATE"),
            ("duplicate", "P-TWICE"),
        ]
    )
    assert found == expected  # each planted one, with its type, and not one more
    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    recovered = ReconException.objects.get(kind="missing_in_ledger", our_ref=wire_lost)
    assert recovered.status == "resolved" and recovered.detail["resolution"].startswith("recovered")
    assert ReconException.objects.get(kind="fee").status == "resolved"  # adjusted: the channel's fee stands

    before = (ReconException.objects.count(), ReconRun.objects.count(), LedgerTransaction.objects.count())
    assert reconciliation_day(channel_account_id=account.pk, day=day) == 0
    assert (ReconException.objects.count(), ReconRun.objects.count(), LedgerTransaction.objects.count()) == before
