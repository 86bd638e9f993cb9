"""The bank gateway adapter (zeep + WS-Security) against the SOAP simulator over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from core.money import Money
from payments.channels.bankgw import signing, wire
from payments.channels.bankgw.adapter import BankGatewayAdapter
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
from payments.simulators import base as simbase
from payments.simulators.bankgw import BankGatewaySimulator, Merchant

UNREACHABLE = "http://127.0.0.1:9/notify/bankgw/"


@pytest.fixture(scope="module")
def sim() -> Iterator[BankGatewaySimulator]:
    s = BankGatewaySimulator().start()
    yield s
    s.stop()


@pytest.fixture
def bank(sim) -> Iterator[BankGatewaySimulator]:
    sim.faults.reset()
    sim.scripted_create.clear()
    yield sim
    sim.faults.reset()


def _config(sim: BankGatewaySimulator, **overrides) -> AccountConfig:
    acc = sim.account()
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
def adapter(bank) -> BankGatewayAdapter:
    return BankGatewayAdapter(_config(bank))


def _order(no: str, minor: int = 990, notify_url: str = UNREACHABLE) -> CreateOrder:
    return CreateOrder(
        out_trade_no=no,
        amount=Money(minor, "CNY"),
        subject="Gift card",
        notify_url=notify_url,
        return_url="http://shop.test/return/" + no,
        client_ip="127.0.0.1",
        method="qr",
    )


def _refund(order_no: str, refund_no: str, minor: int) -> RefundRequest:
    return RefundRequest(
        refund_no=refund_no,
        out_trade_no=order_no,
        provider_trade_no="",
        amount=Money(minor, "CNY"),
        total=Money(990, "CNY"),
        reason="buyer asked",
        notify_url="",
    )


def _inbound(request: simbase.NotifyRequest) -> Inbound:
    params = {k: v[-1] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}
    return Inbound(params=params, body=request.body, headers={"content-type": request.content_type})


def _paid(adapter: BankGatewayAdapter, bank: BankGatewaySimulator, no: str) -> None:
    adapter.create(_order(no))
    bank.pay(no)  # the notify URL is dead: logged, the trade stays paid


class Recorder:
    """A merchant notify endpoint that keeps every form body and acknowledges like our view would."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                recorder.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/bankgw/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.close()


# ---- signing and tables --------------------------------------------------------


def test_notify_signature_is_hmac_sha256_over_sorted_non_empty_pairs():
    params = {"orderId": "A1", "amountMinor": "990", "nonce": "", "signature": "x", "bankRef": "B1"}
    expected = hmac.new(b"K", b"amountMinor=990&bankRef=B1&orderId=A1", hashlib.sha256).hexdigest()
    assert signing.sign(params, "K") == expected
    assert signing.verify({**params, "signature": expected}, "K")
    assert not signing.verify({**params, "signature": expected}, "")


def test_fault_codes_map_by_their_class():
    assert wire.fault_error("soap:Client.Authentication") is Terminal
    assert wire.fault_error("soap:Server") is Unknown
    assert wire.fault_error("env:Receiver") is Unknown
    assert wire.fault_error(None) is Unknown


# ---- create / query / close ----------------------------------------------------


def test_create_returns_the_cashier_url_and_bank_ref(adapter, bank):
    created = adapter.create(_order("BG-create", 1234))
    trade = bank.trade_for("BG-create")
    assert created.provider_trade_no == trade["provider_trade_no"]
    assert created.pay_url == created.qr_content == f"{bank.base_url}/cashier/{trade['bank_ref']}"
    assert (trade["amount_minor"], trade["currency"], trade["status"]) == (1234, "CNY", "pending")
    assert trade["notify_url"] == UNREACHABLE


def test_create_is_idempotent_on_order_and_refuses_a_changed_repeat(adapter, bank):
    first = adapter.create(_order("BG-idem"))
    assert adapter.create(_order("BG-idem")) == first
    with pytest.raises(Terminal) as exc:
        adapter.create(_order("BG-idem", 1))
    assert exc.value.code == "declined"


def test_query_is_pending_then_paid_after_the_buyer_pays(adapter, bank):
    created = adapter.create(_order("BG-query"))
    assert adapter.query("BG-query").status == ObservedStatus.PENDING
    bank.pay("BG-query")
    obs = adapter.query("BG-query")
    assert obs == Observation(
        out_trade_no="BG-query",
        provider_trade_no=created.provider_trade_no,
        status=ObservedStatus.SUCCEEDED,
        amount=Money(990, "CNY"),
        event_key=f"{created.provider_trade_no}:query:PAID",
        provider_status="PAID",
    )


def test_query_of_an_unknown_order_is_none(adapter):
    assert adapter.query("BG-never") is None


def test_close_closes_a_pending_payment_and_refuses_a_paid_one(adapter, bank):
    adapter.create(_order("BG-close"))
    adapter.close("BG-close")
    adapter.close("BG-close")  # closing twice is fine
    assert adapter.query("BG-close").status == ObservedStatus.CLOSED
    assert bank.trade_for("BG-close")["status"] == "closed"
    _paid(adapter, bank, "BG-close-paid")
    with pytest.raises(Terminal) as exc:
        adapter.close("BG-close-paid")
    assert exc.value.code == "not_closable"
    assert bank.trade_for("BG-close-paid")["status"] == "paid"


def test_review_is_created_and_pending_until_the_bank_decides(adapter, bank):
    bank.scripted_create.append("REVIEW")
    created = adapter.create(_order("BG-review"))
    assert created.provider_trade_no and created.pay_url
    obs = adapter.query("BG-review")
    assert (obs.status, obs.provider_status) == (ObservedStatus.PENDING, "REVIEW")
    bank.pay("BG-review")
    assert adapter.query("BG-review").status == ObservedStatus.SUCCEEDED


def test_declined_is_terminal_and_records_nothing(adapter, bank):
    bank.scripted_create.append("DECLINED")
    with pytest.raises(Terminal):
        adapter.create(_order("BG-declined"))
    assert bank.trade_for("BG-declined") is None


def test_system_error_is_unknown_because_the_bank_may_have_recorded_it(adapter, bank):
    bank.scripted_create.append("SYSTEM_ERROR")
    with pytest.raises(Unknown) as exc:
        adapter.create(_order("BG-syserr"))
    assert exc.value.code == "system_error"
    assert adapter.query("BG-syserr").status == ObservedStatus.PENDING


def test_wrong_password_is_a_client_fault_and_terminal(bank):
    acc = bank.account()
    cfg = _config(bank, credentials={**acc.credentials, "password": "not-the-password"})
    with pytest.raises(Terminal) as exc:
        BankGatewayAdapter(cfg).create(_order("BG-badpw"))
    assert exc.value.code == "soap_fault_client"
    assert bank.trade_for("BG-badpw") is None


def test_missing_credentials_refuse_before_sending(bank):
    with pytest.raises(Terminal) as exc:
        BankGatewayAdapter(_config(bank, credentials={})).query("BG-x")
    assert exc.value.code == "no_credentials"


def test_another_merchants_credentials_cannot_act_for_this_merchant(bank):
    other = bank.add_merchant(Merchant("BG-OTHER-1", "other-user", "other-pass", "other-key"))
    creds = {"username": other.username, "password": other.password, "notify_key": other.notify_key}
    with pytest.raises(Terminal):
        BankGatewayAdapter(_config(bank, credentials=creds)).query("BG-x")


# ---- refunds -------------------------------------------------------------------


def test_refund_twice_with_the_same_refund_no_refunds_once(adapter, bank):
    _paid(adapter, bank, "BG-refund")
    first = adapter.refund(_refund("BG-refund", "RF-1", 300))
    again = adapter.refund(_refund("BG-refund", "RF-1", 300))
    assert first == again
    assert (first.refund_no, first.status, first.amount) == ("RF-1", RefundState.SUCCEEDED, Money(300, "CNY"))
    assert first.event_key == f"{first.provider_refund_no}:SUCCESS"
    assert bank.trade_for("BG-refund")["refunded_minor"] == 300
    assert adapter.refund_query(_refund("BG-refund", "RF-1", 300)) == first
    assert adapter.refund_query(_refund("BG-refund", "RF-unknown", 1)) is None


def test_refund_beyond_the_payment_or_of_an_unpaid_payment_is_terminal(adapter, bank):
    _paid(adapter, bank, "BG-refund-over")
    with pytest.raises(Terminal):
        adapter.refund(_refund("BG-refund-over", "RF-over", 991))
    adapter.create(_order("BG-refund-unpaid"))
    with pytest.raises(Terminal):
        adapter.refund(_refund("BG-refund-unpaid", "RF-unpaid", 10))
    with pytest.raises(Terminal) as exc:
        adapter.refund(_refund("BG-refund-none", "RF-none", 10))
    assert exc.value.code == "not_found"


def test_refund_callback_verifies_as_a_refund_observation(adapter, bank):
    _paid(adapter, bank, "BG-refund-notify")
    done = adapter.refund(_refund("BG-refund-notify", "RF-notify", 990))
    obs = adapter.verify_notification(_inbound(bank.refund_notify_request("RF-notify")))
    assert obs == RefundObservation(
        refund_no="RF-notify",
        provider_refund_no=done.provider_refund_no,
        status=RefundState.SUCCEEDED,
        amount=Money(990, "CNY"),
        provider_status="SUCCESS",
        event_key=done.event_key,
    )
    assert bank.trade_for("BG-refund-notify")["status"] == "refunded"


# ---- callbacks -----------------------------------------------------------------


def test_valid_callback_verifies_and_replays_with_the_same_event_key(adapter, bank):
    created = adapter.create(_order("BG-notify"))
    first = adapter.verify_notification(_inbound(bank.notify_request("BG-notify")))
    replay = adapter.verify_notification(_inbound(bank.notify_request("BG-notify")))  # new nonce, same event
    assert first == Observation(
        out_trade_no="BG-notify",
        provider_trade_no=created.provider_trade_no,
        status=ObservedStatus.SUCCEEDED,
        amount=Money(990, "CNY"),
        event_key=f"{created.provider_trade_no}:PAID",
        provider_status="PAID",
    )
    assert replay.event_key == first.event_key
    assert BankGatewayAdapter.notification_reference(_inbound(bank.notify_request("BG-notify"))) == "BG-notify"
    assert (BankGatewayAdapter.ack(True).status, BankGatewayAdapter.ack(True).body) == (200, "OK")
    assert (BankGatewayAdapter.ack(False).status, BankGatewayAdapter.ack(False).body) == (400, "REJECTED")


REJECTED = {
    simbase.BAD_SIGNATURE: "bad_signature",
    simbase.WRONG_MERCHANT: "wrong_merchant",
    simbase.STALE_TIMESTAMP: "stale_timestamp",
}


def test_every_forged_variant_is_covered():
    assert BankGatewaySimulator.notify_variants == {
        simbase.VALID,
        simbase.WRONG_AMOUNT,
        simbase.WRONG_CURRENCY,
        simbase.UNKNOWN_ORDER,
        simbase.CLOSED,
        *REJECTED,
    }


@pytest.mark.parametrize("variant", sorted(REJECTED))
def test_forged_callbacks_are_refused(adapter, bank, variant):
    adapter.create(_order("BG-forged-" + variant))
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(_inbound(bank.notify_request("BG-forged-" + variant, variant=variant)))
    assert exc.value.code == REJECTED[variant]


def test_changed_but_signed_callbacks_verify_and_carry_what_the_bank_said(adapter, bank):
    adapter.create(_order("BG-changed"))
    amount = adapter.verify_notification(_inbound(bank.notify_request("BG-changed", variant=simbase.WRONG_AMOUNT)))
    assert amount.amount == Money(991, "CNY")
    currency = adapter.verify_notification(_inbound(bank.notify_request("BG-changed", variant=simbase.WRONG_CURRENCY)))
    assert currency.amount == Money(990, "USD")
    order = adapter.verify_notification(_inbound(bank.notify_request("BG-changed", variant=simbase.UNKNOWN_ORDER)))
    assert order.out_trade_no == "UNKNOWN-BG-changed"


def test_a_signed_closed_callback_is_a_true_statement_not_a_forgery(adapter, bank):
    created = adapter.create(_order("BG-closed-notify"))
    obs = adapter.verify_notification(_inbound(bank.notify_request("BG-closed-notify", variant=simbase.CLOSED)))
    assert (obs.status, obs.provider_status) == (ObservedStatus.CLOSED, "CLOSED")
    assert obs.event_key == f"{created.provider_trade_no}:CLOSED"
    unknown = {**_inbound(bank.notify_request("BG-closed-notify")).params, "status": "HELD", "signature": ""}
    unknown["signature"] = signing.sign(unknown, bank.account().credentials["notify_key"])
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(Inbound(params=unknown))
    assert exc.value.code == "unknown_status"


def test_callback_without_notify_key_or_with_a_fresh_but_edited_field_is_refused(adapter, bank):
    adapter.create(_order("BG-nokey"))
    inbound = _inbound(bank.notify_request("BG-nokey"))
    with pytest.raises(NotificationInvalid) as exc:
        BankGatewayAdapter(_config(bank, credentials={"username": "u", "password": "p"})).verify_notification(inbound)
    assert exc.value.code == "no_credentials"
    edited = Inbound(params={**inbound.params, "timestamp": str(int(time.time()) + 1)})
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(edited)
    assert exc.value.code == "bad_signature"


# ---- faults --------------------------------------------------------------------


def test_fail_5xx_on_create_is_unknown_and_records_nothing(adapter, bank):
    bank.faults.fail_5xx = 1
    with pytest.raises(Unknown):
        adapter.create(_order("BG-5xx"))
    assert bank.trade_for("BG-5xx") is None


@pytest.mark.parametrize(
    ("page", "code"),
    [(b"Bad Gateway", "http_5xx"), (b"<h1>Bad Gateway</h1>", "bad_response")],  # zeep parses the second as XML
)
def test_a_bare_http_502_from_a_proxy_is_unknown(bank, page, code):
    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(502)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True).start()
    try:
        cfg = _config(bank, base_url=f"http://127.0.0.1:{proxy.server_address[1]}")
        with pytest.raises(Unknown) as exc:
            BankGatewayAdapter(cfg).create(_order("BG-502"))
        assert exc.value.code == code
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_timeout_on_create_is_unknown_and_the_bank_recorded_the_trade(bank):
    bank.faults.timeout, bank.faults.hang_seconds = 1, 1.5
    started = time.monotonic()
    with pytest.raises(Unknown) as exc:
        BankGatewayAdapter(_config(bank, timeouts=(1.0, 0.5))).create(_order("BG-timeout"))
    assert exc.value.code == "timeout"
    assert time.monotonic() - started < 1.4  # the read timeout fired, not the hang's end
    assert bank.trade_for("BG-timeout")["status"] == "pending"


def test_connection_refused_is_retryable(bank):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Retryable) as exc:
        BankGatewayAdapter(_config(bank, base_url=f"http://127.0.0.1:{port}")).create(_order("BG-refused"))
    assert exc.value.code == "connect"


def test_an_unusable_base_url_is_terminal_not_an_escaping_requests_error(bank):
    with pytest.raises(Terminal) as exc:
        BankGatewayAdapter(_config(bank, base_url="bank.example")).query("BG-x")
    assert exc.value.code == "bad_base_url"


def test_duplicate_notify_sends_the_same_event_twice(adapter, bank, recorder):
    adapter.create(_order("BG-dup", notify_url=recorder.url))
    bank.faults.duplicate_notify = 1
    bank.pay("BG-dup")
    assert len(recorder.bodies) == 2
    keys = {
        adapter.verify_notification(_inbound(simbase.NotifyRequest("POST", b, {}))).event_key for b in recorder.bodies
    }
    assert len(keys) == 1
    assert [a["acknowledged"] for a in bank.trade_for("BG-dup")["notify_attempts"]] == [True, True]


def test_drop_notify_sends_nothing_but_the_payment_stands(adapter, bank, recorder):
    adapter.create(_order("BG-drop", notify_url=recorder.url))
    bank.faults.drop_notify = 1
    bank.pay("BG-drop")
    assert recorder.bodies == []
    assert adapter.query("BG-drop").status == ObservedStatus.SUCCEEDED
