"""The WeChat Pay v3 adapter against the simulator over real HTTP: create, query, close, refund, callbacks, faults."""

from __future__ import annotations

import json
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
    CreateOrder,
    Inbound,
    NotificationInvalid,
    Observation,
    ObservedStatus,
    RefundObservation,
    RefundRequest,
    RefundState,
    Retryable,
    Terminal,
    Unknown,
)
from payments.channels.wechatpay.adapter import WechatPayAdapter
from payments.simulators import base as simbase
from payments.simulators.wechatpay import WechatPaySimulator

DEAD_NOTIFY_URL = "http://127.0.0.1:9/notify/wechatpay/"


class NotifyReceiver:
    """A shop notify endpoint that records each callback and answers 204 like ours."""

    def __init__(self) -> None:
        self.calls: list[Inbound] = []
        received = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(Inbound({}, body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/wechatpay/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sim() -> Iterator[WechatPaySimulator]:
    s = WechatPaySimulator().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean_faults(sim: WechatPaySimulator) -> Iterator[None]:
    sim.faults.reset()
    yield
    sim.faults.reset()
    sim.faults.hang_seconds = 3.0


@pytest.fixture(scope="module")
def config(sim: WechatPaySimulator) -> AccountConfig:
    account = sim.account()
    return AccountConfig(
        account_id=7,
        code="wechatpay",
        merchant_no=account.merchant_no,
        base_url=account.base_url,
        currency="CNY",
        credentials=account.credentials,
    )


@pytest.fixture
def adapter(config: AccountConfig) -> WechatPayAdapter:
    return WechatPayAdapter(config)


@pytest.fixture
def receiver() -> Iterator[NotifyReceiver]:
    r = NotifyReceiver()
    yield r
    r.close()


_seq = iter(range(10**6))


def _no(prefix: str = "P") -> str:
    return f"{prefix}2025010112{next(_seq):08d}"


def _order(no: str, minor: int = 990, notify_url: str = DEAD_NOTIFY_URL) -> CreateOrder:
    return CreateOrder(
        out_trade_no=no,
        amount=Money(minor, "CNY"),
        subject="Gift card 礼品卡",
        notify_url=notify_url,
        return_url="",
        client_ip="127.0.0.1",
        method="wechat",
    )


def _refund(no: str, refund_no: str, minor: int = 990, notify_url: str = "") -> RefundRequest:
    return RefundRequest(
        refund_no=refund_no,
        out_trade_no=no,
        provider_trade_no="",
        amount=Money(minor, "CNY"),
        total=Money(minor, "CNY"),
        reason="buyer asked",
        notify_url=notify_url,
    )


def _inbound(notify: simbase.NotifyRequest) -> Inbound:
    return Inbound(params={}, body=notify.body, headers={k.lower(): v for k, v in notify.headers.items()})


def _paid(adapter: WechatPayAdapter, sim: WechatPaySimulator, minor: int = 990) -> str:
    no = _no()
    adapter.create(_order(no, minor))
    sim.pay(no)
    return no


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- create / query / close -------------------------------------------------------------------------


def test_create_gives_the_scan_page_url_as_qr_content(adapter, sim):
    no = _no()
    created = adapter.create(_order(no))
    assert created.qr_content.startswith(sim.base_url + "/scan/")
    assert created.pay_url == created.qr_content
    assert created.provider_trade_no == ""  # Native pay names no transaction_id before payment
    trade = sim.trade_for(no)
    assert (trade["amount_minor"], trade["currency"], trade["status"]) == (990, "CNY", "pending")
    assert trade["notify_url"] == DEAD_NOTIFY_URL
    page = requests.get(created.qr_content, timeout=5)
    assert page.status_code == 200 and "Pay ¥9.90" in page.text


def test_create_is_idempotent_and_refuses_a_changed_amount(adapter, sim):
    no = _no()
    first = adapter.create(_order(no))
    assert adapter.create(_order(no)).qr_content == first.qr_content
    with pytest.raises(Terminal):
        adapter.create(_order(no, minor=1))
    assert sim.trade_for(no)["amount_minor"] == 990


def test_create_refuses_other_currencies_and_bad_numbers_without_calling(adapter, sim):
    usd = replace(_order(_no()), amount=Money(990, "USD"))
    with pytest.raises(Terminal) as exc:
        adapter.create(usd)
    assert exc.value.code == "currency"
    with pytest.raises(Terminal) as exc:
        adapter.create(_order("a/b"))
    assert exc.value.code == "bad_out_trade_no"
    assert sim.trade_for(usd.out_trade_no) is None


def test_query_pending_then_paid(adapter, sim):
    no = _no()
    adapter.create(_order(no))
    pending = adapter.query(no)
    assert (pending.status, pending.amount, pending.provider_trade_no) == (
        ObservedStatus.PENDING,
        Money(990, "CNY"),
        "",
    )
    sim.pay(no)  # nobody listens on port 9: the callback fails, the trade stays paid
    assert sim.trade_for(no)["notify_attempts"][-1]["error"] == "ConnectionError"
    paid = adapter.query(no)
    assert (paid.status, paid.amount, paid.provider_status) == (ObservedStatus.SUCCEEDED, Money(990, "CNY"), "SUCCESS")
    assert paid.provider_trade_no == sim.trade_for(no)["provider_trade_no"]
    assert paid.event_key != pending.event_key


def test_query_of_an_unknown_trade_is_none(adapter):
    assert adapter.query(_no()) is None


def test_close_a_pending_trade_then_query_says_closed(adapter, sim):
    no = _no()
    adapter.create(_order(no))
    adapter.close(no)
    adapter.close(no)  # closing twice is fine
    assert sim.trade_for(no)["status"] == "closed"
    assert adapter.query(no).status == ObservedStatus.CLOSED
    with pytest.raises(ValueError):
        sim.pay(no)


def test_close_a_paid_trade_is_terminal(adapter, sim):
    no = _paid(adapter, sim)
    with pytest.raises(Terminal) as exc:
        adapter.close(no)
    assert exc.value.code == "already_paid"
    assert sim.trade_for(no)["status"] == "paid"


# ---- refunds ------------------------------------------------------------------------------------------


def test_refund_twice_with_the_same_refund_no_refunds_once(adapter, sim):
    no = _paid(adapter, sim)
    request = _refund(no, "R" + no)
    first = adapter.refund(request)
    again = adapter.refund(request)
    assert (first.refund_no, first.status, first.amount) == ("R" + no, RefundState.SUCCEEDED, Money(990, "CNY"))
    assert again.provider_refund_no == first.provider_refund_no
    trade = sim.trade_for(no)
    assert len(trade["refunds"]) == 1 and trade["status"] == "refunded"
    seen = adapter.refund_query(request)
    assert (seen.provider_refund_no, seen.status, seen.provider_status) == (
        first.provider_refund_no,
        RefundState.SUCCEEDED,
        "SUCCESS",
    )
    after = adapter.query(no)
    assert (after.status, after.provider_status) == (ObservedStatus.SUCCEEDED, "REFUND")


def test_refund_query_of_an_unknown_refund_is_none(adapter, sim):
    no = _paid(adapter, sim)
    assert adapter.refund_query(_refund(no, "never-sent")) is None


def test_refund_of_an_unpaid_trade_is_terminal(adapter, sim):
    no = _no()
    adapter.create(_order(no))
    with pytest.raises(Terminal):
        adapter.refund(_refund(no, "R" + no))
    assert sim.trade_for(no)["refunds"] == []


def test_a_processing_refund_settles_by_callback(config, receiver):
    slow = WechatPaySimulator(refund_delay=None).start()  # refunds stay PROCESSING until complete_refund()
    try:
        account = slow.account()
        adapter = WechatPayAdapter(
            replace(config, merchant_no=account.merchant_no, base_url=slow.base_url, credentials=account.credentials)
        )
        no = _no()
        adapter.create(_order(no))
        slow.pay(no)
        request = _refund(no, "R" + no, notify_url=receiver.url)
        assert adapter.refund(request).status == RefundState.PENDING
        assert adapter.refund_query(request).provider_status == "PROCESSING"
        slow.complete_refund("R" + no, background=False)
        (callback,) = receiver.calls
        seen = adapter.verify_notification(callback)
        assert isinstance(seen, RefundObservation)
        assert (seen.refund_no, seen.status, seen.amount, seen.provider_status) == (
            "R" + no,
            RefundState.SUCCEEDED,
            Money(990, "CNY"),
            "SUCCESS",
        )
        assert adapter.refund_query(request).status == RefundState.SUCCEEDED
    finally:
        slow.stop()


# ---- callbacks ----------------------------------------------------------------------------------------


def test_verify_accepts_the_simulator_callback(adapter, sim):
    no = _paid(adapter, sim)
    notify = sim.notify_request(no)
    assert notify.content_type == "application/json" and notify.method == "POST"
    seen = adapter.verify_notification(_inbound(notify))
    assert isinstance(seen, Observation)
    assert (seen.out_trade_no, seen.status, seen.amount, seen.provider_status) == (
        no,
        ObservedStatus.SUCCEEDED,
        Money(990, "CNY"),
        "SUCCESS",
    )
    assert seen.provider_trade_no == sim.trade_for(no)["provider_trade_no"]
    assert adapter.verify_notification(_inbound(notify)).event_key == seen.event_key  # a replay


REFUSED = {
    simbase.BAD_SIGNATURE: "bad_signature",
    simbase.WRONG_MERCHANT: "wrong_merchant",
    simbase.STALE_TIMESTAMP: "stale_timestamp",
    simbase.TAMPERED_CIPHERTEXT: "decrypt_failed",
}
PASSED_ON = {simbase.VALID, simbase.WRONG_AMOUNT, simbase.WRONG_CURRENCY, simbase.UNKNOWN_ORDER, simbase.CLOSED}


def test_every_variant_is_covered(sim):
    assert sim.notify_variants == set(REFUSED) | PASSED_ON


@pytest.mark.parametrize("variant", sorted(REFUSED))
def test_forged_callbacks_are_refused(adapter, sim, variant):
    no = _paid(adapter, sim)
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(_inbound(sim.notify_request(no, variant=variant)))
    assert exc.value.code == REFUSED[variant]


def test_changed_fields_are_reported_as_stated_for_the_caller_to_compare(adapter, sim):
    no = _paid(adapter, sim)
    valid = adapter.verify_notification(_inbound(sim.notify_request(no)))
    amount = adapter.verify_notification(_inbound(sim.notify_request(no, variant=simbase.WRONG_AMOUNT)))
    currency = adapter.verify_notification(_inbound(sim.notify_request(no, variant=simbase.WRONG_CURRENCY)))
    order = adapter.verify_notification(_inbound(sim.notify_request(no, variant=simbase.UNKNOWN_ORDER)))
    assert amount.amount == Money(1, "CNY")
    assert currency.amount == Money(990, "USD")
    assert order.out_trade_no != no and order.out_trade_no.startswith("UNKNOWN")
    assert len({valid.event_key, amount.event_key, currency.event_key, order.event_key}) == 4


def test_a_closed_callback_maps_to_closed(adapter, sim):
    no = _no()
    adapter.create(_order(no))
    seen = adapter.verify_notification(_inbound(sim.notify_request(no, variant=simbase.CLOSED)))
    assert (seen.status, seen.provider_status, seen.amount) == (ObservedStatus.CLOSED, "CLOSED", Money(990, "CNY"))


def test_another_accounts_keys_do_not_verify(adapter, config, sim):
    no = _paid(adapter, sim)
    inbound = _inbound(sim.notify_request(no))
    other_key = {**config.credentials, "apiv3_key": "x" * 32}
    with pytest.raises(NotificationInvalid) as exc:
        WechatPayAdapter(replace(config, credentials=other_key)).verify_notification(inbound)
    assert exc.value.code == "decrypt_failed"
    other_id = {**config.credentials, "platform_public_key_id": "PUB_KEY_ID_0000"}
    with pytest.raises(NotificationInvalid) as exc:
        WechatPayAdapter(replace(config, credentials=other_id)).verify_notification(inbound)
    assert exc.value.code == "unknown_serial"
    with pytest.raises(NotificationInvalid) as exc:
        WechatPayAdapter(replace(config, credentials={})).verify_notification(inbound)
    assert exc.value.code == "no_credentials"


def test_the_reference_is_hidden_and_the_ack_is_204(adapter, sim):
    no = _paid(adapter, sim)
    assert WechatPayAdapter.notification_reference(_inbound(sim.notify_request(no))) == ""
    assert (WechatPayAdapter.ack(True).status, WechatPayAdapter.ack(True).body) == (204, "")
    refused = WechatPayAdapter.ack(False)
    assert refused.status == 400 and json.loads(refused.body)["code"] == "FAIL"


def test_duplicate_notify_sends_the_same_event_twice(adapter, sim, receiver):
    no = _no()
    adapter.create(_order(no, notify_url=receiver.url))
    sim.faults.duplicate_notify = 1
    sim.pay(no)
    first, second = receiver.calls
    assert first.body == second.body
    assert adapter.verify_notification(first).event_key == adapter.verify_notification(second).event_key


def test_drop_notify_sends_nothing_but_the_trade_is_paid(adapter, sim, receiver):
    no = _no()
    adapter.create(_order(no, notify_url=receiver.url))
    sim.faults.drop_notify = 1
    sim.pay(no)
    assert receiver.calls == []
    assert adapter.query(no).status == ObservedStatus.SUCCEEDED
    sim.pay(no)  # the fault is spent: a re-notify arrives
    assert adapter.verify_notification(receiver.calls[0]).out_trade_no == no


# ---- faults and transport -----------------------------------------------------------------------------


def test_5xx_on_create_is_unknown_and_records_nothing(adapter, sim):
    no = _no()
    sim.faults.fail_5xx = 1
    with pytest.raises(Unknown):
        adapter.create(_order(no))
    assert sim.trade_for(no) is None


def test_read_timeout_on_create_is_unknown_but_the_trade_exists(config, sim):
    no = _no()
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.5
    with pytest.raises(Unknown) as exc:
        WechatPayAdapter(replace(config, timeouts=(1.0, 0.5))).create(_order(no))
    assert exc.value.code == "timeout"
    assert sim.trade_for(no)["status"] == "pending"


def test_refused_connection_is_retryable(config):
    adapter = WechatPayAdapter(replace(config, base_url=f"http://127.0.0.1:{_closed_port()}"))
    with pytest.raises(Retryable):
        adapter.create(_order(_no()))
    with pytest.raises(Retryable):
        adapter.query(_no())


def test_an_answer_signed_by_another_key_is_unknown(config, sim):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    adapter = WechatPayAdapter(replace(config, credentials={**config.credentials, "platform_public_key": pem}))
    no = _no()
    with pytest.raises(Unknown) as exc:
        adapter.create(_order(no))
    assert exc.value.code == "bad_signature"
    assert sim.trade_for(no) is not None  # it was sent and acted on: only a query can tell


def test_a_request_signed_with_another_merchant_key_is_refused(config, sim):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    adapter = WechatPayAdapter(replace(config, credentials={**config.credentials, "mch_private_key": pem}))
    no = _no()
    with pytest.raises(Terminal):
        adapter.create(_order(no))
    assert sim.trade_for(no) is None


def test_missing_credentials_are_terminal_before_any_call(config):
    with pytest.raises(Terminal) as exc:
        WechatPayAdapter(replace(config, credentials={})).create(_order(_no()))
    assert exc.value.code == "no_credentials"


def test_clients_are_shared_per_account_and_credentials(config):
    a, b = WechatPayAdapter(config), WechatPayAdapter(config)
    assert a._sdk() is b._sdk()
    other = WechatPayAdapter(replace(config, timeouts=(1.0, 1.0)))
    assert other._sdk() is not a._sdk()


def test_capabilities():
    assert WechatPayAdapter.capabilities == {
        Capability.QUERY,
        Capability.CLOSE,
        Capability.REFUND,
        Capability.PARTIAL_REFUND,
        Capability.PAYOUT,
        Capability.STATEMENT,
        Capability.SPLIT,
        Capability.BALANCE,
    }
