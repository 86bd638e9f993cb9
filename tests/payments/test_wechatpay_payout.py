"""WeChat Pay payouts (商家转账 transfer-bills) through the adapter against the simulator over real HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.money import Money
from payments.channels.base import (
    AccountConfig,
    Capability,
    PayoutRequest,
    PayoutState,
    Retryable,
    Terminal,
    Unknown,
)
from payments.channels.wechatpay.adapter import WechatPayAdapter
from payments.simulators.wechatpay import WechatPaySimulator


@pytest.fixture(scope="module")
def sim() -> Iterator[WechatPaySimulator]:
    s = WechatPaySimulator().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean(sim: WechatPaySimulator) -> Iterator[None]:
    sim.faults.reset()
    sim.auto_confirm = True
    yield
    sim.faults.reset()
    sim.faults.hang_seconds = 3.0
    sim.auto_confirm = True
    sim.set_balance(10_000_000)


@pytest.fixture(scope="module")
def config(sim: WechatPaySimulator) -> AccountConfig:
    account = sim.account()
    return AccountConfig(
        account_id=12,
        code="wechatpay",
        merchant_no=account.merchant_no,
        base_url=account.base_url,
        currency="CNY",
        credentials=account.credentials,
    )


@pytest.fixture
def adapter(config: AccountConfig) -> WechatPayAdapter:
    return WechatPayAdapter(config)


_seq = iter(range(10**6))


def _payout(minor: int = 1234, *, payee: str = "", name: str = "张三", no: str = "") -> PayoutRequest:
    n = next(_seq)
    return PayoutRequest(
        payout_no=no or f"PO20261203{n:08d}",
        amount=Money(minor, "CNY"),
        payee=payee or f"oPayee{n:06d}xyz",
        payee_name=name,
        remark="Merchant settlement 商户结算",
    )


def _executed(sim: WechatPaySimulator, payout_no: str) -> int:
    return sum(1 for t in sim.transfer_log if t["out_bill_no"] == payout_no)


def _stranger_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TamperingProxy:
    """Forwards every request to the simulator and flips SUCCESS to FAIL (or back) in the answer body, keeping
    WeChat's signature headers: what a man in the middle would do."""

    def __init__(self, upstream: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, upstream + self.path, data=body, headers=headers, timeout=5)
                tampered = resp.content.replace(b"WAIT_USER_CONFIRM", b"SUCCESS")
                self.send_response(resp.status_code)
                for name, value in resp.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(tampered)))
                self.end_headers()
                self.wfile.write(tampered)

            do_GET = do_POST = _relay

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- paid once --------------------------------------------------------------------------------------------


def test_a_payout_waits_for_the_payee_then_the_query_says_succeeded(adapter, sim):
    request = _payout(1234)
    before = sim.balance()

    answer = adapter.payout(request)

    assert (answer.status, answer.provider_status, answer.amount) == (
        PayoutState.PENDING,
        "WAIT_USER_CONFIRM",
        Money(1234, "CNY"),
    )
    assert answer.provider_payout_no.startswith("1330")
    assert _executed(sim, request.payout_no) == 1
    assert sim.balance() == before - 1234
    bill = sim.transfer_for(request.payout_no)
    # user_name went RSA-OAEP encrypted with the platform key and WeChat could read it back.
    assert (bill["openid"], bill["user_name"], bill["transfer_scene_id"]) == (request.payee, "张三", "1000")
    assert bill["transfer_remark"] == "Merchant settlement 商户结算"
    settled = adapter.payout_query(request)
    assert settled is not None
    assert (settled.status, settled.provider_status, settled.amount, settled.provider_payout_no) == (
        PayoutState.SUCCEEDED,
        "SUCCESS",
        Money(1234, "CNY"),
        answer.provider_payout_no,
    )
    assert settled.failure_reason == ""
    assert sim.balance() == before - 1234


def test_a_payout_stays_pending_until_the_payee_confirms(adapter, sim):
    sim.auto_confirm = False
    request = _payout(500)
    assert adapter.payout(request).status == PayoutState.PENDING
    waiting = adapter.payout_query(request)
    assert (waiting.status, waiting.provider_status) == (PayoutState.PENDING, "WAIT_USER_CONFIRM")

    sim.confirm_transfer(request.payout_no)

    assert adapter.payout_query(request).status == PayoutState.SUCCEEDED
    assert _executed(sim, request.payout_no) == 1


def test_a_waiting_payout_that_fails_reads_failed_and_the_money_comes_back(adapter, sim):
    sim.auto_confirm = False
    request = _payout(700)
    before = sim.balance()
    adapter.payout(request)
    assert sim.balance() == before - 700

    sim.fail_transfer(request.payout_no, "ACCOUNT_FROZEN")

    failed = adapter.payout_query(request)
    assert (failed.status, failed.provider_status, failed.failure_reason) == (
        PayoutState.FAILED,
        "FAIL",
        "ACCOUNT_FROZEN",
    )
    assert sim.balance() == before


def test_the_scene_and_its_report_infos_come_from_the_account(config, sim):
    creds = {
        **config.credentials,
        "transfer_scene_id": "1006",
        "transfer_scene_report_infos": '[{"info_type": "报销说明", "info_content": "差旅费"}]',
    }
    request = _payout(300)
    WechatPayAdapter(replace(config, credentials=creds)).payout(request)
    assert sim.transfer_for(request.payout_no)["transfer_scene_id"] == "1006"


# ---- idempotency --------------------------------------------------------------------------------------------


def test_the_same_payout_no_twice_pays_once_with_the_same_answer(adapter, sim):
    sim.auto_confirm = False
    request = _payout(900)
    before = sim.balance()

    first = adapter.payout(request)
    second = adapter.payout(request)

    assert second == first
    assert _executed(sim, request.payout_no) == 1
    assert sim.balance() == before - 900


def test_the_same_payout_no_with_another_amount_is_terminal_and_pays_nothing_more(adapter, sim):
    request = _payout(900)
    adapter.payout(request)
    before = sim.balance()
    with pytest.raises(Terminal):
        adapter.payout(replace(request, amount=Money(901, "CNY")))
    assert _executed(sim, request.payout_no) == 1
    assert sim.balance() == before


# ---- faults -------------------------------------------------------------------------------------------------


def test_a_timeout_is_unknown_and_the_query_finds_the_one_transfer(config, sim):
    request = _payout(1500)
    before = sim.balance()
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.5
    impatient = WechatPayAdapter(replace(config, timeouts=(1.0, 0.5)))

    with pytest.raises(Unknown) as exc:
        impatient.payout(request)

    assert exc.value.code == "timeout"
    found = impatient.payout_query(request)
    assert found is not None
    assert (found.status, found.amount) == (PayoutState.SUCCEEDED, Money(1500, "CNY"))
    assert _executed(sim, request.payout_no) == 1
    assert sim.balance() == before - 1500


def test_a_5xx_is_unknown_the_query_knows_nothing_and_the_same_number_then_pays_once(adapter, sim):
    request = _payout(800)
    before = sim.balance()
    sim.faults.fail_5xx = 1
    with pytest.raises(Unknown) as exc:
        adapter.payout(request)
    assert exc.value.code == "http_5xx"
    assert _executed(sim, request.payout_no) == 0

    assert adapter.payout_query(request) is None
    adapter.payout(request)

    assert _executed(sim, request.payout_no) == 1
    assert sim.balance() == before - 800


def test_a_payout_never_received_is_none_and_sending_it_then_pays_once(adapter, sim):
    request = _payout(600)
    assert adapter.payout_query(request) is None
    assert sim.transfer_for(request.payout_no) is None

    adapter.payout(request)

    assert adapter.payout_query(request).status == PayoutState.SUCCEEDED
    assert _executed(sim, request.payout_no) == 1


def test_a_refused_connection_is_retryable(config):
    down = WechatPayAdapter(replace(config, base_url=f"http://127.0.0.1:{_closed_port()}"))
    with pytest.raises(Retryable):
        down.payout(_payout())
    with pytest.raises(Retryable):
        down.payout_query(_payout())


# ---- business refusals: FAILED, nothing moved -------------------------------------------------------------------


def test_insufficient_balance_is_failed_nothing_moves_and_the_same_number_pays_after_a_top_up(adapter, sim):
    sim.set_balance(1000)
    request = _payout(1001)

    refused = adapter.payout(request)

    assert (refused.status, refused.failure_reason, refused.provider_status) == (
        PayoutState.FAILED,
        "NOT_ENOUGH",
        "NOT_ENOUGH",
    )
    assert refused.provider_payout_no == ""
    assert sim.balance() == 1000
    assert _executed(sim, request.payout_no) == 0
    assert adapter.payout_query(request) is None  # no bill: WeChat wants the same out_bill_no again
    sim.set_balance(5000)
    assert adapter.payout(request).status == PayoutState.PENDING
    assert sim.balance() == 5000 - 1001
    assert _executed(sim, request.payout_no) == 1


def test_an_invalid_payee_is_failed_and_nothing_moves(adapter, sim):
    request = _payout(400, payee="oInvalidPayee00001")
    sim.refuse_payee(request.payee, "OPENID_INVALID")
    before = sim.balance()

    refused = adapter.payout(request)

    assert (refused.status, refused.failure_reason, refused.provider_status) == (
        PayoutState.FAILED,
        "OPENID_INVALID",
        "FAIL",
    )
    assert sim.balance() == before
    assert _executed(sim, request.payout_no) == 0
    assert request.payout_no not in sim.transfers()
    queried = adapter.payout_query(request)
    assert (queried.status, queried.failure_reason) == (PayoutState.FAILED, "OPENID_INVALID")


def test_a_name_that_does_not_match_the_payee_is_failed_and_nothing_moves(adapter, sim):
    request = _payout(400, payee="oNamedPayee000001", name="李四")
    sim.register_payee(request.payee, "王五")
    before = sim.balance()

    refused = adapter.payout(request)

    assert (refused.status, refused.failure_reason) == (PayoutState.FAILED, "NAME_NOT_CORRECT")
    assert sim.balance() == before
    assert _executed(sim, request.payout_no) == 0


def test_bad_requests_are_terminal_before_anything_is_sent(adapter, sim):
    for bad, code in (
        (_payout(no="PO-with-dash"), "bad_payout_no"),
        (replace(_payout(), amount=Money(100, "USD")), "currency"),
        (_payout(0), "bad_amount"),
        (_payout(200_000, name=""), "no_payee_name"),
    ):
        with pytest.raises(Terminal) as exc:
            adapter.payout(bad)
        assert exc.value.code == code
        assert sim.transfer_for(bad.payout_no) is None


def test_a_request_the_provider_finds_malformed_is_terminal(config, sim):
    creds = {**config.credentials, "transfer_scene_report_infos": "[]"}
    request = _payout(100)
    with pytest.raises(Terminal) as exc:
        WechatPayAdapter(replace(config, credentials=creds)).payout(request)
    assert exc.value.code == "refused"
    assert sim.transfer_for(request.payout_no) is None


def test_a_payout_signed_with_another_merchant_key_is_terminal_and_pays_nothing(config, sim):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    request = _payout(100)
    before = sim.balance()
    with pytest.raises(Terminal):
        WechatPayAdapter(replace(config, credentials={**config.credentials, "mch_private_key": pem})).payout(request)
    assert sim.transfer_for(request.payout_no) is None
    assert sim.balance() == before


# ---- forged and tampered answers ---------------------------------------------------------------------------


def test_an_answer_signed_by_another_key_is_never_a_result(config, sim):
    stranger = WechatPayAdapter(
        replace(config, credentials={**config.credentials, "platform_public_key": _stranger_public_pem()})
    )
    request = _payout(200, name="")  # a name would be encrypted with the wrong key too, and refused for that
    with pytest.raises(Unknown) as exc:
        stranger.payout(request)
    assert exc.value.code == "bad_signature"
    assert _executed(sim, request.payout_no) == 1  # it was sent and acted on: only a verified query can tell
    with pytest.raises(Unknown):
        stranger.payout_query(request)


def test_a_refusal_signed_by_another_key_is_not_taken_as_failed(config, sim):
    sim.set_balance(100)
    stranger = WechatPayAdapter(
        replace(config, credentials={**config.credentials, "platform_public_key": _stranger_public_pem()})
    )
    with pytest.raises(Unknown) as exc:
        stranger.payout(_payout(101, name=""))
    assert exc.value.code == "bad_signature"


def test_a_tampered_answer_is_refused(config, sim):
    sim.auto_confirm = False
    proxy = TamperingProxy(sim.base_url)
    try:
        through = WechatPayAdapter(replace(config, base_url=proxy.url))
        request = _payout(300)
        with pytest.raises(Unknown) as exc:
            through.payout(request)
        assert exc.value.code == "bad_signature"
        with pytest.raises(Unknown):
            through.payout_query(request)
    finally:
        proxy.close()
    assert sim.transfer_for(request.payout_no)["state"] == "WAIT_USER_CONFIRM"


# ---- capability ----------------------------------------------------------------------------------------------


def test_the_adapter_offers_payouts():
    assert Capability.PAYOUT in WechatPayAdapter.capabilities
