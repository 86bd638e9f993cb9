"""The refund reversal: when a refund is final, what its payment booked is taken back exactly.

A payment booked as a sale (`sale:<out_trade_no>`): every credit of the sale is debited back, the agents' and the
platform's line for line; the merchant's net and reserve from where they are now: pending and reserve while still
held (their release is then cancelled), merchant available once released, and what available cannot cover is
debited to merchant owed (netted against the merchant's next money; available never goes below zero, so a
payout can never spend it). The channel side is credited: clearing what the channel takes back and, when the
channel account returns its fee on refund (Alipay, WeChat Pay), the fee expense that fee. When the channel keeps
its fee (Stripe), the plan in force at the sale says who bears it (FeePlan.refund_fee_borne_by): the platform
(default: the fee stays in its channel fee expense) or the merchant (debited the fee as well, which recovers the
expense). A payment held in suspense (`suspense:<out_trade_no>`, never a sale) is taken out of suspense; a fee
the channel keeps there is the platform's.

Refunds are whole (payments refunds a payment in full). Key `refund:<refund_no>`; a replay is a no-op.
"""

from __future__ import annotations

import logging

from settlement.contracts import SettlementError
from settlement.ledger import Line, ledger_accounts, ledger_post, require_atomic
from settlement.locks import sale_release_locked
from settlement.models import (
    PLATFORM_PARTY_ID,
    AccountKind,
    FeeBearer,
    LedgerAccount,
    LedgerTransaction,
    PartyKind,
    ReleaseState,
    SaleRelease,
    TransactionKind,
)
from settlement.services.merchant_money import debit_parts, merchant_money_locked
from settlement.services.sales import sale_key, suspense_facts, suspense_key

log = logging.getLogger(__name__)

MERCHANT_CREDIT_KINDS = (AccountKind.MERCHANT_PENDING, AccountKind.MERCHANT_AVAILABLE, AccountKind.MERCHANT_OWED)


def refund_key(refund_no: str) -> str:
    return f"refund:{refund_no}"


def _channel_parts(
    *, channel_account_id: int, gross: int, fee: int, returns_fee: bool, merchant_bears: bool
) -> list[tuple[tuple[str, int, str], int]]:
    fee_back = fee if returns_fee or merchant_bears else 0
    clearing_back = gross - fee if returns_fee else gross
    parts = [
        ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_CLEARING), -clearing_back),
        ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_FEE_EXPENSE), -fee_back),
    ]
    return [(spec, amount) for spec, amount in parts if amount]


def _sale_reversal_lines(
    sale: LedgerTransaction, *, key: str, returns_fee: bool
) -> tuple[list[Line], tuple[LedgerAccount, ...], SaleRelease]:
    release = sale_release_locked(sale_id=sale.pk)
    if release is None:
        raise SettlementError("release_missing", f"sale {sale.idempotency_key} has no release row")
    if release.refund_key and release.refund_key != key:
        raise SettlementError("already_refunded", f"{sale.idempotency_key} was reversed by {release.refund_key}")
    if release.pending_state in (ReleaseState.AT_PROVIDER, ReleaseState.SPLIT):
        lines = _split_sale_reversal_lines(sale, release)
        release.refund_key = key
        return lines, (), release
    currency = release.currency
    merchant_bears = not returns_fee and release.refund_fee_borne_by == FeeBearer.MERCHANT
    # The agents' and the platform's credits, line for line (the merchant's are placed below).
    parts: list[tuple[tuple[str, int, str], int]] = [
        ((e.account.party_kind, e.account.party_id, e.account.kind), -e.amount_minor)
        for e in sale.entries.select_related("account")
        if e.amount_minor < 0 and e.account.kind not in (*MERCHANT_CREDIT_KINDS, AccountKind.MERCHANT_RESERVE)
    ]
    merchant = (PartyKind.MERCHANT, release.merchant_id)
    from_available = fee_kept = release.channel_fee_minor if merchant_bears else 0
    if release.pending_state == ReleaseState.HELD:
        parts.append(((*merchant, AccountKind.MERCHANT_PENDING), release.pending_minor))
        release.pending_state = ReleaseState.REVERSED
    else:
        from_available += release.pending_minor
    if release.reserve_state == ReleaseState.HELD:
        parts.append(((*merchant, AccountKind.MERCHANT_RESERVE), release.reserve_minor))
        release.reserve_state = ReleaseState.REVERSED
    else:
        from_available += release.reserve_minor
    parts += _channel_parts(
        channel_account_id=release.channel_account_id,
        gross=release.gross_minor,
        fee=release.channel_fee_minor,
        returns_fee=returns_fee,
        merchant_bears=fee_kept > 0,
    )
    parts = [(spec, amount) for spec, amount in parts if amount]
    accounts = ledger_accounts(currency=currency, specs=[spec for spec, _ in parts])
    lines = [Line(account_id=accounts[spec].pk, amount_minor=amount, currency=currency) for spec, amount in parts]
    locked: tuple[LedgerAccount, ...] = ()
    if from_available:
        available, owed = locked = merchant_money_locked(merchant_id=release.merchant_id, currency=currency)
        taken: list[tuple[LedgerAccount, int]] = debit_parts(
            available=available, owed=owed, amount_minor=from_available
        )
        lines += [Line(account_id=a.pk, amount_minor=amount, currency=currency) for a, amount in taken]
    release.refund_key = key
    return lines, locked, release


def _split_sale_reversal_lines(sale: LedgerTransaction, release: SaleRelease) -> list[Line]:
    """A sale on the merchant's own account (split at the provider). Its credits are debited back line for line;
    the channel side is what the provider takes back from where the money is now. Not split yet: the trade's
    remittance from the merchant's account (its fee is the merchant's, whatever the channel does with it). Split:
    the platform's share from the platform's receiving account (the refund returns the split), the merchant's
    part being the merchant's own money in its own balance, outside the ledger since the split released it."""
    currency = release.currency
    entries = list(sale.entries.select_related("account"))
    if release.pending_state == ReleaseState.AT_PROVIDER:
        lines = [Line(account_id=e.account_id, amount_minor=-e.amount_minor, currency=currency) for e in entries]
        release.pending_state = ReleaseState.REVERSED
        return lines
    lines = [
        Line(account_id=e.account_id, amount_minor=-e.amount_minor, currency=currency)
        for e in entries
        if e.account.kind not in (AccountKind.CHANNEL_CLEARING, AccountKind.MERCHANT_PENDING)
    ]
    split = LedgerTransaction.objects.get(idempotency_key=release.split_key)
    for entry in split.entries.select_related("account"):
        if entry.amount_minor > 0 and entry.account.kind == AccountKind.CHANNEL_CLEARING:
            lines.append(Line(account_id=entry.account_id, amount_minor=-entry.amount_minor, currency=currency))
    return lines


def _suspense_reversal_lines(held: LedgerTransaction, *, returns_fee: bool) -> list[Line]:
    facts = suspense_facts(held)
    parts = [((PartyKind.PLATFORM, PLATFORM_PARTY_ID, AccountKind.SUSPENSE), facts.gross_minor)]
    parts += _channel_parts(
        channel_account_id=facts.channel_account_id,
        gross=facts.gross_minor,
        fee=facts.channel_fee_minor,
        returns_fee=returns_fee,
        merchant_bears=False,
    )
    accounts = ledger_accounts(currency=facts.currency, specs=[spec for spec, _ in parts])
    return [Line(account_id=accounts[spec].pk, amount_minor=amount, currency=facts.currency) for spec, amount in parts]


def refund_post(
    *, refund_no: str, out_trade_no: str, amount_minor: int, currency: str, channel_returns_fee: bool
) -> LedgerTransaction | None:
    """Reverse what the refunded payment booked (module docstring). None when the payment booked nothing (it
    was paid before the ledger existed): the invariant check lists such payments."""
    require_atomic()
    key = refund_key(refund_no)
    existing = LedgerTransaction.objects.filter(idempotency_key=key).first()
    if existing is not None:
        existing.replayed = True
        return existing
    sale = LedgerTransaction.objects.filter(idempotency_key=sale_key(out_trade_no)).first()
    held = None if sale else LedgerTransaction.objects.filter(idempotency_key=suspense_key(out_trade_no)).first()
    booked = sale or held
    if booked is None:
        log.error("refund %s: payment %s has no sale or suspense posting to reverse", refund_no, out_trade_no)
        return None
    if sale is not None:  # the release row keeps the gross (a sale split at the provider debits only the net)
        gross = SaleRelease.objects.filter(sale=sale).values_list("gross_minor", flat=True).first()
    else:
        gross = sum(e.amount_minor for e in booked.entries.all() if e.amount_minor > 0)
    if amount_minor != gross or booked.entries.exclude(currency=currency).exists():
        raise SettlementError(
            "refund_mismatch", f"refund {refund_no} of {amount_minor} {currency} is not the whole of {booked}"
        )
    locked: tuple[LedgerAccount, ...] = ()
    release = None
    if sale is not None:
        lines, locked, release = _sale_reversal_lines(sale, key=key, returns_fee=channel_returns_fee)
    else:
        lines = _suspense_reversal_lines(held, returns_fee=channel_returns_fee)
    txn = ledger_post(
        key=key,
        kind=TransactionKind.REFUND,
        reference=booked.reference,
        lines=lines,
        memo=f"reverses {booked.idempotency_key}",
        key_checked=True,
        locked=locked,
    )
    if release is not None:  # written only once the posting is: a refused posting changes nothing
        release.save(update_fields=["pending_state", "reserve_state", "refund_key"])
    return txn
