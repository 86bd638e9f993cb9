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

A refund may take part of a sale: each part of it is taken back in proportion to what is left of it (the fee too,
by the same rule, where the channel returns it or the merchant bears it), and the refund that takes the rest takes
exactly what is left, so the whole sale ends reversed line for line. What each refund took is kept on the sale's
release row (`refunded_minor`, `refunded_parts`); a held part's release pays out only what is left of it. A sale
split at the provider, and money in suspense, are refunded whole. Key `refund:<refund_no>`; a replay is a no-op.
"""

from __future__ import annotations

import logging

from core.money import Money, allocate
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


def _share(remaining: int, *, amount: int, of: int) -> int:
    """`remaining` x amount / of, rounded half up: a fee's part in a partial refund (all of it when amount == of)."""
    return remaining if amount == of else (2 * remaining * amount + of) // (2 * of)


def _sale_reversal_lines(
    sale: LedgerTransaction, *, key: str, returns_fee: bool, amount_minor: int
) -> tuple[list[Line], tuple[LedgerAccount, ...], SaleRelease]:
    """The lines taking `amount_minor` of the sale back (module docstring). A partial refund takes each part of the
    sale in proportion to what is left of it (largest remainder, so the lines balance to the minor unit); the refund
    that takes the rest takes exactly what is left of every part, so after it the sale is reversed line for line."""
    release = sale_release_locked(sale_id=sale.pk)
    if release is None:
        raise SettlementError("release_missing", f"sale {sale.idempotency_key} has no release row")
    if release.refund_key and release.refund_key != key:
        raise SettlementError("already_refunded", f"{sale.idempotency_key} was reversed by {release.refund_key}")
    left_gross = release.gross_minor - release.refunded_minor
    if not 0 < amount_minor <= left_gross:
        raise SettlementError(
            "refund_mismatch",
            f"refund of {amount_minor} exceeds the {left_gross} left of {sale.idempotency_key}",
        )
    whole = amount_minor == release.gross_minor
    if release.pending_state in (ReleaseState.AT_PROVIDER, ReleaseState.SPLIT):
        if not whole:
            raise SettlementError("partial_refund_split", "a sale split at the provider is refunded whole")
        lines = _split_sale_reversal_lines(sale, release)
        release.refund_key = key
        return lines, (), release
    currency = release.currency
    done: dict[str, int] = dict(release.refunded_parts or {})
    merchant_bears = not returns_fee and release.refund_fee_borne_by == FeeBearer.MERCHANT
    merchant = (PartyKind.MERCHANT, release.merchant_id)
    # What the sale credited, part by part (debited back in proportion): the agents' and the platform's lines,
    # then the merchant's net and reserve.
    credited: list[tuple[str, tuple[str, int, str] | None, int]] = [
        (f"line:{e.account_id}", (e.account.party_kind, e.account.party_id, e.account.kind), -e.amount_minor)
        for e in sale.entries.select_related("account").order_by("pk")
        if e.amount_minor < 0 and e.account.kind not in (*MERCHANT_CREDIT_KINDS, AccountKind.MERCHANT_RESERVE)
    ]
    credited += [("pending", None, release.pending_minor), ("reserve", None, release.reserve_minor)]
    left = [full - done.get(name, 0) for name, _spec, full in credited]
    if amount_minor == left_gross:
        taken = left
    else:
        taken = [m.amount_minor for m in allocate(Money(amount_minor, currency), left)]
    fee_left = release.channel_fee_minor - done.get("fee", 0)
    fee_part = _share(fee_left, amount=amount_minor, of=left_gross) if (returns_fee or merchant_bears) else 0
    parts: list[tuple[tuple[str, int, str], int]] = []
    from_available = fee_part if merchant_bears else 0
    for (name, spec, _full), take in zip(credited, taken, strict=True):
        done[name] = done.get(name, 0) + take
        if not take:
            continue
        if spec is not None:
            parts.append((spec, take))
        elif name == "pending" and release.pending_state == ReleaseState.HELD:
            parts.append(((*merchant, AccountKind.MERCHANT_PENDING), take))
        elif name == "reserve" and release.reserve_state == ReleaseState.HELD:
            parts.append(((*merchant, AccountKind.MERCHANT_RESERVE), take))
        else:  # released already: from the merchant's available money (what it cannot cover, owed)
            from_available += take
    clearing_back = amount_minor - fee_part if returns_fee else amount_minor
    channel = PartyKind.CHANNEL_ACCOUNT, release.channel_account_id
    parts += [
        ((*channel, AccountKind.CHANNEL_CLEARING), -clearing_back),
        ((*channel, AccountKind.CHANNEL_FEE_EXPENSE), -fee_part),
    ]
    parts = [(spec, amount) for spec, amount in parts if amount]
    accounts = ledger_accounts(currency=currency, specs=[spec for spec, _ in parts])
    lines = [Line(account_id=accounts[spec].pk, amount_minor=amount, currency=currency) for spec, amount in parts]
    locked: tuple[LedgerAccount, ...] = ()
    if from_available:
        available, owed = locked = merchant_money_locked(merchant_id=release.merchant_id, currency=currency)
        taken_back: list[tuple[LedgerAccount, int]] = debit_parts(
            available=available, owed=owed, amount_minor=from_available
        )
        lines += [Line(account_id=a.pk, amount_minor=amount, currency=currency) for a, amount in taken_back]
    done["fee"] = done.get("fee", 0) + fee_part
    release.refunded_parts = done
    release.refunded_minor += amount_minor
    if release.refunded_minor == release.gross_minor:  # the last of it: the sale is reversed
        release.refund_key = key
        if release.pending_state == ReleaseState.HELD:
            release.pending_state = ReleaseState.REVERSED
        if release.reserve_state == ReleaseState.HELD:
            release.reserve_state = ReleaseState.REVERSED
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
    if booked.entries.exclude(currency=currency).exists():
        raise SettlementError("refund_mismatch", f"refund {refund_no} in {currency} is not in the currency of {booked}")
    locked: tuple[LedgerAccount, ...] = ()
    release = None
    if sale is not None:
        lines, locked, release = _sale_reversal_lines(
            sale, key=key, returns_fee=channel_returns_fee, amount_minor=amount_minor
        )
    else:  # money in suspense belongs to no sale: it goes back whole
        gross = sum(e.amount_minor for e in booked.entries.all() if e.amount_minor > 0)
        if amount_minor != gross:
            raise SettlementError(
                "refund_mismatch", f"refund {refund_no} of {amount_minor} {currency} is not the whole of {booked}"
            )
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
        release.save(update_fields=["pending_state", "reserve_state", "refund_key", "refunded_minor", "refunded_parts"])
    return txn
