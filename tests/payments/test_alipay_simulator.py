"""The Alipay simulator's own checks, against an independent RSA2 implementation: request verification,
signed answers and notifies, the page.pay browser flow, and the CLI account file."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from payments.simulators.alipay import AlipaySimulator
from payments.simulators.base import BAD_SIGNATURE, VALID, WRONG_MERCHANT


@pytest.fixture(scope="module")
def sim() -> Iterator[AlipaySimulator]:
    simulator = AlipaySimulator().start()
    simulator.account()
    yield simulator
    simulator.stop()


def _signed_request(credentials: dict[str, str], app_id: str, method: str, biz: dict, **extra: str) -> dict[str, str]:
    """RSA2 request signing as Alipay documents it: sorted non-empty params but sign, `k=v&...`, SHA256withRSA."""
    params = {
        "app_id": app_id,
        "method": method,
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "biz_content": json.dumps(biz, separators=(",", ":")),
        **extra,
    }
    key = serialization.load_pem_private_key(credentials["app_private_key"].encode(), password=None)
    message = "&".join(f"{k}={params[k]}" for k in sorted(params) if params[k] != "")
    params["sign"] = base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return params


def _verify(public_pem: str, message: str, signature: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    try:
        key.verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _call(sim: AlipaySimulator, params: dict[str, str]) -> tuple[str, dict]:
    text = requests.get(sim.base_url + "/gateway.do", params=params, timeout=5).text
    return text, json.loads(text)


def _precreate(sim: AlipaySimulator, no: str, amount: str = "12.34") -> dict[str, str]:
    account = sim.account()
    biz = {"out_trade_no": no, "total_amount": amount, "subject": "Gift"}
    return _signed_request(account.credentials, account.merchant_no, "alipay.trade.precreate", biz)


def test_a_correctly_signed_request_gets_an_answer_signed_over_its_exact_bytes(sim):
    text, answer = _call(sim, _precreate(sim, "S-ok"))
    inner = answer["alipay_trade_precreate_response"]
    assert (inner["code"], inner["out_trade_no"]) == ("10000", "S-ok")
    signed_part = text[text.index("{", 1) : text.rindex(',"sign"')]
    assert json.loads(signed_part) == inner
    assert _verify(sim.account().credentials["alipay_public_key"], signed_part, answer["sign"])
    assert sim.trade_for("S-ok")["amount_minor"] == 1234


def test_a_bad_signature_or_unknown_app_is_refused_unsigned(sim):
    params = _precreate(sim, "S-bad")
    _, tampered = _call(sim, {**params, "biz_content": params["biz_content"].replace("12.34", "0.01")})
    assert tampered["alipay_trade_precreate_response"]["code"] == "40002"
    assert tampered["alipay_trade_precreate_response"]["sub_code"] == "isv.invalid-signature"
    assert "sign" not in tampered
    _, stranger = _call(sim, {**params, "app_id": "2021999999999999"})
    assert stranger["alipay_trade_precreate_response"]["sub_code"] == "isv.invalid-app-id"
    _, unsigned = _call(sim, {k: v for k, v in params.items() if k != "sign"})
    assert unsigned["alipay_trade_precreate_response"]["code"] == "40001"
    assert sim.trade_for("S-bad") is None


def test_business_refusals_are_signed(sim):
    account = sim.account()
    params = _signed_request(account.credentials, account.merchant_no, "alipay.trade.query", {"out_trade_no": "none"})
    text, answer = _call(sim, params)
    inner = answer["alipay_trade_query_response"]
    assert (inner["code"], inner["sub_code"]) == ("40004", "ACQ.TRADE_NOT_EXIST")
    signed_part = text[text.index("{", 1) : text.rindex(',"sign"')]
    assert _verify(account.credentials["alipay_public_key"], signed_part, answer["sign"])


def test_notifies_are_signed_without_sign_and_sign_type(sim):
    _call(sim, _precreate(sim, "S-notify"))
    public_pem = sim.account().credentials["alipay_public_key"]
    for variant, verifies in ((VALID, True), (WRONG_MERCHANT, True), (BAD_SIGNATURE, False)):
        params = dict(parse_qsl(sim.notify_request("S-notify", variant=variant).body.decode()))
        message = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type"))
        assert _verify(public_pem, message, params["sign"]) is verifies
    assert params["trade_status"] == "TRADE_SUCCESS" and params["total_amount"] == "12.34"


def test_page_pay_opens_the_cashier_and_a_tampered_url_is_refused(sim):
    account = sim.account()
    biz = {
        "out_trade_no": "S-page",
        "total_amount": "5.00",
        "subject": "Gift",
        "product_code": "FAST_INSTANT_TRADE_PAY",
    }
    params = _signed_request(account.credentials, account.merchant_no, "alipay.trade.page.pay", biz)
    tampered = {**params, "biz_content": params["biz_content"].replace("5.00", "0.01")}
    refused = requests.get(sim.base_url + "/gateway.do?" + urlencode(tampered), allow_redirects=False, timeout=5)
    assert refused.status_code == 400 and sim.trade_for("S-page") is None
    browser = requests.get(sim.base_url + "/gateway.do?" + urlencode(params), allow_redirects=False, timeout=5)
    assert browser.status_code == 302
    cashier = requests.get(browser.headers["Location"], timeout=5)
    assert 'id="pay"' in cashier.text and "5.00" in cashier.text
    paid = requests.post(browser.headers["Location"] + "/pay", timeout=5)
    assert paid.status_code == 200 and sim.trade_for("S-page")["status"] == "paid"


def _serve(account_file: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "payments.simulators.alipay", "--port", "0", "--account-file", str(account_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return proc, proc.stdout.readline()


def test_cli_writes_the_account_file_and_serves_the_same_keys_after_a_restart(tmp_path):
    account_file = tmp_path / "alipay-account.json"
    proc, _ = _serve(account_file)
    proc.terminate()
    proc.wait(timeout=5)
    first = json.loads(account_file.read_text())
    assert set(first) == {"merchant_no", "base_url", "currency", "credentials"}
    assert set(first["credentials"]) == {"app_private_key", "alipay_public_key"}
    assert first["currency"] == "CNY" and "PRIVATE KEY-----" in first["credentials"]["app_private_key"]

    proc, banner = _serve(account_file)
    try:
        second = json.loads(account_file.read_text())
        assert (second["merchant_no"], second["credentials"]) == (first["merchant_no"], first["credentials"])
        assert second["base_url"] in banner
        params = _signed_request(
            second["credentials"], second["merchant_no"], "alipay.trade.query", {"out_trade_no": "none"}
        )
        text = requests.get(second["base_url"] + "/gateway.do", params=params, timeout=5).text
        answer = json.loads(text)
        assert answer["alipay_trade_query_response"]["sub_code"] == "ACQ.TRADE_NOT_EXIST"
        signed_part = text[text.index("{", 1) : text.rindex(',"sign"')]
        assert _verify(second["credentials"]["alipay_public_key"], signed_part, answer["sign"])
    finally:
        proc.terminate()
        proc.wait(timeout=5)
