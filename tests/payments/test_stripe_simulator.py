"""The Stripe simulator's own checks over loopback HTTP, with plain requests and an independent HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import time_machine

from payments.simulators.base import SimAccount
from payments.simulators.stripe import CARD_OK, StripeSimulator, decode_form

ROOT = Path(__file__).resolve().parents[2]


class Endpoint:
    """A webhook endpoint recording (headers, body) of each POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                posts.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


@pytest.fixture
def sim() -> Iterator[StripeSimulator]:
    s = StripeSimulator().start()
    yield s
    s.stop()


@pytest.fixture
def account(sim: StripeSimulator, endpoint: Endpoint) -> SimAccount:
    return sim.account(webhook_url=endpoint.url)


def api(account: SimAccount, method: str, path: str, *, key: str = "", idem: str = "", **params: str):
    headers = {"Authorization": f"Bearer {key or account.credentials['secret_key']}"}
    if idem:
        headers["Idempotency-Key"] = idem
    data = params if method == "POST" else None
    query = params if method == "GET" else None
    return requests.request(method, account.base_url + path, data=data, params=query, headers=headers, timeout=5)


def create(account: SimAccount, out_trade_no: str = "O-1", amount: str = "990", **extra: str) -> dict:
    resp = api(
        account,
        "POST",
        "/v1/payment_intents",
        idem=f"create-{out_trade_no}",
        amount=amount,
        currency="cny",
        **{"metadata[out_trade_no]": out_trade_no},
        **extra,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def checkout(account: SimAccount, out_trade_no: str = "O-1", amount: str = "990", **extra: str) -> dict:
    params = {
        "mode": "payment",
        "success_url": "http://shop/orders/1/",
        "cancel_url": "http://shop/orders/1/",
        "client_reference_id": out_trade_no,
        "metadata[out_trade_no]": out_trade_no,
        "payment_intent_data[metadata][out_trade_no]": out_trade_no,
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "cny",
        "line_items[0][price_data][unit_amount]": amount,
        "line_items[0][price_data][product_data][name]": "Gift card",
        **extra,
    }
    resp = api(account, "POST", "/v1/checkout/sessions", idem=f"create-{out_trade_no}", **params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Independent check of Stripe-Signature: t=...,v1=... over "t.body"."""
    items = [part.split("=", 1) for part in headers["Stripe-Signature"].split(",")]
    t = next(v for k, v in items if k == "t")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in items if k == "v1")


def test_account_holds_the_three_stripe_credentials(sim, account):
    creds = account.credentials
    assert account.merchant_no.startswith("acct_") and account.currency == "CNY"
    assert creds["secret_key"].startswith("sk_test_") and creds["publishable_key"].startswith("pk_test_")
    assert creds["webhook_secret"].startswith("whsec_")
    assert sim.account() == account  # one merchant, made once


def test_every_api_call_needs_the_secret_key(sim, account):
    for key in ("sk_test_wrong", account.credentials["publishable_key"]):
        resp = api(account, "POST", "/v1/payment_intents", key=key, amount="990", currency="cny")
        assert resp.status_code == 401
        error = resp.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"].startswith("Invalid API Key provided")
        assert key not in error["message"]  # masked, as Stripe does
    no_auth = requests.get(f"{account.base_url}/v1/payment_intents/pi_x", timeout=5)
    assert no_auth.status_code == 401
    assert sim._intents == {}


def test_bracket_keys_nest_and_unknown_parameters_are_refused(account):
    pi = create(account, "O-form", description="Gift")
    assert pi["metadata"] == {"out_trade_no": "O-form"} and pi["currency"] == "cny" and pi["amount"] == 990
    bad = api(account, "POST", "/v1/payment_intents", amount="990", currency="cny", colour="red")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "parameter_unknown"
    assert decode_form("a[b][c]=1&l[0]=x&l[1]=y&e[]=p&e[]=q") == {
        "a": {"b": {"c": "1"}},
        "l": ["x", "y"],
        "e": ["p", "q"],
    }


def test_idempotency_key_replays_conflicts_and_saves_no_validation_failure(sim, account):
    first = create(account, "O-idem")
    replay = api(account, "POST", "/v1/payment_intents", idem="create-O-idem", amount="990", currency="cny",
                 **{"metadata[out_trade_no]": "O-idem"})  # fmt: skip
    assert replay.json()["id"] == first["id"] and replay.headers["Idempotent-Replayed"] == "true"
    conflict = api(account, "POST", "/v1/payment_intents", idem="create-O-idem", amount="1", currency="cny")
    assert conflict.status_code == 400 and conflict.json()["error"]["type"] == "idempotency_error"
    invalid = api(account, "POST", "/v1/payment_intents", idem="k-2", currency="cny")
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "parameter_missing"
    fixed = api(account, "POST", "/v1/payment_intents", idem="k-2", amount="5", currency="cny")
    assert fixed.status_code == 200
    assert len(sim._intents) == 2


def test_search_by_metadata_and_retrieve(account):
    pi = create(account, "O-s'1")
    found = api(account, "GET", "/v1/payment_intents/search", query="metadata['out_trade_no']:'O-s\\'1'").json()
    assert found["object"] == "search_result" and [p["id"] for p in found["data"]] == [pi["id"]]
    none = api(account, "GET", "/v1/payment_intents/search", query="metadata['out_trade_no']:'nope'").json()
    assert none["data"] == []
    bad = api(account, "GET", "/v1/payment_intents/search", query="amount>5")
    assert bad.status_code == 400
    assert api(account, "GET", f"/v1/payment_intents/{pi['id']}").json() == pi
    missing = api(account, "GET", "/v1/payment_intents/pi_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"


def test_confirm_checks_publishable_key_and_client_secret(sim, account):
    pi = create(account, "O-confirm")
    url = f"{account.base_url}/v1/payment_intents/{pi['id']}/confirm"
    card = {
        "payment_method_data[type]": "card",
        "payment_method_data[card][number]": CARD_OK,
        "payment_method_data[card][exp_month]": "12",
        "payment_method_data[card][exp_year]": "2099",
        "payment_method_data[card][cvc]": "123",
    }
    pk = account.credentials["publishable_key"]
    wrong_secret = requests.post(url, data={"key": pk, "client_secret": pi["id"] + "_secret_x", **card}, timeout=5)
    assert wrong_secret.status_code == 400 and wrong_secret.json()["error"]["param"] == "client_secret"
    wrong_key = requests.post(url, data={"key": "pk_test_x", "client_secret": pi["client_secret"], **card}, timeout=5)
    assert wrong_key.status_code == 401
    assert sim.intent(pi["id"])["status"] == "requires_payment_method"
    ok = requests.post(url, data={"key": pk, "client_secret": pi["client_secret"], **card}, timeout=5)
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded" and ok.json()["amount_received"] == 990
    twice = requests.post(url, data={"key": pk, "client_secret": pi["client_secret"], **card}, timeout=5)
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "payment_intent_unexpected_state"


def test_pay_posts_an_event_signed_with_the_endpoint_secret(sim, account, endpoint):
    cs = checkout(account, "O-pay")
    sim.pay("O-pay")
    ((headers, body),) = endpoint.posts  # the endpoint subscribes to checkout.session.*, not payment_intent.succeeded
    assert verify(account.credentials["webhook_secret"], headers, body)
    assert not verify("whsec_other", headers, body)
    event = json.loads(body)
    assert (event["type"], event["account"], event["object"]) == (
        "checkout.session.completed",
        account.merchant_no,
        "event",
    )
    session = event["data"]["object"]
    assert (session["id"], session["status"], session["payment_status"], session["amount_total"]) == (
        cs["id"],
        "complete",
        "paid",
        990,
    )
    intent = sim.intent(session["payment_intent"])
    assert (intent["status"], intent["amount_received"], intent["metadata"]) == (
        "succeeded",
        990,
        {"out_trade_no": "O-pay"},
    )
    assert sim.trade_for("O-pay")["status"] == "paid"
    sim.enabled_events = {"*"}
    checkout(account, "O-pay-all")
    sim.pay("O-pay-all")
    assert [json.loads(b)["type"] for _, b in endpoint.posts[1:]] == [
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]


def test_rotation_signs_with_every_active_secret(sim, account, endpoint):
    checkout(account, "O-rot")
    new = sim.rotate_webhook_secret()
    sim.pay("O-rot")
    ((headers, body),) = endpoint.posts
    assert headers["Stripe-Signature"].count("v1=") == 2
    assert verify(account.credentials["webhook_secret"], headers, body) and verify(new, headers, body)


def test_forged_variants(sim, account):
    checkout(account, "O-v")
    secret = account.credentials["webhook_secret"]
    valid = sim.notify_request("O-v")
    assert valid.content_type == "application/json" and verify(secret, valid.headers, valid.body)
    assert not verify(secret, (bad := sim.notify_request("O-v", variant="bad_signature")).headers, bad.body)
    stale = sim.notify_request("O-v", variant="stale_timestamp")
    t = int(stale.headers["Stripe-Signature"].split(",")[0][2:])
    assert verify(secret, stale.headers, stale.body) and time.time() - t >= 600
    other = json.loads(sim.notify_request("O-v", variant="wrong_merchant").body)
    assert other["account"] != account.merchant_no
    closed = json.loads(sim.notify_request("O-v", variant="closed").body)
    assert closed["type"] == "checkout.session.expired" and sim.trade_for("O-v")["status"] == "pending"
    unknown = json.loads(sim.notify_request("O-v", variant="unknown_order").body)["data"]["object"]
    assert unknown["client_reference_id"] == "O-v-unknown" and unknown["id"].startswith("cs_test_")
    with pytest.raises(ValueError):
        sim.notify_request("O-v", variant="tampered_ciphertext")


def test_refunds_are_bounded_and_listed(sim, account):
    cs = checkout(account, "O-r")
    sim.decline("O-r")
    pi = sim.intent(sim.session(cs["id"])["payment_intent"])
    early = api(account, "POST", "/v1/refunds", payment_intent=pi["id"], amount="100")
    assert early.status_code == 400 and early.json()["error"]["code"] == "charge_not_refundable"
    sim.pay("O-r")
    too_much = api(account, "POST", "/v1/refunds", payment_intent=pi["id"], amount="991")
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "amount_too_large"
    args = {"payment_intent": pi["id"], "amount": "100", "metadata[refund_no]": "RF-1"}
    one = api(account, "POST", "/v1/refunds", idem="refund-RF-1", **args).json()
    assert api(account, "POST", "/v1/refunds", idem="refund-RF-1", **args).json() == one
    listed = api(account, "GET", "/v1/refunds", payment_intent=pi["id"]).json()
    assert [r["id"] for r in listed["data"]] == [one["id"]] and one["status"] == "succeeded"
    assert api(account, "GET", f"/v1/refunds/{one['id']}").json() == one
    assert sim.trade_for("O-r")["refunded_minor"] == 100


def test_faults_fail_5xx_records_nothing_and_timeout_acts(sim, account):
    sim.faults.fail_5xx = 1
    failed = api(account, "POST", "/v1/payment_intents", amount="1", currency="cny", **{"metadata[out_trade_no]": "F"})
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "api_error"
    assert sim._intents == {}
    sim.faults.timeout, sim.faults.hang_seconds = 1, 0.6
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            f"{account.base_url}/v1/payment_intents",
            data={"amount": "1", "currency": "cny", "metadata[out_trade_no]": "F"},
            headers={"Authorization": f"Bearer {account.credentials['secret_key']}"},
            timeout=(1, 0.3),
        )
    assert [pi["metadata"] for pi in sim._intents.values()] == [{"out_trade_no": "F"}]


def test_session_create_checks_checkout_rules(sim, account):
    now = int(time.time())
    cs = checkout(account, "O-cs", expires_at=str(now + 3600))
    assert cs["id"].startswith("cs_test_") and len(cs["id"]) == 66
    assert (cs["object"], cs["status"], cs["payment_status"], cs["payment_intent"]) == (
        "checkout.session",
        "open",
        "unpaid",
        None,
    )
    assert cs["url"] == f"{account.base_url}/c/pay/{cs['id']}" and cs["expires_at"] == now + 3600
    assert (cs["amount_total"], cs["currency"], cs["client_reference_id"]) == (990, "cny", "O-cs")
    for extra, param in [
        ({"expires_at": str(now + 600)}, "expires_at"),  # under Stripe's 30 minutes
        ({"expires_at": str(now + 25 * 3600)}, "expires_at"),  # over 24 hours
        ({"mode": "subscription"}, "mode"),
        ({"line_items[0][price_data][currency]": "CNY"}, "line_items[0][price_data][currency]"),
        ({"success_url": "javascript:alert(1)"}, "success_url"),
    ]:
        base = {k: v for k, v in {"mode": "payment", "success_url": "http://shop/"}.items() if k not in extra}
        items = {
            "line_items[0][quantity]": "1",
            "line_items[0][price_data][currency]": "cny",
            "line_items[0][price_data][unit_amount]": "990",
            "line_items[0][price_data][product_data][name]": "Gift",
        }
        bad = api(account, "POST", "/v1/checkout/sessions", **{**base, **items, **extra})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param, (extra, bad.text)
    assert len(sim._sessions) == 1
    assert api(account, "GET", f"/v1/checkout/sessions/{cs['id']}").json() == cs
    missing = api(account, "GET", "/v1/checkout/sessions/cs_test_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"


def test_hosted_page_takes_the_card_on_the_provider_origin(sim, account, endpoint):
    cs = checkout(account, "O-page")
    page = requests.get(cs["url"], timeout=5)
    assert page.status_code == 200
    assert 'name="cardNumber"' in page.text and 'name="cardCvc"' in page.text and 'id="submit"' in page.text
    assert 'id="amount">9.90<' in page.text and 'id="currency">CNY<' in page.text
    declined = {"cardNumber": "4000 0000 0000 0002", "cardExpiry": "12 / 34", "cardCvc": "123"}
    again = requests.post(cs["url"], data=declined, allow_redirects=False, timeout=5)
    assert again.status_code == 200 and "Your card was declined." in again.text  # the page, for another card
    session = sim.session(cs["id"])
    assert session["status"] == "open" and sim.intent(session["payment_intent"])["status"] == "requires_payment_method"
    good = {"cardNumber": CARD_OK, "cardExpiry": "12/34", "cardCvc": "123"}
    paid = requests.post(cs["url"], data=good, allow_redirects=False, timeout=5)
    assert paid.status_code == 303 and paid.headers["Location"] == "http://shop/orders/1/"
    assert sim.session(cs["id"])["payment_intent"] == session["payment_intent"]  # one intent per session
    assert [json.loads(b)["type"] for _, b in endpoint.posts] == [
        "payment_intent.payment_failed",
        "checkout.session.completed",
    ]
    closed = requests.get(cs["url"], timeout=5)
    assert 'id="session-closed"' in closed.text and "cardNumber" not in closed.text
    assert requests.get(f"{account.base_url}/c/pay/cs_test_nope", timeout=5).status_code == 404


def test_expire_closes_the_session_and_its_intent(sim, account, endpoint):
    cs = checkout(account, "O-exp")
    sim.decline("O-exp")
    expired = api(account, "POST", f"/v1/checkout/sessions/{cs['id']}/expire")
    assert expired.status_code == 200 and expired.json()["status"] == "expired"
    pi = sim.intent(expired.json()["payment_intent"])
    assert pi["status"] == "canceled"
    again = api(account, "POST", f"/v1/checkout/sessions/{cs['id']}/expire")
    assert again.status_code == 400 and "status in [open]" in again.json()["error"]["message"]
    with pytest.raises(ValueError):
        sim.pay("O-exp")
    with pytest.raises(ValueError):
        sim.decline("O-exp")
    assert sim.trade_for("O-exp")["status"] == "closed"
    time.sleep(0.2)  # events from an API call travel apart from its answer
    types = [json.loads(b)["type"] for _, b in endpoint.posts]
    assert types == ["payment_intent.payment_failed", "checkout.session.expired"]


def test_a_session_lapses_at_its_expires_at(sim, account):
    cs = checkout(account, "O-lapse", expires_at=str(int(time.time()) + 1800))
    with time_machine.travel(time.time() + 1801):
        assert api(account, "GET", f"/v1/checkout/sessions/{cs['id']}").json()["status"] == "expired"
        with pytest.raises(ValueError):
            sim.pay("O-lapse")
        card = {"cardNumber": CARD_OK, "cardExpiry": "12 / 34", "cardCvc": "123"}
        assert requests.post(cs["url"], data=card, timeout=5).status_code == 409


def test_sessions_are_listed_by_their_payment_intent(sim, account):
    cs = checkout(account, "O-list")
    checkout(account, "O-list-2")
    sim.pay("O-list")
    pi = sim.session(cs["id"])["payment_intent"]
    listed = api(account, "GET", "/v1/checkout/sessions", payment_intent=pi).json()
    assert [s["id"] for s in listed["data"]] == [cs["id"]]
    assert api(account, "GET", "/v1/checkout/sessions", payment_intent="pi_other").json()["data"] == []
    found = api(account, "GET", "/v1/payment_intents/search", query="metadata['out_trade_no']:'O-list'").json()
    assert [p["id"] for p in found["data"]] == [pi]  # payment_intent_data.metadata reached the intent


def _serve(account_file: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "payments.simulators.stripe", "--port", "0", "--account-file", str(account_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def test_cli_writes_the_account_file_and_reuses_it(tmp_path):
    account_file = tmp_path / "sim" / "stripe.json"
    proc, base_url = _serve(account_file)
    try:
        first = json.loads(account_file.read_text())
        assert set(first) == {"merchant_no", "base_url", "currency", "credentials"} and first["base_url"] == base_url
        account = SimAccount(**first)
        assert create(account, "O-cli")["object"] == "payment_intent"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    proc, base_url = _serve(account_file)
    try:
        again = json.loads(account_file.read_text())
        assert again["credentials"] == first["credentials"] and again["merchant_no"] == first["merchant_no"]
        assert create(SimAccount(**again), "O-cli-2")["amount"] == 990
    finally:
        proc.terminate()
        proc.wait(timeout=5)
