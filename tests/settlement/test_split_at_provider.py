"""Issue 12, proof 3: channel-side splitting end to end, Alipay royalty and WeChat Pay profit sharing, over real
HTTP against their simulators. A merchant whose plan splits at the provider is paid into its own account (the
platform is its service provider); once paid, the shop asks the provider to split the platform's fee off to the
platform's account; the provider's asynchronous result (its signed callback, or the janitor's query) is booked as
the sale's settlement, with no payout from our balance; a refund after the split takes the split back with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from django.db.models import Sum

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.refunds import order_refund_request
from cardshop.services.splits import splits_sync_due
from payments.models import ChannelAccount, Payment, TradeSplit
from payments.simulators.alipay import AlipaySimulator
from payments.simulators.wechatpay import WechatPaySimulator
from settlement import facade as settlement
from settlement.checks import ledger_check
from settlement.models import AccountKind, FeePlan, LedgerEntry, LedgerTransaction, PartyKind, ReleaseState, SaleRelease
from settlement.payouts import payouts_create_due
from settlement.splits import sale_split
from tests.cardshop.helpers import buy
from tests.conftest import make_product
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db(transaction=True)

PLATFORM_ALIPAY_USER = "2088101122334455"
PLATFORM_WECHAT_MCHID = "1900000109"
PLATFORM_NAME = "平台有限公司"


@pytest.fixture(scope="module")
def alipay_sim() -> Iterator[AlipaySimulator]:
    sim = AlipaySimulator().start()
    sim.account()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def wechat_sim() -> Iterator[WechatPaySimulator]:
    sim = WechatPaySimulator().start()
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def _sims_settle(alipay_sim, wechat_sim):
    yield
    alipay_sim.settle_at_once = True
    wechat_sim.split_auto_settle = True
    alipay_sim.faults.reset()
    wechat_sim.faults.reset()


def _accounts(sim, code: str, merchant_id: int, receiver: tuple[str, str]) -> tuple[ChannelAccount, ChannelAccount]:
    """The platform's own account at the provider (the split's receiver) and the merchant's own account."""
    acct = sim.account()
    platform = ChannelAccount.objects.create(
        code=code,
        name=f"{code} platform",
        merchant_no=f"{code}-platform",
        base_url=acct.base_url,
        enabled=False,  # it only receives splits here
        receiver_id=receiver[0],
        receiver_type=receiver[1],
        receiver_name=PLATFORM_NAME,
    )
    own = ChannelAccount(
        code=code,
        name=f"{code} merchant {merchant_id}",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        credentials=json.dumps(acct.credentials),
        fee_rate_bp=60,
        owner_merchant_id=merchant_id,
        split_to=platform,
    )
    own.full_clean()
    own.save()
    return platform, own


@pytest.fixture
def split_merchant():
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant, split_at_provider=True, reserve_bp=0, platform_fixed_minor=0)
    return merchant


def wait_for(check: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def balance(party_kind: str, party_id: int, kind: str) -> int:
    """An account's raw (debit-normal) balance: the sum of its entries."""
    total = LedgerEntry.objects.filter(
        account__party_kind=party_kind, account__party_id=party_id, account__kind=kind
    ).aggregate(s=Sum("amount_minor"))["s"]
    return total or 0


def every_balance() -> dict[tuple[str, int, str], int]:
    rows = LedgerEntry.objects.values_list("account__party_kind", "account__party_id", "account__kind").annotate(
        s=Sum("amount_minor")
    )
    return {(pk, pid, kind): s for pk, pid, kind, s in rows if s}


def _pay_and_split(sim, pay: Callable[[str], None], merchant, own: ChannelAccount, method: str):
    product = make_product(merchant, secrets_count=3)
    order = buy(product)
    view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", method=method)
    payment = Payment.objects.get(out_trade_no=view.out_trade_no)
    assert payment.account_id == own.pk  # routed to the merchant's own account, created splittable
    pay(view.out_trade_no)  # the provider's signed paid callback reaches /notify/<code>/ over HTTP
    wait_for(lambda: Order.objects.get(pk=order.pk).state == OrderState.DELIVERED, "the order delivered")
    return Order.objects.get(pk=order.pk), payment


def _assert_split_booked(order: Order, payment: Payment, own: ChannelAccount, platform: ChannelAccount) -> int:
    split = TradeSplit.objects.get(payment=payment)
    assert split.status == "succeeded" and split.receiver_id == platform.pk
    release = SaleRelease.objects.get(sale__idempotency_key=f"sale:{payment.out_trade_no}")
    assert release.pending_state == ReleaseState.SPLIT
    gross, fee = payment.amount_minor, release.channel_fee_minor
    plan = FeePlan.objects.get(merchant_id=order.merchant_id)
    plan_fee = sale_split(gross, "CNY", plan, [], fee).platform_fee_minor  # what the plan charges on this sale
    assert split.amount_minor == gross - fee - release.pending_minor == plan_fee  # the merchant bears the fee
    # The ledger: the merchant's part left for its own balance, the platform's share sits at its own account.
    assert balance(PartyKind.MERCHANT, order.merchant_id, AccountKind.MERCHANT_PENDING) == 0
    assert balance(PartyKind.CHANNEL_ACCOUNT, own.pk, AccountKind.CHANNEL_CLEARING) == 0
    assert balance(PartyKind.CHANNEL_ACCOUNT, platform.pk, AccountKind.CHANNEL_CLEARING) == split.amount_minor
    assert -balance(PartyKind.PLATFORM, 0, AccountKind.PLATFORM_REVENUE) == split.amount_minor
    # Nothing for a payout to pay: the merchant was paid by the provider.
    assert settlement.merchant_balances(merchant_id=order.merchant_id, currency="CNY").available_minor == 0
    assert payouts_create_due() == []
    return split.amount_minor


def _assert_refund_took_the_split_back(order: Order, payment: Payment) -> None:
    view = order_refund_request(order_no=order.order_no, actor="op", reason="buyer asked")
    wait_for(lambda: Order.objects.get(pk=order.pk).state == OrderState.REFUNDED, "the refund done")
    assert TradeSplit.objects.get(payment=payment).returned_by == view.refund_no
    assert every_balance() == {}  # every account back to zero: the sale, its split and its refund net out
    kinds = sorted(LedgerTransaction.objects.filter(reference=order.order_no).values_list("kind", flat=True))
    assert kinds == ["refund", "sale", "split"]
    assert ledger_check().problems == ()  # every payment and refund booked, every posting balanced


def test_alipay_royalty_from_payment_to_split_to_refund(public_url, alipay_sim, split_merchant):
    platform, own = _accounts(alipay_sim, "alipay", split_merchant.pk, (PLATFORM_ALIPAY_USER, "userId"))
    order, payment = _pay_and_split(alipay_sim, alipay_sim.pay, split_merchant, own, "alipay")
    # The paid path asked for the split after commit; Alipay settles asynchronously and notifies (settle notify).
    wait_for(lambda: TradeSplit.objects.get(payment=payment).status == "succeeded", "the settle notify")
    share = _assert_split_booked(order, payment, own, platform)
    at_alipay = alipay_sim.split_ledger(payment.wire_out_trade_no)
    assert at_alipay["royalty_freeze"] and at_alipay["received"] == {PLATFORM_ALIPAY_USER: share}
    assert at_alipay["released"] == payment.amount_minor - share  # royalty_finish: the rest is the merchant's
    assert len(alipay_sim.executed_settles()) == 1

    # The settle notify as Alipay sent it: a replay is acknowledged and books nothing twice; a forgery is refused.
    attempts = alipay_sim.trade_for(payment.wire_out_trade_no)["notify_attempts"]
    settle = next(a for a in attempts if a.get("params", {}).get("msg_method") == "alipay.trade.order.settle.notify")
    assert settle["acknowledged"]
    url = f"{public_url}/notify/alipay/"
    assert requests.post(url, data=settle["params"]).text == "success"
    forged = {**settle["params"], "biz_content": settle["params"]["biz_content"].replace('"SUCCESS"', '"FAIL"')}
    refused = requests.post(url, data=forged)
    assert refused.status_code == 400 and "bad_signature" in refused.text
    assert LedgerTransaction.objects.filter(kind="split").count() == 1
    assert TradeSplit.objects.get(payment=payment).status == "succeeded"

    _assert_refund_took_the_split_back(order, payment)
    at_alipay = alipay_sim.split_ledger(payment.wire_out_trade_no)
    assert at_alipay["refunded"] == payment.amount_minor
    assert at_alipay["returned"] == {PLATFORM_ALIPAY_USER: share}  # refund_royalty_parameters took it back


def test_wechat_profit_sharing_from_payment_to_split_to_refund(public_url, wechat_sim, split_merchant):
    platform, own = _accounts(wechat_sim, "wechatpay", split_merchant.pk, (PLATFORM_WECHAT_MCHID, "MERCHANT_ID"))
    order, payment = _pay_and_split(wechat_sim, wechat_sim.pay, split_merchant, own, "wxpay")
    # WeChat answers PROCESSING, settles, then sends PROFITSHARING.SUCCESS: verified, then confirmed by query.
    wait_for(lambda: TradeSplit.objects.get(payment=payment).status == "succeeded", "the profit sharing callback")
    share = _assert_split_booked(order, payment, own, platform)
    at_wechat = wechat_sim.split_ledger(payment.wire_out_trade_no)
    assert at_wechat["split"] == share and at_wechat["frozen"] == 0
    assert at_wechat["released"] == payment.amount_minor - share  # unfreeze_unsplit: the rest is the merchant's

    _assert_refund_took_the_split_back(order, payment)
    at_wechat = wechat_sim.split_ledger(payment.wire_out_trade_no)
    assert at_wechat["refunded"] == payment.amount_minor
    assert at_wechat["returned"] == share  # 分账回退 before the refund


def test_a_lost_split_answer_is_found_by_the_janitor_and_booked_once(public_url, wechat_sim, split_merchant):
    platform, own = _accounts(wechat_sim, "wechatpay", split_merchant.pk, (PLATFORM_WECHAT_MCHID, "MERCHANT_ID"))
    wechat_sim.split_auto_settle = False  # WeChat is still splitting when the shop's task has its answer
    order, payment = _pay_and_split(wechat_sim, wechat_sim.pay, split_merchant, own, "wxpay")
    split = TradeSplit.objects.get(payment=payment)
    wait_for(lambda: TradeSplit.objects.get(pk=split.pk).status == "submitted", "the split accepted")
    wechat_sim.faults.drop_notify = 1  # the PROFITSHARING callback is lost
    wechat_sim.settle_split(split.split_no, background=False)
    assert TradeSplit.objects.get(pk=split.pk).status == "submitted"
    TradeSplit.objects.filter(pk=split.pk).update(next_query_at=payment.created_at)  # its look is due
    assert splits_sync_due() == 1  # the janitor's query finds it finished
    _assert_split_booked(order, payment, own, platform)
    assert splits_sync_due() == 0  # final: not asked again
    assert LedgerTransaction.objects.filter(kind="split").count() == 1


def test_a_refund_while_the_provider_is_splitting_waits_for_the_split(public_url, alipay_sim, split_merchant):
    from payments.contracts import RefundRefused

    _, own = _accounts(alipay_sim, "alipay", split_merchant.pk, (PLATFORM_ALIPAY_USER, "userId"))
    alipay_sim.settle_at_once = False
    order, payment = _pay_and_split(alipay_sim, alipay_sim.pay, split_merchant, own, "alipay")
    wait_for(lambda: TradeSplit.objects.get(payment=payment).status == "submitted", "the settle accepted")
    with pytest.raises(RefundRefused) as refused:
        order_refund_request(order_no=order.order_no, actor="op", reason="too early")
    assert refused.value.code == "split_in_progress"
    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED  # nothing changed


def test_another_merchants_payments_never_reach_a_merchants_own_account(alipay_sim, split_merchant, epay_account):
    _, own = _accounts(alipay_sim, "alipay", split_merchant.pk, (PLATFORM_ALIPAY_USER, "userId"))
    other = MerchantFactory()
    order = buy(make_product(other, secrets_count=1))
    view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", method="alipay")
    assert Payment.objects.get(out_trade_no=view.out_trade_no).account_id == epay_account.pk
    assert own.payments.count() == 0
