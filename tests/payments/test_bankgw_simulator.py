"""The bank gateway simulator's own checks over loopback HTTP, with envelopes built by hand (no zeep)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
from lxml import etree

from payments.simulators.bankgw import BankGatewaySimulator

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
BANK = "urn:cardshop:bankgw"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
UT = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim() -> Iterator[BankGatewaySimulator]:
    s = BankGatewaySimulator().start()
    yield s
    s.stop()


def envelope(
    operation: str,
    fields: dict[str, str],
    username: str,
    password: str,
    *,
    created: datetime | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """A SOAP 1.1 request with a UsernameToken PasswordDigest, per the OASIS profile."""
    nonce = nonce or os.urandom(16)
    stamp = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(hashlib.sha1(nonce + stamp.encode() + password.encode()).digest()).decode()
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP, "b": BANK, "wsse": WSSE, "wsu": WSU})
    token = etree.SubElement(
        etree.SubElement(etree.SubElement(env, f"{{{SOAP}}}Header"), f"{{{WSSE}}}Security"),
        f"{{{WSSE}}}UsernameToken",
    )
    etree.SubElement(token, f"{{{WSSE}}}Username").text = username
    etree.SubElement(token, f"{{{WSSE}}}Password", Type=f"{UT}#PasswordDigest").text = digest
    etree.SubElement(token, f"{{{WSSE}}}Nonce").text = base64.b64encode(nonce).decode()
    etree.SubElement(token, f"{{{WSU}}}Created").text = stamp
    payload = etree.SubElement(etree.SubElement(env, f"{{{SOAP}}}Body"), f"{{{BANK}}}{operation}Request")
    for name, value in fields.items():
        etree.SubElement(payload, f"{{{BANK}}}{name}").text = value
    return etree.tostring(env)


def post(base_url: str, body: bytes) -> tuple[int, etree._Element]:
    resp = requests.post(f"{base_url}/soap", data=body, headers={"Content-Type": "text/xml"}, timeout=5)
    return resp.status_code, etree.fromstring(resp.content)


def answer(doc: etree._Element) -> dict[str, str]:
    payload = doc.find(f"{{{SOAP}}}Body")[0]
    return {etree.QName(el).localname: el.text for el in payload}


def faultcode(doc: etree._Element) -> str:
    return doc.findtext(f"{{{SOAP}}}Body/{{{SOAP}}}Fault/faultcode")


def create_fields(merchant_no: str, order_id: str, notify_url: str = "http://127.0.0.1:9/n", **extra: str):
    fields = {
        "merchantId": merchant_no,
        "orderId": order_id,
        "amountMinor": "990",
        "currency": "CNY",
        "subject": "Gift card",
        "notifyUrl": notify_url,
    }
    return {**fields, **extra}


def test_a_correct_digest_creates_and_the_same_nonce_twice_is_a_replay(sim):
    acc = sim.account()
    user, pw = acc.credentials["username"], acc.credentials["password"]
    body = envelope("CreatePayment", create_fields(acc.merchant_no, "S-1"), user, pw)
    status, doc = post(sim.base_url, body)
    assert status == 200
    got = answer(doc)
    assert got["resultCode"] == "ACCEPTED" and got["cashierUrl"] == f"{sim.base_url}/cashier/{got['bankRef']}"
    status, doc = post(sim.base_url, body)
    assert (status, faultcode(doc)) == (500, "soap:Client.Replay")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_password", "soap:Client.Authentication"),
        ("unknown_user", "soap:Client.Authentication"),
        ("stale_created", "soap:Client.MessageExpired"),
        ("other_merchant", "soap:Client.Authentication"),
        ("schema", "soap:Client.Schema"),
    ],
)
def test_bad_requests_are_client_faults_and_record_nothing(sim, case, expected):
    acc = sim.account()
    user, pw = acc.credentials["username"], acc.credentials["password"]
    fields, created = create_fields(acc.merchant_no, "S-bad"), None
    if case == "wrong_password":
        pw = pw + "x"
    elif case == "unknown_user":
        user = "nobody"
    elif case == "stale_created":
        created = datetime.now(UTC) - timedelta(minutes=6)
    elif case == "other_merchant":
        fields["merchantId"] = "BG0000000001"
    elif case == "schema":
        del fields["amountMinor"]
    status, doc = post(sim.base_url, envelope("CreatePayment", fields, user, pw, created=created))
    assert (status, faultcode(doc)) == (500, expected)
    assert sim.trade_for("S-bad") is None


def test_a_request_without_ws_security_is_refused(sim):
    body = envelope("QueryPayment", {"merchantId": sim.account().merchant_no, "orderId": "S-x"}, "u", "p")
    doc = etree.fromstring(body)
    header = doc.find(f"{{{SOAP}}}Header")
    header.getparent().remove(header)
    status, answer_doc = post(sim.base_url, etree.tostring(doc))
    assert (status, faultcode(answer_doc)) == (500, "soap:Client.Authentication")


def test_fail_5xx_answers_a_server_fault_and_records_nothing(sim):
    acc = sim.account()
    sim.faults.fail_5xx = 1
    body = envelope(
        "CreatePayment",
        create_fields(acc.merchant_no, "S-5xx"),
        acc.credentials["username"],
        acc.credentials["password"],
    )
    status, doc = post(sim.base_url, body)
    assert (status, faultcode(doc)) == (500, "soap:Server")
    assert sim.trade_for("S-5xx") is None


def test_the_wsdl_is_served_with_this_servers_address(sim):
    resp = requests.get(f"{sim.base_url}/soap?wsdl", timeout=5)
    doc = etree.fromstring(resp.content)
    address = doc.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert resp.status_code == 200 and address.get("location") == f"{sim.base_url}/soap"


class Merchant:
    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                recorder.forms.append({k: v[-1] for k, v in parse_qs(body).items()})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"


def test_the_cashier_pays_notifies_signed_and_returns_the_buyer(sim):
    merchant = Merchant()
    try:
        acc = sim.account()
        fields = create_fields(acc.merchant_no, "S-cash", merchant.url, returnUrl="http://shop.test/r?x=1")
        _, doc = post(
            sim.base_url, envelope("CreatePayment", fields, acc.credentials["username"], acc.credentials["password"])
        )
        cashier = answer(doc)["cashierUrl"]
        page = requests.get(cashier, timeout=5)
        assert page.status_code == 200 and 'id="pay"' in page.text and "9.90" in page.text
        paid = requests.post(cashier + "/pay", allow_redirects=False, timeout=5)
        assert paid.status_code == 303 and paid.headers["Location"].startswith("http://shop.test/r?x=1&orderId=S-cash")
        assert sim.trade_for("S-cash")["status"] == "paid"
        [form] = merchant.forms
        signed = "&".join(f"{k}={v}" for k, v in sorted(form.items()) if k != "signature")
        key = acc.credentials["notify_key"].encode()
        assert form["signature"] == hmac.new(key, signed.encode(), hashlib.sha256).hexdigest()
        assert (form["orderId"], form["amountMinor"], form["status"]) == ("S-cash", "990", "PAID")
    finally:
        merchant.server.shutdown()
        merchant.server.server_close()


def test_cli_writes_the_account_file_and_loads_it_again(tmp_path):
    path = tmp_path / "bankgw.json"

    def run() -> tuple[subprocess.Popen, str]:
        cmd = [sys.executable, "-m", "payments.simulators.bankgw", "--port", "0", "--account-file", str(path)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return proc, proc.stdout.readline().strip()

    first, _ = run()
    try:
        written = json.loads(path.read_text())
    finally:
        first.terminate()
        first.wait(5)
    second, url = run()
    try:
        again = json.loads(path.read_text())
        assert again["credentials"] == written["credentials"] and again["merchant_no"] == written["merchant_no"]
        assert again["base_url"] == url and again["currency"] == "CNY"
        creds = written["credentials"]
        fields = {"merchantId": written["merchant_no"], "orderId": "S-cli"}
        status, doc = post(url, envelope("QueryPayment", fields, creds["username"], creds["password"]))
        assert (status, answer(doc)["resultCode"]) == (200, "NOT_FOUND")
    finally:
        second.terminate()
        second.wait(5)


@pytest.mark.parametrize(
    ("expires_at", "fault"),
    [
        ("2026-12-02T10:00:00", "soap:Client.Schema"),  # no time zone: which 10:00?
        ("2026-12-02 10:00:00Z", "soap:Client.Schema"),  # not an xs:dateTime
        ("2026-02-30T10:00:00Z", "soap:Client.Schema"),
    ],
)
def test_expires_at_must_be_a_zoned_datetime(sim, expires_at, fault):
    acc = sim.account()
    user, pw = acc.credentials["username"], acc.credentials["password"]
    body = envelope("CreatePayment", create_fields(acc.merchant_no, "S-exp", expiresAt=expires_at), user, pw)
    status, doc = post(sim.base_url, body)
    assert (status, faultcode(doc)) == (500, fault)
    assert sim.trade_for("S-exp") is None


def test_a_payment_past_its_expires_at_is_expired_and_cannot_be_paid(sim):
    acc = sim.account()
    user, pw = acc.credentials["username"], acc.credentials["password"]
    past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    status, doc = post(
        sim.base_url, envelope("CreatePayment", create_fields(acc.merchant_no, "S-late", expiresAt=past), user, pw)
    )
    assert status == 200 and answer(doc)["resultCode"] == "ACCEPTED"
    status, doc = post(
        sim.base_url, envelope("QueryPayment", {"merchantId": acc.merchant_no, "orderId": "S-late"}, user, pw)
    )
    assert answer(doc)["status"] == "EXPIRED"
    with pytest.raises(ValueError):
        sim.pay("S-late")
