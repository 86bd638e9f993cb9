"""The Stripe adapter (through the stripe SDK) against the Stripe simulator over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

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
from payments.channels.stripe.adapter import StripeAdapter
from payments.simulators.base import NotifyRequest, SimAccount
from payments.simulators.stripe import CARD_DECLINED, CARD_OK, StripeSimulator

DEAD_NOTIFY = "http://127.0.0.1:9/notify/stripe/"


class Receiver:
    """The shop's webhook endpoint: records each POST as an Inbound and answers 200."""

    def __init__(self) -> None:
        self.inbounds: list[Inbound] = []
        received = self.inbounds

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(Inbound({}, body, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/stripe/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sim() -> Iterator[StripeSimulator]:
    s = StripeSimulator().start()
    yield s
    s.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def account(sim: StripeSimulator) -> SimAccount:
    return sim.account(webhook_url=DEAD_NOTIFY)


@pytest.fixture
def adapter(account: SimAccount) -> StripeAdapter:
    return StripeAdapter(_config(account))


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


def _order(no: str = "S1", minor: int = 990, currency: str = "CNY") -> CreateOrder:
    return CreateOrder(
        out_trade_no=no,
        amount=Money(minor, currency),
        subject="Gift card",
        notify_url="http://127.0.0.1:9/notify/stripe/",
        return_url="",
        client_ip="127.0.0.1",
        method="card",
    )


def _refund(refund_no: str, out_trade_no: str, provider_trade_no: str = "", minor: int = 500) -> RefundRequest:
    return RefundRequest(
        refund_no=refund_no,
        out_trade_no=out_trade_no,
        provider_trade_no=provider_trade_no,
        amount=Money(minor, "CNY"),
        total=Money(990, "CNY"),
        reason="buyer changed mind",
        notify_url="",
    )


def _inbound(request: NotifyRequest) -> Inbound:
    return Inbound(params={}, body=request.body, headers={k.lower(): v for k, v in request.headers.items()})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_capabilities_and_ack():
    assert StripeAdapter.capabilities == {
        Capability.CARD_FORM,
        Capability.QUERY,
        Capability.CLOSE,
        Capability.REFUND,
        Capability.IDEMPOTENT_CREATE,
    }
    assert (StripeAdapter.ack(True).status, json.loads(StripeAdapter.ack(True).body)) == (200, {"received": True})
    assert StripeAdapter.ack(False).status == 400 and StripeAdapter.ack(False).content_type == "application/json"


def test_create_makes_one_payment_intent_per_out_trade_no(adapter, sim):
    created = adapter.create(_order("S-create"))
    pi = created.provider_trade_no
    assert pi.startswith("pi_") and created.client_secret.startswith(f"{pi}_secret_")
    assert created.pay_url == f"{sim.base_url}/v1/payment_intents/{pi}/confirm" and created.qr_content == ""
    trade = sim.trade_for("S-create")
    assert (trade["amount_minor"], trade["currency"], trade["status"]) == (990, "CNY", "pending")
    intent = sim.intent(pi)
    assert (intent["currency"], intent["metadata"], intent["description"]) == (
        "cny",
        {"out_trade_no": "S-create"},
        "Gift card",
    )
    assert adapter.create(_order("S-create")) == created  # same Idempotency-Key: Stripe replays the first answer
    assert len(sim._intents_for("S-create")) == 1


def test_create_with_other_parameters_under_the_same_key_is_terminal(adapter):
    adapter.create(_order("S-conflict"))
    with pytest.raises(Terminal):
        adapter.create(_order("S-conflict", minor=100))


def test_query_pending_then_paid(adapter, sim):
    created = adapter.create(_order("S-query"))
    by_search = adapter.query("S-query")
    assert by_search == adapter.query("S-query", created.provider_trade_no)
    assert (by_search.status, by_search.amount, by_search.provider_status) == (
        ObservedStatus.PENDING,
        Money(990, "CNY"),
        "requires_payment_method",
    )
    sim.pay("S-query")  # the webhook endpoint is dead: the payment stands anyway
    assert sim.deliveries[-1]["error"] == "ConnectionError"
    paid = adapter.query("S-query")
    assert (paid.status, paid.amount, paid.provider_trade_no) == (
        ObservedStatus.SUCCEEDED,
        Money(990, "CNY"),
        created.provider_trade_no,
    )
    assert paid.event_key == f"{created.provider_trade_no}:query:succeeded"


def test_query_of_unknown_trade_is_none(adapter):
    assert adapter.query("never-created") is None
    assert adapter.query("never-created", "pi_doesnotexist") is None


def test_query_answered_for_another_order_is_unknown(adapter):
    created = adapter.create(_order("S-mine"))
    with pytest.raises(Unknown):
        adapter.query("S-other", created.provider_trade_no)


def test_close_cancels_and_closing_again_is_fine(adapter, sim):
    created = adapter.create(_order("S-close"))
    adapter.close("S-close", created.provider_trade_no)
    assert sim.trade_for("S-close")["status"] == "closed"
    adapter.close("S-close")  # found by search, already canceled: nothing to do
    assert adapter.query("S-close").status == ObservedStatus.CLOSED
    adapter.close("never-created")  # Stripe never saw it


def test_close_of_a_paid_trade_is_terminal(adapter, sim):
    adapter.create(_order("S-paid"))
    sim.pay("S-paid")
    with pytest.raises(Terminal) as exc:
        adapter.close("S-paid")
    assert exc.value.code == "already_paid"
    assert sim.trade_for("S-paid")["status"] == "paid"


def test_refund_twice_with_the_same_refund_no_refunds_once(adapter, sim):
    created = adapter.create(_order("S-refund"))
    sim.pay("S-refund")
    first = adapter.refund(_refund("R-1", "S-refund", created.provider_trade_no))
    again = adapter.refund(_refund("R-1", "S-refund", created.provider_trade_no))
    assert first == again
    assert (first.refund_no, first.status, first.amount) == ("R-1", RefundState.SUCCEEDED, Money(500, "CNY"))
    assert sim.trade_for("S-refund")["refunded_minor"] == 500
    second = adapter.refund(_refund("R-2", "S-refund", minor=490))  # intent found by search
    assert second.provider_refund_no != first.provider_refund_no
    assert sim.trade_for("S-refund")["status"] == "refunded"
    with pytest.raises(Terminal) as exc:
        adapter.refund(_refund("R-3", "S-refund", created.provider_trade_no, minor=1))
    assert exc.value.code == "charge_already_refunded"


def test_refund_query_by_id_by_list_and_unknown(adapter, sim):
    created = adapter.create(_order("S-rq"))
    sim.pay("S-rq")
    done = adapter.refund(_refund("R-q", "S-rq", created.provider_trade_no))
    by_id = _refund("R-q", "S-rq", created.provider_trade_no)
    assert adapter.refund_query(_with(by_id, provider_refund_no=done.provider_refund_no)) == done
    assert adapter.refund_query(by_id) == done  # listed for the intent, matched on metadata refund_no
    assert adapter.refund_query(_refund("R-q", "S-rq")) == done  # intent found by search first
    assert adapter.refund_query(_refund("R-none", "S-rq", created.provider_trade_no)) is None
    assert adapter.refund_query(_with(by_id, provider_refund_no="re_missing")) is None
    assert adapter.refund_query(_refund("R-q", "never-created")) is None


def _with(request: RefundRequest, **changes: str) -> RefundRequest:
    return replace(request, **changes)


def test_refund_of_an_unpaid_trade_is_terminal(adapter):
    created = adapter.create(_order("S-unpaid"))
    with pytest.raises(Terminal):
        adapter.refund(_refund("R-u", "S-unpaid", created.provider_trade_no))


def test_verify_accepts_the_simulator_event_and_a_replay_keeps_its_key(adapter, sim):
    created = adapter.create(_order("S-verify"))
    sim.pay("S-verify")
    inbound = _inbound(sim.notify_request("S-verify"))
    assert StripeAdapter.notification_reference(inbound) == "S-verify"
    obs = adapter.verify_notification(inbound)
    assert obs == Observation(
        out_trade_no="S-verify",
        provider_trade_no=created.provider_trade_no,
        status=ObservedStatus.SUCCEEDED,
        amount=Money(990, "CNY"),
        event_key=sim.deliveries[-1]["event_id"],
        provider_status="payment_intent.succeeded",
    )
    assert obs.event_key.startswith("evt_")
    assert adapter.verify_notification(_inbound(sim.notify_request("S-verify"))).event_key == obs.event_key


@pytest.mark.parametrize(
    ("variant", "code"),
    [("bad_signature", "bad_signature"), ("wrong_merchant", "wrong_merchant"), ("stale_timestamp", "stale_timestamp")],
)
def test_verify_refuses_forged_events(adapter, sim, variant, code):
    adapter.create(_order("S-forged"))
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(_inbound(sim.notify_request("S-forged", variant=variant)))
    assert exc.value.code == code


def test_every_forged_variant_is_covered(sim):
    refused = {"bad_signature", "wrong_merchant", "stale_timestamp"}
    verified_for_the_caller = {"valid", "wrong_amount", "wrong_currency", "unknown_order", "closed"}
    assert sim.notify_variants == refused | verified_for_the_caller


def test_verify_passes_changed_amount_currency_and_order_to_the_caller(adapter, sim):
    created = adapter.create(_order("S-changed"))
    amount = adapter.verify_notification(_inbound(sim.notify_request("S-changed", variant="wrong_amount")))
    assert amount.amount == Money(991, "CNY")
    currency = adapter.verify_notification(_inbound(sim.notify_request("S-changed", variant="wrong_currency")))
    assert currency.amount == Money(990, "USD")
    unknown = _inbound(sim.notify_request("S-changed", variant="unknown_order"))
    assert StripeAdapter.notification_reference(unknown) == "S-changed-unknown"
    other = adapter.verify_notification(unknown)
    assert other.out_trade_no == "S-changed-unknown" and other.provider_trade_no != created.provider_trade_no
    keys = {amount.event_key, currency.event_key, other.event_key}
    assert len(keys) == 3  # different events, never mistaken for a replay


def test_canceled_event_is_closed(adapter, sim):
    adapter.create(_order("S-cancel-event"))
    obs = adapter.verify_notification(_inbound(sim.notify_request("S-cancel-event", variant="closed")))
    assert (obs.status, obs.provider_status) == (ObservedStatus.CLOSED, "payment_intent.canceled")
    assert obs.amount == Money(990, "CNY")


def test_verify_refuses_without_header_or_secret_and_takes_plain_account_events(adapter, sim, account):
    adapter.create(_order("S-hdr"))
    request = sim.notify_request("S-hdr")
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(Inbound({}, request.body, {}))
    assert exc.value.code == "missing_signature"
    with pytest.raises(NotificationInvalid) as exc:
        StripeAdapter(_config(account, webhook_secret="")).verify_notification(_inbound(request))
    assert exc.value.code == "no_credentials"
    event = json.loads(request.body)
    del event["account"]
    body = json.dumps(event).encode()
    # A plain (non-Connect) account's events name no account: the endpoint secret alone proves them.
    plain = Inbound({}, body, {"stripe-signature": sim.signature_header(body)})
    assert adapter.verify_notification(plain).out_trade_no == "S-hdr"


def test_unhandled_event_type_is_refused(adapter, sim):
    adapter.create(_order("S-type"))
    event = json.loads(sim.notify_request("S-type").body)
    event["type"] = "payment_intent.amount_capturable_updated"
    body = json.dumps(event).encode()
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(Inbound({}, body, {"stripe-signature": sim.signature_header(body)}))
    assert exc.value.code == "unsupported_event"


def test_webhook_secret_rotation(adapter, sim, account):
    adapter.create(_order("S-rotate"))
    old = account.credentials["webhook_secret"]
    new = sim.rotate_webhook_secret()
    assert adapter.verify_notification(_inbound(sim.notify_request("S-rotate")))  # one v1 per active secret
    sim.rotate_webhook_secret(expire_old=True)
    newest = sim.account().credentials["webhook_secret"]
    request = sim.notify_request("S-rotate")
    with pytest.raises(NotificationInvalid):
        adapter.verify_notification(_inbound(request))
    both = StripeAdapter(_config(account, webhook_secret=f"{old}, {newest}"))
    assert both.verify_notification(_inbound(request)).status == ObservedStatus.SUCCEEDED
    assert new != newest


@pytest.mark.parametrize("event_type", ["refund.created", "refund.updated", "charge.refunded"])
def test_refund_events_carry_our_refund_no(adapter, sim, event_type):
    created = adapter.create(_order("S-refund-event"))
    sim.pay("S-refund-event")
    done = adapter.refund(_refund("R-e", "S-refund-event", created.provider_trade_no, minor=300))
    inbound = _inbound(sim.refund_notify_request("R-e", event_type=event_type))
    assert StripeAdapter.notification_reference(inbound) == "S-refund-event"
    obs = adapter.verify_notification(inbound)
    assert isinstance(obs, RefundObservation)
    assert (obs.refund_no, obs.provider_refund_no, obs.status, obs.amount) == (
        "R-e",
        done.provider_refund_no,
        RefundState.SUCCEEDED,
        Money(300, "CNY"),
    )
    assert obs.event_key.startswith("evt_")


def test_card_form_confirm_pays_and_the_webhook_verifies(sim, receiver):
    account = sim.account(webhook_url=receiver.url)
    adapter = StripeAdapter(_config(account))
    created = adapter.create(_order("S-form"))
    form = {
        "key": adapter.publishable_key,
        "client_secret": created.client_secret,
        "payment_method_data[type]": "card",
        "payment_method_data[card][number]": CARD_OK,
        "payment_method_data[card][exp_month]": "12",
        "payment_method_data[card][exp_year]": "2099",
        "payment_method_data[card][cvc]": "123",
        "return_url": "http://shop.example/pay/S-form/return?x=1",
    }
    resp = requests.post(created.pay_url, data=form, allow_redirects=False, timeout=5)
    assert resp.status_code == 303
    back = urlsplit(resp.headers["Location"])
    assert (back.netloc, back.path) == ("shop.example", "/pay/S-form/return")
    assert parse_qs(back.query)["redirect_status"] == ["succeeded"]
    (inbound,) = receiver.inbounds
    obs = adapter.verify_notification(inbound)
    assert (obs.out_trade_no, obs.status, obs.amount) == ("S-form", ObservedStatus.SUCCEEDED, Money(990, "CNY"))
    assert sim.trade_for("S-form")["status"] == "paid"


def test_declined_card_sends_payment_failed(sim, receiver):
    account = sim.account(webhook_url=receiver.url)
    adapter = StripeAdapter(_config(account))
    created = adapter.create(_order("S-decline"))
    form = {
        "key": adapter.publishable_key,
        "client_secret": created.client_secret,
        "payment_method_data[type]": "card",
        "payment_method_data[card][number]": CARD_DECLINED,
        "payment_method_data[card][exp_month]": "12",
        "payment_method_data[card][exp_year]": "2099",
        "payment_method_data[card][cvc]": "123",
    }
    resp = requests.post(created.pay_url, data=form, timeout=5)
    assert resp.status_code == 402 and resp.json()["error"]["code"] == "card_declined"
    obs = adapter.verify_notification(receiver.inbounds[0])
    assert (obs.status, obs.provider_status) == (ObservedStatus.FAILED, "payment_intent.payment_failed")
    assert adapter.query("S-decline").status == ObservedStatus.PENDING  # the buyer may try another card


def test_fail_5xx_on_create_is_unknown_and_records_nothing(adapter, sim):
    sim.faults.fail_5xx = 1
    with pytest.raises(Unknown) as exc:
        adapter.create(_order("S-500"))
    assert exc.value.code == "http_5xx"
    assert sim.trade_for("S-500") is None


def test_timeout_on_create_is_unknown_but_the_intent_exists(sim, account):
    adapter = StripeAdapter(_config(account, timeouts=(1.0, 0.5)))
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.5
    with pytest.raises(Unknown) as exc:
        adapter.create(_order("S-hang"))
    assert exc.value.code == "timeout"
    recorded = sim.trade_for("S-hang")
    assert recorded is not None and recorded["status"] == "pending"
    # Resubmitting under the same Idempotency-Key gets the first answer, not a second intent.
    assert adapter.create(_order("S-hang")).provider_trade_no == recorded["provider_trade_no"]


def test_unreachable_provider_is_retryable(account):
    adapter = StripeAdapter(_config(account, base_url=f"http://127.0.0.1:{_closed_port()}"))
    with pytest.raises(Retryable) as exc:
        adapter.create(_order("S-down"))
    assert exc.value.code == "connect"
    with pytest.raises(Retryable):
        adapter.query("S-down")


def test_wrong_or_missing_secret_key_is_terminal(account):
    with pytest.raises(Terminal):
        StripeAdapter(_config(account, secret_key="sk_test_wrong")).create(_order("S-auth"))
    with pytest.raises(Terminal) as exc:
        StripeAdapter(_config(account, secret_key="")).query("S-auth")
    assert exc.value.code == "no_credentials"


def test_duplicate_notify_sends_the_same_event_twice(sim, receiver):
    adapter = StripeAdapter(_config(sim.account(webhook_url=receiver.url)))
    adapter.create(_order("S-dup"))
    sim.faults.duplicate_notify = 1
    sim.pay("S-dup")
    first, second = (adapter.verify_notification(i) for i in receiver.inbounds)
    assert first == second and len(receiver.inbounds) == 2
    sim.pay("S-dup")  # a replay later: still the same event id
    assert adapter.verify_notification(receiver.inbounds[2]).event_key == first.event_key


def test_drop_notify_sends_nothing_but_the_trade_is_paid(sim, receiver):
    adapter = StripeAdapter(_config(sim.account(webhook_url=receiver.url)))
    adapter.create(_order("S-drop"))
    sim.faults.drop_notify = 1
    sim.pay("S-drop")
    assert receiver.inbounds == []
    assert adapter.query("S-drop").status == ObservedStatus.SUCCEEDED
