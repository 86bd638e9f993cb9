"""T+0 payouts: a merchant's available money or an agent's commission payable paid out through a channel account,
never twice.

Where a payout is taken from (its source, one helper per party kind, `_SOURCES`):
- merchant: `merchant_available`, a balance row. Its lock (with `merchant_owed`) serialises the merchant's payouts
  and postings; the no-overdraft CHECK keeps it from going below zero.
- agent: `agent_commission_payable`, which keeps no balance row (every sale credits it; a row lock would queue the
  paid callbacks of one agent's merchants on each other). The agent's PayoutDestination row is locked instead
  (sales never take it) and the balance is the sum of the account's entries, read after that lock. A refund after
  the agent was paid can take the payable below zero: the agent owes the platform, later commissions net it, and
  no payout is made until it is back at the schedule's minimum (settlement.services.agent_money).

The road of one payout:
1. `payouts_create_due` (beat): per destination that is not frozen, inside the currency's window and with at
   least the schedule's minimum in its source, one transaction locks the source, creates the `Payout` (CREATED)
   and posts `payout:<payout_no>`: the source debited, payouts in transit (the party's) credited. The
   one-open-payout-per-party constraint backs the lock.
2. After commit, `payout_submit` sends it (no lock held during the I/O) with payout_no as the provider's
   idempotency key. Before sending, the attempt is counted and the next look scheduled, in its own commit, so a
   worker killed mid-send leaves a payout the janitor knows may have reached the provider.
3. The answer is applied under the payout's lock: PAID posts `payout_paid:<payout_no>` (in transit debited, the
   channel account's clearing credited: the money left the provider's balance); FAILED posts
   `payout_release:<payout_no>` (the hold back to its source; what a merchant owes paid first); PENDING
   (SUBMITTED) and UNKNOWN wait for the janitor; NOT_SENT is sent again later, same number.
4. `payouts_resolve_due` (beat): every open payout whose next look is due is queried first (in doubt) and sent
   again under the same number only when the provider does not know it.

Lock order: the source (merchant: LedgerAccount available and owed; agent: its PayoutDestination), then Payout.
A merchant's payout never locks a destination and an agent's never locks a LedgerAccount, and the global order
(settlement.locks) puts PayoutDestination before LedgerAccount.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from payments import facade as payments
from payments.contracts import PayoutOutcome, PayoutResult
from settlement.contracts import PayoutView, SettlementError
from settlement.ledger import Line, account_balance, ledger_account, ledger_post, require_atomic
from settlement.models import (
    OPEN_PAYOUT_STATES,
    AccountKind,
    LedgerAccount,
    PartyKind,
    Payout,
    PayoutDestination,
    PayoutSchedule,
    PayoutState,
    TransactionKind,
)
from settlement.selectors import payout_view
from settlement.services.agent_money import agent_payable_locked
from settlement.services.merchant_money import credit_parts, merchant_money_locked

log = logging.getLogger(__name__)

QUERY_BACKOFF = (30, 60, 120, 300, 600, 1800, 3600)  # seconds until the next look, by attempts so far


def payout_no_new() -> str:
    return "PO" + timezone.localtime().strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**8):08d}"


def _next_look(attempts: int, now: datetime) -> datetime:
    return now + timedelta(seconds=QUERY_BACKOFF[min(attempts, len(QUERY_BACKOFF) - 1)])


def _schedule(currency: str) -> PayoutSchedule:
    return PayoutSchedule.objects.filter(currency=currency).first() or PayoutSchedule(currency=currency)


def _in_window(schedule: PayoutSchedule, now: datetime) -> bool:
    clock = timezone.localtime(now).time()
    return schedule.enabled and schedule.window_start <= clock <= schedule.window_end


def _after_commit(task_name: str, *args: object) -> None:
    # robust: a broker that is down must not fail the caller after its commit; the janitor sends the payout.
    transaction.on_commit(lambda: current_app.tasks[task_name].delay(*args), robust=True)


def _payout_lock(payout_no: str) -> Payout:
    return Payout.objects.select_for_update(of=("self",)).get(payout_no=payout_no)


Parts = list[tuple[LedgerAccount, int]]  # raw (debit +) amounts per account


@dataclass(frozen=True)
class _Source:
    """What one party's payouts are taken from, locked in the caller's transaction."""

    account: LedgerAccount  # debited by the hold
    balance: Callable[[], int]  # what may be paid out now (read under the lock, only when needed)
    credit: Callable[..., Parts]  # credit(amount_minor=...): a hold coming back
    locked: tuple[LedgerAccount, ...] = ()  # balance rows held, for ledger_post


def _merchant_source(*, party_id: int, currency: str) -> _Source:
    available, owed = merchant_money_locked(merchant_id=party_id, currency=currency)
    return _Source(
        account=available,
        balance=lambda: available.balance_minor,
        credit=partial(credit_parts, available=available, owed=owed),
        locked=(available, owed),
    )


def _agent_source(*, party_id: int, currency: str) -> _Source:
    payable = agent_payable_locked(agent_id=party_id, currency=currency)
    return _Source(
        account=payable,
        balance=lambda: account_balance(payable).amount_minor,
        credit=lambda *, amount_minor: [(payable, -amount_minor)],
    )


_SOURCES: dict[str, Callable[..., _Source]] = {PartyKind.MERCHANT: _merchant_source, PartyKind.AGENT: _agent_source}


def _source_locked(*, party_kind: str, party_id: int, currency: str) -> _Source:
    return _SOURCES[party_kind](party_id=party_id, currency=currency)


def payout_destination_set(
    *, party_kind: str, party_id: int, currency: str, channel_account_id: int, payee: str, payee_name: str
) -> PayoutDestination:
    """Where the party's payouts in `currency` go (created, or changed for the next payout: a payout already on
    its way keeps the payee it was made with)."""
    with transaction.atomic():
        destination, _created = PayoutDestination.objects.update_or_create(
            party_kind=party_kind,
            party_id=party_id,
            currency=currency,
            defaults={"channel_account_id": channel_account_id, "payee": payee, "payee_name": payee_name},
        )
    return destination


def payout_create(*, destination_id: int, now: datetime | None = None, retry_of: Payout | None = None) -> Payout | None:
    """Hold the whole balance of the party's source (merchant available, agent commission payable) for one payout,
    or None (frozen, below the minimum, outside the window, a payout already on its way, or the last one failed and
    waits for an operator's retry). One transaction; submitted after commit."""
    now = now or timezone.now()
    with transaction.atomic():
        destination = PayoutDestination.objects.get(pk=destination_id)
        schedule = _schedule(destination.currency)
        if destination.frozen:
            return None
        if retry_of is None and not _in_window(schedule, now):
            return None
        party = {"party_kind": destination.party_kind, "party_id": destination.party_id}
        source = _source_locked(**party, currency=destination.currency)
        mine = Payout.objects.filter(**party, currency=destination.currency)
        amount_minor = source.balance()
        if amount_minor < max(schedule.minimum_minor, 1) or mine.filter(state__in=OPEN_PAYOUT_STATES).exists():
            return None
        last = mine.order_by("-created_at", "-pk").first()
        if retry_of is None and last is not None and last.state == PayoutState.FAILED:
            # A refused payout (payee unknown, name mismatch) would be refused again every run: an operator
            # fixes the destination and retries it (a new payout, a new number).
            return None
        payout = Payout.objects.create(
            retry_of=retry_of,
            payout_no=payout_no_new(),
            party_kind=destination.party_kind,
            party_id=destination.party_id,
            currency=destination.currency,
            amount_minor=amount_minor,
            destination=destination,
            channel_account_id=destination.channel_account_id,
            payee=destination.payee,
            payee_name=destination.payee_name,
            # If the dispatch after commit is lost (broker down, process killed), the janitor sends it then.
            next_query_at=_next_look(0, now),
        )
        _post_hold(payout, source)
        _after_commit("settlement.payout_submit", payout.payout_no)
    return payout


def payout_retry(*, payout_no: str, actor: str) -> Payout:
    """An operator retries a FAILED payout: a new payout (new number) of what is available now."""
    failed = Payout.objects.get(payout_no=payout_no)
    if failed.state != PayoutState.FAILED:
        raise SettlementError("payout_not_failed", _("Only a failed payout can be retried."))
    if failed.retries.exists():
        raise SettlementError("payout_retried", _("This payout was retried already."))
    with transaction.atomic():
        payout = payout_create(destination_id=failed.destination_id, retry_of=failed)
        if payout is None:
            raise SettlementError(
                "payout_not_possible", _("Nothing to pay out now (frozen, below the minimum, or one is on its way).")
            )
        audit_record(actor=actor, action="payout.retry", target=f"payout:{payout.pk}", retry_of=payout_no)
    return payout


def payouts_create_due(*, now: datetime | None = None) -> list[str]:
    """The beat job: one payout per destination that has one due. Runs racing each other create each once."""
    made = []
    for destination_id in PayoutDestination.objects.filter(frozen=False).values_list("pk", flat=True):
        try:
            payout = payout_create(destination_id=destination_id, now=now)
        except IntegrityError:  # another run created this party's payout between our check and insert
            continue
        if payout is not None:
            made.append(payout.payout_no)
    return made


def payout_submit(*, payout_no: str, now: datetime | None = None) -> str:
    """Send one payout (or, when an earlier attempt may have reached the provider, ask about it first) and apply
    the answer. Idempotent: a final payout is left alone. Returns the payout's state."""
    now = now or timezone.now()
    with transaction.atomic():
        payout = _payout_lock(payout_no)
        if payout.state not in OPEN_PAYOUT_STATES:
            return payout.state
        in_doubt = payout.state != PayoutState.CREATED or payout.submit_attempts > 0
        payout.submit_attempts += 1
        payout.next_query_at = _next_look(payout.submit_attempts, now)
        payout.save(update_fields=["submit_attempts", "next_query_at", "updated_at"])
    outcome = payments.payout_execute(
        channel_account_id=payout.channel_account_id,
        payout_no=payout.payout_no,
        amount=payout.amount,
        payee=payout.payee,
        payee_name=payout.payee_name,
        remark=f"payout {payout.payout_no}",
        provider_payout_no=payout.provider_payout_no,
        in_doubt=in_doubt,
    )
    return payout_outcome_apply(payout_no=payout_no, outcome=outcome)


def payout_outcome_apply(*, payout_no: str, outcome: PayoutOutcome) -> str:
    """Move the payout by what the provider said, with its posting, in one transaction. Monotonic: a paid or
    failed payout never changes again, whatever arrives late."""
    with transaction.atomic():
        source = None
        if outcome.result == PayoutResult.FAILED:  # the hold goes back: its source first (lock order)
            party_kind, party_id, currency = Payout.objects.values_list("party_kind", "party_id", "currency").get(
                payout_no=payout_no
            )
            source = _source_locked(party_kind=party_kind, party_id=party_id, currency=currency)
        payout = _payout_lock(payout_no)
        if payout.state not in OPEN_PAYOUT_STATES:
            return payout.state
        if outcome.result == PayoutResult.PAID:
            payout.mark_paid(provider_payout_no=outcome.provider_payout_no, provider_status=outcome.provider_status)
            _post_paid(payout)
        elif outcome.result == PayoutResult.FAILED:
            _release_hold(payout, source)
            payout.mark_failed(
                reason=outcome.failure_reason or outcome.provider_status, provider_status=outcome.provider_status
            )
        elif outcome.result == PayoutResult.PENDING:
            payout.mark_submitted(
                provider_payout_no=outcome.provider_payout_no, provider_status=outcome.provider_status
            )
        elif outcome.result == PayoutResult.UNKNOWN:
            payout.mark_unknown()
        payout.save()
        return payout.state


def _in_transit(payout: Payout) -> LedgerAccount:
    return ledger_account(
        party_kind=payout.party_kind,
        party_id=payout.party_id,
        kind=AccountKind.PAYOUTS_IN_TRANSIT,
        currency=payout.currency,
    )


def _post_hold(payout: Payout, source: _Source) -> None:
    in_transit = _in_transit(payout)
    ledger_post(
        key=f"payout:{payout.payout_no}",
        kind=TransactionKind.PAYOUT,
        reference=payout.payout_no,
        lines=[
            Line(account_id=source.account.pk, amount_minor=payout.amount_minor, currency=payout.currency),
            Line(account_id=in_transit.pk, amount_minor=-payout.amount_minor, currency=payout.currency),
        ],
        memo="held for payout",
        accounts={source.account.pk: source.account, in_transit.pk: in_transit},
        locked=source.locked,
    )


def _post_paid(payout: Payout) -> None:
    in_transit = _in_transit(payout)
    clearing = ledger_account(
        party_kind=PartyKind.CHANNEL_ACCOUNT,
        party_id=payout.channel_account_id,
        kind=AccountKind.CHANNEL_CLEARING,
        currency=payout.currency,
    )
    accounts = {in_transit.pk: in_transit, clearing.pk: clearing}
    ledger_post(
        key=f"payout_paid:{payout.payout_no}",
        kind=TransactionKind.PAYOUT,
        reference=payout.payout_no,
        lines=[
            Line(account_id=in_transit.pk, amount_minor=payout.amount_minor, currency=payout.currency),
            Line(account_id=clearing.pk, amount_minor=-payout.amount_minor, currency=payout.currency),
        ],
        memo="paid out",
        accounts=accounts,
    )


def _release_hold(payout: Payout, source: _Source) -> None:
    """The hold goes back to its source (locked by the caller): for a merchant what it owes first (a refund may
    have landed meanwhile), then available; for an agent its payable, which nets what it owes by itself."""
    in_transit = _in_transit(payout)
    parts = source.credit(amount_minor=payout.amount_minor)
    ledger_post(
        key=f"payout_release:{payout.payout_no}",
        kind=TransactionKind.PAYOUT,
        reference=payout.payout_no,
        lines=[
            Line(account_id=in_transit.pk, amount_minor=payout.amount_minor, currency=payout.currency),
            *[Line(account_id=a.pk, amount_minor=amount, currency=payout.currency) for a, amount in parts],
        ],
        memo="payout failed: hold released",
        accounts={in_transit.pk: in_transit, **{a.pk: a for a, _amount in parts}},
        locked=source.locked,
    )


def payouts_resolve_due(*, now: datetime | None = None, limit: int = 200) -> int:
    """The janitor: every open payout whose next look is due is asked about (and resent, same number, only if
    the provider does not know it). Returns how many were looked at."""
    now = now or timezone.now()
    due = list(
        Payout.objects.filter(state__in=OPEN_PAYOUT_STATES, next_query_at__lte=now)
        .order_by("next_query_at")
        .values_list("payout_no", flat=True)[:limit]
    )
    for payout_no in due:
        payout_submit(payout_no=payout_no, now=now)
    return len(due)


def payout_outcomes_take(*, limit: int = 200) -> list[PayoutView]:
    """The merchants' payouts that became final and were not announced yet, cleared in the caller's transaction:
    whoever turns them into events does so in that transaction, so each is announced once (rows another taker
    holds are skipped, not waited for)."""
    require_atomic()
    taken = list(
        Payout.objects.filter(announce_pending=True)
        .order_by("pk")
        .select_for_update(skip_locked=True, of=("self",))
        .select_related("retry_of")[:limit]
    )
    if taken:
        Payout.objects.filter(pk__in=[p.pk for p in taken]).update(announce_pending=False)
    return [payout_view(p) for p in taken]
