"""The sale posting: what one paid order owes each party, booked as one ledger transaction."""

from __future__ import annotations

from core.parties import agent_chain_for_merchant
from settlement.contracts import SettlementError
from settlement.ledger import IdempotencyConflict, Line, ledger_accounts, ledger_post, require_atomic
from settlement.models import (
    PLATFORM_PARTY_ID,
    AccountKind,
    Cycle,
    LedgerTransaction,
    PartyKind,
    TransactionKind,
)
from settlement.services.plans import fee_plan_active
from settlement.splits import Split, sale_split


def sale_key(out_trade_no: str) -> str:
    return f"sale:{out_trade_no}"


def sale_lines(*, split: Split, merchant_id: int, channel_account_id: int, to_available: bool) -> list[Line]:
    """Debit the channel's clearing (gross - fee) and the fee expense; credit merchant, reserve, agents, platform.

    Zero parts are left out (a line is never zero).
    """
    merchant_kind = AccountKind.MERCHANT_AVAILABLE if to_available else AccountKind.MERCHANT_PENDING
    parts = [
        ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_CLEARING), split.channel_net_minor),
        ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_FEE_EXPENSE), split.channel_fee_minor),
        ((PartyKind.MERCHANT, merchant_id, merchant_kind), -split.merchant_net_minor),
        ((PartyKind.MERCHANT, merchant_id, AccountKind.MERCHANT_RESERVE), -split.reserve_minor),
        *[
            ((PartyKind.AGENT, share.agent_id, AccountKind.AGENT_COMMISSION_PAYABLE), -share.amount_minor)
            for share in split.agents
        ],
        ((PartyKind.PLATFORM, PLATFORM_PARTY_ID, AccountKind.PLATFORM_REVENUE), -split.platform_net_minor),
    ]
    parts = [(spec, amount) for spec, amount in parts if amount]
    accounts = ledger_accounts(currency=split.currency, specs=[spec for spec, _ in parts])
    return [Line(account_id=accounts[spec].pk, amount_minor=amount, currency=split.currency) for spec, amount in parts]


def _same_sale(existing: LedgerTransaction, *, order_no: str, merchant_id: int, debits: set[tuple[int, int]]) -> bool:
    """A replay is the same sale when its reference, its merchant and its debit side (what the channel took)
    agree; the credit amounts depend on the plan and chain at posting time, which may have changed since."""
    entries = list(existing.entries.select_related("account"))
    posted = {(e.account_id, e.amount_minor) for e in entries if e.amount_minor > 0}
    merchants = {e.account.party_id for e in entries if e.account.party_kind == PartyKind.MERCHANT}
    return (
        existing.kind == TransactionKind.SALE
        and existing.reference == order_no
        and merchants == {merchant_id}
        and posted == debits
    )


def sale_post(
    *,
    out_trade_no: str,
    order_no: str,
    merchant_id: int,
    gross_minor: int,
    currency: str,
    channel_account_id: int,
    channel_fee_minor: int,
) -> LedgerTransaction:
    require_atomic()
    key = sale_key(out_trade_no)
    existing = LedgerTransaction.objects.filter(idempotency_key=key).first()
    if existing is not None:
        specs = [
            (
                (PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_CLEARING),
                gross_minor - channel_fee_minor,
            ),
            ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_FEE_EXPENSE), channel_fee_minor),
        ]
        accounts = ledger_accounts(currency=currency, specs=[spec for spec, _ in specs])
        debits = {(accounts[spec].pk, amount) for spec, amount in specs if amount}
        if not _same_sale(existing, order_no=order_no, merchant_id=merchant_id, debits=debits):
            raise IdempotencyConflict("idempotency_conflict", f"{key} was already posted for another sale")
        existing.replayed = True
        return existing

    plan = fee_plan_active(merchant_id=merchant_id, currency=currency)
    if plan is None:
        raise SettlementError("fee_plan_missing", f"merchant {merchant_id} has no active fee plan in {currency}")
    split = sale_split(
        gross_minor, currency, plan, agent_chain_for_merchant(merchant_id=merchant_id), channel_fee_minor
    )
    lines = sale_lines(
        split=split,
        merchant_id=merchant_id,
        channel_account_id=channel_account_id,
        to_available=plan.cycle == Cycle.T0,
    )
    return ledger_post(key=key, kind=TransactionKind.SALE, reference=order_no, lines=lines)
