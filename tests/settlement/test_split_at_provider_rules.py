"""Issue 12, channel-side splitting: the rules around it, without a provider. Which accounts may be a merchant's
own, what a plan split at the provider may say, how such a sale is booked, what the split posting refuses, and a
refund before the split (the unsent split cancelled, the ledger back to zero)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum

from core.money import Money
from payments.contracts import SplitRefused
from payments.models import ChannelAccount, Payment, TradeSplit
from payments.services.refunds import payment_refund_request
from payments.services.splits import split_request
from settlement import facade
from settlement.contracts import SettlementError
from settlement.models import FeePlan, LedgerEntry, LedgerTransaction, ReleaseState, SaleRelease
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db


def _platform_account(**kw) -> ChannelAccount:
    fields = dict(
        code="alipay",
        name="platform",
        merchant_no="2021000000000001",
        base_url="https://openapi.alipay.com/gateway.do",
        receiver_id="2088101122334455",
        receiver_type="userId",
        receiver_name="平台有限公司",
    )
    return ChannelAccount.objects.create(**{**fields, **kw})


def _own_account(merchant_id: int, split_to: ChannelAccount | None, **kw) -> ChannelAccount:
    fields = dict(
        code="alipay",
        name="merchant's own",
        merchant_no="2021000000000002",
        base_url="https://openapi.alipay.com/gateway.do",
        owner_merchant_id=merchant_id,
        split_to=split_to,
    )
    return ChannelAccount(**{**fields, **kw})


def _error_fields(account: ChannelAccount) -> set[str]:
    with pytest.raises(ValidationError) as exc:
        account.clean()
    return set(exc.value.message_dict)


def test_a_merchants_own_account_must_split_to_a_platform_account_of_its_provider():
    platform = _platform_account()
    assert _error_fields(_own_account(1, None)) == {"split_to"}
    assert _error_fields(_own_account(1, platform, code="wechatpay", base_url="https://api.mch.weixin.qq.com")) == {
        "split_to"
    }
    other_merchants = _platform_account(
        name="another merchant's", owner_merchant_id=MerchantFactory().pk, split_to=platform
    )
    assert _error_fields(_own_account(1, other_merchants)) == {"split_to"}
    nameless = _platform_account(name="no receiver id", receiver_id="")
    assert _error_fields(_own_account(1, nameless)) == {"split_to"}
    platform_with_target = _platform_account(name="plain")
    platform_with_target.split_to = platform
    assert _error_fields(platform_with_target) == {"split_to"}  # only a merchant's own account splits
    _own_account(1, platform).clean()  # the one that is right


def test_a_plan_split_at_the_provider_holds_no_reserve():
    plan = FeePlan(merchant=MerchantFactory(), platform_rate_bp=500, reserve_bp=1000, split_at_provider=True)
    with pytest.raises(ValidationError) as exc:
        plan.clean()
    assert set(exc.value.message_dict) == {"reserve_bp"}
    plan.reserve_bp = 0
    plan.clean()


def _split_sale(merchant, own: ChannelAccount, out_trade_no="P-SPLIT-1", gross=990, fee=6):
    with transaction.atomic():
        return facade.sale_post(
            out_trade_no=out_trade_no,
            order_no="O-SPLIT-1",
            merchant_id=merchant.pk,
            gross_minor=gross,
            currency="CNY",
            channel_account_id=own.pk,
            channel_fee_minor=fee,
            split_at_provider=True,
        )


def _balances() -> dict[tuple[str, int, str], int]:
    rows = LedgerEntry.objects.values_list("account__party_kind", "account__party_id", "account__kind").annotate(
        s=Sum("amount_minor")
    )
    return {(pk, pid, kind): s for pk, pid, kind, s in rows if s}


def test_a_sale_on_a_merchants_own_account_waits_at_the_provider_and_the_merchant_bears_its_fee():
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant, split_at_provider=True, reserve_bp=0, agent_commission_bp=[])
    own = _own_account(merchant.pk, _platform_account())
    own.save()
    _split_sale(merchant, own)
    # 9.90 at 500 bp + 0.10: the platform's fee is 0.60; the channel kept 0.06 of the merchant's own money.
    assert _balances() == {
        ("channel_account", own.pk, "channel_clearing"): 984,
        ("merchant", merchant.pk, "merchant_pending"): -924,
        ("platform", 0, "platform_revenue"): -60,
    }
    release = SaleRelease.objects.get()
    assert (release.pending_state, release.reserve_minor, release.channel_fee_minor) == ("at_provider", 0, 6)
    assert facade.sale_provider_share(out_trade_no="P-SPLIT-1") == 60
    assert facade.releases_due(now=release.pending_due_at.replace(year=2100)) == 0  # never released by us


def test_a_split_of_another_amount_is_refused_and_changes_nothing():
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant, split_at_provider=True, reserve_bp=0, agent_commission_bp=[])
    platform = _platform_account()
    own = _own_account(merchant.pk, platform)
    own.save()
    _split_sale(merchant, own)
    before = _balances()
    with pytest.raises(SettlementError) as exc, transaction.atomic():
        facade.split_post(
            out_trade_no="P-SPLIT-1", split_no="S1", amount_minor=61, currency="CNY", receiver_account_id=platform.pk
        )
    assert exc.value.code == "split_mismatch"
    assert _balances() == before and SaleRelease.objects.get().pending_state == ReleaseState.AT_PROVIDER
    with transaction.atomic():
        facade.split_post(
            out_trade_no="P-SPLIT-1", split_no="S1", amount_minor=60, currency="CNY", receiver_account_id=platform.pk
        )
        replay = facade.split_post(
            out_trade_no="P-SPLIT-1", split_no="S1", amount_minor=60, currency="CNY", receiver_account_id=platform.pk
        )
    assert replay.replayed and LedgerTransaction.objects.filter(kind="split").count() == 1
    assert _balances() == {
        ("channel_account", platform.pk, "channel_clearing"): 60,
        ("platform", 0, "platform_revenue"): -60,
    }


def test_a_refund_before_the_split_was_sent_cancels_it_and_nets_the_ledger_to_zero():
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant, split_at_provider=True, reserve_bp=0)
    own = _own_account(merchant.pk, _platform_account())
    own.save()
    payment = Payment.objects.create(
        out_trade_no="P-SPLIT-1",
        reference="O-SPLIT-1",
        account=own,
        channel_code="alipay",
        amount_minor=990,
        currency="CNY",
        status="succeeded",
        provider_trade_no="2026120422001",
    )
    _split_sale(merchant, own)
    with transaction.atomic():
        split = split_request(out_trade_no=payment.out_trade_no, amount=Money(60, "CNY"))
        assert split_request(out_trade_no=payment.out_trade_no, amount=Money(60, "CNY")) == split  # asked once
    with transaction.atomic():
        refund = payment_refund_request(out_trade_no=payment.out_trade_no, reason="buyer", requested_by="op")
    assert TradeSplit.objects.get().status == "cancelled"
    with transaction.atomic():
        facade.refund_post(
            refund_no=refund.refund_no,
            out_trade_no=payment.out_trade_no,
            amount_minor=990,
            currency="CNY",
            channel_returns_fee=True,
        )
    assert _balances() == {}
    assert SaleRelease.objects.get().pending_state == ReleaseState.REVERSED
    with pytest.raises(SplitRefused), transaction.atomic():  # the trade is being refunded: nothing to split now
        split_request(out_trade_no=payment.out_trade_no, amount=Money(60, "CNY"))
