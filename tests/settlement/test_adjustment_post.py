"""settlement.facade.adjustment_post: an operator's correction is a new balanced posting with a reason, audited
together with it; refused adjustments write nothing, not even the audit row."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from settlement import facade
from settlement.contracts import AdjustmentLine, SettlementError
from settlement.models import LedgerAccount, LedgerEntry, LedgerTransaction
from tests.factories.core import MerchantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def merchant():
    return MerchantFactory()


def test_an_adjustment_is_a_balanced_posting_with_its_reason_and_an_audit_row(merchant):
    facade.adjustment_post(
        currency="CNY",
        lines=[
            AdjustmentLine("channel_account", 77, "channel_fee_expense", 150),
            AdjustmentLine("merchant", merchant.pk, "merchant_available", -150),
        ],
        reason="  statement 2026-10-09: fee charged twice ",
        actor="alice",
        reference="O1",
    )

    txn = LedgerTransaction.objects.get()
    assert txn.kind == "adjustment" and txn.memo == "statement 2026-10-09: fee charged twice"
    assert txn.reference == "O1" and txn.idempotency_key.startswith("adjustment:")
    assert sorted(txn.entries.values_list("account__kind", "amount_minor")) == [
        ("channel_fee_expense", 150),
        ("merchant_available", -150),
    ]
    assert facade.merchant_balances(merchant_id=merchant.pk, currency="CNY").available_minor == 150
    event = AuditEvent.objects.get(action="ledger.adjustment")
    assert event.actor == "alice" and event.target == f"ledgertransaction:{txn.pk}"
    assert event.detail["reason"] == "statement 2026-10-09: fee charged twice"
    assert event.detail["lines"] == [
        ["channel_account", 77, "channel_fee_expense", 150],
        ["merchant", merchant.pk, "merchant_available", -150],
    ]


def test_a_correction_of_a_correction_is_another_posting_never_an_edit(merchant):
    first = facade.adjustment_post(
        currency="CNY",
        lines=[
            AdjustmentLine("channel_account", 77, "channel_fee_expense", 150),
            AdjustmentLine("merchant", merchant.pk, "merchant_available", -150),
        ],
        reason="fee charged twice",
        actor="alice",
    )
    entries_before = list(LedgerEntry.objects.values_list("pk", "amount_minor"))

    second = facade.adjustment_post(
        currency="CNY",
        lines=[
            AdjustmentLine("merchant", merchant.pk, "merchant_available", 150),
            AdjustmentLine("channel_account", 77, "channel_fee_expense", -150),
        ],
        reason="the first correction was wrong",
        actor="bob",
    )

    assert second.transaction_id != first.transaction_id
    assert list(LedgerEntry.objects.filter(transaction_id=first.transaction_id).values_list("pk", "amount_minor")) == (
        entries_before
    )
    assert facade.merchant_balances(merchant_id=merchant.pk, currency="CNY").available_minor == 0
    assert AuditEvent.objects.filter(action="ledger.adjustment").count() == 2


def test_the_same_key_twice_posts_and_audits_once(merchant):
    lines = [
        AdjustmentLine("channel_account", 77, "channel_fee_expense", 150),
        AdjustmentLine("merchant", merchant.pk, "merchant_available", -150),
    ]
    first = facade.adjustment_post(currency="CNY", lines=lines, reason="r", actor="recon", key="recon:2026-10-09:1")
    again = facade.adjustment_post(currency="CNY", lines=lines, reason="r", actor="recon", key="recon:2026-10-09:1")
    assert again.transaction_id == first.transaction_id and again.replayed is True
    assert LedgerTransaction.objects.count() == 1 and AuditEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("lines", "reason", "code"),
    [
        (
            [("channel_account", 77, "channel_fee_expense", 150), ("platform", 0, "platform_revenue", -149)],
            "r",
            "posting_unbalanced",
        ),
        (
            [("channel_account", 77, "channel_fee_expense", 150), ("platform", 0, "platform_revenue", -150)],
            " ",
            "reason_required",
        ),
        (
            [("merchant", 1, "merchant_available", 150), ("platform", 0, "platform_revenue", -150)],
            "r",
            "insufficient_funds",
        ),
        ([("agent", 1, "platform_revenue", 150), ("platform", 0, "platform_revenue", -150)], "r", "account_invalid"),
    ],
    ids=["unbalanced", "no-reason", "overdraws-available", "wrong-party"],
)
def test_a_refused_adjustment_writes_nothing(lines, reason, code):
    with pytest.raises(SettlementError) as refused:
        facade.adjustment_post(
            currency="CNY", lines=[AdjustmentLine(*line) for line in lines], reason=reason, actor="alice"
        )
    assert refused.value.code == code
    assert not LedgerTransaction.objects.exists() and not LedgerEntry.objects.exists()
    assert not LedgerAccount.objects.exists()
    assert not AuditEvent.objects.exists()
