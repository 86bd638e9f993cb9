"""易支付 (epay) adapter: mapi.php create, api.php?act=order query, MD5-signed notify by GET or POST, the
daily statement read off api.php?act=orders (see `statement.py` for what that relies on), and the balance read off
api.php?act=query (彩虹易支付's merchant query: pid, key, active, money = the balance, type, account, username,
orders, order_today, order_lastday). api.php answers are not signed (the key in the request is the proof): the
answer must name our pid and write money as an exact amount, else it is Unknown."""

from __future__ import annotations

from datetime import date
from typing import ClassVar
from urllib.parse import urlencode

import requests

from core.crypto import constant_time_equals
from core.money import Money, MoneyError
from payments.channels.base import (
    AccountConfig,
    Ack,
    Capability,
    ChannelBalance,
    Created,
    CreateOrder,
    Inbound,
    NotificationInvalid,
    Observation,
    RefundObservation,
    RefundRequest,
    Retryable,
    Statement,
    Terminal,
    Unknown,
)
from payments.channels.epay import signing, wire
from payments.channels.epay import statement as order_list

_session = requests.Session()


class EpayAdapter:
    code: ClassVar[str] = "epay"
    # The buyer-facing payment methods this channel can take (routing matches the buyer's choice).
    methods: ClassVar[frozenset[str]] = frozenset({"alipay", "wxpay", "qqpay"})
    # Panels notify by GET (the protocol's default); some forks and settings POST the same form.
    notify_methods: ClassVar[frozenset[str]] = frozenset({"GET", "POST"})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.QUERY, Capability.REFUND, Capability.STATEMENT, Capability.BALANCE}
    )

    def __init__(self, account: AccountConfig) -> None:
        self.account = account
        self._key = account.credentials.get("key", "")
        self._sep = account.credentials.get("key_separator", "")

    @staticmethod
    def notification_reference(inbound: Inbound) -> str:
        return inbound.params.get("out_trade_no", "")

    @staticmethod
    def ack(ok: bool) -> Ack:
        # The panel stops retrying only on this exact body.
        return Ack(200, "success") if ok else Ack(400, "fail")

    def _url(self, path: str) -> str:
        return self.account.base_url.rstrip("/") + "/" + path

    def _signed(self, params: dict[str, str]) -> dict[str, str]:
        if not self._key:
            raise Terminal("epay account has no key", code="no_credentials")
        params = {k: v for k, v in params.items() if v != ""}
        params["sign"] = signing.sign(params, self._key, key_separator=self._sep)
        params["sign_type"] = "MD5"
        return params

    def create(self, order: CreateOrder) -> Created:
        """mapi.php (server-to-server, returns the cashier URL) by default; accounts whose panel lacks
        mapi set credentials `create_mode=submit` and the buyer's browser is sent to a signed submit.php.

        `order.expires_at` is not sent: the epay protocol has no standard expiry field (a few forks take one
        under different names, and an unknown parameter would break the MD5 signature on the others) and no
        close API. A payment made after our deadline is still honoured, by the late-payment path."""
        if order.amount.currency != wire.SUPPORTED_CURRENCY:
            raise Terminal(f"epay takes {wire.SUPPORTED_CURRENCY} only", code="currency")
        params = self._create_params(order)
        if self.account.credentials.get("create_mode") == "submit":
            url = self._url("submit.php") + "?" + urlencode(params)
            return Created(provider_trade_no="", pay_url=url, qr_content=url)
        data = self._post_json("mapi.php", params)
        if str(data.get("code")) != "1":
            raise Terminal(f"epay refused create: {data.get('msg', '')}"[:200], code="refused")
        pay_url = data.get("payurl") or data.get("qrcode") or ""
        if not pay_url:
            raise Unknown("epay create answered without a pay url", code="bad_response")
        return Created(
            provider_trade_no=str(data.get("trade_no", "")), pay_url=pay_url, qr_content=data.get("qrcode") or pay_url
        )

    def _create_params(self, order: CreateOrder) -> dict[str, str]:
        return self._signed(
            {
                "pid": self.account.merchant_no,
                "type": order.method if order.method in wire.PAY_TYPES else "alipay",
                "out_trade_no": order.out_trade_no,
                "notify_url": order.notify_url,
                "return_url": order.return_url,
                "name": order.subject[:120],
                "money": order.amount.to_decimal_str(),
                "clientip": order.client_ip,
                "device": "pc",
            }
        )

    def _post_json(self, path: str, params: dict[str, str]) -> dict:
        try:
            resp = _session.post(self._url(path), data=params, timeout=self.account.timeouts)
        except requests.ConnectionError as exc:
            raise Retryable(f"epay unreachable: {type(exc).__name__}", code="connect") from exc
        except requests.Timeout as exc:
            raise Unknown("epay timed out", code="timeout") from exc
        return self._json(resp)

    @staticmethod
    def _json(resp: requests.Response) -> dict:
        if resp.status_code >= 500:
            raise Unknown(f"epay answered {resp.status_code}", code="http_5xx")
        try:
            data = resp.json()
        except ValueError as exc:
            raise Unknown("epay answered non-JSON", code="bad_response") from exc
        if not isinstance(data, dict):
            raise Unknown("epay answered an unexpected shape", code="bad_response")
        return data

    def verify_notification(self, inbound: Inbound) -> Observation:
        params = inbound.params
        if not self._key:
            raise NotificationInvalid("no_credentials", "channel account has no key; notify refused")
        missing = [k for k in wire.NOTIFY_REQUIRED if not params.get(k)]
        if missing:
            raise NotificationInvalid("missing_fields", f"missing fields: {', '.join(missing)}")
        if params.get("sign_type", "MD5").upper() != "MD5":
            raise NotificationInvalid("bad_sign_type", "sign_type must be MD5")
        if not signing.verify(params, self._key, key_separator=self._sep):
            raise NotificationInvalid("bad_signature", "signature does not verify")
        if not constant_time_equals(params["pid"], self.account.merchant_no):
            raise NotificationInvalid("wrong_merchant", "pid is not this channel account's")
        status = wire.NOTIFY_STATUS.get(params["trade_status"])
        if status is None:
            raise NotificationInvalid(
                "status_not_success", f"trade_status {params['trade_status'][:32]!r} is not a payment"
            )
        return Observation(
            out_trade_no=params["out_trade_no"],
            provider_trade_no=params["trade_no"],
            status=status,
            amount=self._money(params["money"]),
            event_key=f"{params['trade_no']}:{params['trade_status']}",
            provider_status=params["trade_status"],
        )

    def _money(self, text: str) -> Money:
        try:
            return Money.from_decimal_str(text, wire.SUPPORTED_CURRENCY)
        except MoneyError as exc:
            raise NotificationInvalid("bad_amount", "money is not an exact amount") from exc

    def query(self, out_trade_no: str, provider_trade_no: str = "") -> Observation | None:
        if not self._key:
            raise Terminal("epay account has no key", code="no_credentials")
        params = {"act": "order", "pid": self.account.merchant_no, "key": self._key, "out_trade_no": out_trade_no}
        try:
            resp = _session.get(self._url("api.php"), params=params, timeout=self.account.timeouts)
        except requests.ConnectionError as exc:
            raise Retryable("epay unreachable", code="connect") from exc
        except requests.Timeout as exc:
            raise Unknown("epay query timed out", code="timeout") from exc
        data = self._json(resp)
        if str(data.get("code")) != "1":
            return None  # the provider does not know this trade (yet)
        if str(data.get("out_trade_no")) != out_trade_no or str(data.get("pid")) != self.account.merchant_no:
            raise Unknown("epay query answered for another trade", code="bad_response")
        status = wire.QUERY_STATUS.get(str(data.get("status")))
        if status is None:
            raise Unknown(f"epay query status {data.get('status')!r} not understood", code="bad_response")
        amount = _answer_money(data.get("money"), "query")
        trade_no = str(data.get("trade_no", ""))
        return Observation(
            out_trade_no=out_trade_no,
            provider_trade_no=trade_no,
            status=status,
            amount=amount,
            event_key=f"{trade_no}:query:{status}",
            provider_status=str(data.get("status")),
        )

    def close(self, out_trade_no: str, provider_trade_no: str = "") -> None:
        raise Terminal("epay panels have no close API; unpaid trades lapse", code="unsupported")

    def _api(self, params: dict[str, str], *, method: str = "GET") -> dict:
        if not self._key:
            raise Terminal("epay account has no key", code="no_credentials")
        params = {"pid": self.account.merchant_no, "key": self._key, **params}
        try:
            if method == "POST":
                resp = _session.post(
                    self._url("api.php"), params={"act": params.pop("act")}, data=params, timeout=self.account.timeouts
                )
            else:
                resp = _session.get(self._url("api.php"), params=params, timeout=self.account.timeouts)
        except requests.ConnectionError as exc:
            raise Retryable("epay unreachable", code="connect") from exc
        except requests.Timeout as exc:
            raise Unknown("epay timed out", code="timeout") from exc
        return self._json(resp)

    def statement(self, day: date) -> Statement:
        """The day's (Asia/Shanghai) completed orders off api.php?act=orders, streamed page by page. No control
        totals (None); `source_hash` covers every page read and is set once the lines are exhausted."""
        if not self._key:
            raise Terminal("epay account has no key", code="no_credentials")
        return order_list.statement(self, day, _session, url=self._url("api.php"), key=self._key)

    def balance(self) -> ChannelBalance:
        """api.php?act=query: `money` is what the panel holds for the merchant (no pending figure). A timeout or a
        5xx is Retryable (a read); code != 1 (a wrong key, an unknown pid) is the panel's refusal."""
        try:
            data = self._api({"act": "query"})
        except Unknown as exc:
            if exc.code in ("timeout", "http_5xx"):
                raise Retryable(f"epay balance not read: {exc}", code=exc.code) from exc
            raise
        if str(data.get("code")) != "1":
            raise Terminal(f"epay refused the merchant query: {data.get('msg', '')}"[:200], code="refused")
        if str(data.get("pid")) != self.account.merchant_no:
            raise Unknown("epay merchant query answered for another pid", code="bad_response")
        fen = wire.balance_fen(data.get("money"))
        if fen is None:
            raise Unknown("epay merchant query money not understood", code="bad_response")
        return ChannelBalance(available=Money(fen, wire.SUPPORTED_CURRENCY), provider_status="act=query")

    def refund(self, request: RefundRequest) -> RefundObservation:
        """api.php?act=refund, keyed by out_refund_no so a repeated request refunds once."""
        data = self._api(
            {
                "act": "refund",
                "out_trade_no": request.out_trade_no,
                "money": request.amount.to_decimal_str(),
                "out_refund_no": request.refund_no,
            },
            method="POST",
        )
        if str(data.get("code")) != "1":
            raise Terminal(f"epay refused the refund: {data.get('msg', '')}"[:200], code="refund_refused")
        return self._refund_observation(request, data)

    def refund_query(self, request: RefundRequest) -> RefundObservation | None:
        data = self._api({"act": "refundquery", "out_refund_no": request.refund_no})
        if str(data.get("code")) != "1":
            return None
        return self._refund_observation(request, data)

    def _refund_observation(self, request: RefundRequest, data: dict) -> RefundObservation:
        if str(data.get("out_refund_no")) != request.refund_no:
            raise Unknown("epay answered for another refund", code="bad_response")
        status = wire.REFUND_STATUS.get(str(data.get("status")))
        if status is None:
            raise Unknown(f"epay refund status {data.get('status')!r} not understood", code="bad_response")
        amount = _answer_money(data.get("money"), "refund")
        return RefundObservation(
            refund_no=request.refund_no,
            provider_refund_no=str(data.get("refund_no", "")),
            status=status,
            amount=amount,
            provider_status=str(data.get("status")),
        )


def _answer_money(value: object, what: str) -> Money:
    """An api.php answer's money: the panel writes a decimal string ("9.90"), parsed whole and exactly."""
    try:
        return Money.from_decimal_str(value if isinstance(value, str) else "", wire.SUPPORTED_CURRENCY)
    except MoneyError as exc:
        raise Unknown(f"epay {what} amount not understood", code="bad_response") from exc
