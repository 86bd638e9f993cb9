"""The sale posting: what one paid order owes each party, booked as one ledger transaction, and its release row.

A sale is booked from the channel (`sale_post`: the channel's clearing and fee expense are debited) or, when an
order paid while undeliverable is delivered later, from suspense (`sale_from_suspense_post`: suspense is
debited the gross it held). Either way the key is `sale:<out_trade_no>` and the credit side is the same split.
A merchant with no active fee plan in the currency is booked on the default plan from the settings
(SETTLEMENT_DEFAULT_PLATFORM_RATE_BP, SETTLEMENT_DEFAULT_CYCLE): a sale never fails for a missing plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from settlement.calendar import CalendarError, release_at
from settlement.contracts import SettlementError
from settlement.ledger import (
    AccountSpec,
    IdempotencyConflict,
    Line,
    ledger_accounts,
    ledger_post,
    require_atomic,
)
from settlement.models import (
    BALANCE_ROW_KINDS,
    PLATFORM_PARTY_ID,
    AccountKind,
    Cycle,
    FeeBearer,
    LedgerAccount,
    LedgerTransaction,
    PartyKind,
    ReleaseState,
    SaleRelease,
    TransactionKind,
)
from settlement.services.merchant_money import credit_parts, merchant_money_locked
from settlement.splits import Split, sale_split
from settlement.terms import SalePlan, sale_terms_read
from settlement.writes import Companion


def sale_key(out_trade_no: str) -> str:
    return f"sale:{out_trade_no}"


def suspense_key(out_trade_no: str) -> str:
    return f"suspense:{out_trade_no}"


def default_plan() -> SalePlan:
    """The plan of a merchant without one (settings)."""
    cycle = str(getattr(settings, "SETTLEMENT_DEFAULT_CYCLE", Cycle.T1)).strip().upper()
    n_days = 0
    if cycle.startswith("D+"):
        n_days, cycle = int(cycle[2:]), Cycle.DN
    if cycle not in Cycle.values:
        raise SettlementError("fee_plan_invalid", f"SETTLEMENT_DEFAULT_CYCLE {cycle!r} is not T+0, T+1 or D+N")
    return SalePlan(
        platform_rate_bp=int(getattr(settings, "SETTLEMENT_DEFAULT_PLATFORM_RATE_BP", 0)),
        platform_fixed_minor=0,
        reserve_bp=0,
        agent_commission_bp=(),
        cycle=cycle,
        n_days=n_days,
        refund_fee_borne_by=FeeBearer.PLATFORM,
    )


def cycle_code(plan) -> str:
    """The plan's cycle as settlement.calendar.release_at reads it: T+0, T+1 or D+<n_days>."""
    return f"D+{plan.n_days}" if plan.cycle == Cycle.DN else plan.cycle


def _credit_specs(split: Split, merchant_id: int, merchant_kind: str) -> list[tuple[AccountSpec, int]]:
    parts = [
        ((PartyKind.MERCHANT, merchant_id, merchant_kind), -split.merchant_net_minor),
        ((PartyKind.MERCHANT, merchant_id, AccountKind.MERCHANT_RESERVE), -split.reserve_minor),
        *[
            ((PartyKind.AGENT, share.agent_id, AccountKind.AGENT_COMMISSION_PAYABLE), -share.amount_minor)
            for share in split.agents
        ],
        ((PartyKind.PLATFORM, PLATFORM_PARTY_ID, AccountKind.PLATFORM_REVENUE), -split.platform_net_minor),
    ]
    return [(spec, amount) for spec, amount in parts if amount]


def _channel_specs(split: Split, channel_account_id: int) -> list[tuple[AccountSpec, int]]:
    parts = [
        ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_CLEARING), split.channel_net_minor),
        ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_FEE_EXPENSE), split.channel_fee_minor),
    ]
    return [(spec, amount) for spec, amount in parts if amount]


def _accounts_known(
    currency: str, specs: list[AccountSpec], account_ids: dict[AccountSpec, int | None]
) -> dict[AccountSpec, LedgerAccount]:
    """The accounts of `specs`: those whose id the caller read stand in as unsaved-looking instances (every
    field a posting reads is in the spec, and these kinds keep no balance row), the rest are read or created."""
    known = {
        spec: LedgerAccount(pk=account_ids[spec], party_kind=spec[0], party_id=spec[1], kind=spec[2], currency=currency)
        for spec in specs
        if account_ids.get(spec) is not None and spec[2] not in BALANCE_ROW_KINDS
    }
    missing = [spec for spec in specs if spec not in known]
    return known | (ledger_accounts(currency=currency, specs=missing) if missing else {})


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


def _book(
    *,
    key: str,
    order_no: str,
    merchant_id: int,
    currency: str,
    split: Split,
    plan,
    debit_specs: list[tuple[AccountSpec, int]],
    channel_account_id: int,
    paid_at: datetime,
    memo: str = "",
    account_ids: dict[AccountSpec, int | None] | None = None,
) -> LedgerTransaction:
    """Post the sale (debits as given, credits by the split) and write its release row.

    On T+0 the merchant's net goes to available at once, paying what the merchant owes first; otherwise it
    waits in pending until the cycle's release time. The reserve waits `reserve_days` calendar days either way.
    `account_ids` are the accounts the caller already read (settlement.terms); the others are read or created.
    The key is not looked up first: if it is taken (a replay, or a concurrent post that committed first, whose
    T+0 lines were netted against the owed balance as it was then) ledger_post returns that transaction when
    it is the same sale (`_same_sale`) and raises IdempotencyConflict otherwise.
    """
    t0 = plan.cycle == Cycle.T0
    credit_specs = _credit_specs(split, merchant_id, AccountKind.MERCHANT_PENDING)
    merchant_lines: list[tuple[LedgerAccount, int]] = []
    locked: tuple[LedgerAccount, ...] = ()
    if t0:
        credit_specs = [(spec, amount) for spec, amount in credit_specs if spec[2] != AccountKind.MERCHANT_PENDING]
        if split.merchant_net_minor:
            available, owed = locked = merchant_money_locked(merchant_id=merchant_id, currency=currency)
            merchant_lines = credit_parts(available=available, owed=owed, amount_minor=split.merchant_net_minor)
    parts = debit_specs + credit_specs
    known = _accounts_known(currency, [spec for spec, _ in parts], account_ids or {})
    lines = [Line(account_id=known[spec].pk, amount_minor=amount, currency=currency) for spec, amount in parts]
    lines += [Line(account_id=a.pk, amount_minor=amount, currency=currency) for a, amount in merchant_lines]
    debits = {(line.account_id, line.amount_minor) for line in lines if line.amount_minor > 0}
    try:
        pending_due_at = paid_at if t0 else release_at(paid_at, cycle_code(plan))
    except CalendarError as exc:  # the operator's holiday file does not parse: refused like any bad term
        raise SettlementError("calendar_invalid", str(exc)) from exc
    release = {
        "merchant_id": merchant_id,
        "currency": currency,
        "channel_account_id": channel_account_id,
        "gross_minor": split.gross_minor,
        "channel_fee_minor": split.channel_fee_minor,
        "sold_at": paid_at,
        "pending_minor": split.merchant_net_minor,
        "pending_due_at": pending_due_at,
        "pending_state": ReleaseState.RELEASED if t0 or not split.merchant_net_minor else ReleaseState.HELD,
        "reserve_minor": split.reserve_minor,
        "reserve_due_at": paid_at + timedelta(days=plan.reserve_days),
        "reserve_state": ReleaseState.HELD if split.reserve_minor else ReleaseState.RELEASED,
        "refund_fee_borne_by": plan.refund_fee_borne_by,
        "refund_key": "",
        "split_key": "",
    }
    # The release row is written by the posting's own statement, only if the posting is new (a replay, or a
    # concurrent post that committed first, already wrote it).
    return ledger_post(
        key=key,
        kind=TransactionKind.SALE,
        reference=order_no,
        lines=lines,
        memo=memo,
        accounts={a.pk: a for a in known.values()} | {a.pk: a for a, _ in merchant_lines},
        locked=locked,
        replay_same=lambda existing: _same_sale(existing, order_no=order_no, merchant_id=merchant_id, debits=debits),
        companion=Companion(model=SaleRelease, link="sale", values=release),
    )


def provider_share(gross_minor: int, channel_fee_minor: int, merchant_keeps_minor: int) -> int:
    """What the provider splits off a trade on a merchant's own account to the platform: all of the trade the
    merchant does not keep, less the channel's fee (which the merchant's account paid)."""
    return gross_minor - channel_fee_minor - merchant_keeps_minor


def _book_split_sale(
    *,
    out_trade_no: str,
    order_no: str,
    merchant_id: int,
    currency: str,
    split: Split,
    channel_account_id: int,
    paid_at: datetime,
    account_ids: dict[AccountSpec, int | None],
) -> LedgerTransaction:
    """A sale paid into the merchant's own account, the platform's fee to be split off by the provider.

    The ledger records the trade as it stands at the provider: its clearing account holds what the channel
    remitted (gross - fee), the merchant's part waits in pending ("at the provider") until the provider's split
    releases it to the merchant (`split_post`), and the platform's fee and the agents' commissions are credited
    as on any sale. The merchant bears its own channel fee: it keeps gross - fee - platform fee. No reserve, no
    cycle: none of the money is the platform's to hold. A sale too small to carry the fee and the channel's cut
    leaves the merchant nothing and the platform what there is (its revenue line takes the shortfall).
    """
    remitted = split.gross_minor - split.channel_fee_minor
    keeps = remitted - split.platform_fee_minor  # a reserve the plan may name is the merchant's: it keeps it
    shortfall = max(0, -keeps)
    keeps = max(0, keeps)
    parts = [
        ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_CLEARING), remitted),
        ((PartyKind.MERCHANT, merchant_id, AccountKind.MERCHANT_PENDING), -keeps),
        *[
            ((PartyKind.AGENT, share.agent_id, AccountKind.AGENT_COMMISSION_PAYABLE), -share.amount_minor)
            for share in split.agents
        ],
        (
            (PartyKind.PLATFORM, PLATFORM_PARTY_ID, AccountKind.PLATFORM_REVENUE),
            -(split.platform_net_minor - shortfall),
        ),
    ]
    parts = [(spec, amount) for spec, amount in parts if amount]
    known = _accounts_known(currency, [spec for spec, _ in parts], account_ids)
    lines = [Line(account_id=known[spec].pk, amount_minor=amount, currency=currency) for spec, amount in parts]
    debits = {(line.account_id, line.amount_minor) for line in lines if line.amount_minor > 0}
    release = {
        "merchant_id": merchant_id,
        "currency": currency,
        "channel_account_id": channel_account_id,
        "gross_minor": split.gross_minor,
        "channel_fee_minor": split.channel_fee_minor,
        "sold_at": paid_at,
        "pending_minor": keeps,
        "pending_due_at": paid_at,
        "pending_state": ReleaseState.AT_PROVIDER,
        "reserve_minor": 0,
        "reserve_due_at": paid_at,
        "reserve_state": ReleaseState.RELEASED,
        "refund_fee_borne_by": FeeBearer.MERCHANT,
        "refund_key": "",
        "split_key": "",
    }
    return ledger_post(
        key=sale_key(out_trade_no),
        kind=TransactionKind.SALE,
        reference=order_no,
        lines=lines,
        memo="split at the provider",
        accounts={a.pk: a for a in known.values()},
        replay_same=lambda existing: _same_sale(existing, order_no=order_no, merchant_id=merchant_id, debits=debits),
        companion=Companion(model=SaleRelease, link="sale", values=release),
    )


def _terms_and_split(merchant_id: int, currency: str, channel_account_id: int, gross_minor: int, fee_minor: int):
    """The sale's terms in one read (settlement.terms), its plan (the default one without a plan) and split."""
    terms = sale_terms_read(merchant_id=merchant_id, currency=currency, channel_account_id=channel_account_id)
    if not terms.merchant_found:
        raise SettlementError("merchant_unknown", f"no merchant {merchant_id}")
    plan = terms.plan or default_plan()
    return terms, plan, sale_split(gross_minor, currency, plan, terms.agent_chain, fee_minor)


def sale_post(
    *,
    out_trade_no: str,
    order_no: str,
    merchant_id: int,
    gross_minor: int,
    currency: str,
    channel_account_id: int,
    channel_fee_minor: int,
    paid_at: datetime | None = None,
    split_at_provider: bool = False,
) -> LedgerTransaction:
    """The paid callback's posting: one read (settlement.terms), the split, then the writes of `_book`.
    `split_at_provider`: the trade is on the merchant's own account (payments' fee facts), booked by
    `_book_split_sale` whatever the plan says now."""
    require_atomic()
    terms, plan, split = _terms_and_split(merchant_id, currency, channel_account_id, gross_minor, channel_fee_minor)
    if split_at_provider:
        return _book_split_sale(
            out_trade_no=out_trade_no,
            order_no=order_no,
            merchant_id=merchant_id,
            currency=currency,
            split=split,
            channel_account_id=channel_account_id,
            paid_at=paid_at or timezone.now(),
            account_ids=terms.account_ids,
        )
    return _book(
        key=sale_key(out_trade_no),
        order_no=order_no,
        merchant_id=merchant_id,
        currency=currency,
        split=split,
        plan=plan,
        debit_specs=_channel_specs(split, channel_account_id),
        channel_account_id=channel_account_id,
        paid_at=paid_at or timezone.now(),
        account_ids=terms.account_ids,
    )


@dataclass(frozen=True)
class SuspenseFacts:
    """What a suspense posting holds: the gross, and the channel account and fee it came through."""

    gross_minor: int
    currency: str
    channel_account_id: int
    channel_fee_minor: int


def suspense_facts(txn: LedgerTransaction) -> SuspenseFacts:
    gross = channel_account_id = fee = 0
    currency = ""
    for entry in txn.entries.select_related("account"):
        kind = entry.account.kind
        if kind == AccountKind.SUSPENSE:
            gross, currency = -entry.amount_minor, entry.currency
        elif kind == AccountKind.CHANNEL_FEE_EXPENSE:
            fee = entry.amount_minor
            channel_account_id = entry.account.party_id
        elif kind == AccountKind.CHANNEL_CLEARING:
            channel_account_id = entry.account.party_id
    return SuspenseFacts(
        gross_minor=gross, currency=currency, channel_account_id=channel_account_id, channel_fee_minor=fee
    )


def sale_from_suspense_post(*, out_trade_no: str, order_no: str, merchant_id: int) -> LedgerTransaction | None:
    """The order paid while undeliverable is delivered now: its gross moves from suspense to a sale (key
    `sale:<out_trade_no>`, suspense debited, the split credited; the cycle counts from now, when the sale is
    made). None when the payment has no suspense posting (it was never booked, or already is a sale)."""
    require_atomic()
    key = sale_key(out_trade_no)
    existing = LedgerTransaction.objects.filter(idempotency_key=key).first()
    if existing is not None:
        if existing.reference != order_no:
            raise IdempotencyConflict("idempotency_conflict", f"{key} was already posted for another sale")
        existing.replayed = True
        return existing
    held = LedgerTransaction.objects.filter(idempotency_key=suspense_key(out_trade_no)).first()
    if held is None:
        return None
    facts = suspense_facts(held)
    terms, plan, split = _terms_and_split(
        merchant_id, facts.currency, facts.channel_account_id, facts.gross_minor, facts.channel_fee_minor
    )
    return _book(
        key=key,
        order_no=order_no,
        merchant_id=merchant_id,
        currency=facts.currency,
        split=split,
        plan=plan,
        debit_specs=[((PartyKind.PLATFORM, PLATFORM_PARTY_ID, AccountKind.SUSPENSE), facts.gross_minor)],
        channel_account_id=facts.channel_account_id,
        paid_at=timezone.now(),
        memo=f"from {suspense_key(out_trade_no)}",
        account_ids=terms.account_ids,
    )
