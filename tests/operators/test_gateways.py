"""Point 11: no credential goes to a host an operator typed, and no buyer is sent to a host the provider's
answer names unless it is the account's own gateway."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from cardshop.services.checkout import order_payment_start
from core.errors import DomainError
from core.models import AuditEvent
from payments import gateways
from payments.models import ChannelAccount, Payment, PaymentStatus
from payments.services import accounts, channel_choice
from tests.cardshop.helpers import buy
from tests.factories.payments import EpayAccountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_loopback(settings):
    """Production rules: DEBUG off and no loopback allowance."""
    settings.DEBUG = False
    settings.CARDSHOP_ALLOW_LOOPBACK_GATEWAYS = False
    return settings


@pytest.mark.parametrize(
    ("code", "url"),
    [
        ("alipay", "https://openapi.alipay.com"),
        ("alipay", "https://openapi-sandbox.dl.alipaydev.com/"),
        ("wechatpay", "https://api.mch.weixin.qq.com"),
        ("wechatpay", "https://api2.mch.weixin.qq.com"),
        ("stripe", "https://api.stripe.com"),
    ],
)
def test_official_gateways_are_accepted(no_loopback, code, url):
    gateways.base_url_check(code=code, base_url=url)


@pytest.mark.parametrize(
    ("code", "url"),
    [
        ("alipay", "http://openapi.alipay.com"),  # credentials in clear
        ("alipay", "https://openapi.alipay.com.evil.example"),
        ("alipay", "https://openapi.alipay.com@evil.example"),
        ("alipay", "https://api.stripe.com"),  # another provider's host
        ("stripe", "https://evil.example"),
        ("epay", "https://pay.example.com"),  # not listed by the deployer
        ("bankgw", "https://gw.bank.example"),
        ("stripe", "http://127.0.0.1:8004"),  # a simulator, with loopback not allowed
        ("epay", "http://localhost:8001"),
        ("epay", "http://[::1]:8001"),
        ("stripe", "not a url"),
    ],
)
def test_other_gateways_are_refused(no_loopback, code, url):
    with pytest.raises(ValidationError) as exc:
        gateways.base_url_check(code=code, base_url=url)
    assert "base_url" in exc.value.message_dict


def test_deployer_lists_hosts_for_channels_without_an_official_one(no_loopback):
    no_loopback.CARDSHOP_GATEWAY_HOSTS = {"epay": ["pay.example.com"], "bankgw": ["gw.bank.example"]}
    gateways.base_url_check(code="epay", base_url="https://pay.example.com")
    gateways.base_url_check(code="bankgw", base_url="https://gw.bank.example/soap")
    with pytest.raises(ValidationError):
        gateways.base_url_check(code="epay", base_url="https://gw.bank.example")


def test_loopback_simulators_with_debug_or_the_explicit_setting(no_loopback):
    no_loopback.DEBUG = True
    gateways.base_url_check(code="stripe", base_url="http://127.0.0.1:8004")
    no_loopback.DEBUG = False
    no_loopback.CARDSHOP_ALLOW_LOOPBACK_GATEWAYS = True
    gateways.base_url_check(code="epay", base_url="http://localhost:8001")
    with pytest.raises(ValidationError):  # the allowance is for loopback only
        gateways.base_url_check(code="epay", base_url="https://evil.example")


# ---- the admin form and the services ---------------------------------------------------------------------


def _form(account: ChannelAccount, **changes) -> dict:
    data = {
        "code": account.code,
        "name": account.name,
        "merchant_no": account.merchant_no,
        "base_url": account.base_url,
        "currency": account.currency,
        "credentials": "",
        "enabled": "on",
        "priority": account.priority,
        "fee_rate_bp": account.fee_rate_bp,
        "fee_fixed_minor": account.fee_fixed_minor,
    }
    data.update(changes)
    return data


def test_admin_refuses_a_typed_host_when_loopback_is_off(granted, no_loopback):
    client = granted("payments.edit_channel_account")
    account = EpayAccountFactory(base_url="http://127.0.0.1:8001")
    key = account.credentials_dict()["key"]
    resp = client.post(
        f"/admin/payments/channelaccount/{account.pk}/change/",
        _form(account, base_url="https://evil.example", credentials=json.dumps({"key": key})),
    )
    assert resp.status_code == 200
    assert "has no official gateway host" in resp.content.decode()
    add = client.post(
        "/admin/payments/channelaccount/add/",
        _form(account, name="new", base_url="https://api.stripe.com", credentials=json.dumps({"key": key})),
    )
    assert add.status_code == 200 and ChannelAccount.objects.count() == 1
    account.refresh_from_db()
    assert account.base_url == "http://127.0.0.1:8001"
    assert AuditEvent.objects.count() == 0


def test_changing_the_gateway_requires_the_credentials_again_and_is_audited(granted, no_loopback):
    no_loopback.CARDSHOP_GATEWAY_HOSTS = {"epay": ["pay.example.com", "pay2.example.com"]}
    client = granted("payments.edit_channel_account")
    account = EpayAccountFactory(base_url="https://pay.example.com")
    url = f"/admin/payments/channelaccount/{account.pk}/change/"
    resp = client.post(url, _form(account, base_url="https://pay2.example.com"))
    assert resp.status_code == 200
    assert "requires entering the credentials again" in resp.content.decode()
    account.refresh_from_db()
    assert account.base_url == "https://pay.example.com" and AuditEvent.objects.count() == 0

    resp = client.post(url, _form(account, base_url="https://pay2.example.com", credentials='{"key": "NEW-KEY-1234"}'))
    assert resp.status_code == 302
    account.refresh_from_db()
    assert account.base_url == "https://pay2.example.com" and account.credentials_dict() == {"key": "NEW-KEY-1234"}
    event = AuditEvent.objects.get()
    assert event.action == "channel_account.edit" and event.actor == "op-edit_channel_account"
    assert event.detail["previous_base_url"] == "https://pay.example.com"
    assert event.detail["base_url"] == "https://pay2.example.com"
    assert "NEW-KEY" not in json.dumps(event.detail)


def test_account_services_enforce_the_same_rules(no_loopback):
    with pytest.raises(ValidationError):
        accounts.channel_account_configure(
            code="stripe",
            name="s",
            merchant_no="m",
            base_url="https://evil.example",
            currency="USD",
            credentials={"secret_key": "sk"},
        )
    with pytest.raises(ValidationError):
        accounts.channel_account_ensure(
            code="epay", name="e", merchant_no="m", base_url="http://127.0.0.1:8001", currency="CNY", credentials={}
        )
    assert ChannelAccount.objects.count() == 0
    no_loopback.CARDSHOP_GATEWAY_HOSTS = {"epay": ["pay.example.com", "pay2.example.com"]}
    account = EpayAccountFactory(base_url="https://pay.example.com")
    account.base_url = "https://pay2.example.com"
    with pytest.raises(ValidationError) as exc:  # moved without new credentials
        accounts.channel_account_save(account=account, changed=["base_url"], actor="op")
    assert "credentials" in exc.value.message_dict
    assert ChannelAccount.objects.get().base_url == "https://pay.example.com"
    assert AuditEvent.objects.count() == 0


# ---- links a provider gives buyers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "base_url", "link", "ok"),
    [
        ("epay", "http://127.0.0.1:8001", "http://127.0.0.1:8001/cashier/1", True),
        ("epay", "http://127.0.0.1:8001", "https://evil.example/cashier/1", False),
        ("epay", "http://127.0.0.1:8001", "javascript:alert(1)", False),
        ("epay", "http://127.0.0.1:8001", "/relative", False),
        ("wechatpay", "http://127.0.0.1:8003", "weixin://wxpay/bizpayurl?pr=abc", True),
        ("alipay", "https://openapi.alipay.com", "https://openapi.alipay.com/gateway.do?x=1", True),
        ("alipay", "https://openapi.alipay.com", "https://qr.alipay.com/bax01", True),
        ("alipay", "https://openapi.alipay.com", "https://qr.alipay.com.evil.example/bax01", False),
        ("stripe", "https://api.stripe.com", "https://checkout.stripe.com/c/pay/cs_1", True),
        ("stripe", "https://api.stripe.com", "ftp://checkout.stripe.com/c", False),
        ("alipay", "http://127.0.0.1:8002", "https://qr.alipay.com/bax01", False),  # a simulator's links stay home
        ("epay", "http://127.0.0.1:8001", "", True),
    ],
)
def test_provider_links_must_stay_on_the_accounts_gateway(code, base_url, link, ok):
    assert gateways.provider_link_ok(code=code, base_url=base_url, link=link) is ok


class _Gateway(BaseHTTPRequestHandler):
    """An epay gateway whose create answer names a cashier link (as a compromised or spoofed gateway would)."""

    payurl = ""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"code": 1, "trade_no": "T1", "payurl": self.payurl.format(host=self.headers["Host"])})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("G", (_Gateway,), {}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.mark.parametrize(
    ("payurl", "shown"), [("http://{host}/cashier/T1", True), ("https://evil.example/cashier/T1", False)]
)
def test_a_foreign_cashier_link_is_never_stored_for_the_buyer(gateway, product, settings, payurl, shown):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    gateway.RequestHandlerClass.payurl = payurl
    ChannelAccount.objects.update(enabled=False)  # only the hostile gateway takes the payment
    EpayAccountFactory(base_url=f"http://127.0.0.1:{gateway.server_port}")
    channel_choice.cache_clear()
    order = buy(product)
    if shown:
        view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
        assert view.pay_url == f"http://127.0.0.1:{gateway.server_port}/cashier/T1"
        assert Payment.objects.get().status == PaymentStatus.PENDING
    else:
        with pytest.raises(DomainError):
            order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
        payment = Payment.objects.get()
        assert (payment.status, payment.error_code, payment.pay_url) == (PaymentStatus.FAILED, "foreign_link", "")
