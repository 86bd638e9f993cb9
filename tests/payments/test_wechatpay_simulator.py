"""The WeChat Pay v3 simulator's own protocol checks, driven by a reference signer written here (no SDK, no adapter)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

from payments.simulators import base as simbase
from payments.simulators.wechatpay import WechatPaySimulator, serve_account_file

ROOT = Path(__file__).resolve().parents[2]


class Client:
    """The merchant side of the v3 protocol, straight from the documentation."""

    def __init__(self, base_url: str, account: simbase.SimAccount) -> None:
        self.base_url, self.account, self.creds = base_url, account, account.credentials
        self.key = serialization.load_pem_private_key(self.creds["mch_private_key"].encode(), password=None)
        self.platform = serialization.load_pem_public_key(self.creds["platform_public_key"].encode())

    def authorization(self, method: str, target: str, body: bytes, *, ts: int | None = None, key=None) -> str:
        ts_text, nonce = str(ts or int(time.time())), secrets.token_hex(16)
        message = f"{method}\n{target}\n{ts_text}\n{nonce}\n".encode() + body + b"\n"
        signature = base64.b64encode((key or self.key).sign(message, PKCS1v15(), SHA256())).decode()
        return (
            f'WECHATPAY2-SHA256-RSA2048 mchid="{self.account.merchant_no}",nonce_str="{nonce}",'
            f'signature="{signature}",timestamp="{ts_text}",serial_no="{self.creds["mch_serial_no"]}"'
        )

    def call(self, method: str, target: str, payload: dict | None = None, **auth) -> requests.Response:
        body = json.dumps(payload).encode() if payload is not None else b""
        headers = {
            "Content-Type": "application/json",
            "Authorization": self.authorization(method, target, body, **auth),
        }
        return requests.request(method, self.base_url + target, data=body or None, headers=headers, timeout=5)

    def verified(self, resp: requests.Response) -> bool:
        h = resp.headers
        message = f"{h['Wechatpay-Timestamp']}\n{h['Wechatpay-Nonce']}\n".encode() + resp.content + b"\n"
        try:
            self.platform.verify(base64.b64decode(h["Wechatpay-Signature"]), message, PKCS1v15(), SHA256())
        except Exception:
            return False
        return h["Wechatpay-Serial"] == self.creds["platform_public_key_id"]

    def create_body(self, out_trade_no: str, notify_url: str, total: int = 990) -> dict:
        return {
            "appid": self.creds["appid"],
            "mchid": self.account.merchant_no,
            "description": "Gift card",
            "out_trade_no": out_trade_no,
            "notify_url": notify_url,
            "amount": {"total": total, "currency": "CNY"},
        }


class Receiver:
    def __init__(self) -> None:
        self.calls: list[tuple[dict, bytes]] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                calls.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/wechatpay/"


@pytest.fixture(scope="module")
def sim() -> Iterator[WechatPaySimulator]:
    s = WechatPaySimulator().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(sim) -> Client:
    return Client(sim.base_url, sim.account())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _no() -> str:
    return "S" + secrets.token_hex(8)


def _decrypt(creds: dict, body: bytes) -> dict:
    resource = json.loads(body)["resource"]
    plain = AESGCM(creds["apiv3_key"].encode()).decrypt(
        resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]), resource["associated_data"].encode()
    )
    return json.loads(plain)


def test_a_signed_create_is_answered_with_a_signed_code_url(sim, client):
    no = _no()
    resp = client.call("POST", "/v3/pay/transactions/native", client.create_body(no, "http://127.0.0.1:9/n"))
    assert resp.status_code == 200 and client.verified(resp)
    assert resp.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["code_url"].startswith(sim.base_url + "/scan/")
    query = client.call("GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={client.account.merchant_no}")
    assert client.verified(query) and query.json()["trade_state"] == "NOTPAY"
    assert "transaction_id" not in query.json()


@pytest.mark.parametrize("fault", ["bad_signature", "other_key", "stale", "no_auth", "wrong_serial"])
def test_requests_that_fail_authentication_are_refused(sim, client, fault):
    no = _no()
    body = client.create_body(no, "http://127.0.0.1:9/n")
    raw = json.dumps(body).encode()
    target = "/v3/pay/transactions/native"
    auth = client.authorization("POST", target, raw)
    if fault == "bad_signature":
        auth = client.authorization("POST", target, raw + b" ")
    elif fault == "other_key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        auth = client.authorization("POST", target, raw, key=other)
    elif fault == "stale":
        auth = client.authorization("POST", target, raw, ts=int(time.time()) - 600)
    elif fault == "no_auth":
        auth = ""
    elif fault == "wrong_serial":
        auth = auth.replace(client.creds["mch_serial_no"], "0" * 40)
    resp = requests.post(sim.base_url + target, data=raw, headers={"Authorization": auth}, timeout=5)
    assert resp.status_code == 401 and resp.json()["code"] == "SIGN_ERROR"
    assert client.verified(resp)  # errors are signed too
    assert sim.trade_for(no) is None


def test_body_must_name_the_signing_merchant_and_its_appid(sim, client):
    no = _no()
    for change in ({"mchid": "1900000000"}, {"appid": "wx0000000000000000"}, {"notify_url": "http://x/n?a=1"}):
        resp = client.call("POST", "/v3/pay/transactions/native", {**client.create_body(no, "http://x/n"), **change})
        assert resp.status_code == 400 and resp.json()["code"] == "PARAM_ERROR"
    assert sim.trade_for(no) is None


def test_close_answers_a_signed_204(sim, client):
    no = _no()
    client.call("POST", "/v3/pay/transactions/native", client.create_body(no, "http://127.0.0.1:9/n"))
    target = f"/v3/pay/transactions/out-trade-no/{no}/close"
    resp = client.call("POST", target, {"mchid": client.account.merchant_no})
    assert resp.status_code == 204 and resp.content == b"" and client.verified(resp)
    assert sim.trade_for(no)["status"] == "closed"


def test_scan_page_pays_and_sends_an_encrypted_signed_callback(sim, client, receiver):
    no = _no()
    code_url = client.call("POST", "/v3/pay/transactions/native", client.create_body(no, receiver.url)).json()[
        "code_url"
    ]
    page = requests.get(code_url, timeout=5)
    assert page.status_code == 200 and 'id="pay"' in page.text and no in page.text
    paid = requests.post(code_url + "/pay", timeout=5)
    assert paid.status_code == 200 and "Paid" in paid.text
    assert sim.trade_for(no)["status"] == "paid"
    ((headers, body),) = receiver.calls
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
    client.platform.verify(base64.b64decode(headers["Wechatpay-Signature"]), message, PKCS1v15(), SHA256())
    assert headers["Wechatpay-Serial"] == client.creds["platform_public_key_id"]
    envelope = json.loads(body)
    assert envelope["event_type"] == "TRANSACTION.SUCCESS" and envelope["resource_type"] == "encrypt-resource"
    resource = _decrypt(client.creds, body)
    assert resource["out_trade_no"] == no and resource["trade_state"] == "SUCCESS"
    assert resource["amount"] == {"total": 990, "payer_total": 990, "currency": "CNY", "payer_currency": "CNY"}
    assert (resource["mchid"], resource["appid"]) == (client.account.merchant_no, client.creds["appid"])
    assert sim.trade_for(no)["notify_attempts"][-1]["acknowledged"] is True


def test_forged_variants_are_forged_as_named(sim, client):
    no = _no()
    client.call("POST", "/v3/pay/transactions/native", client.create_body(no, "http://127.0.0.1:9/n"))
    stale = sim.notify_request(no, variant=simbase.STALE_TIMESTAMP)
    assert int(time.time()) - int(stale.headers["Wechatpay-Timestamp"]) >= 600
    with pytest.raises(InvalidTag):
        _decrypt(client.creds, sim.notify_request(no, variant=simbase.TAMPERED_CIPHERTEXT).body)
    merchant = _decrypt(client.creds, sim.notify_request(no, variant=simbase.WRONG_MERCHANT).body)["mchid"]
    assert merchant != client.account.merchant_no
    closed = sim.notify_request(no, variant=simbase.CLOSED)
    assert _decrypt(client.creds, closed.body)["trade_state"] == "CLOSED"


def test_refunds_are_idempotent_on_out_refund_no_and_bounded(sim, client):
    no = _no()
    client.call("POST", "/v3/pay/transactions/native", client.create_body(no, "http://127.0.0.1:9/n"))
    sim.pay(no)
    body = {"out_trade_no": no, "out_refund_no": "R" + no, "amount": {"refund": 500, "total": 990, "currency": "CNY"}}
    first = client.call("POST", "/v3/refund/domestic/refunds", body)
    again = client.call("POST", "/v3/refund/domestic/refunds", body)
    assert first.status_code == again.status_code == 200 and client.verified(first)
    assert first.json()["refund_id"] == again.json()["refund_id"]
    too_much = {**body, "out_refund_no": "R2" + no}
    assert client.call("POST", "/v3/refund/domestic/refunds", too_much).status_code == 400
    assert len(sim.trade_for(no)["refunds"]) == 1 and sim.trade_for(no)["status"] == "paid"
    missing = client.call("GET", "/v3/refund/domestic/refunds/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "RESOURCE_NOT_EXISTS"


def test_account_file_round_trip(tmp_path):
    path = tmp_path / "wechatpay.json"
    first = serve_account_file(path)
    try:
        written = json.loads(path.read_text())
        assert set(written) == {"merchant_no", "base_url", "currency", "credentials"}
        assert written["base_url"] == first.base_url and written["currency"] == "CNY"
    finally:
        first.stop()
    second = serve_account_file(path)
    try:
        again = json.loads(path.read_text())
        assert again["credentials"] == written["credentials"] and again["merchant_no"] == written["merchant_no"]
        client = Client(second.base_url, simbase.SimAccount(**again))
        resp = client.call("POST", "/v3/pay/transactions/native", client.create_body(_no(), "http://127.0.0.1:9/n"))
        assert resp.status_code == 200 and client.verified(resp)  # same merchant keys, same provider key
    finally:
        second.stop()


def test_cli_writes_the_account_file_and_serves(tmp_path):
    path = tmp_path / "acct.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "payments.simulators.wechatpay", "--port", "0", "--account-file", str(path)]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        account = json.loads(path.read_text())
        assert account["base_url"] == base_url and account["credentials"]["apiv3_key"]
        assert requests.get(base_url + "/scan/unknown", timeout=5).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=5)
