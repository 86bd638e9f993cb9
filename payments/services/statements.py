"""What reconciliation reads from payments: the channel's statement (I/O) and what our records expect on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

from core.money import Money
from payments.channels.base import Capability, Statement
from payments.contracts import ExpectedLine, PaymentUnavailable
from payments.models import ChannelAccount, Payment, Refund, RefundStatus
from payments.services.adapters import adapter_for


def statement_fetch(*, channel_account_id: int, day: date) -> Statement:
    """The account's statement for `day`, streamed (adapter.statement). Raises the adapter's typed errors."""
    account = ChannelAccount.objects.get(pk=channel_account_id)
    adapter = adapter_for(account)
    if Capability.STATEMENT not in adapter.capabilities:
        raise PaymentUnavailable("statement_unsupported", f"channel {account.code} publishes no statement")
    return adapter.statement(day)


def statement_expected(*, channel_account_id: int, since: datetime, until: datetime) -> Iterator[ExpectedLine]:
    """Every payment of the account that took money, and every final refund of its payments, in [since, until):
    two streamed queries (iterator), so a day of 100,000 trades is never one list of models."""
    payments = (
        Payment.objects.filter(account_id=channel_account_id, succeeded_at__gte=since, succeeded_at__lt=until)
        .order_by("pk")
        .values_list(
            "out_trade_no",
            "collected_on__out_trade_no",
            "provider_trade_no",
            "amount_minor",
            "currency",
            "succeeded_at",
        )
    )
    for out_trade_no, collected_on, provider_ref, amount, currency, at in payments.iterator(chunk_size=2000):
        yield ExpectedLine(
            kind="payment",
            our_ref=collected_on or out_trade_no,
            provider_ref=provider_ref or "",
            amount=Money(amount, currency),
            at=at,
            out_trade_no=out_trade_no,
        )
    refunds = (
        Refund.objects.filter(
            payment__account_id=channel_account_id,
            status=RefundStatus.SUCCEEDED,
            succeeded_at__gte=since,
            succeeded_at__lt=until,
        )
        .order_by("pk")
        .values_list(
            "refund_no", "provider_refund_no", "amount_minor", "currency", "succeeded_at", "payment__out_trade_no"
        )
    )
    for refund_no, provider_ref, amount, currency, at, out_trade_no in refunds.iterator(chunk_size=2000):
        yield ExpectedLine(
            kind="refund",
            our_ref=refund_no,
            provider_ref=provider_ref or "",
            amount=Money(amount, currency),
            at=at,
            out_trade_no=out_trade_no,
        )


def payment_exists(*, out_trade_no: str) -> bool:
    return Payment.objects.filter(out_trade_no=out_trade_no).exists()


def payment_succeeded(*, out_trade_no: str) -> bool:
    return Payment.objects.filter(out_trade_no=out_trade_no, succeeded_at__isnull=False).exists()


def channel_account_names(*, account_ids: list[int]) -> dict[int, str]:
    """{id: "name (channel)"} of the given channel accounts, one query (operators' pages)."""
    return {
        pk: f"{name} ({code})"
        for pk, name, code in ChannelAccount.objects.filter(pk__in=account_ids).values_list("pk", "name", "code")
    }


def channel_account_currencies(*, account_ids: list[int]) -> dict[int, str]:
    """{id: currency} of the given channel accounts, one query (what their ledger accounts are kept in)."""
    return dict(ChannelAccount.objects.filter(pk__in=account_ids).values_list("pk", "currency"))


def refund_status(*, refund_no: str) -> str:
    """The status of our refund `refund_no`, "" when we have none by that number (one query, for the few
    statement lines reconciliation cannot match)."""
    return Refund.objects.filter(refund_no=refund_no).values_list("status", flat=True).first() or ""
