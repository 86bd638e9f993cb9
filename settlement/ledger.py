"""Posting to the ledger and reading balances. Must not import cardshop; callers go through settlement.facade.

`ledger_post` writes one balanced, immutable transaction inside the caller's `transaction.atomic` block: every
line's currency is its account's, each currency sums to zero, at least two lines, whole minor units. Its
idempotency key is unique in the database: the same key with the same kind, reference and lines returns the
first transaction and writes nothing; the same key with anything different raises IdempotencyConflict. Two
concurrent posts of one key end in one transaction: the loser's `INSERT ... ON CONFLICT DO NOTHING` waits on
the unique index, inserts nothing when the winner commits, and the loser re-reads the winner's row.

Balances: hot accounts don't serialize the shop. Every sale credits the one platform revenue account of its
currency and debits a channel clearing account; if each kept a balance row, every paid callback would queue on
that row's lock until the previous callback committed, and throughput would be one sale at a time. So:

- Accounts a decision reads keep an exact balance on their own row (BALANCE_ROW_KINDS: merchant available, what
  a payout may spend). A posting locks those rows in pk order (`select_for_update`, lock order LedgerAccount
  after CardSecret), applies its amounts with F() increments in the same transaction, refuses to take a
  no-overdraft account below zero (InsufficientFunds), and the database backs that with a CHECK. Only postings
  that touch one merchant's available account wait on each other (T+0 sales, releases and payouts of that
  merchant), which is the serialization a correct payout needs anyway.
- Every other balance (platform revenue, channel clearing and fee expense, agent payables, merchant pending and
  reserve, suspense, refunds payable) is derived: `account_balance` sums the account's entries, read through the index
  on the entry's account. Inserting an entry takes only a FOR KEY SHARE lock on its account row, which never
  conflicts with another insert, so concurrent sales don't wait on each other there. The cost is a read that
  grows with the account's entries; when that matters, a nightly checkpoint (balance as of entry id N) plus the
  entries since is the next step, and it needs no lock either.

Balances are reported on the account's normal side (credit-normal accounts negate the raw sum), so what the
platform owes a merchant reads positive.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from core.money import Money, MoneyError, currency_validate
from settlement.contracts import SettlementError
from settlement.locks import ledger_accounts_locked
from settlement.models import (
    ACCOUNT_PARTIES,
    BALANCE_ROW_KINDS,
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    TransactionKind,
)
from settlement.writes import Companion, posting_insert


class LedgerError(SettlementError):
    """A posting the ledger refuses; nothing was written."""


class UnbalancedPosting(LedgerError):
    pass


class IdempotencyConflict(LedgerError):
    """The key was already used for a different posting."""


class InsufficientFunds(LedgerError):
    """The posting would take a no-overdraft account below zero."""


@dataclass(frozen=True)
class Line:
    """One line to post: debit positive, credit negative, in whole minor units of the account's currency."""

    account_id: int
    amount_minor: int
    currency: str


def ledger_account(*, party_kind: str, party_id: int, kind: str, currency: str) -> LedgerAccount:
    """The account of that party, kind and currency, created on first use (behind its unique constraint)."""
    currency_validate(currency)
    if party_kind not in ACCOUNT_PARTIES.get(kind, ()):
        raise LedgerError("account_invalid", f"a {party_kind} has no {kind} account")
    keeps_balance = kind in BALANCE_ROW_KINDS
    account, _ = LedgerAccount.objects.get_or_create(
        party_kind=party_kind,
        party_id=party_id,
        kind=kind,
        currency=currency,
        defaults={"no_overdraft": keeps_balance, "balance_minor": 0 if keeps_balance else None},
    )
    return account


AccountSpec = tuple[str, int, str]  # (party kind, party id, account kind)


def ledger_accounts(*, currency: str, specs: Iterable[AccountSpec]) -> dict[AccountSpec, LedgerAccount]:
    """Several accounts of one currency in one read; any missing one is created as `ledger_account` does."""
    specs = list(dict.fromkeys(specs))
    query = Q()
    for party_kind, party_id, kind in specs:
        query |= Q(party_kind=party_kind, party_id=party_id, kind=kind)
    found = (
        {(a.party_kind, a.party_id, a.kind): a for a in LedgerAccount.objects.filter(query, currency=currency)}
        if specs
        else {}
    )
    # Created in one global order, so two first sales creating overlapping accounts wait, never deadlock.
    for spec in sorted(specs):
        if spec not in found:
            found[spec] = ledger_account(party_kind=spec[0], party_id=spec[1], kind=spec[2], currency=currency)
    return found


def _digest(kind: str, reference: str, lines: Iterable[Line]) -> str:
    canonical = sorted((line.account_id, line.amount_minor, line.currency) for line in lines)
    payload = json.dumps([kind, reference, canonical], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _validate(
    kind: str, lines: Sequence[Line], known: dict[int, LedgerAccount] | None = None
) -> dict[int, LedgerAccount]:
    if kind not in TransactionKind.values:
        raise LedgerError("posting_invalid", f"unknown transaction kind {kind!r}")
    if len(lines) < 2:
        raise UnbalancedPosting("posting_unbalanced", "a posting needs at least two lines")
    sums: dict[str, int] = defaultdict(int)
    for line in lines:
        if not isinstance(line.amount_minor, int) or isinstance(line.amount_minor, bool):
            raise LedgerError("posting_invalid", "amounts are whole minor units (int)")
        if line.amount_minor == 0:
            raise LedgerError("posting_invalid", "a line cannot be zero")
        try:
            currency_validate(line.currency)
        except MoneyError as exc:
            raise LedgerError("posting_invalid", str(exc)) from exc
        sums[line.currency] += line.amount_minor
    unbalanced = {c: s for c, s in sums.items() if s != 0}
    if unbalanced:
        raise UnbalancedPosting("posting_unbalanced", f"debits and credits differ per currency: {unbalanced}")
    ids = {line.account_id for line in lines}
    if known is not None and ids <= known.keys():
        accounts = known  # the caller read (or created) them in this transaction: no second read
    else:
        accounts = LedgerAccount.objects.in_bulk(ids)
    for line in lines:
        account = accounts.get(line.account_id)
        if account is None:
            raise LedgerError("posting_invalid", f"no ledger account {line.account_id}")
        if account.currency != line.currency:
            raise LedgerError("currency_mismatch", f"account {account} is in {account.currency}, not {line.currency}")
    return accounts


def _replay(existing: LedgerTransaction, digest: str) -> LedgerTransaction:
    if existing.lines_digest != digest:
        raise IdempotencyConflict(
            "idempotency_conflict", f"key {existing.idempotency_key!r} was already posted with other lines"
        )
    existing.replayed = True
    return existing


def require_atomic() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger postings must run inside the caller's transaction.atomic block")


def ledger_post(
    *,
    key: str,
    kind: str,
    reference: str,
    lines: Sequence[Line],
    memo: str = "",
    accounts: dict[int, LedgerAccount] | None = None,
    key_checked: bool = False,
    locked: Iterable[LedgerAccount] = (),
    replay_same: Callable[[LedgerTransaction], bool] | None = None,
    companion: Companion | None = None,
) -> LedgerTransaction:
    """Post one balanced transaction (see the module docstring); `.replayed` says whether it already existed.

    `accounts` (by pk) saves re-reading accounts the caller already holds; `key_checked` says the caller looked
    the key up in this transaction and found nothing (a concurrent post of it is still caught by the index).
    `replay_same` skips the lookup too, for a caller whose replay may differ in its lines (a sale's credits
    follow the plan at posting time): when the key is taken, the existing transaction is returned if
    `replay_same(existing)` says it is the same posting, else IdempotencyConflict. Nothing is written either way.
    `companion` is a row written with the posting (settlement.writes), only when the posting is new.
    """
    require_atomic()
    if not key:
        raise LedgerError("posting_invalid", "a posting needs an idempotency key")
    lines = list(lines)
    accounts = _validate(kind, lines, accounts)
    digest = _digest(kind, reference, lines)
    skip_lookup = key_checked or replay_same is not None
    existing = None if skip_lookup else LedgerTransaction.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return _replay(existing, digest)

    deltas: dict[int, int] = defaultdict(int)
    for line in lines:
        if accounts[line.account_id].kind in BALANCE_ROW_KINDS:
            # Normal-side delta: a credit raises what a credit-normal account holds.
            sign = -1 if AccountKind(accounts[line.account_id].kind).credit_normal else 1
            deltas[line.account_id] += sign * line.amount_minor
    if deltas:
        held = {a.pk: a for a in locked}
        missing = sorted(pk for pk in deltas if pk not in held)
        for account in [*held.values(), *(ledger_accounts_locked(missing) if missing else [])]:
            if account.pk not in deltas:
                continue
            if account.no_overdraft and account.balance_minor + deltas[account.pk] < 0:
                raise InsufficientFunds(
                    "insufficient_funds",
                    f"{account} holds {Money(account.balance_minor, account.currency)}, "
                    f"the posting needs {Money(-deltas[account.pk], account.currency)}",
                )

    now = timezone.now()
    txn_id = posting_insert(
        key=key,
        kind=kind,
        reference=reference,
        memo=memo,
        digest=digest,
        created_at=now,
        lines=[(line.account_id, line.amount_minor, line.currency) for line in lines],
        companion=companion,
    )
    if txn_id is None:
        # A concurrent post of the same key committed first (its insert held ours until then).
        winner = LedgerTransaction.objects.filter(idempotency_key=key).first()
        if winner is None:
            raise IntegrityError(f"ledger key {key!r} conflicted but no transaction holds it")
        if replay_same is None:
            return _replay(winner, digest)
        if not replay_same(winner):
            raise IdempotencyConflict("idempotency_conflict", f"key {key!r} was already posted for something else")
        winner.replayed = True
        return winner

    for account_id, delta in deltas.items():
        if delta:
            LedgerAccount.objects.filter(pk=account_id).update(balance_minor=F("balance_minor") + delta)
    txn = LedgerTransaction(
        pk=txn_id, idempotency_key=key, kind=kind, reference=reference, memo=memo, lines_digest=digest, created_at=now
    )
    txn.replayed = False
    # What was just written, so a caller's view needs no read back (settlement.facade._view).
    txn.posted = [(accounts[line.account_id], line.amount_minor, line.currency) for line in lines]
    return txn


def account_balance(account: LedgerAccount) -> Money:
    """The account's balance on its normal side: the kept row for BALANCE_ROW_KINDS, else the sum of entries."""
    if account.kind in BALANCE_ROW_KINDS:
        kept = LedgerAccount.objects.filter(pk=account.pk).values_list("balance_minor", flat=True).get()
        return Money(kept, account.currency)
    return Money(account_entries_sum(account) * (-1 if account.credit_normal else 1), account.currency)


def account_entries_sum(account: LedgerAccount) -> int:
    """The raw (debit-normal) sum of the account's entries; the invariant check compares it with kept rows."""
    return LedgerEntry.objects.filter(account_id=account.pk).aggregate(s=Sum("amount_minor"))["s"] or 0
