"""The epay adapter against the simulator over real HTTP: create, query, notify verification."""

import pytest
import requests

from core.money import Money
from payments.channels.base import AccountConfig, CreateOrder, Inbound, NotificationInvalid, ObservedStatus, Retryable
from payments.channels.epay import signing
from payments.channels.epay.adapter import EpayAdapter


@pytest.fixture
def adapter(epay_sim):
    epay_sim.add_merchant("7001", "k" * 32)
    cfg = _config("7001", epay_sim.base_url, {"key": "k" * 32})
    return EpayAdapter(cfg)


def _config(merchant_no: str, base_url: str, credentials: dict[str, str]) -> AccountConfig:
    return AccountConfig(
        account_id=1, code="epay", merchant_no=merchant_no, base_url=base_url, currency="CNY", credentials=credentials
    )


def _order(no="T1", minor=990):
    return CreateOrder(
        out_trade_no=no,
        amount=Money(minor, "CNY"),
        subject="Gift",
        notify_url="http://127.0.0.1:9/notify/epay/",
        return_url="",
        client_ip="127.0.0.1",
        method="alipay",
    )


def test_signature_matches_the_documented_recipe():
    params = {"pid": "1001", "money": "9.99", "name": "", "out_trade_no": "A1", "sign_type": "MD5"}
    import hashlib

    assert signing.sign(params, "KEY") == hashlib.md5(b"money=9.99&out_trade_no=A1&pid=1001KEY").hexdigest()


def test_create_then_query_pending_then_paid(adapter, epay_sim):
    created = adapter.create(_order("T-create"))
    assert created.pay_url.startswith(epay_sim.base_url + "/cashier/")
    assert epay_sim.trade_for("T-create")["money"] == "9.90"
    assert adapter.query("T-create").status == ObservedStatus.PENDING
    trade = epay_sim.trade_for("T-create")
    with pytest.raises(requests.ConnectionError):  # nobody listens on port 9: the notify fails, the trade is still paid
        epay_sim.pay_trade(trade["trade_no"])
    obs = adapter.query("T-create")
    assert obs.status == ObservedStatus.SUCCEEDED
    assert obs.amount == Money(990, "CNY")
    assert obs.provider_trade_no == trade["trade_no"]


def test_query_of_unknown_trade_is_none(adapter):
    assert adapter.query("never-created") is None


def test_unreachable_provider_is_retryable():
    cfg = _config("1", "http://127.0.0.1:9", {"key": "x"})
    with pytest.raises(Retryable):
        EpayAdapter(cfg).create(_order("T-down"))


def test_verify_accepts_the_simulator_notify_and_refuses_a_tampered_one(adapter, epay_sim):
    adapter.create(_order("T-verify"))
    params = epay_sim.notify_params(epay_sim.trade_for("T-verify")["trade_no"])
    obs = adapter.verify_notification(Inbound(params))
    assert (obs.out_trade_no, obs.amount, obs.status) == ("T-verify", Money(990, "CNY"), ObservedStatus.SUCCEEDED)
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_notification(Inbound({**params, "money": "0.01"}))
    assert exc.value.code == "bad_signature"


def test_empty_key_refuses_every_notify(epay_sim):
    cfg = _config("7001", epay_sim.base_url, {"key": ""})
    forged = {
        "pid": "7001",
        "trade_no": "1",
        "out_trade_no": "X",
        "type": "alipay",
        "money": "1.00",
        "trade_status": "TRADE_SUCCESS",
    }
    forged["sign"] = __import__("hashlib").md5(signing.signing_string(forged).encode()).hexdigest()  # md5(data + "")
    with pytest.raises(NotificationInvalid) as exc:
        EpayAdapter(cfg).verify_notification(Inbound(forged))
    assert exc.value.code == "no_credentials"


def test_submit_mode_sends_the_browser_to_a_signed_submit_php(epay_sim):
    epay_sim.add_merchant("7002", "s" * 32)
    cfg = _config("7002", epay_sim.base_url, {"key": "s" * 32, "create_mode": "submit"})
    created = EpayAdapter(cfg).create(_order("T-submit", 1234))
    assert created.pay_url.startswith(epay_sim.base_url + "/submit.php?")
    assert epay_sim.trade(out_trade_no="T-submit") is None  # nothing created until the browser arrives
    browser = requests.get(created.pay_url, allow_redirects=False)
    assert browser.status_code == 302 and "/cashier/" in browser.headers["Location"]
    assert epay_sim.trade_for("T-submit")["money"] == "12.34"
    tampered = created.pay_url.replace("money=12.34", "money=0.01")
    assert requests.get(tampered, allow_redirects=False).status_code == 400
