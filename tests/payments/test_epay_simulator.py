"""End-to-end checks of the epay provider simulator over real loopback HTTP."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from payments.simulators.epay import EpaySimulator

PID, KEY = "1001", "k3y-For-Tests"


def md5_sign(params: dict[str, str], key: str) -> str:
    """Independent reference implementation of the epay signature."""
    items = sorted((k, v) for k, v in params.items() if k not in ("sign", "sign_type") and v != "")
    return hashlib.md5(("&".join(f"{k}={v}" for k, v in items) + key).encode()).hexdigest()


class Merchant:
    """Tiny notify endpoint that records every request and answers ``success``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                params = {k: v[-1] for k, v in parse_qs(url.query or body, keep_blank_values=True).items()}
                recorder.requests.append({"method": self.command, "path": url.path, "params": params})
                data = b"success"
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def merchant() -> Iterator[Merchant]:
    m = Merchant()
    yield m
    m.close()


@pytest.fixture
def sim() -> Iterator[EpaySimulator]:
    s = EpaySimulator({PID: KEY}).start()
    yield s
    s.stop()


def order(merchant: Merchant, out_trade_no: str = "ORD-1", **extra: str) -> dict[str, str]:
    params = {
        "pid": PID,
        "type": "alipay",
        "out_trade_no": out_trade_no,
        "notify_url": merchant.url,
        "return_url": "",
        "name": "测试商品 VIP",
        "money": "9.90",
        "clientip": "127.0.0.1",
        "device": "pc",
        "param": "u=42&x=1",
        **extra,
    }
    params["sign"] = md5_sign(params, KEY)
    params["sign_type"] = "MD5"
    return params


def create(sim: EpaySimulator, params: dict[str, str]) -> dict:
    resp = requests.post(f"{sim.base_url}/mapi.php", data=params, timeout=5)
    assert resp.status_code == 200
    return resp.json()


def test_mapi_creates_trade_with_payurl(sim: EpaySimulator, merchant: Merchant) -> None:
    body = create(sim, order(merchant))
    assert body["code"] == 1 and body["msg"] == "success"
    assert body["payurl"] == f"{sim.base_url}/cashier/{body['trade_no']}" == body["qrcode"]
    trade = sim.trade_for("ORD-1")
    assert trade["trade_no"] == body["trade_no"] and trade["status"] == 0 and trade["money"] == "9.90"


def test_mapi_rejects_bad_sign_and_bad_money(sim: EpaySimulator, merchant: Merchant) -> None:
    params = order(merchant)
    params["sign"] = "0" * 32
    assert create(sim, params)["code"] == -1
    assert create(sim, order(merchant, money="0"))["code"] == -1
    assert create(sim, order(merchant, money="1.999"))["code"] == -1
    assert sim.trade(out_trade_no="ORD-1") is None


def test_mapi_is_idempotent_per_out_trade_no(sim: EpaySimulator, merchant: Merchant) -> None:
    first = create(sim, order(merchant))
    assert create(sim, order(merchant))["trade_no"] == first["trade_no"]
    conflict = create(sim, order(merchant, money="1.00"))
    assert conflict["code"] == -1


def test_cashier_page_renders_pay_button(sim: EpaySimulator, merchant: Merchant) -> None:
    trade_no = create(sim, order(merchant))["trade_no"]
    page = requests.get(f"{sim.base_url}/cashier/{trade_no}", timeout=5)
    assert page.status_code == 200
    assert "<title>Epay cashier</title>" in page.text and "ORD-1" in page.text
    assert f'action="/cashier/{trade_no}/pay"' in page.text
    assert '<button id="pay" type="submit">Pay ¥9.90</button>' in page.text


def test_pay_sends_signed_notify(sim: EpaySimulator, merchant: Merchant) -> None:
    trade_no = create(sim, order(merchant))["trade_no"]
    resp = requests.post(f"{sim.base_url}/cashier/{trade_no}/pay", timeout=5)
    assert resp.status_code == 200 and "Paid" in resp.text and "success" in resp.text

    (notify,) = merchant.requests
    params = notify["params"]
    assert notify["method"] == "GET" and notify["path"] == "/notify"
    assert params["sign"] == md5_sign(params, KEY) and params["sign_type"] == "MD5"
    assert params["trade_status"] == "TRADE_SUCCESS"
    assert params["money"] == "9.90" and params["param"] == "u=42&x=1"
    assert params["trade_no"] == trade_no and params["out_trade_no"] == "ORD-1"

    trade = sim.trade(trade_no=trade_no)
    assert trade["status"] == 1 and trade["endtime"]
    (attempt,) = trade["notify_attempts"]
    assert attempt["status_code"] == 200 and attempt["response_text"] == "success" and attempt["acknowledged"]


def test_pay_redirects_to_signed_return_url(sim: EpaySimulator, merchant: Merchant) -> None:
    params = order(merchant, return_url="http://shop.example/return?from=epay")
    trade_no = create(sim, params)["trade_no"]
    resp = requests.post(f"{sim.base_url}/cashier/{trade_no}/pay", allow_redirects=False, timeout=5)
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert location.netloc == "shop.example" and location.path == "/return"
    back = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert back.pop("from") == "epay"
    assert back["sign"] == md5_sign(back, KEY) and back["trade_status"] == "TRADE_SUCCESS"


def test_api_query_status_and_key_check(sim: EpaySimulator, merchant: Merchant) -> None:
    trade_no = create(sim, order(merchant))["trade_no"]
    url = f"{sim.base_url}/api.php"
    query = {"act": "order", "pid": PID, "key": KEY, "out_trade_no": "ORD-1"}
    assert requests.get(url, params=query, timeout=5).json()["status"] == 0

    sim.pay_trade(trade_no)
    body = requests.get(url, params=query, timeout=5).json()
    assert body["code"] == 1 and body["status"] == 1 and body["money"] == "9.90"
    assert body["trade_no"] == trade_no and body["endtime"] and body["buyer"] == ""

    by_trade_no = requests.get(url, params={**query, "out_trade_no": "", "trade_no": trade_no}, timeout=5).json()
    assert by_trade_no["out_trade_no"] == "ORD-1"
    wrong = requests.get(url, params={**query, "key": "nope"}, timeout=5).json()
    assert wrong == {"code": -1, "msg": "KEY校验失败"}
    missing = requests.get(url, params={**query, "out_trade_no": "NOPE"}, timeout=5).json()
    assert missing == {"code": -1, "msg": "订单号不存在"}


def test_submit_redirects_to_cashier(sim: EpaySimulator, merchant: Merchant) -> None:
    resp = requests.get(
        f"{sim.base_url}/submit.php",
        params=order(merchant),
        allow_redirects=False,
        timeout=5,
    )
    assert resp.status_code == 302
    trade_no = sim.trade_for("ORD-1")["trade_no"]
    assert resp.headers["Location"] == f"{sim.base_url}/cashier/{trade_no}"
    posted = requests.post(
        f"{sim.base_url}/submit.php",
        data=order(merchant),
        allow_redirects=False,
        timeout=5,
    )
    assert posted.headers["Location"] == resp.headers["Location"]


def test_notify_params_overrides_stay_signed(sim: EpaySimulator, merchant: Merchant) -> None:
    trade_no = create(sim, order(merchant))["trade_no"]
    forged = sim.notify_params(trade_no, money="0.01")
    assert forged["money"] == "0.01" and forged["sign"] == md5_sign(forged, KEY)
    resp = sim.send_notify(trade_no, forged)
    assert resp.text == "success" and merchant.requests[-1]["params"]["money"] == "0.01"
    tampered = {**sim.notify_params(trade_no), "money": "0.01"}
    assert tampered["sign"] != md5_sign(tampered, KEY)


def test_post_notify_method(merchant: Merchant) -> None:
    sim = EpaySimulator({PID: KEY}, notify_method="POST").start()
    try:
        trade_no = create(sim, order(merchant))["trade_no"]
        assert sim.pay_trade(trade_no).text == "success"
    finally:
        sim.stop()
    (notify,) = merchant.requests
    assert notify["method"] == "POST" and notify["params"]["sign"] == md5_sign(notify["params"], KEY)


def test_merchants_file_is_reread_for_unknown_pid(tmp_path, merchant: Merchant) -> None:
    path = tmp_path / "merchants.json"
    path.write_text(json.dumps({}))
    sim = EpaySimulator(merchants_file=path).start()
    try:
        assert create(sim, order(merchant))["code"] == -1
        path.write_text(json.dumps({PID: KEY}))
        assert create(sim, order(merchant))["code"] == 1
    finally:
        sim.stop()
