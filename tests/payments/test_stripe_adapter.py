"""The Stripe adapter (through the stripe SDK) against the Stripe simulator over real HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import time_machine

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
from payments.channels.stripe import wire
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


RETURN_URL = "http://shop.example/orders/S/"


def _order(no: str = "S1", minor: int = 990, currency: str = "CNY", expires_at: datetime | None = None) -> CreateOrder:
    return CreateOrder(
        out_trade_no=no,
        amount=Money(minor, currency),
        subject="Gift card",
        notify_url="http://127.0.0.1:9/notify/stripe/",
        return_url=RETURN_URL,
        client_ip="127.0.0.1",
        method="card",
        expires_at=expires_at,
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


def _resign(sim: StripeSimulator, request: NotifyRequest, change) -> Inbound:
    """The event of `request` changed by `change(event)` and signed again by the provider (a true statement)."""
    event = json.loads(request.body)
    change(event)
    body = json.dumps(event).encode()
    return Inbound({}, body, {"stripe-signature": sim.signature_header(body)})


def _api(account: SimAccount, method: str, path: str, *, idem: str = "", **params: str) -> dict:
    headers = {"Authorization": f"Bearer {account.credentials['secret_key']}"}
    if idem:
        headers["Idempotency-Key"] = idem
    resp = requests.request(method, account.base_url + path, data=params, headers=headers, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_capabilities_ack_and_notify_methods():
    assert StripeAdapter.capabilities == {
        Capability.QUERY,
        Capability.CLOSE,
        Capability.REFUND,
        Capability.PARTIAL_REFUND,
        Capability.PAYOUT,
        Capability.STATEMENT,
        Capability.BALANCE,
    }
    assert StripeAdapter.notify_methods == frozenset({"POST"})
    assert (StripeAdapter.ack(True).status, json.loads(StripeAdapter.ack(True).body)) == (200, {"received": True})
    assert StripeAdapter.ack(False).status == 400 and StripeAdapter.ack(False).content_type == "application/json"


def test_create_makes_one_checkout_session_per_out_trade_no(adapter, sim):
    created = adapter.create(_order("S-create"))
    cs = created.provider_trade_no
    assert cs.startswith("cs_test_") and created.qr_content == ""
    # The buyer is sent to the provider's own origin; nothing about the card is ours to render.
    assert created.pay_url == f"{sim.base_url}/c/pay/{cs}"
    session = sim.session(cs)
    assert (session["mode"], session["amount_total"], session["currency"], session["status"]) == (
        "payment",
        990,
        "cny",
        "open",
    )
    assert (session["client_reference_id"], session["metadata"]) == ("S-create", {"out_trade_no": "S-create"})
    assert session["success_url"] == session["cancel_url"] == RETURN_URL
    assert session["payment_intent"] is None  # made at the buyer's first card, as on Stripe since 2022-08-01
    assert sim._sessions[cs]["_payment_intent_data"] == {
        "description": "Gift card",
        "metadata": {"out_trade_no": "S-create"},
    }
    assert sim.trade_for("S-create")["status"] == "pending"
    assert adapter.create(_order("S-create")) == created  # same Idempotency-Key: Stripe replays the first answer
    assert len(sim._sessions_for("S-create")) == 1


def test_create_sends_the_order_deadline_as_expires_at(adapter, sim):
    now = time.time()
    in_two_hours = datetime.fromtimestamp(now + 7200, UTC).replace(microsecond=0)
    created = adapter.create(_order("S-deadline", expires_at=in_two_hours))
    assert sim.session(created.provider_trade_no)["expires_at"] == int(in_two_hours.timestamp())
    # Stripe's floor is 30 minutes: a 15-minute order is sent its deadline + 31 min (our close comes first).
    soon = datetime.fromtimestamp(now + 900, UTC).replace(microsecond=0)
    created = adapter.create(_order("S-soon", expires_at=soon))
    assert sim.session(created.provider_trade_no)["expires_at"] == int(soon.timestamp()) + 31 * 60
    assert adapter.create(_order("S-soon", expires_at=soon)) == created  # the same parameters on a retry
    far = datetime.fromtimestamp(now + 30 * 3600, UTC)
    created = adapter.create(_order("S-far", expires_at=far))
    assert now + 23 * 3600 < sim.session(created.provider_trade_no)["expires_at"] < now + 24 * 3600
    assert adapter.create(_order("S-default")).provider_trade_no  # no deadline: Stripe's 24 h default


def test_session_expires_at_window():
    now = 1_700_000_000.0
    at = lambda seconds: datetime.fromtimestamp(now + seconds, UTC)  # noqa: E731
    assert wire.session_expires_at(None, now=now) is None
    assert wire.session_expires_at(at(3600), now=now) == now + 3600
    for ahead in (0, 60, 900, 1859):
        sent = wire.session_expires_at(at(ahead), now=now)
        assert sent == now + ahead + 1860 and sent >= now + 1800
    assert wire.session_expires_at(at(1860), now=now) == now + 1860
    assert wire.session_expires_at(at(90_000), now=now) <= now + 86_400 - 60


def test_create_with_other_parameters_under_the_same_key_is_terminal(adapter):
    adapter.create(_order("S-conflict"))
    with pytest.raises(Terminal):
        adapter.create(_order("S-conflict", minor=100))


def test_query_pending_then_paid(adapter, sim):
    created = adapter.create(_order("S-query"))
    pending = adapter.query("S-query", created.provider_trade_no)
    assert (pending.status, pending.amount, pending.provider_status, pending.provider_trade_no) == (
        ObservedStatus.PENDING,
        Money(990, "CNY"),
        "open/unpaid",
        created.provider_trade_no,
    )
    # Without the create answer no session can be named, and none is searchable before a card was tried.
    assert adapter.query("S-query") is None
    sim.pay("S-query")  # the webhook endpoint is dead: the payment stands anyway
    assert sim.deliveries[-1]["error"] == "ConnectionError"
    paid = adapter.query("S-query", created.provider_trade_no)
    assert (paid.status, paid.amount, paid.provider_trade_no) == (
        ObservedStatus.SUCCEEDED,
        Money(990, "CNY"),
        created.provider_trade_no,
    )
    assert paid.event_key == f"{created.provider_trade_no}:query:complete:paid"
    # Once paid, the intent carries our number: found by search, reported under the same session id.
    assert adapter.query("S-query") == paid


def test_query_of_unknown_trade_is_none(adapter):
    assert adapter.query("never-created") is None
    assert adapter.query("never-created", "cs_test_doesnotexist") is None


def test_query_answered_for_another_order_is_unknown(adapter):
    created = adapter.create(_order("S-mine"))
    with pytest.raises(Unknown):
        adapter.query("S-other", created.provider_trade_no)


def test_close_expires_the_session_and_the_provider_refuses_payment_after(adapter, sim):
    created = adapter.create(_order("S-close"))
    adapter.close("S-close", created.provider_trade_no)
    assert sim.session(created.provider_trade_no)["status"] == "expired"
    assert sim.trade_for("S-close")["status"] == "closed"
    with pytest.raises(ValueError):  # the buyer's late card is refused by the provider itself
        sim.pay("S-close")
    card = {"cardNumber": CARD_OK, "cardExpiry": "12 / 99", "cardCvc": "123"}
    page = requests.post(created.pay_url, data=card, timeout=5)
    assert page.status_code == 409 and 'id="cardNumber"' not in page.text
    adapter.close("S-close", created.provider_trade_no)  # closing twice is fine
    assert adapter.query("S-close", created.provider_trade_no).status == ObservedStatus.CLOSED
    adapter.close("never-created")  # Stripe never saw it


def test_a_session_past_its_expires_at_takes_no_payment(adapter, sim):
    created = adapter.create(_order("S-lapse", expires_at=datetime.now(UTC) + timedelta(hours=1)))
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=1, seconds=5)):
        with pytest.raises(ValueError):
            sim.pay("S-lapse")
        observed = adapter.query("S-lapse", created.provider_trade_no)
    assert (observed.status, observed.provider_status) == (ObservedStatus.CLOSED, "expired/unpaid")


def test_close_of_a_paid_trade_is_terminal(adapter, sim):
    created = adapter.create(_order("S-paid"))
    sim.pay("S-paid")
    with pytest.raises(Terminal) as exc:
        adapter.close("S-paid", created.provider_trade_no)
    assert exc.value.code == "already_paid"
    with pytest.raises(Terminal):
        adapter.close("S-paid")  # found through the paid intent's metadata
    assert sim.trade_for("S-paid")["status"] == "paid"


def test_refund_twice_with_the_same_refund_no_refunds_once(adapter, sim):
    created = adapter.create(_order("S-refund"))
    sim.pay("S-refund")
    first = adapter.refund(_refund("R-1", "S-refund", created.provider_trade_no))
    again = adapter.refund(_refund("R-1", "S-refund", created.provider_trade_no))
    assert first == again
    assert (first.refund_no, first.status, first.amount) == ("R-1", RefundState.SUCCEEDED, Money(500, "CNY"))
    assert sim.trade_for("S-refund")["refunded_minor"] == 500
    second = adapter.refund(_refund("R-2", "S-refund", minor=490))  # session found through the intent's search
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
    assert adapter.refund_query(by_id) == done  # listed for the session's intent, matched on metadata refund_no
    assert adapter.refund_query(_refund("R-q", "S-rq")) == done  # intent found by search first
    assert adapter.refund_query(_refund("R-none", "S-rq", created.provider_trade_no)) is None
    assert adapter.refund_query(_with(by_id, provider_refund_no="re_missing")) is None
    assert adapter.refund_query(_refund("R-q", "never-created")) is None


def _with(request: RefundRequest, **changes: str) -> RefundRequest:
    return replace(request, **changes)


def test_refund_of_an_unpaid_trade_is_terminal(adapter, sim):
    created = adapter.create(_order("S-unpaid"))
    with pytest.raises(Terminal) as exc:
        adapter.refund(_refund("R-u", "S-unpaid", created.provider_trade_no))
    assert exc.value.code == "unknown_trade"  # no card was tried: there is no intent to refund
    sim.decline("S-unpaid")
    with pytest.raises(Terminal) as exc:
        adapter.refund(_refund("R-u", "S-unpaid", created.provider_trade_no))
    assert exc.value.code == "charge_not_refundable"


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
        provider_status="checkout.session.completed",
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


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount_total", "990"),
        ("amount_total", 990.0),
        ("amount_total", True),
        ("amount_total", -990),
        ("amount_total", None),
        ("currency", "CNY"),
        ("currency", "cn"),
        ("currency", 156),
    ],
)
def test_amounts_are_json_integers_and_currencies_lowercase_codes(adapter, sim, field, value):
    adapter.create(_order("S-strict"))
    sim.pay("S-strict")

    def change(event):
        event["data"]["object"][field] = value

    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(_resign(sim, sim.notify_request("S-strict"), change))
    assert exc.value.code == "bad_amount"


def test_strict_amounts_hold_for_intent_and_refund_events(adapter, sim):
    created = adapter.create(_order("S-strict-pi"))
    sim.decline("S-strict-pi")
    intent_id = sim.session(created.provider_trade_no)["payment_intent"]
    failed = sim.event_request("payment_intent.payment_failed", intent_id)

    def as_text(event):
        event["data"]["object"]["amount"] = "990"

    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(_resign(sim, failed, as_text))
    assert exc.value.code == "bad_amount"
    sim.pay("S-strict-pi")
    adapter.refund(_refund("R-s", "S-strict-pi", created.provider_trade_no, minor=100))

    def upper(event):
        event["data"]["object"]["currency"] = "CNY"

    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(_resign(sim, sim.refund_notify_request("R-s"), upper))
    assert exc.value.code == "bad_amount"


def test_expired_event_is_closed(adapter, sim):
    adapter.create(_order("S-cancel-event"))
    obs = adapter.verify_notification(_inbound(sim.notify_request("S-cancel-event", variant="closed")))
    assert (obs.status, obs.provider_status) == (ObservedStatus.CLOSED, "checkout.session.expired")
    assert obs.amount == Money(990, "CNY")


def test_completed_with_a_delayed_method_is_pending_until_async_success(adapter, sim):
    created = adapter.create(_order("S-async"))

    def unpaid(event):
        event["data"]["object"]["payment_status"] = "unpaid"

    obs = adapter.verify_notification(_resign(sim, sim.notify_request("S-async"), unpaid))
    assert (obs.status, obs.provider_trade_no) == (ObservedStatus.PENDING, created.provider_trade_no)

    def async_paid(event):
        event["type"] = "checkout.session.async_payment_succeeded"

    obs = adapter.verify_notification(_resign(sim, sim.notify_request("S-async"), async_paid))
    assert (obs.status, obs.provider_trade_no) == (ObservedStatus.SUCCEEDED, created.provider_trade_no)


def test_verify_refuses_without_header_or_secret_and_takes_plain_account_events(adapter, sim, account):
    adapter.create(_order("S-hdr"))
    request = sim.notify_request("S-hdr")
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(Inbound({}, request.body, {}))
    assert exc.value.code == "missing_signature"
    with pytest.raises(NotificationInvalid) as exc:
        StripeAdapter(_config(account, webhook_secret="")).verify_notification(_inbound(request))
    assert exc.value.code == "no_credentials"
    # A plain (non-Connect) account's events name no account: the endpoint secret alone proves them.
    plain = _resign(sim, request, lambda event: event.pop("account"))
    assert adapter.verify_notification(plain).out_trade_no == "S-hdr"


def test_session_whose_metadata_contradicts_its_reference_is_refused(adapter, sim):
    adapter.create(_order("S-contra"))

    def contradict(event):
        event["data"]["object"]["metadata"]["out_trade_no"] = "S-other"

    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(_resign(sim, sim.notify_request("S-contra"), contradict))
    assert exc.value.code == "missing_fields"


def test_unhandled_event_type_is_refused(adapter, sim):
    adapter.create(_order("S-type"))

    def other_type(event):
        event["type"] = "checkout.session.updated"

    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(_resign(sim, sim.notify_request("S-type"), other_type))
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


def test_hosted_page_pays_and_the_webhook_verifies(sim, receiver):
    account = sim.account(webhook_url=receiver.url)
    adapter = StripeAdapter(_config(account))
    created = adapter.create(_order("S-page"))
    page = requests.get(created.pay_url, timeout=5)
    assert page.status_code == 200 and 'id="cardNumber"' in page.text and 'id="submit"' in page.text
    card = {"cardNumber": CARD_OK, "cardExpiry": "12 / 34", "cardCvc": "123"}
    resp = requests.post(created.pay_url, data=card, allow_redirects=False, timeout=5)
    assert resp.status_code == 303 and resp.headers["Location"] == RETURN_URL
    (inbound,) = receiver.inbounds  # checkout.session.completed only: the endpoint's subscription
    obs = adapter.verify_notification(inbound)
    assert (obs.out_trade_no, obs.status, obs.amount, obs.provider_trade_no) == (
        "S-page",
        ObservedStatus.SUCCEEDED,
        Money(990, "CNY"),
        created.provider_trade_no,
    )
    assert sim.trade_for("S-page")["status"] == "paid"


def test_decline_is_a_failed_observation_of_the_same_session_and_the_buyer_may_retry(sim, receiver):
    account = sim.account(webhook_url=receiver.url)
    adapter = StripeAdapter(_config(account))
    created = adapter.create(_order("S-decline"))
    card = {"cardNumber": CARD_DECLINED, "cardExpiry": "12 / 34", "cardCvc": "123"}
    page = requests.post(created.pay_url, data=card, allow_redirects=False, timeout=5)
    assert page.status_code == 200 and "Your card was declined." in page.text and 'id="cardNumber"' in page.text
    (inbound,) = receiver.inbounds
    failed = adapter.verify_notification(inbound)
    assert (failed.status, failed.provider_status) == (ObservedStatus.FAILED, "payment_intent.payment_failed")
    # A decline only leaves a note on the payment its signed metadata names: no trade identity, no lookup.
    assert failed.provider_trade_no == "" and failed.out_trade_no == "S-decline"
    assert adapter.query("S-decline", created.provider_trade_no).status == ObservedStatus.PENDING
    sim.decline("S-decline")  # another declined card: the session stays open
    sim.pay("S-decline")
    paid = adapter.verify_notification(receiver.inbounds[-1])
    assert (paid.status, paid.provider_trade_no) == (ObservedStatus.SUCCEEDED, created.provider_trade_no)
    assert [adapter.verify_notification(i).provider_status for i in receiver.inbounds] == [
        "payment_intent.payment_failed",
        "payment_intent.payment_failed",
        "checkout.session.completed",
    ]


def test_intent_events_name_their_own_collection_never_the_stored_one(adapter, sim, account):
    created = adapter.create(_order("S-two"))
    sim.pay("S-two")
    ours = sim.session(created.provider_trade_no)["payment_intent"]
    # The session's own intent: reported under the session, the id the payment holds.
    mine = adapter.verify_notification(_inbound(sim.event_request("payment_intent.succeeded", ours)))
    assert (mine.provider_trade_no, mine.status) == (created.provider_trade_no, ObservedStatus.SUCCEEDED)
    # Another intent carrying the same out_trade_no, made outside Checkout and paid: its own pi_ id.
    other = _api(account, "POST", "/v1/payment_intents", amount="990", currency="cny",
                 **{"metadata[out_trade_no]": "S-two"})  # fmt: skip
    _api(account, "POST", f"/v1/payment_intents/{other['id']}/confirm", payment_method="pm_card_visa")
    seen = adapter.verify_notification(_inbound(sim.event_request("payment_intent.succeeded", other["id"])))
    assert (seen.out_trade_no, seen.provider_trade_no, seen.status) == ("S-two", other["id"], ObservedStatus.SUCCEEDED)
    assert adapter.query("S-two", other["id"]).provider_trade_no == other["id"]
    # A second session for the same out_trade_no (another key), paid: that session's id, not the stored one.
    second = _api(account, "POST", "/v1/checkout/sessions", idem="other-key", mode="payment",
                  success_url=RETURN_URL, client_reference_id="S-two", **{"metadata[out_trade_no]": "S-two",
                  "line_items[0][quantity]": "1", "line_items[0][price_data][currency]": "cny",
                  "line_items[0][price_data][unit_amount]": "990",
                  "line_items[0][price_data][product_data][name]": "Gift card",
                  "payment_intent_data[metadata][out_trade_no]": "S-two"})  # fmt: skip
    sim._attempt(second["id"], {"number": CARD_OK, "exp_month": "12", "exp_year": "2099", "cvc": "123"})
    completed = sim.event_request("checkout.session.completed", second["id"])
    assert adapter.verify_notification(_inbound(completed)).provider_trade_no == second["id"]
    second_pi = sim.session(second["id"])["payment_intent"]
    by_intent = adapter.verify_notification(_inbound(sim.event_request("payment_intent.succeeded", second_pi)))
    assert by_intent.provider_trade_no == second["id"] != created.provider_trade_no


def test_a_decline_event_is_verified_without_a_call_to_stripe(adapter, sim):
    """It is verified while the payment row is locked: no provider I/O may happen there."""
    created = adapter.create(_order("S-quiet"))
    sim.decline("S-quiet")
    request = sim.event_request(
        "payment_intent.payment_failed", sim.session(created.provider_trade_no)["payment_intent"]
    )
    sim.faults.fail_5xx = 1  # any call to the simulator would take it
    assert adapter.verify_notification(_inbound(request)).status == ObservedStatus.FAILED
    assert sim.faults.fail_5xx == 1
    sim.faults.fail_5xx = 0


def test_a_success_event_whose_session_cannot_be_looked_up_is_not_applied(adapter, sim):
    created = adapter.create(_order("S-lookup"))
    sim.pay("S-lookup")
    request = sim.event_request("payment_intent.succeeded", sim.session(created.provider_trade_no)["payment_intent"])
    sim.faults.fail_5xx = 1
    with pytest.raises(NotificationInvalid) as exc:  # a 4xx: Stripe sends it again later
        adapter.verify_notification(_inbound(request))
    assert exc.value.code == "lookup_failed"
    assert adapter.verify_notification(_inbound(request)).provider_trade_no == created.provider_trade_no


def test_fail_5xx_on_create_is_unknown_and_records_nothing(adapter, sim):
    sim.faults.fail_5xx = 1
    with pytest.raises(Unknown) as exc:
        adapter.create(_order("S-500"))
    assert exc.value.code == "http_5xx"
    assert sim.trade_for("S-500") is None


def test_timeout_on_create_is_unknown_but_the_session_exists(sim, account):
    adapter = StripeAdapter(_config(account, timeouts=(1.0, 0.5)))
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.5
    with pytest.raises(Unknown) as exc:
        adapter.create(_order("S-hang"))
    assert exc.value.code == "timeout"
    recorded = sim.trade_for("S-hang")
    assert recorded is not None and recorded["status"] == "pending"
    # Resubmitting under the same Idempotency-Key gets the first answer, not a second session.
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
    created = adapter.create(_order("S-drop"))
    sim.faults.drop_notify = 1
    sim.pay("S-drop")
    assert receiver.inbounds == []
    assert adapter.query("S-drop", created.provider_trade_no).status == ObservedStatus.SUCCEEDED
