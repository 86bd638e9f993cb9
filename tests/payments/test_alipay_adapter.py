"""The Alipay adapter against the simulator over real HTTP: create, query, close, refunds, notify, faults."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.money import Money
from payments.channels.alipay.adapter import AlipayAdapter
from payments.channels.base import (
    AccountConfig,
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
from payments.simulators.alipay import AlipaySimulator
from payments.simulators.base import CLOSED, UNKNOWN_ORDER, VALID, WRONG_AMOUNT, NotifyRequest

DEAD_NOTIFY = "http://127.0.0.1:9/notify/alipay/"  # nobody listens: the notify fails, the trade stays paid


class NotifyInbox:
    """A merchant notify endpoint that records every form POST and answers `success`."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                inbox.received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"success")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/alipay/"

    def wait_for(self, count: int, timeout: float = 3.0) -> list[Inbound]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return [_inbound(body) for body in self.received]


@pytest.fixture(scope="module")
def sim() -> Iterator[AlipaySimulator]:
    simulator = AlipaySimulator().start()
    simulator.account()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _clean_faults(sim):
    yield
    sim.faults.reset()


@pytest.fixture
def inbox() -> Iterator[NotifyInbox]:
    box = NotifyInbox()
    yield box
    box.server.shutdown()
    box.server.server_close()


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


def _no(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _order(no: str, minor: int = 990, *, notify_url: str = DEAD_NOTIFY, return_url: str = "") -> CreateOrder:
    return CreateOrder(
        out_trade_no=no,
        amount=Money(minor, "CNY"),
        subject="礼品卡 Gift card",
        notify_url=notify_url,
        return_url=return_url,
        client_ip="127.0.0.1",
        method="alipay",
    )


def _refund(no: str, refund_no: str, minor: int, total: int = 990) -> RefundRequest:
    return RefundRequest(
        refund_no=refund_no,
        out_trade_no=no,
        provider_trade_no="",
        amount=Money(minor, "CNY"),
        total=Money(total, "CNY"),
        reason="buyer asked",
        notify_url="",
    )


def _inbound(body: bytes | NotifyRequest) -> Inbound:
    if isinstance(body, NotifyRequest):
        body = body.body
    return Inbound(params=dict(parse_qsl(body.decode())), body=body, headers={})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- create ----------------------------------------------------------------------------------------------
def test_create_returns_the_qr_and_a_page_pay_url_for_one_trade(adapter, sim):
    no = _no("T-create")
    created = adapter.create(_order(no, return_url="http://shop.test/return"))
    trade = sim.trade_for(no)
    assert trade["amount_minor"] == 990 and trade["status"] == "pending"
    assert created.provider_trade_no == ""
    assert created.qr_content == f"{sim.base_url}/cashier/{trade['trade_no']}"
    assert created.pay_url.startswith(sim.base_url + "/gateway.do?")
    browser = requests.get(created.pay_url, allow_redirects=False, timeout=5)
    assert (browser.status_code, browser.headers["Location"]) == (302, created.qr_content)
    assert sim.trade_for(no)["trade_no"] == trade["trade_no"]  # the same trade, now with the return URL
    assert sim.trade_for(no)["return_url"] == "http://shop.test/return"
    assert "9.90" in requests.get(created.qr_content, timeout=5).text


def test_create_again_is_the_same_trade_and_a_changed_amount_is_refused(adapter, sim):
    no = _no("T-again")
    first = adapter.create(_order(no))
    assert adapter.create(_order(no)).qr_content == first.qr_content
    with pytest.raises(Terminal) as exc:
        adapter.create(_order(no, 1990))
    assert exc.value.code == "acq.context_inconsistent"
    assert sim.trade_for(no)["amount_minor"] == 990


def test_create_in_another_currency_is_refused_before_sending(adapter, sim):
    no = _no("T-usd")
    order = _order(no)
    with pytest.raises(Terminal) as exc:
        adapter.create(CreateOrder(**{**order.__dict__, "amount": Money(990, "USD")}))
    assert exc.value.code == "currency" and sim.trade_for(no) is None


def test_request_signed_with_another_app_key_is_refused(sim):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    alipay_public_key = sim.account().credentials["alipay_public_key"]
    config = _config(sim, app_private_key=other_pem, alipay_public_key=alipay_public_key)
    no = _no("T-badkey")
    with pytest.raises(Terminal) as exc:
        AlipayAdapter(config).create(_order(no))
    assert exc.value.code == "isv.invalid-signature" and sim.trade_for(no) is None


def test_an_answer_that_does_not_verify_is_unknown(sim):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    stranger_pem = stranger.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    config = _config(sim, app_private_key=sim.account().credentials["app_private_key"], alipay_public_key=stranger_pem)
    no = _no("T-badanswer")
    with pytest.raises(Unknown) as exc:
        AlipayAdapter(config).create(_order(no))
    assert exc.value.code == "bad_signature" and sim.trade_for(no)["status"] == "pending"


def test_unusable_credentials_refuse_calls_and_notifies(sim):
    broken = AlipayAdapter(_config(sim, app_private_key="not a pem", alipay_public_key=""))
    with pytest.raises(Terminal) as exc:
        broken.create(_order(_no("T-nokey")))
    assert exc.value.code == "no_credentials"
    with pytest.raises(NotificationInvalid) as invalid:
        broken.verify_notification(Inbound({"out_trade_no": "x"}))
    assert invalid.value.code == "no_credentials"


# ---- query / close ---------------------------------------------------------------------------------------
def test_query_pending_then_paid(adapter, sim):
    no = _no("T-query")
    adapter.create(_order(no))
    pending = adapter.query(no)
    assert (pending.status, pending.amount, pending.provider_status) == (
        ObservedStatus.PENDING,
        Money(990, "CNY"),
        "WAIT_BUYER_PAY",
    )
    sim.pay(no)  # the notify to the dead URL fails quietly
    trade_no = sim.trade_for(no)["trade_no"]
    paid = adapter.query(no)
    assert (paid.status, paid.amount, paid.provider_trade_no) == (ObservedStatus.SUCCEEDED, Money(990, "CNY"), trade_no)
    assert adapter.query(no, trade_no).event_key == paid.event_key == f"{trade_no}:query:TRADE_SUCCESS"


def test_query_of_an_unknown_trade_is_none(adapter):
    assert adapter.query(_no("never")) is None


def test_close_an_unpaid_trade(adapter, sim):
    no = _no("T-close")
    adapter.create(_order(no))
    adapter.close(no)
    assert sim.trade_for(no)["status"] == "closed"
    assert adapter.query(no).status == ObservedStatus.CLOSED
    adapter.close(no)  # closing again is not an error
    adapter.close(_no("never"))  # nor is closing a trade Alipay never saw
    with pytest.raises(Terminal):
        adapter.create(_order(no))  # a closed out_trade_no cannot be paid again


def test_close_a_paid_trade_is_terminal(adapter, sim):
    no = _no("T-close-paid")
    adapter.create(_order(no))
    sim.pay(no)
    with pytest.raises(Terminal) as exc:
        adapter.close(no)
    assert exc.value.code == "already_paid" and sim.trade_for(no)["status"] == "paid"


# ---- refunds ---------------------------------------------------------------------------------------------
def test_refund_twice_with_one_refund_no_refunds_once(adapter, sim):
    no = _no("T-refund")
    adapter.create(_order(no))
    sim.pay(no)
    request = _refund(no, f"R-{no}", 500)
    first = adapter.refund(request)
    again = adapter.refund(request)  # answered fund_change=N, resolved by the refund query
    assert (first.status, first.amount, first.refund_no) == (RefundState.SUCCEEDED, Money(500, "CNY"), f"R-{no}")
    assert (again.status, again.amount, again.provider_status) == (
        RefundState.SUCCEEDED,
        Money(500, "CNY"),
        "REFUND_SUCCESS",
    )
    trade = sim.trade_for(no)
    assert (trade["refunded_minor"], list(trade["refunds"]), trade["status"]) == (500, [f"R-{no}"], "paid")
    found = adapter.refund_query(request)
    assert (found.status, found.amount) == (RefundState.SUCCEEDED, Money(500, "CNY"))
    assert adapter.refund_query(_refund(no, "R-never", 100)) is None


def test_refund_beyond_the_payment_or_of_an_unpaid_trade_is_terminal(adapter, sim):
    no = _no("T-refund-bad")
    adapter.create(_order(no))
    with pytest.raises(Terminal) as unpaid:
        adapter.refund(_refund(no, f"R1-{no}", 100))
    assert unpaid.value.code == "acq.trade_status_error"
    sim.pay(no)
    with pytest.raises(Terminal) as exceeded:
        adapter.refund(_refund(no, f"R2-{no}", 991))
    assert exceeded.value.code == "acq.refund_amt_not_equal_total"
    assert sim.trade_for(no)["refunded_minor"] == 0
    assert adapter.refund_query(_refund(_no("never"), "R-x", 1)) is None


# ---- notifications ---------------------------------------------------------------------------------------
def test_verify_accepts_the_valid_notify(adapter, sim):
    no = _no("T-notify")
    adapter.create(_order(no))
    trade_no = sim.trade_for(no)["trade_no"]
    obs = adapter.verify_notification(_inbound(sim.notify_request(no)))
    assert isinstance(obs, Observation)
    assert (obs.out_trade_no, obs.provider_trade_no, obs.status, obs.amount) == (
        no,
        trade_no,
        ObservedStatus.SUCCEEDED,
        Money(990, "CNY"),
    )
    assert obs.event_key == f"{trade_no}:TRADE_SUCCESS"
    replay = adapter.verify_notification(_inbound(sim.notify_request(no)))  # a new notify_id, the same event
    assert replay.event_key == obs.event_key
    assert AlipayAdapter.notification_reference(_inbound(sim.notify_request(no))) == no


def test_verify_refuses_forged_variants_and_reports_changed_fields(adapter, sim):
    no = _no("T-forged")
    adapter.create(_order(no))
    checked = set()
    for variant in sorted(sim.notify_variants - {VALID}):
        inbound = _inbound(sim.notify_request(no, variant=variant))
        checked.add(variant)
        if variant == WRONG_AMOUNT:
            assert adapter.verify_notification(inbound).amount == Money(1090, "CNY")
        elif variant == UNKNOWN_ORDER:
            assert adapter.verify_notification(inbound).out_trade_no == f"{no}-unknown"
        elif variant == CLOSED:
            closed = adapter.verify_notification(inbound)
            assert (closed.status, closed.provider_status) == (ObservedStatus.CLOSED, "TRADE_CLOSED")
        else:
            with pytest.raises(NotificationInvalid) as exc:
                adapter.verify_notification(inbound)
            assert exc.value.code == variant  # bad_signature, wrong_merchant
    assert checked == {"bad_signature", "wrong_amount", "wrong_merchant", "unknown_order", "closed"}


def test_verify_refuses_tampering_and_unknown_statuses(adapter, sim):
    no = _no("T-tamper")
    adapter.create(_order(no))
    params = dict(_inbound(sim.notify_request(no)).params)
    for changed in ({"total_amount": "0.01"}, {"trade_status": "TRADE_WEIRD"}, {"sign_type": "RSA"}):
        with pytest.raises(NotificationInvalid):
            adapter.verify_notification(Inbound({**params, **changed}))
    with pytest.raises(NotificationInvalid) as missing:
        adapter.verify_notification(Inbound({k: v for k, v in params.items() if k != "sign"}))
    assert missing.value.code == "missing_fields"
    assert AlipayAdapter.ack(True) == AlipayAdapter.ack(True).__class__(200, "success", "text/plain")
    assert (AlipayAdapter.ack(False).status, AlipayAdapter.ack(False).body) == (400, "fail")


def test_paid_and_finished_notifies_are_two_events(adapter, sim, inbox):
    no = _no("T-finish")
    adapter.create(_order(no, notify_url=inbox.url))
    sim.pay(no)
    sim.finish(no)
    paid, finished = (adapter.verify_notification(i) for i in inbox.wait_for(2))
    assert (paid.provider_status, finished.provider_status) == ("TRADE_SUCCESS", "TRADE_FINISHED")
    assert paid.status == finished.status == ObservedStatus.SUCCEEDED
    assert paid.event_key != finished.event_key


def test_a_refund_notify_is_a_refund_observation(adapter, sim, inbox):
    no = _no("T-refund-notify")
    adapter.create(_order(no, notify_url=inbox.url))
    sim.pay(no)
    adapter.refund(_refund(no, f"R-{no}", 990))  # full refund: the trade reads TRADE_CLOSED
    paid_inbound, refund_inbound = inbox.wait_for(2)
    obs = adapter.verify_notification(refund_inbound)
    assert isinstance(obs, RefundObservation)
    trade_no = sim.trade_for(no)["trade_no"]
    assert (obs.refund_no, obs.status, obs.amount, obs.provider_status) == (
        f"R-{no}",
        RefundState.SUCCEEDED,
        Money(990, "CNY"),
        "TRADE_CLOSED",
    )
    assert obs.event_key == f"{trade_no}:refund:R-{no}"
    assert adapter.query(no).status == ObservedStatus.CLOSED


# ---- faults ----------------------------------------------------------------------------------------------
def test_5xx_on_create_is_unknown_and_records_nothing(adapter, sim):
    no = _no("T-5xx")
    sim.faults.fail_5xx = 1
    with pytest.raises(Unknown) as exc:
        adapter.create(_order(no))
    assert exc.value.code == "http_5xx" and sim.trade_for(no) is None


def test_timeout_on_create_is_unknown_but_the_trade_exists(sim):
    no = _no("T-timeout")
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.5
    started = time.monotonic()
    with pytest.raises(Unknown) as exc:
        AlipayAdapter(_config(sim, timeouts=(1.0, 0.5))).create(_order(no))
    assert exc.value.code == "timeout" and time.monotonic() - started < 1.4
    assert sim.trade_for(no)["status"] == "pending"


def test_connection_refused_is_retryable(sim):
    adapter = AlipayAdapter(_config(sim, base_url=f"http://127.0.0.1:{_closed_port()}"))
    with pytest.raises(Retryable):
        adapter.create(_order(_no("T-down")))
    with pytest.raises(Retryable):
        adapter.query("anything")


def test_duplicate_notify_sends_the_same_event_twice(adapter, sim, inbox):
    no = _no("T-dup")
    adapter.create(_order(no, notify_url=inbox.url))
    sim.faults.duplicate_notify = 1
    sim.pay(no)
    first, second = (adapter.verify_notification(i) for i in inbox.wait_for(2))
    assert inbox.received[0] == inbox.received[1]
    assert first.event_key == second.event_key


def test_drop_notify_sends_nothing_and_the_trade_stays_paid(adapter, sim, inbox):
    no = _no("T-drop")
    adapter.create(_order(no, notify_url=inbox.url))
    sim.faults.drop_notify = 1
    sim.pay(no)
    assert inbox.wait_for(1, timeout=0.3) == []
    assert sim.trade_for(no)["status"] == "paid"
    assert adapter.query(no).status == ObservedStatus.SUCCEEDED


def test_cashier_pay_button_pays_and_returns_to_the_shop(adapter, sim):
    no = _no("T-cashier")
    created = adapter.create(_order(no, return_url="http://shop.test/return?o=1"))
    requests.get(created.pay_url, timeout=5, allow_redirects=False)  # the browser arrives via page.pay
    answer = requests.post(created.qr_content + "/pay", timeout=5, allow_redirects=False)
    location = urlsplit(answer.headers["Location"])
    assert answer.status_code == 302 and location.netloc == "shop.test"
    assert dict(parse_qsl(location.query))["out_trade_no"] == no
    assert adapter.query(no).status == ObservedStatus.SUCCEEDED
