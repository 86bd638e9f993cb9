"""Bank gateway payouts (Transfer / TransferQuery) through zeep against the SOAP simulator over real HTTP.

Each test gets its own merchant at the bank, so balances and executed transfers are exact per test.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest

from core.money import Money
from payments.channels.bankgw import wire
from payments.channels.bankgw.adapter import BankGatewayAdapter
from payments.channels.base import (
    AccountConfig,
    Capability,
    PayoutObservation,
    PayoutRequest,
    PayoutState,
    Retryable,
    Terminal,
    Unknown,
)
from payments.simulators.bankgw import FORGERIES, HOLD, BankGatewaySimulator, Merchant

BALANCE = 50_000
PAYEE = "CN12BANK0000123456789"
PAYEE_NAME = "Zhang San"


@pytest.fixture(scope="module")
def sim() -> Iterator[BankGatewaySimulator]:
    s = BankGatewaySimulator().start()
    yield s
    s.stop()


@pytest.fixture
def bank(sim) -> Iterator[BankGatewaySimulator]:
    sim.faults.reset()
    sim.scripted_transfer.clear()
    sim.forge_answers.clear()
    sim.closed_accounts.clear()
    sim.payee_names.clear()
    yield sim
    sim.faults.reset()


@pytest.fixture
def merchant(bank) -> Merchant:
    return bank.new_merchant(balance_minor=BALANCE)


def _config(bank: BankGatewaySimulator, merchant: Merchant, **overrides) -> AccountConfig:
    acc = bank.account_for(merchant)
    fields = dict(
        account_id=1,
        code="bankgw",
        merchant_no=acc.merchant_no,
        base_url=acc.base_url,
        currency=acc.currency,
        credentials=acc.credentials,
    )
    return AccountConfig(**{**fields, **overrides})


@pytest.fixture
def adapter(bank, merchant) -> BankGatewayAdapter:
    return BankGatewayAdapter(_config(bank, merchant))


def _payout(no: str, minor: int = 12_000, **overrides) -> PayoutRequest:
    fields = dict(
        payout_no=no, amount=Money(minor, "CNY"), payee=PAYEE, payee_name=PAYEE_NAME, remark="settlement 2026-12"
    )
    return PayoutRequest(**{**fields, **overrides})


def test_payout_capability_is_declared():
    assert Capability.PAYOUT in BankGatewayAdapter.capabilities


def test_transfer_status_table_is_explicit():
    assert wire.TRANSFER_STATUS == {
        "SETTLED": PayoutState.SUCCEEDED,
        "ACCEPTED": PayoutState.PENDING,
        "PROCESSING": PayoutState.PENDING,
        "REJECTED": PayoutState.FAILED,
    }


def test_payout_settles_once_and_debits_the_balance_exactly(adapter, bank, merchant):
    seen = adapter.payout(_payout("PO-paid"))

    transfer = bank.transfer_for("PO-paid")
    assert seen == PayoutObservation(
        payout_no="PO-paid",
        provider_payout_no=transfer["bank_transfer_id"],
        status=PayoutState.SUCCEEDED,
        amount=Money(12_000, "CNY"),
        provider_status="SETTLED",
    )
    assert list(bank.executed_transfers(merchant.merchant_id)) == ["PO-paid"]
    assert bank.balance(merchant.merchant_id) == BALANCE - 12_000
    assert (transfer["payee_account"], transfer["payee_name"], transfer["remark"]) == (
        PAYEE,
        PAYEE_NAME,
        "settlement 2026-12",
    )


def test_held_payout_is_pending_until_the_bank_settles_it(adapter, bank, merchant):
    bank.scripted_transfer.append(HOLD)

    first = adapter.payout(_payout("PO-held"))
    assert (first.status, first.provider_status) == (PayoutState.PENDING, "ACCEPTED")
    assert bank.balance(merchant.merchant_id) == BALANCE - 12_000  # reserved on acceptance

    bank.settle_transfer("PO-held", "PROCESSING")
    assert adapter.payout_query(_payout("PO-held")).provider_status == "PROCESSING"
    bank.settle_transfer("PO-held")
    final = adapter.payout_query(_payout("PO-held"))

    assert (final.status, final.provider_status) == (PayoutState.SUCCEEDED, "SETTLED")
    assert final.provider_payout_no == first.provider_payout_no
    assert list(bank.executed_transfers(merchant.merchant_id)) == ["PO-held"]
    assert bank.balance(merchant.merchant_id) == BALANCE - 12_000


def test_held_payout_rejected_later_fails_with_the_reason_and_gives_the_money_back(adapter, bank, merchant):
    bank.scripted_transfer.append(HOLD)
    adapter.payout(_payout("PO-held-rejected"))

    bank.settle_transfer("PO-held-rejected", "REJECTED", "ACCOUNT_CLOSED")
    final = adapter.payout_query(_payout("PO-held-rejected"))

    assert (final.status, final.failure_reason) == (PayoutState.FAILED, "ACCOUNT_CLOSED")
    assert bank.executed_transfers(merchant.merchant_id) == {}
    assert bank.balance(merchant.merchant_id) == BALANCE


def test_the_same_payout_no_twice_transfers_once_and_answers_the_same(adapter, bank, merchant):
    first = adapter.payout(_payout("PO-twice"))
    second = adapter.payout(_payout("PO-twice"))

    assert second == first
    assert list(bank.executed_transfers(merchant.merchant_id)) == ["PO-twice"]
    assert bank.balance(merchant.merchant_id) == BALANCE - 12_000


def test_timeout_is_unknown_and_the_query_finds_the_one_transfer(bank, merchant):
    bank.faults.timeout, bank.faults.hang_seconds = 1, 1.5
    adapter = BankGatewayAdapter(_config(bank, merchant, timeouts=(1.0, 0.5)))

    with pytest.raises(Unknown) as exc:
        adapter.payout(_payout("PO-timeout"))
    assert exc.value.code == "timeout"

    seen = adapter.payout_query(_payout("PO-timeout"))
    assert seen.status == PayoutState.SUCCEEDED
    assert list(bank.executed_transfers(merchant.merchant_id)) == ["PO-timeout"]
    assert bank.balance(merchant.merchant_id) == BALANCE - 12_000


def test_5xx_is_unknown_before_anything_moved_and_the_same_number_then_pays_once(adapter, bank, merchant):
    bank.faults.fail_5xx = 1

    with pytest.raises(Unknown) as exc:
        adapter.payout(_payout("PO-5xx"))
    assert exc.value.code == "soap_fault"  # a soap:Server fault with HTTP 500

    assert adapter.payout_query(_payout("PO-5xx")) is None
    assert adapter.payout(_payout("PO-5xx")).status == PayoutState.SUCCEEDED
    assert list(bank.executed_transfers(merchant.merchant_id)) == ["PO-5xx"]
    assert bank.balance(merchant.merchant_id) == BALANCE - 12_000


def test_query_of_a_payout_the_bank_never_received_is_none_then_sending_it_pays_once(adapter, bank, merchant):
    assert adapter.payout_query(_payout("PO-never")) is None
    assert bank.executed_transfers(merchant.merchant_id) == {}

    assert adapter.payout(_payout("PO-never")).status == PayoutState.SUCCEEDED
    assert adapter.payout_query(_payout("PO-never")).status == PayoutState.SUCCEEDED
    assert list(bank.executed_transfers(merchant.merchant_id)) == ["PO-never"]
    assert bank.balance(merchant.merchant_id) == BALANCE - 12_000


def _insufficient(bank: BankGatewaySimulator) -> PayoutRequest:
    return _payout("PO-refused", minor=BALANCE + 1)


def _closed(bank: BankGatewaySimulator) -> PayoutRequest:
    bank.closed_accounts.add(PAYEE)
    return _payout("PO-refused")


def _name_mismatch(bank: BankGatewaySimulator) -> PayoutRequest:
    bank.payee_names[PAYEE] = "Li Si"
    return _payout("PO-refused")


@pytest.mark.parametrize(
    ("reason", "given"),
    [("INSUFFICIENT_FUNDS", _insufficient), ("ACCOUNT_CLOSED", _closed), ("NAME_MISMATCH", _name_mismatch)],
)
def test_a_business_refusal_fails_with_the_reason_and_moves_nothing(adapter, bank, merchant, reason, given):
    request = given(bank)

    seen = adapter.payout(request)

    assert reason in wire.TRANSFER_REJECT_REASONS
    assert (seen.status, seen.provider_status, seen.failure_reason) == (PayoutState.FAILED, "REJECTED", reason)
    assert adapter.payout_query(request) == seen  # the bank keeps the refused transfer under its reference
    assert bank.executed_transfers(merchant.merchant_id) == {}
    assert bank.balance(merchant.merchant_id) == BALANCE


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_transfer_answer_is_unknown_not_a_state(adapter, bank, merchant, forgery):
    bank.forge_answers.append(forgery)

    with pytest.raises(Unknown) as exc:
        adapter.payout(_payout("PO-forged"))
    assert exc.value.code == "bad_signature"

    # The bank did act: the honest query says so, and the transfer exists once.
    assert adapter.payout_query(_payout("PO-forged")).status == PayoutState.SUCCEEDED
    assert list(bank.executed_transfers(merchant.merchant_id)) == ["PO-forged"]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_query_answer_is_unknown_not_none(adapter, bank, merchant, forgery):
    bank.forge_answers.append(forgery)

    with pytest.raises(Unknown) as exc:
        adapter.payout_query(_payout("PO-forged-query"))  # an unsigned NOT_FOUND would invite a resend
    assert exc.value.code == "bad_signature"
    assert bank.executed_transfers(merchant.merchant_id) == {}


def test_a_request_signed_with_the_wrong_key_is_a_client_fault_and_terminal(bank, merchant):
    creds = {**bank.account_for(merchant).credentials, "notify_key": "0" * 64}
    adapter = BankGatewayAdapter(_config(bank, merchant, credentials=creds))

    with pytest.raises(Terminal) as exc:
        adapter.payout(_payout("PO-bad-key"))

    assert exc.value.code == "soap_fault_client"
    assert "Client.Signature" in str(exc.value)
    assert bank.transfer_for("PO-bad-key") is None
    assert bank.balance(merchant.merchant_id) == BALANCE


@pytest.mark.parametrize(
    ("overrides", "fault"),
    [
        ({"payee": "not an account"}, "Client.Schema"),
        ({"amount": Money(1_000, "USD")}, "Client.Parameter"),
        ({"amount": Money(0, "CNY")}, "Client.Parameter"),
    ],
)
def test_bad_parameters_are_terminal_and_move_nothing(adapter, bank, merchant, overrides, fault):
    with pytest.raises(Terminal) as exc:
        adapter.payout(_payout("PO-bad-param", **overrides))

    assert fault in str(exc.value)
    assert bank.transfer_for("PO-bad-param") is None
    assert bank.balance(merchant.merchant_id) == BALANCE


def test_a_payout_no_reused_for_another_amount_is_unknown_and_transfers_nothing_more(adapter, bank, merchant):
    adapter.payout(_payout("PO-reused"))

    with pytest.raises(Unknown) as exc:
        adapter.payout(_payout("PO-reused", minor=13_000))

    assert exc.value.code == "amount_mismatch"
    assert bank.transfer_for("PO-reused")["amount_minor"] == 12_000
    assert bank.balance(merchant.merchant_id) == BALANCE - 12_000


def test_no_notify_key_refuses_before_sending(bank, merchant):
    creds = {k: v for k, v in bank.account_for(merchant).credentials.items() if k != "notify_key"}
    adapter = BankGatewayAdapter(_config(bank, merchant, credentials=creds))

    with pytest.raises(Terminal) as exc:
        adapter.payout(_payout("PO-no-key"))

    assert exc.value.code == "no_credentials"
    assert bank.transfer_for("PO-no-key") is None


def test_connection_refused_is_retryable(bank, merchant):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    adapter = BankGatewayAdapter(_config(bank, merchant, base_url=f"http://127.0.0.1:{port}"))

    with pytest.raises(Retryable):
        adapter.payout(_payout("PO-refused-conn"))
    assert bank.transfer_for("PO-refused-conn") is None


def test_the_long_remark_is_cut_to_what_the_bank_keeps(adapter, bank):
    adapter.payout(dataclasses.replace(_payout("PO-remark"), remark="x" * 300))

    assert bank.transfer_for("PO-remark")["remark"] == "x" * wire.TRANSFER_REMARK_MAX
