"""What other apps may call in settlement. Frozen dataclasses in and out (settlement.contracts); no ORM objects.

The postings caused by something the caller decides (sale, suspense, sale out of suspense, refund) run inside
the caller's `transaction.atomic` block: the ledger books what the caller's transaction decides, and commits or
rolls back with it. `releases_due` opens one transaction per sale itself (a beat job); `adjustment_post` opens
its own block (or joins the caller's) so the posting and its audit row land together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from settlement import balance_check as balances
from settlement import payouts, reconciliation, selectors
from settlement.contracts import (
    AdjustmentLine,
    BalanceCheck,
    MerchantBalances,
    MerchantMoneyView,
    Page,
    PayoutView,
    PostingLineView,
    PostingView,
    ReconRunView,
    StatementLineView,
)
from settlement.models import LedgerTransaction, PayoutState
from settlement.services import adjustments, plans, provider_splits, refunds, releases, sales, suspense

# What the merchant API may filter by (values, not the models' classes).
PAYOUT_STATES: tuple[str, ...] = tuple(PayoutState.values)
MERCHANT_ACCOUNT_KINDS: tuple[str, ...] = tuple(str(k) for k in selectors.MERCHANT_ACCOUNT_KINDS)


def _view(txn: LedgerTransaction) -> PostingView:
    posted = getattr(txn, "posted", None)  # lines ledger_post just wrote, in entry order
    if posted is not None:
        lines = tuple(
            PostingLineView(
                party_kind=account.party_kind,
                party_id=account.party_id,
                account_kind=account.kind,
                amount_minor=amount,
                currency=currency,
            )
            for account, amount, currency in posted
        )
        return PostingView(
            transaction_id=txn.pk,
            key=txn.idempotency_key,
            kind=txn.kind,
            reference=txn.reference,
            created_at=txn.created_at,
            lines=lines,
            replayed=False,
        )
    entries = txn.entries.select_related("account").order_by("pk")
    return PostingView(
        transaction_id=txn.pk,
        key=txn.idempotency_key,
        kind=txn.kind,
        reference=txn.reference,
        created_at=txn.created_at,
        lines=tuple(
            PostingLineView(
                party_kind=e.account.party_kind,
                party_id=e.account.party_id,
                account_kind=e.account.kind,
                amount_minor=e.amount_minor,
                currency=e.currency,
            )
            for e in entries
        ),
        replayed=getattr(txn, "replayed", False),
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
    paid_at: datetime | None = None,
    split_at_provider: bool = False,
) -> PostingView:
    """Book a paid sale (key `sale:<out_trade_no>`): channel clearing and fee expense debited; merchant pending
    (available on T+0), reserve, each agent level and platform revenue credited. A replay returns the first
    posting with `replayed=True`; the same key for a different sale raises SettlementError `idempotency_conflict`.
    The merchant's pending money and reserve are released later by `releases_due` (cycle counted from `paid_at`,
    default now). A merchant without a fee plan is booked on the default plan (settings). `split_at_provider`:
    the trade is on the merchant's own account, its platform share split off by the provider (`split_post`).
    """
    txn = sales.sale_post(
        split_at_provider=split_at_provider,
        out_trade_no=out_trade_no,
        order_no=order_no,
        merchant_id=merchant_id,
        gross_minor=gross_minor,
        currency=currency,
        channel_account_id=channel_account_id,
        channel_fee_minor=channel_fee_minor,
        paid_at=paid_at,
    )
    return _view(txn)


def suspense_post(
    *,
    out_trade_no: str,
    order_no: str,
    gross_minor: int,
    currency: str,
    channel_account_id: int,
    channel_fee_minor: int,
    reason: str,
) -> PostingView:
    """Book money that belongs to no sale yet (key `suspense:<out_trade_no>`): paid but undeliverable, or a
    second payment of an order already paid. Clearing and fee expense debited as for a sale, suspense credited
    the gross. `reason`: undeliverable, second_payment or sale_refused."""
    return _view(
        suspense.suspense_post(
            out_trade_no=out_trade_no,
            order_no=order_no,
            gross_minor=gross_minor,
            currency=currency,
            channel_account_id=channel_account_id,
            channel_fee_minor=channel_fee_minor,
            reason=reason,
        )
    )


def sale_from_suspense_post(*, out_trade_no: str, order_no: str, merchant_id: int) -> PostingView | None:
    """The order whose payment waits in suspense was delivered: book its sale out of suspense (key
    `sale:<out_trade_no>`). None if that payment has no suspense posting."""
    txn = sales.sale_from_suspense_post(out_trade_no=out_trade_no, order_no=order_no, merchant_id=merchant_id)
    return None if txn is None else _view(txn)


def refund_post(
    *, refund_no: str, out_trade_no: str, amount_minor: int, currency: str, channel_returns_fee: bool
) -> PostingView | None:
    """A refund of the payment `out_trade_no` is final (succeeded): reverse its sale exactly, or take it out of
    suspense (key `refund:<refund_no>`). None if the payment booked nothing. See settlement.services.refunds."""
    txn = refunds.refund_post(
        refund_no=refund_no,
        out_trade_no=out_trade_no,
        amount_minor=amount_minor,
        currency=currency,
        channel_returns_fee=channel_returns_fee,
    )
    return None if txn is None else _view(txn)


def releases_due(*, now: datetime) -> int:
    """Release every sale's pending money and reserve that is due at `now` (each in its own transaction; not
    inside the caller's). Returns how many release postings were written."""
    return releases.releases_due(now=now)


def adjustment_post(
    *,
    currency: str,
    lines: Sequence[AdjustmentLine],
    reason: str,
    actor: str,
    key: str = "",
    reference: str = "",
) -> PostingView:
    """An operator's correction: one balanced posting with a reason, audited (core.audit). Never an edit."""
    return _view(
        adjustments.adjustment_post(
            currency=currency, lines=lines, reason=reason, actor=actor, key=key, reference=reference
        )
    )


def fee_plan_set(
    *,
    merchant_id: int,
    currency: str,
    platform_rate_bp: int,
    platform_fixed_minor: int = 0,
    cycle: str = "T+1",
    n_days: int = 0,
    reserve_bp: int = 0,
    reserve_days: int = 0,
    agent_commission_bp: Sequence[int] = (),
    refund_fee_borne_by: str = "platform",
    split_at_provider: bool = False,
) -> None:
    """Make the merchant's active plan in `currency` (the old one is kept as history); DomainError when refused.
    `refund_fee_borne_by` (platform or merchant): who pays a channel fee the channel keeps on a refund.
    `split_at_provider`: the merchant is paid into its own accounts and the provider splits the fee off."""
    plans.fee_plan_set(
        merchant_id=merchant_id,
        currency=currency,
        platform_rate_bp=platform_rate_bp,
        platform_fixed_minor=platform_fixed_minor,
        cycle=cycle,
        n_days=n_days,
        reserve_bp=reserve_bp,
        reserve_days=reserve_days,
        agent_commission_bp=list(agent_commission_bp),
        refund_fee_borne_by=refund_fee_borne_by,
        split_at_provider=split_at_provider,
    )


def payout_destination_set(
    *, party_kind: str, party_id: int, currency: str, channel_account_id: int, payee: str, payee_name: str
) -> None:
    """Pay the party's available money in `currency` out through that channel account to `payee`."""
    payouts.payout_destination_set(
        party_kind=party_kind,
        party_id=party_id,
        currency=currency,
        channel_account_id=channel_account_id,
        payee=payee,
        payee_name=payee_name,
    )


def reconcile_day(*, channel_account_id: int, day: date) -> ReconRunView:
    """Download the account's statement for `day` and reconcile it; a finished day is returned as it is. Raises
    the channel's typed errors (Retryable: not published yet)."""
    return reconciliation.recon_view(reconciliation.reconcile_day(channel_account_id=channel_account_id, day=day))


def recon_missing_payments(*, run_id: int) -> list[str]:
    return reconciliation.recon_missing_payments(run_id=run_id)


def recon_exception_resolve(*, run_id: int, our_ref: str, kind: str, resolution: str, actor: str) -> bool:
    return reconciliation.recon_exception_resolve(
        run_id=run_id, our_ref=our_ref, kind=kind, resolution=resolution, actor=actor
    )


def fee_plan_exists(*, merchant_id: int, currency: str) -> bool:
    return plans.fee_plan_active(merchant_id=merchant_id, currency=currency) is not None


def merchant_balances(*, merchant_id: int, currency: str) -> MerchantBalances:
    """Pending, available, reserve and owed of one merchant in one currency."""
    return selectors.merchant_balances(merchant_id=merchant_id, currency=currency)


def merchant_money(*, merchant_id: int) -> list[MerchantMoneyView]:
    """The merchant's balances and payouts in transit, one view per currency it has money in."""
    return selectors.merchant_money(merchant_id=merchant_id)


def merchant_statement(
    *,
    merchant_id: int,
    currency: str = "",
    account_kind: str = "",
    before: int | None = None,
    after: int | None = None,
    limit: int = 20,
) -> Page[StatementLineView]:
    """The merchant's ledger lines, newest first, a keyset page (before or after a line's id)."""
    return selectors.merchant_statement(
        merchant_id=merchant_id, currency=currency, account_kind=account_kind, before=before, after=after, limit=limit
    )


def merchant_payouts(
    *, merchant_id: int, state: str = "", before: int | None = None, after: int | None = None, limit: int = 20
) -> Page[PayoutView]:
    """The merchant's payouts, newest first, a keyset page; `state` one of PAYOUT_STATES or "open"."""
    return selectors.merchant_payouts(merchant_id=merchant_id, state=state, before=before, after=after, limit=limit)


def merchant_payout(*, merchant_id: int, payout_no: str) -> PayoutView | None:
    return selectors.merchant_payout(merchant_id=merchant_id, payout_no=payout_no)


def payout_outcomes_take(*, limit: int = 200) -> list[PayoutView]:
    """Merchants' payouts newly paid or failed, each returned once: in the caller's transaction (see
    settlement.payouts.payout_outcomes_take)."""
    return payouts.payout_outcomes_take(limit=limit)


def balance_check(*, channel_account_id: int) -> BalanceCheck:
    """The ledger's clearing balance of the channel account against what its provider says it holds (asked now)."""
    return balances.balance_check(channel_account_id)


from settlement.reads import *  # noqa: E402,F403 - reads for the admin and the nightly check (settlement/reads.py)


def sale_provider_share(*, out_trade_no: str) -> int | None:
    """The platform's share (minor units) the provider is to split off sale `sale:<out_trade_no>`; None unless
    that sale is on a merchant's own account and not yet split or refunded."""
    return selectors.sale_provider_share(out_trade_no=out_trade_no)


def split_post(
    *, out_trade_no: str, split_no: str, amount_minor: int, currency: str, receiver_account_id: int
) -> PostingView:
    """Book the provider's split of a sale as its settlement (key `split:<split_no>`), in the caller's
    transaction: the merchant's part released to its own balance, the platform's share at its receiving account.
    Refused (SettlementError) when the amount is not the sale's platform share; a replay is a no-op."""
    return _view(
        provider_splits.split_post(
            out_trade_no=out_trade_no,
            split_no=split_no,
            amount_minor=amount_minor,
            currency=currency,
            receiver_account_id=receiver_account_id,
        )
    )


def plan_splits_at_provider(*, merchant_id: int, currency: str) -> bool:
    """Whether the merchant's active plan in `currency` has the provider split each sale (routing then sends its
    payments only to its own accounts)."""
    return selectors.plan_splits_at_provider(merchant_id=merchant_id, currency=currency)
