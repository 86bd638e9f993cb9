"""Alipay payouts (alipay.fund.trans.uni.transfer / common.query) against the simulator over real HTTP: paid once,
idempotent resends, timeouts resolved by query, refusals that move nothing, forged answers."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.money import Money
from payments.channels.alipay.adapter import AlipayAdapter
from payments.channels.base import (
    AccountConfig,
    Capability,
    PayoutRequest,
    PayoutState,
    Retryable,
    Terminal,
    Unknown,
)
from payments.simulators.alipay import AlipaySimulator

PAYEE_LOGIN, PAYEE_LOGIN_NAME = "merchant7@example.com", "赵六"
PAYEE_USER_ID, PAYEE_USER_NAME = "2088301234567890", "王五"
BALANCE = 1_000_00  # 1000.00 yuan at Alipay to pay out of


@pytest.fixture(scope="module")
def sim() -> Iterator[AlipaySimulator]:
    simulator = AlipaySimulator().start()
    simulator.account()
    simulator.add_payee(PAYEE_LOGIN, PAYEE_LOGIN_NAME)
    simulator.add_payee(PAYEE_USER_ID, PAYEE_USER_NAME)
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _fresh(sim):
    sim.set_balance(BALANCE)
    yield
    sim.faults.reset()
    sim.hold_transfers = sim.tamper_answers = sim.transfer_system_errors = 0


def _config(sim: AlipaySimulator, *, base_url: str = "", timeouts=(2.0, 8.0), **credentials: str) -> AccountConfig:
    account = sim.account()
    return AccountConfig(
        account_id=1,
        code="alipay",
        merchant_no=account.merchant_no,
        base_url=base_url or account.base_url,
        currency="CNY",
        credentials=credentials or account.credentials,
        timeouts=timeouts,
    )


@pytest.fixture
def adapter(sim) -> AlipayAdapter:
    return AlipayAdapter(_config(sim))


def _payout(
    minor: int = 12_34,
    *,
    no: str = "",
    payee: str = PAYEE_LOGIN,
    name: str = PAYEE_LOGIN_NAME,
    currency: str = "CNY",
    provider_payout_no: str = "",
) -> PayoutRequest:
    return PayoutRequest(
        payout_no=no or f"P-{uuid.uuid4().hex[:12]}",
        amount=Money(minor, currency),
        payee=payee,
        payee_name=name,
        remark="T+0 结算 settlement",
        provider_payout_no=provider_payout_no,
    )


def _other_key_pem(*, private: bool) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if private:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- paid once -------------------------------------------------------------------------------------------
def test_capability_payout_is_declared():
    assert Capability.PAYOUT in AlipayAdapter.capabilities


def test_payout_to_a_login_pays_once_and_debits_the_balance_exactly(adapter, sim):
    request = _payout(12_34)

    seen = adapter.payout(request)

    [transfer] = sim.executed_transfers(request.payout_no)
    assert seen.status == PayoutState.SUCCEEDED and seen.provider_status == "SUCCESS"
    assert (seen.payout_no, seen.provider_payout_no) == (request.payout_no, transfer["order_id"])
    assert seen.amount == Money(12_34, "CNY") and seen.failure_reason == ""
    assert transfer["amount_minor"] == 12_34 and transfer["status"] == "SUCCESS"
    assert (transfer["identity"], transfer["identity_type"], transfer["name"]) == (
        PAYEE_LOGIN,
        "ALIPAY_LOGON_ID",
        PAYEE_LOGIN_NAME,
    )
    assert transfer["remark"] == "T+0 结算 settlement"
    assert sim.balance() == BALANCE - 12_34


def test_payout_to_a_2088_user_id_sends_alipay_user_id(adapter, sim):
    request = _payout(5_00, payee=PAYEE_USER_ID, name=PAYEE_USER_NAME)

    assert adapter.payout(request).status == PayoutState.SUCCEEDED

    [transfer] = sim.executed_transfers(request.payout_no)
    assert (transfer["identity"], transfer["identity_type"]) == (PAYEE_USER_ID, "ALIPAY_USER_ID")
    assert sim.balance() == BALANCE - 5_00


def test_a_dealing_transfer_is_pending_until_alipay_settles_it_then_the_query_says_succeeded(adapter, sim):
    sim.hold_transfers = 1
    request = _payout(20_00)

    first = adapter.payout(request)
    assert (first.status, first.provider_status) == (PayoutState.PENDING, "DEALING")
    assert sim.balance() == BALANCE - 20_00  # held at Alipay while it processes
    assert adapter.payout_query(request).status == PayoutState.PENDING

    sim.settle_transfer(request.payout_no)

    by_number = adapter.payout_query(request)
    by_order_id = adapter.payout_query(
        _payout(20_00, no=request.payout_no, provider_payout_no=first.provider_payout_no)
    )
    for seen in (by_number, by_order_id):
        assert seen.status == PayoutState.SUCCEEDED and seen.provider_status == "SUCCESS"
        assert seen.amount == Money(20_00, "CNY") and seen.provider_payout_no == first.provider_payout_no
    assert len(sim.executed_transfers(request.payout_no)) == 1
    assert sim.balance() == BALANCE - 20_00


def test_a_dealing_transfer_that_fails_later_is_failed_with_alipays_reason_and_the_money_back(adapter, sim):
    sim.hold_transfers = 1
    request = _payout(20_00)
    assert adapter.payout(request).status == PayoutState.PENDING

    sim.settle_transfer(request.payout_no, succeed=False, error_code="PAYEE_ACCOUNT_STATUS_ERROR", reason="账户冻结")

    seen = adapter.payout_query(request)
    assert (seen.status, seen.provider_status) == (PayoutState.FAILED, "FAIL")
    assert seen.failure_reason == "PAYEE_ACCOUNT_STATUS_ERROR: 账户冻结"
    assert sim.balance() == BALANCE


# ---- idempotency -----------------------------------------------------------------------------------------
def test_the_same_payout_no_twice_transfers_once_and_answers_the_same(adapter, sim):
    request = _payout(12_34)

    first, second = adapter.payout(request), adapter.payout(request)

    assert first == second
    assert first.status == PayoutState.SUCCEEDED
    assert len(sim.executed_transfers(request.payout_no)) == 1
    assert sim.balance() == BALANCE - 12_34


def test_the_same_payout_no_with_another_amount_is_refused_and_pays_nothing_more(adapter, sim):
    request = _payout(12_34)
    adapter.payout(request)

    with pytest.raises(Terminal) as exc:
        adapter.payout(_payout(99_00, no=request.payout_no))

    # Not a failed payout: the first transfer under that number did pay.
    assert exc.value.code == "payment_info_inconsistency"
    assert [t["amount_minor"] for t in sim.executed_transfers(request.payout_no)] == [12_34]
    assert sim.balance() == BALANCE - 12_34


# ---- faults ----------------------------------------------------------------------------------------------
def test_timeout_after_alipay_executed_is_unknown_and_the_query_finds_it_paid_once(sim):
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.0
    adapter = AlipayAdapter(_config(sim, timeouts=(1.0, 0.3)))
    request = _payout(12_34)

    with pytest.raises(Unknown) as exc:
        adapter.payout(request)

    assert exc.value.code == "timeout"
    seen = adapter.payout_query(request)
    assert seen.status == PayoutState.SUCCEEDED and seen.amount == Money(12_34, "CNY")
    assert seen.provider_payout_no == sim.transfer_for(request.payout_no)["order_id"]
    # A resend under the same number (what a caller unsure of the query might do) still pays nothing more.
    assert adapter.payout(request).provider_payout_no == seen.provider_payout_no
    assert len(sim.executed_transfers(request.payout_no)) == 1
    assert sim.balance() == BALANCE - 12_34


def test_5xx_is_unknown_nothing_executed_and_the_same_number_then_pays_once(adapter, sim):
    sim.faults.fail_5xx = 1
    request = _payout(12_34)

    with pytest.raises(Unknown) as exc:
        adapter.payout(request)

    assert exc.value.code == "http_5xx"
    assert sim.executed_transfers(request.payout_no) == [] and sim.balance() == BALANCE
    assert adapter.payout_query(request) is None
    assert adapter.payout(request).status == PayoutState.SUCCEEDED
    assert len(sim.executed_transfers(request.payout_no)) == 1


def test_system_error_is_unknown_and_resolved_by_query_then_the_same_number(adapter, sim):
    sim.transfer_system_errors = 1
    request = _payout(12_34)

    with pytest.raises(Unknown) as exc:
        adapter.payout(request)  # Alipay's "try again with the same parameters": never a failed payout

    assert exc.value.code == "provider_busy"
    assert adapter.payout_query(request) is None
    assert adapter.payout(request).status == PayoutState.SUCCEEDED
    assert len(sim.executed_transfers(request.payout_no)) == 1 and sim.balance() == BALANCE - 12_34


def test_connection_refused_is_retryable_and_nothing_is_sent(sim):
    adapter = AlipayAdapter(_config(sim, base_url=f"http://127.0.0.1:{_closed_port()}"))
    request = _payout(12_34)

    with pytest.raises(Retryable):
        adapter.payout(request)

    assert sim.transfer_for(request.payout_no) is None and sim.balance() == BALANCE


def test_query_of_a_payout_no_alipay_never_received_is_none_and_sending_it_then_pays_once(adapter, sim):
    request = _payout(7_77)

    assert adapter.payout_query(request) is None
    assert (
        adapter.payout_query(_payout(7_77, no=request.payout_no, provider_payout_no="20261203110070000000000001"))
        is None
    )

    assert adapter.payout(request).status == PayoutState.SUCCEEDED
    assert len(sim.executed_transfers(request.payout_no)) == 1
    assert sim.balance() == BALANCE - 7_77


# ---- refusals --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payee", "name", "minor", "sub_code"),
    [
        (PAYEE_LOGIN, PAYEE_LOGIN_NAME, BALANCE + 1, "PAYER_BALANCE_NOT_ENOUGH"),
        ("nobody@example.com", "张三", 12_34, "PAYEE_NOT_EXIST"),
        (PAYEE_LOGIN, "李雷", 12_34, "PAYEE_USER_INFO_ERROR"),
        ("2088999999999999", "", 12_34, "PAYEE_NOT_EXIST"),
    ],
)
def test_a_business_refusal_is_a_failed_payout_with_alipays_reason_and_nothing_moves(
    adapter, sim, payee, name, minor, sub_code
):
    request = _payout(minor, payee=payee, name=name)

    seen = adapter.payout(request)

    assert (seen.status, seen.provider_status, seen.provider_payout_no) == (PayoutState.FAILED, sub_code, "")
    assert seen.failure_reason.startswith(f"{sub_code}: ") and len(seen.failure_reason) > len(sub_code) + 2
    assert seen.amount == Money(minor, "CNY")
    assert sim.executed_transfers(request.payout_no) == [] and sim.balance() == BALANCE
    # Alipay keeps no order for a refused transfer: the number is free once the cause is fixed.
    assert adapter.payout_query(request) is None


def test_after_the_balance_is_topped_up_the_same_number_pays(adapter, sim):
    sim.set_balance(10_00)
    request = _payout(12_34)
    assert adapter.payout(request).status == PayoutState.FAILED

    sim.set_balance(BALANCE)

    assert adapter.payout(request).status == PayoutState.SUCCEEDED
    assert len(sim.executed_transfers(request.payout_no)) == 1 and sim.balance() == BALANCE - 12_34


@pytest.mark.parametrize(
    ("request_kw", "code"),
    [
        ({"minor": 5}, "invalid_parameter"),  # below Alipay's 0.10 yuan minimum: refused by Alipay
        ({"currency": "USD"}, "currency"),
        ({"payee": "not a login"}, "bad_payee"),
        ({"name": ""}, "bad_payee"),  # a login id needs the real name
    ],
)
def test_a_malformed_payout_is_terminal_and_nothing_moves(adapter, sim, request_kw, code):
    request = _payout(**request_kw)

    with pytest.raises(Terminal) as exc:
        adapter.payout(request)

    assert exc.value.code == code
    assert sim.transfer_for(request.payout_no) is None and sim.balance() == BALANCE


def test_a_payout_signed_with_another_app_key_is_terminal_and_nothing_moves(sim):
    alipay_public_key = sim.account().credentials["alipay_public_key"]
    config = _config(sim, app_private_key=_other_key_pem(private=True), alipay_public_key=alipay_public_key)
    request = _payout(12_34)

    with pytest.raises(Terminal) as exc:
        AlipayAdapter(config).payout(request)

    assert exc.value.code == "isv.invalid-signature"
    assert sim.transfer_for(request.payout_no) is None and sim.balance() == BALANCE


# ---- forged answers --------------------------------------------------------------------------------------
def test_an_answer_tampered_in_transit_is_not_believed(adapter, sim):
    sim.hold_transfers, sim.tamper_answers = 1, 1
    request = _payout(12_34)

    with pytest.raises(Unknown) as exc:
        adapter.payout(request)  # Alipay said DEALING; the wire says SUCCESS under Alipay's signature of DEALING

    assert exc.value.code == "bad_signature"
    assert adapter.payout_query(request).status == PayoutState.PENDING
    assert len(sim.executed_transfers(request.payout_no)) == 1


def test_an_answer_signed_by_someone_else_is_not_believed(sim):
    app_private_key = sim.account().credentials["app_private_key"]
    config = _config(sim, app_private_key=app_private_key, alipay_public_key=_other_key_pem(private=False))
    stranger_trusting = AlipayAdapter(config)
    request = _payout(12_34)

    with pytest.raises(Unknown) as exc:
        stranger_trusting.payout(request)
    assert exc.value.code == "bad_signature"
    with pytest.raises(Unknown):
        stranger_trusting.payout_query(request)

    assert AlipayAdapter(_config(sim)).payout_query(request).status == PayoutState.SUCCEEDED
