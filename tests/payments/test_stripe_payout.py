"""Stripe payouts (Connect transfers) through the adapter against the Stripe simulator over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from core.money import Money
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
from payments.channels.stripe.adapter import StripeAdapter
from payments.simulators.base import SimAccount
from payments.simulators.stripe import StripeSimulator

FUNDED = 100_000


@pytest.fixture
def sim() -> Iterator[StripeSimulator]:
    s = StripeSimulator().start()
    s.fund(FUNDED)
    yield s
    s.stop()


@pytest.fixture
def account(sim: StripeSimulator) -> SimAccount:
    return sim.account()


@pytest.fixture
def adapter(account: SimAccount) -> StripeAdapter:
    return StripeAdapter(_config(account))


@pytest.fixture
def payee(sim: StripeSimulator) -> str:
    return sim.connected_account()


def _config(account: SimAccount, *, timeouts=(2.0, 5.0), base_url: str = "", **credentials: str) -> AccountConfig:
    return AccountConfig(
        account_id=1,
        code="stripe",
        merchant_no=account.merchant_no,
        base_url=base_url or account.base_url,
        currency=account.currency,
        credentials={**account.credentials, **credentials},
        timeouts=timeouts,
    )


def _payout(payout_no: str, payee: str, minor: int = 2_500) -> PayoutRequest:
    return PayoutRequest(
        payout_no=payout_no,
        amount=Money(minor, "CNY"),
        payee=payee,
        payee_name="Merchant Ltd",
        remark="settlement 2026-12-02",
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_payout_capability_is_declared():
    assert Capability.PAYOUT in StripeAdapter.capabilities


def test_payout_transfers_once_and_debits_the_platform_balance(adapter, sim, payee):
    obs = adapter.payout(_payout("P-1", payee))

    assert (obs.payout_no, obs.status, obs.amount, obs.provider_status, obs.failure_reason) == (
        "P-1",
        PayoutState.SUCCEEDED,
        Money(2_500, "CNY"),
        "created",
        "",
    )
    assert obs.provider_payout_no.startswith("tr_")
    [transfer] = sim.transfers_for("P-1")
    assert (transfer["id"], transfer["amount"], transfer["currency"], transfer["destination"]) == (
        obs.provider_payout_no,
        2_500,
        "cny",
        payee,
    )
    assert (transfer["transfer_group"], transfer["metadata"], transfer["description"]) == (
        "P-1",
        {"payout_no": "P-1"},
        "settlement 2026-12-02",
    )
    assert sim.available() == FUNDED - 2_500


def test_the_same_payout_no_twice_transfers_once_with_the_same_answer(adapter, sim, payee):
    first = adapter.payout(_payout("P-twice", payee))
    again = adapter.payout(_payout("P-twice", payee))

    assert again == first
    assert len(sim.transfers_for("P-twice")) == 1
    assert sim.available() == FUNDED - 2_500


def test_the_same_payout_no_with_another_amount_is_refused_by_the_idempotency_key(adapter, sim, payee):
    adapter.payout(_payout("P-changed", payee))

    with pytest.raises(Terminal):
        adapter.payout(_payout("P-changed", payee, minor=2_600))
    assert len(sim.transfers_for("P-changed")) == 1
    assert sim.available() == FUNDED - 2_500


def test_timeout_is_unknown_and_the_query_finds_the_one_transfer(sim, account, payee):
    adapter = StripeAdapter(_config(account, timeouts=(1.0, 0.5)))
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.2

    with pytest.raises(Unknown) as exc:
        adapter.payout(_payout("P-hang", payee))
    assert exc.value.code == "timeout"

    found = adapter.payout_query(_payout("P-hang", payee))
    [transfer] = sim.transfers_for("P-hang")
    assert found is not None
    assert (found.status, found.provider_payout_no, found.amount) == (
        PayoutState.SUCCEEDED,
        transfer["id"],
        Money(2_500, "CNY"),
    )
    # Resolved by the query; a resubmission under the same number would replay, not pay again.
    assert adapter.payout(_payout("P-hang", payee)) == found
    assert len(sim.transfers_for("P-hang")) == 1
    assert sim.available() == FUNDED - 2_500


def test_5xx_is_unknown_and_nothing_was_transferred(adapter, sim, payee):
    sim.faults.fail_5xx = 1

    with pytest.raises(Unknown) as exc:
        adapter.payout(_payout("P-500", payee))
    assert exc.value.code == "http_5xx"
    assert sim.transfers_for("P-500") == []
    assert adapter.payout_query(_payout("P-500", payee)) is None
    assert sim.available() == FUNDED


def test_query_of_a_payout_never_received_is_none_then_sending_it_pays_once(adapter, sim, payee):
    request = _payout("P-never", payee)

    assert adapter.payout_query(request) is None
    paid = adapter.payout(request)

    assert paid.status == PayoutState.SUCCEEDED
    assert adapter.payout_query(request) == paid  # by transfer_group
    assert adapter.payout_query(replace(request, provider_payout_no=paid.provider_payout_no)) == paid  # by id
    assert adapter.payout_query(replace(request, provider_payout_no="tr_missing")) is None
    assert len(sim.transfers_for("P-never")) == 1
    assert sim.available() == FUNDED - 2_500


def test_insufficient_balance_is_a_failed_payout_and_nothing_moves(adapter, sim, payee):
    obs = adapter.payout(_payout("P-big", payee, minor=FUNDED + 1))

    assert obs == PayoutObservation(
        payout_no="P-big",
        provider_payout_no="",
        status=PayoutState.FAILED,
        amount=Money(FUNDED + 1, "CNY"),
        provider_status="balance_insufficient",
        failure_reason=obs.failure_reason,
    )
    assert "insufficient available funds" in obs.failure_reason
    assert sim.transfers_for("P-big") == []
    assert sim.available() == FUNDED
    assert adapter.payout_query(_payout("P-big", payee, minor=FUNDED + 1)) is None


@pytest.mark.parametrize("kind", ["unknown", "transfers_inactive"])
def test_an_invalid_payee_is_a_failed_payout_and_nothing_moves(adapter, sim, kind):
    payee = "acct_NotConnected0000" if kind == "unknown" else sim.connected_account(transfers=False)

    obs = adapter.payout(_payout("P-payee", payee))

    expected_code = "resource_missing" if kind == "unknown" else "insufficient_capabilities_for_transfer"
    assert (obs.status, obs.provider_status, obs.provider_payout_no) == (PayoutState.FAILED, expected_code, "")
    assert ("No such destination" if kind == "unknown" else "capabilities enabled: transfers") in obs.failure_reason
    assert sim.transfers_for("P-payee") == []
    assert sim.available() == FUNDED


def test_a_transfer_reversed_in_full_is_failed_on_query(adapter, sim, payee):
    paid = adapter.payout(_payout("P-rev", payee))
    sim.reverse("P-rev", 1_000)
    partly = adapter.payout_query(_payout("P-rev", payee))
    assert (partly.status, partly.provider_status) == (PayoutState.SUCCEEDED, "partially_reversed")

    sim.reverse("P-rev")
    obs = adapter.payout_query(replace(_payout("P-rev", payee), provider_payout_no=paid.provider_payout_no))

    assert (obs.status, obs.provider_status, obs.provider_payout_no) == (
        PayoutState.FAILED,
        "reversed",
        paid.provider_payout_no,
    )
    assert sim.available() == FUNDED


@pytest.mark.parametrize(
    "tamper",
    [
        {"amount": 1},
        {"currency": "usd"},
        {"destination": "acct_SomeoneElse00000"},
        {"transfer_group": "P-other", "metadata": {"payout_no": "P-other"}},
        {"object": "refund"},
        {"reversed": "no"},
    ],
)
def test_an_answer_that_is_not_our_transfer_is_unknown_never_a_success(adapter, sim, payee, tamper):
    # Stripe does not sign API answers (TLS is the proof): the adapter checks that the answer is the transfer it
    # asked for, and anything else says nothing about what moved.
    sim.tamper_transfers = tamper

    with pytest.raises(Unknown) as exc:
        adapter.payout(_payout("P-tampered", payee))
    assert exc.value.code == "bad_response"
    with pytest.raises(Unknown):
        adapter.payout_query(_payout("P-tampered", payee))
    assert len(sim.transfers_for("P-tampered")) == 1  # it did move: only a faithful query may say so

    sim.tamper_transfers = {}
    assert adapter.payout_query(_payout("P-tampered", payee)).status == PayoutState.SUCCEEDED
    assert adapter.payout(_payout("P-tampered", payee)).status == PayoutState.SUCCEEDED  # the faithful replay
    assert len(sim.transfers_for("P-tampered")) == 1


def test_a_forged_request_is_refused_by_the_provider_and_is_terminal(account, sim, payee):
    with pytest.raises(Terminal):
        StripeAdapter(_config(account, secret_key="sk_test_forged")).payout(_payout("P-forged", payee))
    with pytest.raises(Terminal) as exc:
        StripeAdapter(_config(account, secret_key="")).payout_query(_payout("P-forged", payee))
    assert exc.value.code == "no_credentials"
    assert sim.transfers_for("P-forged") == []
    assert sim.available() == FUNDED


def test_unreachable_provider_is_retryable(account, payee):
    adapter = StripeAdapter(_config(account, base_url=f"http://127.0.0.1:{_closed_port()}"))

    with pytest.raises(Retryable) as exc:
        adapter.payout(_payout("P-down", payee))
    assert exc.value.code == "connect"
    with pytest.raises(Retryable):
        adapter.payout_query(_payout("P-down", payee))


def test_several_transfers_under_one_payout_no_are_never_read_as_one(adapter, sim, account, payee):
    adapter.payout(_payout("P-dup", payee))
    # A resend after the 24-hour Idempotency-Key window, made by hand here with a fresh key.
    resp = requests.post(
        f"{account.base_url}/v1/transfers",
        data={"amount": "2500", "currency": "cny", "destination": payee, "transfer_group": "P-dup"},
        headers={"Authorization": f"Bearer {account.credentials['secret_key']}"},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text

    with pytest.raises(Unknown) as exc:
        adapter.payout_query(_payout("P-dup", payee))
    assert exc.value.code == "several_transfers"


def test_the_simulator_serves_stripes_balance_and_idempotency_error(sim, account, payee):
    headers = {"Authorization": f"Bearer {account.credentials['secret_key']}", "Idempotency-Key": "k-1"}
    body = {"amount": "100", "currency": "cny", "destination": payee}
    first = requests.post(f"{account.base_url}/v1/transfers", data=body, headers=headers, timeout=5)
    replay = requests.post(f"{account.base_url}/v1/transfers", data=body, headers=headers, timeout=5)
    other = requests.post(
        f"{account.base_url}/v1/transfers", data={**body, "amount": "101"}, headers=headers, timeout=5
    )
    balance = requests.get(f"{account.base_url}/v1/balance", headers=headers, timeout=5).json()

    assert (first.status_code, replay.status_code, replay.headers.get("Idempotent-Replayed")) == (200, 200, "true")
    assert replay.json() == first.json()
    assert (other.status_code, other.json()["error"]["type"]) == (400, "idempotency_error")
    assert balance["available"] == [{"amount": FUNDED - 100, "currency": "cny", "source_types": {"card": FUNDED - 100}}]


def test_a_payout_still_in_flight_is_unknown_to_a_retry_and_settles_once(adapter, sim, payee):
    sim.transfer_gate.clear()  # Stripe holds the first request
    answers: list[PayoutObservation] = []
    first = threading.Thread(target=lambda: answers.append(adapter.payout(_payout("P-slow", payee))))
    first.start()
    try:
        deadline = time.monotonic() + 5
        while not any(key == "payout-P-slow" for _, key in sim._idempotency) and time.monotonic() < deadline:
            time.sleep(0.01)

        assert adapter.payout_query(_payout("P-slow", payee)) is None  # not made yet: the list is empty
        with pytest.raises(Unknown) as exc:  # 409 idempotency_key_in_use: never read as a refusal
            adapter.payout(_payout("P-slow", payee))
        assert exc.value.code == "conflict"
    finally:
        sim.transfer_gate.set()  # the test settles it
        first.join(timeout=5)

    [settled] = answers
    assert settled.status == PayoutState.SUCCEEDED
    assert adapter.payout_query(_payout("P-slow", payee)) == settled
    assert len(sim.transfers_for("P-slow")) == 1
    assert sim.available() == FUNDED - 2_500
