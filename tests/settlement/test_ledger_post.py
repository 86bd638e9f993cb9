"""settlement.ledger.ledger_post: balanced, typed, idempotent; refused postings write nothing."""

from __future__ import annotations

import pytest
from django.db import transaction

from settlement.ledger import (
    IdempotencyConflict,
    InsufficientFunds,
    LedgerError,
    Line,
    UnbalancedPosting,
    account_balance,
    ledger_account,
    ledger_post,
)
from settlement.models import LedgerAccount, LedgerEntry, LedgerTransaction

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts():
    with transaction.atomic():
        return {
            "clearing": ledger_account(
                party_kind="channel_account", party_id=5, kind="channel_clearing", currency="CNY"
            ),
            "suspense": ledger_account(party_kind="platform", party_id=0, kind="suspense", currency="CNY"),
            "available": ledger_account(party_kind="merchant", party_id=9, kind="merchant_available", currency="CNY"),
            "usd_clearing": ledger_account(
                party_kind="channel_account", party_id=6, kind="channel_clearing", currency="USD"
            ),
            "usd_suspense": ledger_account(party_kind="platform", party_id=0, kind="suspense", currency="USD"),
        }


def post(key, lines, kind="suspense", reference="O1"):
    with transaction.atomic():
        return ledger_post(key=key, kind=kind, reference=reference, lines=lines, memo="second payment")


def lines_of(accounts, amount=500):
    return [Line(accounts["clearing"].pk, amount, "CNY"), Line(accounts["suspense"].pk, -amount, "CNY")]


def nothing_written():
    return not LedgerTransaction.objects.exists() and not LedgerEntry.objects.exists()


def test_a_balanced_posting_is_written_with_its_lines(accounts):
    txn = post("suspense:P1", lines_of(accounts))

    assert txn.replayed is False and txn.memo == "second payment" and txn.kind == "suspense"
    assert sorted(txn.entries.values_list("account_id", "amount_minor", "currency")) == sorted(
        [(accounts["clearing"].pk, 500, "CNY"), (accounts["suspense"].pk, -500, "CNY")]
    )
    assert account_balance(accounts["clearing"]).amount_minor == 500  # debit-normal
    assert account_balance(accounts["suspense"]).amount_minor == 500  # credit-normal, read on its side


def test_several_currencies_each_balanced_are_one_posting(accounts):
    txn = post(
        "adj:1",
        [
            *lines_of(accounts, 300),
            Line(accounts["usd_clearing"].pk, 40, "USD"),
            Line(accounts["usd_suspense"].pk, -40, "USD"),
        ],
        kind="adjustment",
    )
    assert txn.entries.count() == 4


def test_the_same_key_and_lines_twice_returns_the_first_and_writes_nothing(accounts):
    first = post("suspense:P1", lines_of(accounts))

    again = post("suspense:P1", list(reversed(lines_of(accounts))))  # line order does not matter

    assert again.pk == first.pk and again.replayed is True
    assert LedgerTransaction.objects.count() == 1 and LedgerEntry.objects.count() == 2


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 501},
        {"kind": "adjustment"},
        {"reference": "O2"},
    ],
)
def test_the_same_key_with_different_lines_is_a_typed_error(accounts, change):
    post("suspense:P1", lines_of(accounts))

    with pytest.raises(IdempotencyConflict) as refused:
        post(
            "suspense:P1",
            lines_of(accounts, change.get("amount", 500)),
            kind=change.get("kind", "suspense"),
            reference=change.get("reference", "O1"),
        )

    assert refused.value.code == "idempotency_conflict"
    assert LedgerTransaction.objects.count() == 1 and LedgerEntry.objects.count() == 2


def test_unbalanced_postings_are_refused(accounts):
    with pytest.raises(UnbalancedPosting):
        post("k", [Line(accounts["clearing"].pk, 500, "CNY"), Line(accounts["suspense"].pk, -499, "CNY")])
    with pytest.raises(UnbalancedPosting):  # balanced in total, not per currency
        post("k", [Line(accounts["clearing"].pk, 500, "CNY"), Line(accounts["usd_suspense"].pk, -500, "USD")])
    with pytest.raises(UnbalancedPosting):
        post("k", [])
    assert nothing_written()


@pytest.mark.parametrize(
    "bad",
    [
        lambda a: [Line(a["clearing"].pk, 5.0, "CNY"), Line(a["suspense"].pk, -5.0, "CNY")],
        lambda a: [Line(a["clearing"].pk, True, "CNY"), Line(a["suspense"].pk, -1, "CNY")],
        lambda a: [Line(a["clearing"].pk, 0, "CNY"), Line(a["suspense"].pk, 0, "CNY")],
        lambda a: [Line(a["clearing"].pk, 5, "USD"), Line(a["usd_suspense"].pk, -5, "USD")],  # CNY account
        lambda a: [Line(a["clearing"].pk, 5, "CNY"), Line(987654, -5, "CNY")],
        lambda a: [Line(a["clearing"].pk, 5, "XXX"), Line(a["suspense"].pk, -5, "XXX")],
    ],
)
def test_invalid_lines_are_refused(accounts, bad):
    with pytest.raises(LedgerError):
        post("k", bad(accounts))
    assert nothing_written()


def test_a_no_overdraft_account_never_goes_below_zero_and_a_refusal_writes_nothing(accounts):
    available, clearing = accounts["available"], accounts["clearing"]
    post("sale:1", [Line(clearing.pk, 300, "CNY"), Line(available.pk, -300, "CNY")], kind="sale")

    with pytest.raises(InsufficientFunds) as refused:
        post("payout:1", [Line(available.pk, 301, "CNY"), Line(clearing.pk, -301, "CNY")], kind="payout")

    assert refused.value.code == "insufficient_funds"
    available.refresh_from_db()
    assert available.balance_minor == 300
    assert LedgerTransaction.objects.count() == 1

    post("payout:2", [Line(available.pk, 300, "CNY"), Line(clearing.pk, -300, "CNY")], kind="payout")
    available.refresh_from_db()
    assert available.balance_minor == 0 == account_balance(available).amount_minor


def test_accounts_are_made_once_per_party_kind_and_currency(accounts):
    with transaction.atomic():
        again = ledger_account(party_kind="merchant", party_id=9, kind="merchant_available", currency="CNY")
    assert again.pk == accounts["available"].pk
    assert again.no_overdraft is True and again.balance_minor == 0
    assert accounts["clearing"].no_overdraft is False and accounts["clearing"].balance_minor is None
    count = LedgerAccount.objects.count()
    with pytest.raises(LedgerError):
        ledger_account(party_kind="merchant", party_id=9, kind="platform_revenue", currency="CNY")
    assert LedgerAccount.objects.count() == count
