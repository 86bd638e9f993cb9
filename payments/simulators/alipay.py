"""Loopback simulator of the *provider side* of the Alipay open platform (支付宝开放平台) gateway.

It plays Alipay for one app: ``/gateway.do`` takes RSA2-signed requests (GET query or POST form) for
``alipay.trade.precreate``, ``.query``, ``.close``, ``.refund`` and ``.fastpay.refund.query``, and the payout pair
``alipay.fund.trans.uni.transfer`` / ``alipay.fund.trans.common.query``, the royalty (分账) set
``alipay.trade.royalty.relation.bind`` / ``alipay.trade.order.settle`` / ``.settle.query``, verifies them
with the app's public key and answers ``{"<method_with_underscores>_response": {...}, "sign": "..."}``, signed
with its own Alipay key over the inner JSON exactly as serialised. A browser sent to a signed
``alipay.trade.page.pay`` URL lands on ``/cashier/<trade_no>`` (also what precreate's qr_code encodes); paying
there sends the RSA2-signed async notify (form POST) to the trade's notify_url, and a refund sends the trade
notify with refund fields (out_biz_no, refund_fee, gmt_refund).

Payouts debit the app's balance at Alipay (``set_balance``) and reach payees the simulator knows (``add_payee``,
real name checked as Alipay checks it); every transfer that moved money is in ``executed_transfers()``. One
out_biz_no transfers once: a resend answers the first transfer, a resend with another payee or amount is refused.
Besides ``faults`` (a timeout executes then hangs, a 5xx executes nothing), ``hold_transfers`` keeps the next
transfers DEALING until ``settle_transfer``, ``transfer_system_errors`` answers SYSTEM_ERROR without executing, and
``tamper_answers`` changes the next answers after signing.

分账: a trade is splittable only when created with extend_params.royalty_freeze=true. Receivers must be bound first
(<= 20 per bind). A settle executes once per out_request_no (a resend answers the same settle_no), within the 30 %
default ratio (``royalty_max_ratio_bp``) of the trade; it is PROCESSING until ``settle_split`` (at once when
``settle_at_once``, the default), which then sends the signed alipay.trade.order.settle.notify (form POST, msg_method
+ biz_content) to the trade's notify_url; royalty_finish releases the rest of the trade to the merchant. A refund with
refund_royalty_parameters takes shares back from receivers (never more than a receiver got); the merchant funds the
rest of a refund only out of what the splits left it. ``split_ledger`` shows split / frozen / released / refunded and
per receiver received / returned.

Daily bills (对账单): ``alipay.data.dataservice.bill.downloadurl.query`` (bill_type ``trade``) answers a signed
``bill_download_url`` on ``/downloadBillFile.resource`` that works ``bill_url_ttl`` seconds (30, as on Alipay; after
that the link answers a "下载超时" page). It serves a ZIP, member names in GBK, of the GBK detail CSV (comment
lines, the 25-column header, a 交易 row per trade paid that Beijing day and a 退款 row per refund made that day, with
a 0.6% 服务费, then the 交易合计/退款合计 lines) and the summary CSV (its 合计 row holds the fee total). A day's bill
exists from the next Beijing day (T+1) or once ``publish_statement(day)``; before that the query answers 40004
``isp.bill_not_exist``. Transfers are not on the trade bill. ``statement_synthetic(day, n)`` makes that day's bill N
generated payment lines (no trades), for benchmarks. Discrepancies for the next bills, plain attributes
(``reset_statement_faults()`` clears them); ``our_ref`` is the out_trade_no of a 交易 row, the out_request_no of a
退款 row:
- ``statement_omit``: set of our_refs left out;
- ``statement_overrides``: our_ref -> {"amount_minor": int, "fee_minor": int, "status": 业务类型 word}, any of them;
- ``statement_duplicates``: set of our_refs written twice;
- ``statement_extra``: list of {"our_ref", "provider_ref", "amount_minor", "fee_minor" (default 0.6%), "status"
  (default 交易)}: lines for trades we never heard of;
- ``statement_corrupt``: "bytes" flips a byte of the detail file's compressed data (its CRC-32 fails); "totals"
  changes a line's amount after the totals were summed (the file no longer adds up).
The file's totals are always summed from the rows as written, so an injected discrepancy is a consistent file that
disagrees with us, as Alipay's own would.

Balance: ``alipay.data.bill.balance.query`` answers total_amount / available_amount / freeze_amount (yuan strings)
from ``account_balance()``: the payout balance (``set_balance``, less transfers) plus each paid trade net of its
0.6 % fee, of the merchant's own refunds (their share of the fee coming back) and of what receivers got; a trade
frozen for royalty and not finished counts as frozen. ``tamper_answers`` spoils it like any signed answer.

Signing is implemented here with ``cryptography``, independently of our adapter and of the Alipay SDK, so
tests exercise the adapter against a second implementation. Must not import ``payments.channels``, the SDK
or anything Django: it is the other side.

CLI: ``python -m payments.simulators.alipay --port 8002 --account-file var/alipay-account.json``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import csv
import hashlib
import html
import io
import json
import logging
import os
import random
import re
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from payments.simulators.base import (
    BAD_SIGNATURE,
    CLOSED,
    UNKNOWN_ORDER,
    VALID,
    WRONG_AMOUNT,
    WRONG_MERCHANT,
    Faults,
    LoopbackServer,
    NotifyRequest,
    SimAccount,
)

logger = logging.getLogger(__name__)

CURRENCY = "CNY"  # domestic Alipay has no currency field: every amount is yuan
SIGN_TYPE = "RSA2"
MONEY_RE = re.compile(r"^(0|[1-9]\d*)(\.\d{1,2})?$")
MAX_AMOUNT_MINOR = 100_000_000_00  # Alipay's per-trade ceiling, 100 million yuan
# 分账: a receiver type is a 2088 user id or a login; relation.bind takes 20 receivers a call; Alipay's default
# maximum royalty ratio is 30 % of the trade (raised only by contract). The per-settle receiver limit is the
# simulator's assumption (the same 20).
ROYALTY_ACCOUNT_TYPES = frozenset({"userId", "loginName"})
ROYALTY_BIND_MAX = ROYALTY_SETTLE_MAX = 20
ROYALTY_MAX_RATIO_BP = 3_000
NOTIFY_TIMEOUT = 5.0
OTHER_APP_ID = "2021000000000000"  # the wrong_merchant variant's app
BUYER_ID, BUYER_LOGON_ID = "2088102177846880", "sim***@example.com"
COMMON_REQUIRED = ("app_id", "method", "charset", "sign_type", "timestamp", "version", "sign")
PAGE_PAY = "alipay.trade.page.pay"
PAGE_PAY_PRODUCT = "FAST_INSTANT_TRADE_PAY"
BEIJING = ZoneInfo("Asia/Shanghai")  # time_expire is Beijing wall-clock time
TIME_EXPIRE_FORMAT = "%Y-%m-%d %H:%M:%S"
TRANSFER_PRODUCT, TRANSFER_SCENE = "TRANS_ACCOUNT_NO_PWD", "DIRECT_TRANSFER"
TRANSFER_MIN_MINOR = 10  # trans_amount takes [0.1, 100000000] yuan
USER_ID_RE = re.compile(r"^2088\d{12}$")
DEFAULT_BALANCE_MINOR = 1_000_000_00  # what a new app holds at Alipay to pay out of: one million yuan
# Payees every simulator knows (the demo pays them); tests add their own.
DEMO_PAYEES = {"payee@example.com": "张三", "2088102146225135": "李四"}

# Our record's status -> Alipay trade_status. A fully refunded trade reads TRADE_CLOSED, as on Alipay.
TRADE_STATUS = {
    "pending": "WAIT_BUYER_PAY",
    "paid": "TRADE_SUCCESS",
    "closed": "TRADE_CLOSED",
    "refunded": "TRADE_CLOSED",
}


class AlipayError(Exception):
    """A refusal in Alipay's shape. Gateway-level ones (40001/40002) come unsigned; business ones (40004) signed."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str, *, signed: bool) -> None:
        super().__init__(f"{code} {sub_code} {sub_msg}")
        self.payload = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        self.signed = signed


def _missing(name: str) -> AlipayError:
    return AlipayError(
        "40001", "Missing Required Arguments", f"isv.missing-{name.replace('_', '-')}", f"缺少{name}参数", signed=False
    )


def _invalid(sub_code: str, sub_msg: str) -> AlipayError:
    return AlipayError("40002", "Invalid Arguments", sub_code, sub_msg, signed=False)


def _business(sub_code: str, sub_msg: str) -> AlipayError:
    return AlipayError("40004", "Business Failed", sub_code, sub_msg, signed=True)


def _now() -> str:
    # Alipay writes every time in Beijing time; the statement cuts days by it.
    return datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _yuan(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _minor(text: str) -> int | None:
    if not MONEY_RE.match(text or ""):
        return None
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0"))


def _deadline(text: str) -> float | None:
    """`time_expire` as sent ("yyyy-MM-dd HH:mm:ss", Beijing time) -> epoch seconds; None when absent."""
    if not text:
        return None
    try:
        parsed = datetime.strptime(text, TIME_EXPIRE_FORMAT)
    except ValueError:
        raise _business("ACQ.INVALID_PARAMETER", "time_expire 格式须为 yyyy-MM-dd HH:mm:ss") from None
    if parsed.strftime(TIME_EXPIRE_FORMAT) != text:  # strptime also takes "2026-1-2 3:4:5"
        raise _business("ACQ.INVALID_PARAMETER", "time_expire 格式须为 yyyy-MM-dd HH:mm:ss")
    return parsed.replace(tzinfo=BEIJING).timestamp()


def _signing_string(params: dict[str, str], unsigned: tuple[str, ...]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in unsigned and params[k] != "")


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _load_private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


class AlipaySimulator(LoopbackServer):
    code = "alipay"
    # Alipay's notify signs no timestamp and carries no currency for CNY: no stale/currency variants.
    notify_variants = frozenset({VALID, BAD_SIGNATURE, WRONG_AMOUNT, WRONG_MERCHANT, UNKNOWN_ORDER, CLOSED})

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.faults = Faults()
        self._address = (host, port)
        self.handler_class = _Handler
        self._lock = threading.RLock()
        self._apps: dict[str, rsa.RSAPublicKey] = {}  # app_id -> the app public key our requests verify with
        self._app_id = ""
        self._app_private_pem = ""  # handed out only through SimAccount.credentials
        self._alipay_key: rsa.RSAPrivateKey | None = None
        self._trades: dict[str, dict[str, Any]] = {}
        self._by_out: dict[tuple[str, str], str] = {}
        # Random start keeps trade_nos distinct across restarts (demo databases persist).
        self._counter = random.randint(10**15, 9 * 10**15)
        # Payouts: the app's balance at Alipay (minor units), payees by identity -> real name, transfers by
        # (app_id, out_biz_no), and those that moved money in the order they did.
        self._balances: dict[str, int] = {}
        self._payees: dict[str, str] = dict(DEMO_PAYEES)
        self._transfers: dict[tuple[str, str], dict[str, Any]] = {}
        self._transfer_by_order: dict[str, tuple[str, str]] = {}
        self._executed: list[dict[str, Any]] = []
        self.hold_transfers = 0  # the next N accepted transfers answer DEALING until settle_transfer()
        self.tamper_answers = 0  # the next N signed answers are changed after signing (a forgery in transit)
        self.transfer_system_errors = 0  # the next N transfers answer 40004 SYSTEM_ERROR, executing nothing
        # Daily bills: days published before their T+1 morning, synthetic days, live download tokens, and the
        # discrepancies the next bills carry (see the module docstring).
        self._published: set[date] = set()
        self._synthetic: dict[date, int] = {}
        self._bill_tokens: dict[str, tuple[str, date, float]] = {}
        self.bill_url_ttl = BILL_URL_TTL
        self.statement_omit: set[str] = set()
        self.statement_overrides: dict[str, dict[str, Any]] = {}
        self.statement_duplicates: set[str] = set()
        self.statement_extra: list[dict[str, Any]] = []
        self.statement_corrupt = ""
        self.served_bills: list[str] = []  # sha256 of every bill file served, oldest first
        # 分账: bound receivers per app ((type, account) -> name, memo), settle_no -> (trade_no, out_request_no),
        # every accepted settle in order; a settle is PROCESSING until settle_split() unless settle_at_once.
        self._royalty_bound: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
        self._settle_by_no: dict[str, tuple[str, str]] = {}
        self._executed_settles: list[dict[str, Any]] = []
        self.settle_at_once = True
        self.royalty_max_ratio_bp = ROYALTY_MAX_RATIO_BP

    # ---- account & keys --------------------------------------------------------------------------------
    def account(self, *, webhook_url: str = "") -> SimAccount:
        """The demo app (keys generated on first call). Alipay notifies per trade: webhook_url is unused."""
        with self._lock:
            if not self._app_id:
                self.install_keys(f"2021{random.randint(10**11, 10**12 - 1)}", _private_pem(_new_key()), _new_key())
            assert self._alipay_key is not None
            credentials = {
                "app_private_key": self._app_private_pem,
                "alipay_public_key": _public_pem(self._alipay_key.public_key()),
            }
            return SimAccount(self._app_id, self.base_url, CURRENCY, credentials)

    def install_keys(self, app_id: str, app_private_pem: str, alipay_key: rsa.RSAPrivateKey) -> None:
        """Register the app (its public key verifies requests) and set Alipay's own signing key."""
        with self._lock:
            self._app_id, self._app_private_pem, self._alipay_key = app_id, app_private_pem, alipay_key
            self._apps[app_id] = _load_private(app_private_pem).public_key()
            self._balances.setdefault(app_id, DEFAULT_BALANCE_MINOR)

    def alipay_private_pem(self) -> str:
        if self._alipay_key is None:
            raise RuntimeError("no account yet: call account() first")
        return _private_pem(self._alipay_key)

    def _sign(self, message: str) -> str:
        if self._alipay_key is None:
            raise RuntimeError("no account yet: call account() first")
        signature = self._alipay_key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def _sign_params(self, params: dict[str, str]) -> dict[str, str]:
        # Notify and return signatures cover everything but sign and sign_type.
        params = {**params, "sign_type": SIGN_TYPE}
        params["sign"] = self._sign(_signing_string(params, ("sign", "sign_type")))
        return params

    def _verify_request(self, params: dict[str, str]) -> None:
        for name in COMMON_REQUIRED:
            if not params.get(name):
                raise _missing(name)
        with self._lock:
            public_key = self._apps.get(params["app_id"])
        if public_key is None:
            raise _invalid("isv.invalid-app-id", "无效的AppID参数")
        if params["sign_type"] != SIGN_TYPE:
            raise _invalid("isv.invalid-signature-type", "无效的签名类型")
        if params["charset"].lower() != "utf-8":
            raise _invalid("isv.invalid-charset", "字符集错误")
        # Requests sign every non-empty parameter except sign itself, sign_type included.
        message = _signing_string(params, ("sign",)).encode()
        try:
            signature = base64.b64decode(params["sign"])
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError, binascii.Error):
            raise _invalid(
                "isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配"
            ) from None

    @staticmethod
    def _biz(params: dict[str, str]) -> dict[str, Any]:
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            raise _invalid("isv.invalid-parameter", "biz_content 不是合法的 JSON") from None
        if not isinstance(biz, dict):
            raise _invalid("isv.invalid-parameter", "biz_content 不是 JSON 对象")
        return biz

    # ---- the gateway -----------------------------------------------------------------------------------
    def api(self, params: dict[str, str], host_url: str) -> str:
        """One server-to-server gateway call: verify, act, answer in Alipay's (signed) shape."""
        method = params.get("method", "")
        handlers = {
            "alipay.trade.precreate": self._precreate,
            "alipay.trade.query": self._query,
            "alipay.trade.close": self._close,
            "alipay.trade.refund": self._refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
            "alipay.fund.trans.uni.transfer": self._transfer,
            "alipay.fund.trans.common.query": self._transfer_query,
            "alipay.trade.royalty.relation.bind": self._royalty_bind,
            "alipay.trade.order.settle": self._settle,
            "alipay.trade.order.settle.query": self._settle_query,
            BILL_URL_QUERY: self._bill_url,
            BALANCE_QUERY: self._balance_query,
        }
        handler = handlers.get(method)
        key = method.replace(".", "_") + "_response" if handler else "error_response"
        try:
            self._verify_request(params)
            if handler is None:
                raise _invalid("isv.invalid-method", "不存在的方法名")
            payload = {"code": "10000", "msg": "Success", **handler(params, self._biz(params), host_url)}
            signed = True
        except AlipayError as exc:
            payload, signed = exc.payload, exc.signed
        # Serialised once: the signature covers these exact bytes, which the merchant finds by brace matching.
        inner = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        if not signed:
            return f'{{"{key}":{inner}}}'
        sign = self._sign(inner)
        if self._take("tamper_answers"):
            # What a man in the middle would do: turn "still processing" into "paid", or add a field.
            forged = inner.replace('"status":"DEALING"', '"status":"SUCCESS"')
            inner = forged if forged != inner else inner[:-1] + ',"tampered":"Y"}'
        return f'{{"{key}":{inner},"sign":"{sign}"}}'

    def _take(self, counter: str) -> bool:
        with self._lock:
            left = getattr(self, counter)
            if left > 0:
                setattr(self, counter, left - 1)
            return left > 0

    def page_pay(self, params: dict[str, str]) -> dict[str, Any]:
        """A browser arriving with a signed alipay.trade.page.pay URL: the trade it opens (or re-opens)."""
        self._verify_request(params)
        biz = self._biz(params)
        if biz.get("product_code") != PAGE_PAY_PRODUCT:
            raise _business("ACQ.INVALID_PARAMETER", f"product_code 必须是 {PAGE_PAY_PRODUCT}")
        return self._open_trade(params, biz)

    def _open_trade(self, params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        """Create the trade, or return it again for the same out_trade_no and amount (precreate and page.pay
        of one order are one trade)."""
        out_trade_no, subject = str(biz.get("out_trade_no") or ""), str(biz.get("subject") or "")
        minor = _minor(str(biz.get("total_amount") or ""))
        if not out_trade_no or not subject:
            raise _business("ACQ.INVALID_PARAMETER", "out_trade_no 和 subject 必填")
        if minor is None or minor <= 0:
            raise _business("ACQ.INVALID_PARAMETER", "total_amount 不合法")
        if minor > MAX_AMOUNT_MINOR:
            raise _business("ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
        app_id = params["app_id"]
        time_expire = str(biz.get("time_expire") or "")
        deadline = _deadline(time_expire)
        extend = biz.get("extend_params")
        royalty_freeze = isinstance(extend, dict) and str(extend.get("royalty_freeze") or "") == "true"
        with self._lock:
            if existing := self._by_out.get((app_id, out_trade_no)):
                trade = self._trades[existing]
                self._lapse(trade)
                if trade["status"] in ("paid", "refunded"):
                    raise _business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
                if trade["status"] == "closed":
                    raise _business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
                if trade["amount_minor"] != minor:
                    raise _business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
                trade["return_url"] = params.get("return_url") or trade["return_url"]
                trade["notify_url"] = trade["notify_url"] or params.get("notify_url", "")
                return copy.deepcopy(trade)
            self._counter += 1
            trade_no = time.strftime("%Y%m%d") + f"22{self._counter:018d}"
            trade = {
                "app_id": app_id,
                "trade_no": trade_no,
                "provider_trade_no": trade_no,
                "out_trade_no": out_trade_no,
                "subject": subject,
                "amount_minor": minor,
                "currency": CURRENCY,
                "status": "pending",
                "finished": False,
                "notify_url": params.get("notify_url", ""),
                "return_url": params.get("return_url", ""),
                "gmt_create": _now(),
                "gmt_payment": "",
                "gmt_close": "",
                "time_expire": time_expire,  # as received, for tests of the wire format
                "deadline": deadline,
                "refunded_minor": 0,
                "refunds": {},
                "notify_attempts": [],
                # 分账: frozen for royalty at creation; settles by out_request_no; per receiver what it got and
                # gave back; what royalty_finish released to the merchant; the merchant's own refunds.
                "royalty_freeze": royalty_freeze,
                "settles": {},
                "royalty_received": {},
                "royalty_returned": {},
                "royalty_finished": False,
                "released_minor": 0,
                "merchant_refunded_minor": 0,
            }
            self._trades[trade_no] = trade
            self._by_out[(app_id, out_trade_no)] = trade_no
            return copy.deepcopy(trade)

    def _find(self, app_id: str, biz: dict[str, Any]) -> dict[str, Any]:
        """The live record (callers hold the lock while changing it)."""
        with self._lock:
            trade_no = str(biz.get("trade_no") or "") or self._by_out.get((app_id, str(biz.get("out_trade_no") or "")))
            trade = self._trades.get(trade_no or "")
            if trade is None or trade["app_id"] != app_id:
                raise _business("ACQ.TRADE_NOT_EXIST", "交易不存在")
            self._lapse(trade)
            return trade

    @staticmethod
    def _lapse(trade: dict[str, Any]) -> None:
        """An unpaid trade past its time_expire is closed, as Alipay closes it: nobody can pay it any more.
        Applied whenever the trade is looked at (callers hold the lock)."""
        if trade["status"] == "pending" and trade.get("deadline") is not None and time.time() >= trade["deadline"]:
            trade.update(status="closed", gmt_close=trade["time_expire"])

    @staticmethod
    def _trade_status(trade: dict[str, Any]) -> str:
        return "TRADE_FINISHED" if trade["finished"] else TRADE_STATUS[trade["status"]]

    def _precreate(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        trade = self._open_trade(params, biz)
        # The QR encodes our own cashier page so a person can open it in a browser.
        return {"out_trade_no": trade["out_trade_no"], "qr_code": f"{host_url}/cashier/{trade['trade_no']}"}

    def _query(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        with self._lock:
            trade = self._find(params["app_id"], biz)
            answer = {
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
                "trade_status": self._trade_status(trade),
                "total_amount": _yuan(trade["amount_minor"]),
            }
            if trade["gmt_payment"]:
                paid = _yuan(trade["amount_minor"])
                answer.update(buyer_logon_id=BUYER_LOGON_ID, buyer_user_id=BUYER_ID, send_pay_date=trade["gmt_payment"])
                answer.update(receipt_amount=paid, buyer_pay_amount=paid)
            return answer

    def _close(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        with self._lock:
            trade = self._find(params["app_id"], biz)
            if trade["status"] != "pending":  # Alipay does not say whether it was paid or closed already
                raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            trade.update(status="closed", gmt_close=_now())
            return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"]}

    def _refund(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        minor = _minor(str(biz.get("refund_amount") or ""))
        if minor is None or minor <= 0:
            raise _business("ACQ.INVALID_PARAMETER", "refund_amount 不合法")
        royalty = self._refund_royalty(biz)
        royalty_minor = sum(r["amount_minor"] for r in royalty)
        if royalty_minor > minor:
            raise _business("ACQ.INVALID_PARAMETER", "退分账金额不能大于退款金额")
        with self._lock:
            trade = self._find(params["app_id"], biz)
            out_request_no = str(biz.get("out_request_no") or trade["out_trade_no"])
            refund = trade["refunds"].get(out_request_no)
            if refund is not None:
                # A replay refunds nothing and says so with fund_change=N.
                if refund["amount_minor"] != minor:
                    raise _business("ACQ.INVALID_PARAMETER", "退款请求号重复但退款金额不一致")
                return self._refund_answer(trade, refund, fund_change="N")
            if trade["finished"]:
                raise _business("ACQ.TRADE_HAS_FINISHED", "交易已完结")
            if trade["status"] != "paid":
                raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            returned = trade["royalty_returned"]
            for line in royalty:
                account = line["trans_out"]
                kept = trade["royalty_received"].get(account, 0) - returned.get(account, 0)
                if line["amount_minor"] > kept:
                    raise _business("ACQ.ROYALTY_RETURN_AMOUNT_EXCEED", f"退分账金额超过 {account} 已分得的金额")
            if trade["refunded_minor"] + minor > trade["amount_minor"]:
                raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            # The merchant funds what no receiver gives back, out of what the splits left it.
            merchant_part = minor - royalty_minor
            if merchant_part > trade["amount_minor"] - self._split_total(trade) - trade["merchant_refunded_minor"]:
                raise _business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限（已分账部分须退分账）")
            for line in royalty:
                returned[line["trans_out"]] = returned.get(line["trans_out"], 0) + line["amount_minor"]
            trade["merchant_refunded_minor"] += merchant_part
            trade["refunded_minor"] += minor
            refund = {
                "out_request_no": out_request_no,
                "amount_minor": minor,
                "refunded_total_minor": trade["refunded_minor"],
                "reason": str(biz.get("refund_reason") or ""),
                "royalty": royalty,  # refund_royalty_parameters as executed
                "gmt_refund_pay": _now(),
            }
            trade["refunds"][out_request_no] = refund
            if trade["refunded_minor"] == trade["amount_minor"]:
                trade.update(status="refunded", gmt_close=refund["gmt_refund_pay"])
            answer = self._refund_answer(trade, refund, fund_change="Y")
            notify = self._notify_params(trade, refund=refund)
        # Sent aside so the API answer is not held up by the merchant's notify endpoint.
        self._deliver(trade["trade_no"], notify, background=True)
        return answer

    @staticmethod
    def _refund_royalty(biz: dict[str, Any]) -> list[dict[str, Any]]:
        """refund_royalty_parameters: each receiver (trans_out) gives back part of its share to fund the refund."""
        entries = biz.get("refund_royalty_parameters")
        if entries is None:
            return []
        if not isinstance(entries, list):
            raise _business("ACQ.INVALID_PARAMETER", "refund_royalty_parameters 不合法")
        out = []
        for entry in entries:
            if not isinstance(entry, dict) or str(entry.get("royalty_type") or "transfer") != "transfer":
                raise _business("ACQ.INVALID_PARAMETER", "refund_royalty_parameters 不合法")
            kind, account = str(entry.get("trans_out_type") or ""), str(entry.get("trans_out") or "")
            amount = _minor(str(entry.get("amount") or ""))
            if kind not in ROYALTY_ACCOUNT_TYPES or not account or amount is None or amount <= 0:
                raise _business("ACQ.INVALID_PARAMETER", "trans_out_type、trans_out 与 amount 必填且合法")
            out.append(
                {
                    "trans_out": account,
                    "trans_out_type": kind,
                    "amount_minor": amount,
                    "desc": str(entry.get("desc") or ""),
                }
            )
        return out

    @staticmethod
    def _refund_answer(trade: dict[str, Any], refund: dict[str, Any], *, fund_change: str) -> dict[str, Any]:
        return {
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "buyer_logon_id": BUYER_LOGON_ID,
            "fund_change": fund_change,
            # As on Alipay: refund_fee is the trade's refunded total; send_back_fee this refund's amount.
            "refund_fee": _yuan(refund["refunded_total_minor"]),
            "send_back_fee": _yuan(refund["amount_minor"]),
            "gmt_refund_pay": refund["gmt_refund_pay"],
        }

    def _refund_query(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        out_request_no = str(biz.get("out_request_no") or "")
        if not out_request_no:
            raise _business("ACQ.INVALID_PARAMETER", "out_request_no 必填")
        with self._lock:
            trade = self._find(params["app_id"], biz)
            answer = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"]}
            refund = trade["refunds"].get(out_request_no)
            if refund is None:
                return answer  # Alipay's "not found": success without refund fields
            answer.update(
                out_request_no=out_request_no,
                total_amount=_yuan(trade["amount_minor"]),
                refund_amount=_yuan(refund["amount_minor"]),
                refund_status="REFUND_SUCCESS",
                gmt_refund_pay=refund["gmt_refund_pay"],
            )
            return answer

    # ---- payouts (单笔转账) -----------------------------------------------------------------------------
    def _transfer(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        """alipay.fund.trans.uni.transfer: debit the app, credit the payee; once per out_biz_no."""
        out_biz_no = str(biz.get("out_biz_no") or "")
        if not out_biz_no:
            raise _business("INVALID_PARAMETER", "out_biz_no 必填")
        if biz.get("product_code") != TRANSFER_PRODUCT or biz.get("biz_scene") != TRANSFER_SCENE:
            raise _business("INVALID_PARAMETER", f"product_code/biz_scene 须为 {TRANSFER_PRODUCT}/{TRANSFER_SCENE}")
        minor = _minor(str(biz.get("trans_amount") or ""))
        if minor is None or not TRANSFER_MIN_MINOR <= minor <= MAX_AMOUNT_MINOR:
            raise _business("INVALID_PARAMETER", "trans_amount 取值范围[0.1,100000000]")
        payee = biz.get("payee_info")
        if not isinstance(payee, dict):
            raise _business("INVALID_PARAMETER", "payee_info 必填")
        identity, identity_type = str(payee.get("identity") or ""), payee.get("identity_type")
        name = str(payee.get("name") or "")
        if identity_type == "ALIPAY_USER_ID":
            if not USER_ID_RE.match(identity):
                raise _business("INVALID_PARAMETER", "identity 不是合法的支付宝会员ID")
        elif identity_type == "ALIPAY_LOGON_ID":
            if not identity or not name:
                raise _business("INVALID_PARAMETER", "identity_type=ALIPAY_LOGON_ID 时 identity 与 name 必填")
        else:
            raise _business("INVALID_PARAMETER", "identity_type 不合法")
        app_id = params["app_id"]
        if self._take("transfer_system_errors"):
            raise _business("SYSTEM_ERROR", "系统繁忙，请使用相同的参数稍后重试")
        with self._lock:
            key = (app_id, out_biz_no)
            if (existing := self._transfers.get(key)) is not None:
                if (existing["amount_minor"], existing["identity"]) != (minor, identity):
                    raise _business("PAYMENT_INFO_INCONSISTENCY", "两次请求商户单号一样，但是收款人或金额不一致")
                return self._transfer_answer(existing)
            real_name = self._payees.get(identity)
            if real_name is None:
                raise _business("PAYEE_NOT_EXIST", "收款账号不存在")
            if name and name != real_name:
                raise _business("PAYEE_USER_INFO_ERROR", "支付宝账号和姓名不匹配，请确认姓名是否正确")
            balance = self._balances.get(app_id, 0)
            if minor > balance:
                raise _business("PAYER_BALANCE_NOT_ENOUGH", "付款方余额不足")
            self._balances[app_id] = balance - minor
            self._counter += 1
            order_id = time.strftime("%Y%m%d") + f"11007{self._counter:019d}"
            record: dict[str, Any] = {
                "app_id": app_id,
                "out_biz_no": out_biz_no,
                "order_id": order_id,
                "pay_fund_order_id": "",
                "amount_minor": minor,
                "identity": identity,
                "identity_type": identity_type,
                "name": name,
                "order_title": str(biz.get("order_title") or ""),
                "remark": str(biz.get("remark") or ""),
                "status": "DEALING" if self._take("hold_transfers") else "SUCCESS",
                "pay_date": "",
                "error_code": "",
                "fail_reason": "",
            }
            if record["status"] == "SUCCESS":
                self._transfer_paid(record)
            self._transfers[key] = record
            self._transfer_by_order[order_id] = key
            self._executed.append(record)
            return self._transfer_answer(record)

    def _transfer_paid(self, record: dict[str, Any]) -> None:
        self._counter += 1
        record.update(
            status="SUCCESS", pay_date=_now(), pay_fund_order_id=time.strftime("%Y%m%d") + f"11007{self._counter:019d}"
        )

    @staticmethod
    def _transfer_answer(record: dict[str, Any]) -> dict[str, Any]:
        answer = {"out_biz_no": record["out_biz_no"], "order_id": record["order_id"], "status": record["status"]}
        if record["pay_fund_order_id"]:
            answer.update(pay_fund_order_id=record["pay_fund_order_id"], trans_date=record["pay_date"])
        return answer

    def _transfer_query(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        """alipay.fund.trans.common.query by order_id, else by out_biz_no (with product_code and biz_scene)."""
        app_id, order_id = params["app_id"], str(biz.get("order_id") or "")
        out_biz_no = str(biz.get("out_biz_no") or "")
        if not order_id:
            if not out_biz_no:
                raise _business("INVALID_PARAMETER", "out_biz_no 和 order_id 不能同时为空")
            if biz.get("product_code") != TRANSFER_PRODUCT or biz.get("biz_scene") != TRANSFER_SCENE:
                raise _business("INVALID_PARAMETER", "传 out_biz_no 时 product_code 与 biz_scene 必填")
        with self._lock:
            key = self._transfer_by_order.get(order_id) if order_id else (app_id, out_biz_no)
            record = self._transfers.get(key) if key and key[0] == app_id else None
            if record is None:
                raise _business("ORDER_NOT_EXIST", "转账订单不存在")
            answer = {
                "order_id": record["order_id"],
                "out_biz_no": record["out_biz_no"],
                "status": record["status"],
                "trans_amount": _yuan(record["amount_minor"]),
            }
            if record["pay_fund_order_id"]:
                answer.update(pay_fund_order_id=record["pay_fund_order_id"], pay_date=record["pay_date"])
            if record["status"] == "FAIL":
                answer.update(error_code=record["error_code"], fail_reason=record["fail_reason"])
            return answer

    # ---- 分账 (royalty) ----------------------------------------------------------------------------------
    def _royalty_bind(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        """alipay.trade.royalty.relation.bind: up to 20 receivers; binding a bound one again succeeds."""
        receivers = biz.get("receiver_list")
        if not str(biz.get("out_request_no") or ""):
            raise _business("ACQ.INVALID_PARAMETER", "out_request_no 必填")
        if not isinstance(receivers, list) or not receivers:
            raise _business("ACQ.INVALID_PARAMETER", "receiver_list 必填")
        if len(receivers) > ROYALTY_BIND_MAX:
            raise _business("ACQ.INVALID_PARAMETER", f"receiver_list 最多 {ROYALTY_BIND_MAX} 个")
        checked = []
        for entry in receivers:
            if not isinstance(entry, dict):
                raise _business("ACQ.INVALID_PARAMETER", "receiver_list 不合法")
            kind, account, name = (str(entry.get(k) or "") for k in ("type", "account", "name"))
            if kind not in ROYALTY_ACCOUNT_TYPES or not account:
                raise _business("ACQ.INVALID_PARAMETER", "type 须为 userId 或 loginName，account 必填")
            if kind == "userId" and not USER_ID_RE.match(account):
                raise _business("ACQ.INVALID_PARAMETER", "account 不是合法的支付宝会员ID")
            if kind == "loginName" and not name:
                raise _business("ACQ.INVALID_PARAMETER", "loginName 类型须传 name")
            checked.append((kind, account, name, str(entry.get("memo") or "")))
        with self._lock:
            bound = self._royalty_bound.setdefault(params["app_id"], {})
            for kind, account, name, memo in checked:
                bound[(kind, account)] = {"name": name, "memo": memo}
        return {"result_code": "SUCCESS"}

    def _settle(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        """alipay.trade.order.settle: once per out_request_no; refusals (40004) record nothing."""
        app_id, out_request_no = params["app_id"], str(biz.get("out_request_no") or "")
        trade_no = str(biz.get("trade_no") or "")
        if not out_request_no or not trade_no:
            raise _business("ACQ.INVALID_PARAMETER", "out_request_no 与 trade_no 必填")
        royalty = biz.get("royalty_parameters")
        if not isinstance(royalty, list) or not royalty:
            raise _business("ACQ.INVALID_PARAMETER", "royalty_parameters 必填")
        if len(royalty) > ROYALTY_SETTLE_MAX:
            raise _business("ACQ.INVALID_PARAMETER", f"royalty_parameters 最多 {ROYALTY_SETTLE_MAX} 条")
        extend = biz.get("extend_params") if isinstance(biz.get("extend_params"), dict) else {}
        finish = str(extend.get("royalty_finish") or "") == "true"
        lines = []
        for entry in royalty:
            if not isinstance(entry, dict):
                raise _business("ACQ.INVALID_PARAMETER", "royalty_parameters 不合法")
            if str(entry.get("royalty_type") or "transfer") != "transfer":
                raise _business("ACQ.INVALID_PARAMETER", "royalty_type 只支持 transfer")
            kind, account = str(entry.get("trans_in_type") or ""), str(entry.get("trans_in") or "")
            if kind not in ROYALTY_ACCOUNT_TYPES or not account:
                raise _business("ACQ.INVALID_PARAMETER", "trans_in_type 须为 userId 或 loginName，trans_in 必填")
            minor = _minor(str(entry.get("amount") or ""))
            if minor is None or minor <= 0:
                raise _business("ACQ.INVALID_PARAMETER", "amount 不合法")
            lines.append(
                {
                    "trans_in_type": kind,
                    "trans_in": account,
                    "amount_minor": minor,
                    "desc": str(entry.get("desc") or ""),
                }
            )
        with self._lock:
            trade = self._find(app_id, {"trade_no": trade_no})
            existing = trade["settles"].get(out_request_no)
            if existing is not None:
                sent = [(line["trans_in"], line["amount_minor"]) for line in lines]
                if [(d["trans_in"], d["amount_minor"]) for d in existing["details"]] != sent:
                    raise _business("ACQ.INVALID_PARAMETER", "结算请求号重复但分账明细不一致")
                return {"trade_no": trade_no, "settle_no": existing["settle_no"]}
            if not trade["royalty_freeze"]:
                raise _business("ACQ.TRADE_NOT_ALLOW_SETTLE", "交易未冻结分账资金（royalty_freeze），不能分账")
            if trade["status"] != "paid":
                raise _business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if trade["royalty_finished"]:
                raise _business("ACQ.ROYALTY_FINISHED", "该交易分账已完结")
            bound = self._royalty_bound.get(app_id, {})
            for line in lines:
                if (line["trans_in_type"], line["trans_in"]) not in bound:
                    raise _business("ACQ.ROYALTY_RECEIVER_NOT_BIND", f"分账关系未绑定: {line['trans_in']}")
            cap = trade["amount_minor"] * self.royalty_max_ratio_bp // 10_000
            asked = sum(line["amount_minor"] for line in lines)
            if self._split_total(trade) + asked > cap:
                raise _business("ACQ.ALLOC_AMOUNT_VALIDATE_ERROR", "分账金额超过最大可分账金额（分账比例超限）")
            self._counter += 1
            record = {
                "out_request_no": out_request_no,
                "settle_no": time.strftime("%Y%m%d") + f"20{self._counter:018d}",
                "trade_no": trade_no,
                "finish": finish,
                "operation_dt": _now(),
                "details": [
                    {**line, "state": "PROCESSING", "execute_dt": "", "error_code": "", "error_desc": ""}
                    for line in lines
                ],
            }
            trade["settles"][out_request_no] = record
            self._settle_by_no[record["settle_no"]] = (trade_no, out_request_no)
            self._executed_settles.append({"out_request_no": out_request_no, "trade_no": trade_no})
            at_once = self.settle_at_once
        if at_once:
            self.settle_split(out_request_no)
        return {"trade_no": trade_no, "settle_no": record["settle_no"]}

    @staticmethod
    def _split_total(trade: dict[str, Any]) -> int:
        """What the trade's accepted splits take (PROCESSING and SUCCESS details): counted against the ratio."""
        return sum(d["amount_minor"] for s in trade["settles"].values() for d in s["details"] if d["state"] != "FAIL")

    def _settle_query(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        """alipay.trade.order.settle.query by settle_no, or by out_request_no + trade_no."""
        settle_no = str(biz.get("settle_no") or "")
        with self._lock:
            if settle_no:
                trade_no, out_request_no = self._settle_by_no.get(settle_no, ("", ""))
            else:
                trade_no, out_request_no = str(biz.get("trade_no") or ""), str(biz.get("out_request_no") or "")
                if not trade_no or not out_request_no:
                    raise _business("ACQ.INVALID_PARAMETER", "settle_no 或 out_request_no + trade_no 必填")
            trade = self._trades.get(trade_no)
            record = trade["settles"].get(out_request_no) if trade and trade["app_id"] == params["app_id"] else None
            if record is None:
                raise _business("ACQ.SETTLE_NOT_EXIST", "分账请求不存在")
            answer = self._settle_content(trade, record)
            # The query answers out_request_no, operation_dt and the details (AlipayTradeOrderSettleQueryResponse).
            del answer["settle_no"], answer["trade_no"]
            return answer

    @staticmethod
    def _settle_content(trade: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        seller = "2088" + trade["app_id"][-12:]
        details = [
            {
                "operation_type": "transfer",
                "execute_dt": d["execute_dt"],
                "trans_out": seller,
                "trans_out_type": "userId",
                "trans_in": d["trans_in"],
                "trans_in_type": d["trans_in_type"],
                "amount": _yuan(d["amount_minor"]),
                "state": d["state"],
                **({"error_code": d["error_code"], "error_desc": d["error_desc"]} if d["state"] == "FAIL" else {}),
            }
            for d in record["details"]
        ]
        if record["finish"] and record.get("released_minor"):
            # royalty_finish: what was left frozen goes to the merchant, a line of its own.
            details.append(
                {
                    "operation_type": "unfreeze",
                    "execute_dt": record["finished_dt"],
                    "trans_out": seller,
                    "trans_in": seller,
                    "amount": _yuan(record["released_minor"]),
                    "state": "SUCCESS",
                }
            )
        return {
            "out_request_no": record["out_request_no"],
            "settle_no": record["settle_no"],
            "trade_no": trade["trade_no"],
            "operation_dt": record["operation_dt"],
            "royalty_detail_list": details,
        }

    # ---- 分账 seen from the test side --------------------------------------------------------------------
    def settle_split(self, out_request_no: str, *, failed: dict[str, tuple[str, str]] | None = None) -> None:
        """A PROCESSING split ends: every receiver SUCCESS except those in `failed` (account -> (error_code,
        error_desc)), whose money stays frozen. With royalty_finish the rest of the trade goes to the merchant.
        Then the signed alipay.trade.order.settle.notify goes to the trade's notify_url."""
        failed = failed or {}
        with self._lock:
            trade = next((t for t in self._trades.values() if out_request_no in t["settles"]), None)
            record = trade["settles"][out_request_no] if trade else None
            if trade is None or record is None or any(d["state"] != "PROCESSING" for d in record["details"]):
                raise ValueError(f"split {out_request_no} is not PROCESSING")
            now = _now()
            for d in record["details"]:
                d["execute_dt"] = now
                if d["trans_in"] in failed:
                    d.update(state="FAIL", error_code=failed[d["trans_in"]][0], error_desc=failed[d["trans_in"]][1])
                else:
                    d["state"] = "SUCCESS"
                    received = trade["royalty_received"]
                    received[d["trans_in"]] = received.get(d["trans_in"], 0) + d["amount_minor"]
            if record["finish"]:
                released = trade["amount_minor"] - self._split_total(trade) - trade["released_minor"]
                record.update(released_minor=released, finished_dt=now)
                trade["released_minor"] += released
                trade["royalty_finished"] = True
            content = self._settle_content(trade, record)
            notify = self._sign_params(
                {
                    "notify_id": uuid.uuid4().hex,
                    "utc_timestamp": str(int(time.time() * 1000)),
                    "msg_method": "alipay.trade.order.settle.notify",
                    "app_id": trade["app_id"],
                    "version": "1.1",
                    "charset": "utf-8",
                    "biz_content": json.dumps(content, ensure_ascii=False, separators=(",", ":")),
                }
            )
        self._deliver(trade["trade_no"], notify, background=True)

    def split_ledger(self, out_trade_no: str) -> dict[str, Any]:
        """Per trade: total, split (accepted, not failed), frozen, released to the merchant (finish), refunded;
        per receiver what it got and what it gave back."""
        with self._lock:
            trade = self._live(out_trade_no)
            split = self._split_total(trade)
            return {
                "amount": trade["amount_minor"],
                "royalty_freeze": trade["royalty_freeze"],
                "split": split,
                "frozen": trade["amount_minor"] - split - trade["released_minor"] if trade["royalty_freeze"] else 0,
                "released": trade["released_minor"],
                "refunded": trade["refunded_minor"],
                "received": dict(trade["royalty_received"]),
                "returned": dict(trade["royalty_returned"]),
                "settles": copy.deepcopy(trade["settles"]),
            }

    def bound_receivers(self, app_id: str = "") -> dict[tuple[str, str], dict[str, str]]:
        with self._lock:
            return copy.deepcopy(self._royalty_bound.get(app_id or self._app_id, {}))

    def executed_settles(self, out_request_no: str = "") -> list[dict[str, Any]]:
        """Every settle Alipay accepted (a resend is not one), oldest first."""
        with self._lock:
            return [
                dict(s) for s in self._executed_settles if not out_request_no or s["out_request_no"] == out_request_no
            ]

    # ---- payouts seen from the test side ---------------------------------------------------------------
    def set_balance(self, minor: int, app_id: str = "") -> None:
        """What the app (the demo app by default) holds at Alipay to pay out of."""
        with self._lock:
            self._balances[app_id or self._app_id] = minor

    def balance(self, app_id: str = "") -> int:
        with self._lock:
            return self._balances.get(app_id or self._app_id, 0)

    def add_payee(self, identity: str, name: str) -> None:
        """An Alipay account a transfer can reach: its user id or login, and the real name it is registered to."""
        with self._lock:
            self._payees[identity] = name

    def transfer_for(self, out_biz_no: str) -> dict | None:
        with self._lock:
            record = next((r for (_, o), r in self._transfers.items() if o == out_biz_no), None)
            return copy.deepcopy(record)

    def executed_transfers(self, out_biz_no: str = "") -> list[dict]:
        """Every transfer that moved money (a DEALING one too: its amount left the balance), oldest first."""
        with self._lock:
            return [copy.deepcopy(r) for r in self._executed if not out_biz_no or r["out_biz_no"] == out_biz_no]

    def settle_transfer(
        self, out_biz_no: str, *, succeed: bool = True, error_code: str = "PAYEE_ACCOUNT_STATUS_ERROR", reason: str = ""
    ) -> None:
        """A DEALING transfer ends: SUCCESS, or FAIL with the money back on the app's balance."""
        with self._lock:
            record = next((r for (_, o), r in self._transfers.items() if o == out_biz_no), None)
            if record is None or record["status"] != "DEALING":
                raise ValueError(f"transfer {out_biz_no} is not DEALING")
            if succeed:
                self._transfer_paid(record)
                return
            record.update(status="FAIL", error_code=error_code, fail_reason=reason or "收款方账户状态异常")
            self._balances[record["app_id"]] = self._balances.get(record["app_id"], 0) + record["amount_minor"]

    # ---- the account's balance (alipay.data.bill.balance.query) -----------------------------------------------
    def account_balance(self, app_id: str = "") -> dict[str, int]:
        """What the app holds at Alipay, in fen: `available` is the payout balance (what it started with, less
        transfers) plus every paid trade not frozen for royalty, each net of the 0.6 % fee, of what the merchant
        itself refunded (the fee's share coming back) and of what receivers were given; `frozen` the same for
        trades still frozen for royalty (royalty_freeze, not finished). `total` is their sum."""
        app_id = app_id or self._app_id
        with self._lock:
            available, frozen = self._balances.get(app_id, 0), 0
            for trade in self._trades.values():
                if trade["app_id"] != app_id or not trade["gmt_payment"]:
                    continue
                amount = trade["amount_minor"]
                fee_back = sum(_fee(r["amount_minor"]) for r in trade["refunds"].values())
                net = amount - _fee(amount) - trade["merchant_refunded_minor"] + fee_back
                # What receivers got left the merchant; what they gave back went to the buyer, not to it.
                net -= sum(trade["royalty_received"].values())
                if trade["royalty_freeze"] and not trade["royalty_finished"]:
                    frozen += net
                else:
                    available += net
        return {"total": available + frozen, "available": available, "frozen": frozen}

    def _balance_query(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        """alipay.data.bill.balance.query: the app's own account (a bill_user_id of another user is refused)."""
        user = str(biz.get("bill_user_id") or "")
        if user and user != self._bill_user_id(params["app_id"]):
            raise _business("isp.bill_user_id_invalid", "无权查询该账户余额")
        money = self.account_balance(params["app_id"])
        return {
            "total_amount": _signed_yuan(money["total"]),
            "available_amount": _signed_yuan(money["available"]),
            "freeze_amount": _signed_yuan(money["frozen"]),
        }

    # ---- daily bill (对账单) -----------------------------------------------------------------------------
    def publish_statement(self, day: date) -> None:
        """Make `day`'s bill downloadable now; otherwise it exists only from the next Beijing day (T+1)."""
        with self._lock:
            self._published.add(day)

    def statement_synthetic(self, day: date, n: int) -> None:
        """`day`'s bill becomes N generated payment lines (no trades behind them) with consistent totals, built
        as it is written: for benchmarks. Publishes the day."""
        with self._lock:
            self._synthetic[day] = n
            self._published.add(day)

    def reset_statement_faults(self) -> None:
        with self._lock:
            self.statement_omit, self.statement_overrides, self.statement_duplicates = set(), {}, set()
            self.statement_extra, self.statement_corrupt = [], ""
            self.bill_url_ttl = BILL_URL_TTL

    def _bill_url(self, params: dict[str, str], biz: dict[str, Any], host_url: str) -> dict[str, Any]:
        """alipay.data.dataservice.bill.downloadurl.query: a tokenised URL valid `bill_url_ttl` seconds."""
        if str(biz.get("bill_type") or "") != BILL_TYPE_TRADE:
            raise _invalid("isv.invalid-arguments", "bill_type 只支持 trade")
        text = str(biz.get("bill_date") or "")
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise _invalid("isv.invalid-arguments", "bill_date 格式须为 yyyy-MM-dd") from None
        if day.isoformat() != text:
            raise _invalid("isv.invalid-arguments", "bill_date 格式须为 yyyy-MM-dd")
        with self._lock:
            if day >= datetime.now(BEIJING).date() and day not in self._published:
                raise _business("isp.bill_not_exist", "账单不存在")
            token = uuid.uuid4().hex
            self._bill_tokens[token] = (params["app_id"], day, time.monotonic() + self.bill_url_ttl)
        user_id, stamp = self._bill_user_id(params["app_id"]), day.strftime("%Y%m%d")
        query = urlencode(
            {
                "bizType": BILL_TYPE_TRADE,
                "userId": user_id,
                "fileType": "csv.zip",
                "bizDates": stamp,
                "downloadFileName": f"{user_id}_{stamp}.zip",
                "fileId": f"/trade/{user_id}/{stamp}.zip",
                "timestamp": str(int(time.time())),
                "token": token,
            }
        )
        return {"bill_download_url": f"{host_url}/downloadBillFile.resource?{query}"}

    @staticmethod
    def _bill_user_id(app_id: str) -> str:
        # The merchant's pid (2088...) followed by 0156, as in Alipay's URLs and file names.
        return "2088" + app_id[-12:] + "0156"

    def bill_file(self, token: str) -> IO[bytes] | None:
        """The ZIP for a live token, in a rewound temporary file; None when the link is unknown or expired."""
        with self._lock:
            found = self._bill_tokens.get(token)
            if found is None or time.monotonic() > found[2]:
                return None
            app_id, day, _ = found
            synthetic = self._synthetic.get(day)
            rows = self._bill_rows(app_id, day) if synthetic is None else None
            faults = {
                "omit": set(self.statement_omit),
                "overrides": copy.deepcopy(self.statement_overrides),
                "duplicates": set(self.statement_duplicates),
                "extra": copy.deepcopy(self.statement_extra),
                "corrupt": self.statement_corrupt,
            }
        if rows is None:
            rows = _synthetic_rows(day, synthetic or 0)
        else:
            rows = _with_discrepancies(rows, faults)
        out = tempfile.TemporaryFile()
        _write_bill(out, self._bill_user_id(app_id), day, rows, corrupt_totals=faults["corrupt"] == "totals")
        if faults["corrupt"] == "bytes":
            _flip_member_byte(out)
        out.seek(0)
        digest = hashlib.sha256()
        while chunk := out.read(64 * 1024):
            digest.update(chunk)
        out.seek(0)
        with self._lock:
            self.served_bills.append(digest.hexdigest())
        return out

    def _bill_rows(self, app_id: str, day: date) -> list[dict[str, Any]]:
        """What Alipay recorded for the app that Beijing day: a 交易 row per trade paid, a 退款 row per refund."""
        prefix, rows = day.isoformat(), []
        for trade in self._trades.values():
            if trade["app_id"] != app_id:
                continue
            base = {
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
                "subject": trade["subject"],
                "created": trade["gmt_create"],
            }
            if trade["gmt_payment"].startswith(prefix):
                amount = trade["amount_minor"]
                rows.append(
                    {
                        **base,
                        "word": "交易",
                        "finished": trade["gmt_payment"],
                        "amount": amount,
                        "fee": _fee(amount),
                        "refund_no": "",
                        "our_ref": trade["out_trade_no"],
                    }
                )
            for refund in trade["refunds"].values():
                if refund["gmt_refund_pay"].startswith(prefix):
                    amount = refund["amount_minor"]
                    rows.append(
                        {
                            **base,
                            "word": "退款",
                            "finished": refund["gmt_refund_pay"],
                            "amount": -amount,
                            "fee": -_fee(amount),  # the share of the fee the refund gives back
                            "refund_no": refund["out_request_no"],
                            "our_ref": refund["out_request_no"],
                        }
                    )
        rows.sort(key=lambda r: r["finished"])
        return rows

    # ---- trades seen from the test side ----------------------------------------------------------------
    def trade_for(self, out_trade_no: str) -> dict | None:
        with self._lock:
            trade_no = next((t for (_, o), t in self._by_out.items() if o == out_trade_no), None)
            trade = self._trades.get(trade_no or "")
            if trade:
                self._lapse(trade)
            return copy.deepcopy(trade) if trade else None

    def trade_by_no(self, trade_no: str) -> dict | None:
        with self._lock:
            trade = self._trades.get(trade_no)
            if trade:
                self._lapse(trade)
            return copy.deepcopy(trade) if trade else None

    def _live(self, out_trade_no: str) -> dict[str, Any]:
        found = self.trade_for(out_trade_no)
        if found is None:
            raise KeyError(out_trade_no)
        return self._trades[found["trade_no"]]

    def pay(self, out_trade_no: str) -> None:
        """The buyer pays: TRADE_SUCCESS, then the notify (faults apply; a dead endpoint keeps the trade paid)."""
        with self._lock:
            trade = self._live(out_trade_no)
            self._lapse(trade)
            if trade["status"] in ("closed", "refunded"):
                raise ValueError(f"trade {out_trade_no} is closed")
            if trade["status"] == "paid":
                return
            trade.update(status="paid", gmt_payment=_now())
            notify = self._notify_params(trade)
        self._deliver(trade["trade_no"], notify)

    def finish(self, out_trade_no: str) -> None:
        """The refund window ends: TRADE_FINISHED, notified like a second paid event."""
        with self._lock:
            trade = self._live(out_trade_no)
            if trade["status"] != "paid":
                raise ValueError(f"trade {out_trade_no} is not paid")
            trade["finished"] = True
            notify = self._notify_params(trade)
        self._deliver(trade["trade_no"], notify)

    # ---- callbacks -------------------------------------------------------------------------------------
    def _notify_params(
        self, trade: dict[str, Any], *, refund: dict[str, Any] | None = None, **overrides: str
    ) -> dict[str, str]:
        params = {
            "notify_time": _now(),
            "notify_type": "trade_status_sync",
            "notify_id": uuid.uuid4().hex,
            "app_id": trade["app_id"],
            "auth_app_id": trade["app_id"],
            "charset": "utf-8",
            "version": "1.0",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "buyer_id": BUYER_ID,
            "seller_id": "2088" + trade["app_id"][-12:],
            "trade_status": self._trade_status(trade),
            "total_amount": _yuan(trade["amount_minor"]),
            "subject": trade["subject"],
            "gmt_create": trade["gmt_create"],
        }
        if trade["gmt_payment"]:
            paid = _yuan(trade["amount_minor"])
            params.update(receipt_amount=paid, buyer_pay_amount=paid, gmt_payment=trade["gmt_payment"])
        if trade["gmt_close"]:
            params["gmt_close"] = trade["gmt_close"]
        if refund is not None:
            params.update(
                out_biz_no=refund["out_request_no"],
                refund_fee=_yuan(refund["refunded_total_minor"]),  # the trade's refunded total, as on Alipay
                gmt_refund=refund["gmt_refund_pay"] + ".000",
            )
        params.update(overrides)
        return self._sign_params(params)

    def notify_request(self, out_trade_no: str, *, variant: str = VALID, amount: str | None = None) -> NotifyRequest:
        """A paid (or, for CLOSED, closed) notify for the trade, forged as `variant` says. `amount` replaces the
        amounts as written ("9.90\n"...), still correctly signed: for tests of strict parsing."""
        if variant not in self.notify_variants:
            raise ValueError(f"alipay has no {variant!r} notify variant")
        with self._lock:
            trade = copy.deepcopy(self._live(out_trade_no))
        if variant == CLOSED:
            trade.update(status="closed", finished=False, gmt_close=trade["gmt_close"] or _now())
        else:
            trade.update(status="paid", finished=False, gmt_payment=trade["gmt_payment"] or _now())
        overrides: dict[str, str] = {}
        if variant == WRONG_AMOUNT:
            wrong = _yuan(trade["amount_minor"] + 100)
            overrides.update(total_amount=wrong, receipt_amount=wrong, buyer_pay_amount=wrong)
        elif variant == WRONG_MERCHANT:
            overrides.update(app_id=OTHER_APP_ID, auth_app_id=OTHER_APP_ID)
        elif variant == UNKNOWN_ORDER:
            overrides["out_trade_no"] = f"{out_trade_no}-unknown"
        if amount is not None:
            overrides.update(total_amount=amount, receipt_amount=amount, buyer_pay_amount=amount)
        params = self._notify_params(trade, **overrides)
        if variant == BAD_SIGNATURE:
            raw = bytearray(base64.b64decode(params["sign"]))
            raw[len(raw) // 2] ^= 0x01
            params["sign"] = base64.b64encode(bytes(raw)).decode()
        return NotifyRequest(
            method="POST",
            body=urlencode(params).encode(),
            headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
        )

    def return_params(self, trade: dict[str, Any]) -> dict[str, str]:
        """The signed query Alipay appends to return_url after a page.pay payment."""
        return self._sign_params(
            {
                "charset": "utf-8",
                "out_trade_no": trade["out_trade_no"],
                "method": "alipay.trade.page.pay.return",
                "total_amount": _yuan(trade["amount_minor"]),
                "trade_no": trade["trade_no"],
                "auth_app_id": trade["app_id"],
                "version": "1.0",
                "app_id": trade["app_id"],
                "seller_id": "2088" + trade["app_id"][-12:],
                "timestamp": _now(),
            }
        )

    def _deliver(self, trade_no: str, params: dict[str, str], *, background: bool = False) -> None:
        """Send one notify the way the faults say: dropped, doubled, delayed. Never raises."""
        with self._lock:
            url = self._trades[trade_no]["notify_url"]
        if not url:
            return  # no notify_url given at create: Alipay sends nothing
        if self.faults.take("drop_notify"):
            self._record(trade_no, {"url": url, "at": _now(), "dropped": True})
            return
        times = 2 if self.faults.take("duplicate_notify") else 1
        delay = self.faults.notify_delay
        if background or delay > 0:
            threading.Thread(target=self._post, args=(trade_no, url, params, times, delay), daemon=True).start()
        else:
            self._post(trade_no, url, params, times, delay)

    def _post(self, trade_no: str, url: str, params: dict[str, str], times: int, delay: float) -> None:
        if delay > 0:
            time.sleep(delay)
        for _ in range(times):
            attempt: dict[str, Any] = {"url": url, "at": _now(), "params": dict(params)}
            try:
                resp = requests.post(url, data=params, timeout=NOTIFY_TIMEOUT)
                # Alipay stops re-sending only on exactly "success".
                attempt.update(status_code=resp.status_code, acknowledged=resp.text == "success")
            except requests.RequestException as exc:
                logger.warning("alipay notify to %s failed: %s", url, type(exc).__name__)
                attempt.update(status_code=None, acknowledged=False, error=type(exc).__name__)
            self._record(trade_no, attempt)

    def _record(self, trade_no: str, attempt: dict[str, Any]) -> None:
        with self._lock:
            self._trades[trade_no]["notify_attempts"].append(attempt)

    # ---- CLI account file ------------------------------------------------------------------------------
    def load_or_create_account(self, path: Path) -> SimAccount:
        """Keys from `path` (and its provider-side sibling) when present, else new ones; `path` is then
        (re)written with the current base_url."""
        provider_path = path.with_name(path.name + ".alipay-key.pem")  # Alipay's own private key
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if provider_path.exists():
                alipay_key = _load_private(provider_path.read_text(encoding="utf-8"))
            else:
                logger.warning("%s missing: new Alipay key, the shop needs the new alipay_public_key", provider_path)
                alipay_key = _new_key()
            self.install_keys(str(data["merchant_no"]), data["credentials"]["app_private_key"], alipay_key)
        account = self.account()
        _write_private(path, json.dumps(asdict(account), indent=2))
        _write_private(provider_path, self.alipay_private_pem())
        return account


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


# ---- the bill file ------------------------------------------------------------------------------------------
BILL_URL_QUERY = "alipay.data.dataservice.bill.downloadurl.query"
BALANCE_QUERY = "alipay.data.bill.balance.query"
BILL_TYPE_TRADE = "trade"
BILL_URL_TTL = 30.0  # seconds a bill_download_url works, as on Alipay
FEE_RATE_BP = 60  # 0.6%, Alipay's standard acquiring rate, rounded half up to the fen
BILL_ENCODING = "gbk"
BILL_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,"
    "商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
    "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
).split(",")
# Columns Alipay pads with a tab so spreadsheets keep them as text.
BILL_TAB_PADDED = frozenset({0, 1, 2, 6, 7, 8, 9, 10, 19, 21})
BILL_SUMMARY_HEADER = (
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,"
    "卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
).split(",")
BILL_RULE = "#-----------------------------------------业务明细列表{}------------------------------------"
COUNTERPARTY = "*模拟(sim***@example.com)"


def _fee(minor: int) -> int:
    return (minor * FEE_RATE_BP + 5_000) // 10_000


def _signed_yuan(minor: int) -> str:
    return ("-" if minor < 0 else "") + _yuan(abs(minor))


def _with_discrepancies(rows: list[dict[str, Any]], faults: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded rows as the test wants them misreported: omitted, overridden, doubled, plus strangers."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if row["our_ref"] in faults["omit"]:
            continue
        if (override := faults["overrides"].get(row["our_ref"])) is not None:
            row = dict(row)
            sign = -1 if row["amount"] < 0 else 1
            if "amount_minor" in override:
                row["amount"] = sign * override["amount_minor"]
            if "fee_minor" in override:
                row["fee"] = sign * override["fee_minor"]
            if "status" in override:
                row["word"] = override["status"]
        out.append(row)
        if row["our_ref"] in faults["duplicates"]:
            out.append(dict(row))
    for extra in faults["extra"]:
        word = extra.get("status", "交易")
        sign = -1 if word == "退款" else 1
        now = _now()
        out.append(
            {
                "trade_no": extra["provider_ref"],
                "out_trade_no": extra["our_ref"],
                "subject": "未知交易",
                "created": now,
                "finished": now,
                "word": word,
                "amount": sign * extra["amount_minor"],
                "fee": sign * extra.get("fee_minor", _fee(extra["amount_minor"])),
                "refund_no": extra["our_ref"] if word == "退款" else "",
                "our_ref": extra["our_ref"],
            }
        )
    return out


def _synthetic_rows(day: date, n: int) -> Iterator[dict[str, Any]]:
    """N paid trades of that day, generated as they are written (no list, no trade records)."""
    stamp, start = day.strftime("%Y%m%d"), datetime.combine(day, datetime.min.time())
    for i in range(n):
        at = (start + timedelta(seconds=i * 86_399 // max(n, 1))).strftime(TIME_EXPIRE_FORMAT)
        amount = 100 + i % 9_900
        yield {
            "trade_no": f"{stamp}22{i:018d}",
            "out_trade_no": f"SYN{stamp}{i:010d}",
            "subject": "合成商品",
            "created": at,
            "finished": at,
            "word": "交易",
            "amount": amount,
            "fee": _fee(amount),
            "refund_no": "",
            "our_ref": f"SYN{stamp}{i:010d}",
        }


class _GbkZipInfo(zipfile.ZipInfo):
    """Alipay's archives name their members in GBK without the UTF-8 flag (Java unzips them with GBK)."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 - zipfile's own hook
        return self.filename.encode(BILL_ENCODING), self.flag_bits


def _write_bill(
    out: IO[bytes], user_id: str, day: date, rows: Iterable[dict[str, Any]], *, corrupt_totals: bool = False
) -> None:
    """The ZIP of the detail and summary CSVs, written row by row into `out` (GBK, as Alipay writes them)."""
    stamp, start = day.strftime("%Y%m%d"), day.strftime("%Y年%m月%d日")
    end = (day + timedelta(days=1)).strftime("%Y年%m月%d日")
    sums = {"交易": [0, 0], "退款": [0, 0]}  # count, 商家实收
    fees = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        detail = _GbkZipInfo(f"{user_id}_{stamp}_业务明细.csv", date_time=time.localtime()[:6])
        detail.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(detail, "w") as member:
            text = io.TextIOWrapper(member, encoding=BILL_ENCODING, newline="")
            writer = csv.writer(text, lineterminator="\r\n")
            for comment in (
                "#支付宝业务明细查询",
                f"#账号：[{user_id}]",
                f"#起始日期：[{start} 00:00:00]   终止日期：[{end} 00:00:00]",
                BILL_RULE.format(""),
            ):
                writer.writerow([comment])
            writer.writerow(BILL_HEADER)
            first = True
            for row in rows:
                if row["word"] in sums:
                    sums[row["word"]][0] += 1
                    sums[row["word"]][1] += row["amount"]
                fees += row["fee"]
                amount = row["amount"] + (100 if corrupt_totals and first else 0)  # changed after being summed
                first = False
                cells = [""] * len(BILL_HEADER)
                cells[0], cells[1], cells[2] = row["trade_no"], row["out_trade_no"], row["word"]
                cells[3], cells[4], cells[5] = row["subject"], row["created"], row["finished"]
                cells[10], cells[11], cells[12] = COUNTERPARTY, _signed_yuan(amount), _signed_yuan(amount)
                for i in (13, 14, 15, 16, 17, 19, 20, 23):
                    cells[i] = "0.00"
                cells[21], cells[22] = row["refund_no"], _signed_yuan(row["fee"])
                writer.writerow([c + "\t" if i in BILL_TAB_PADDED else c for i, c in enumerate(cells)])
            writer.writerow([BILL_RULE.format("结束")])
            (trades, received), (refunds, refunded) = sums["交易"], sums["退款"]
            writer.writerow([f"#交易合计：{trades}笔，商家实收共{_signed_yuan(received)}元，商家优惠共0.00元"])
            writer.writerow([f"#退款合计：{refunds}笔，商家实收退款共{_signed_yuan(refunded)}元，商家优惠退款共0.00元"])
            writer.writerow([f"#导出时间：[{datetime.now(BEIJING).strftime('%Y年%m月%d日 %H:%M:%S')}]"])
            text.flush()
            text.detach()
        summary = _GbkZipInfo(f"{user_id}_{stamp}_业务明细(汇总).csv", date_time=time.localtime()[:6])
        summary.compress_type = zipfile.ZIP_DEFLATED
        net = received + refunded
        lines = [
            "#支付宝业务汇总查询",
            f"#账号：[{user_id}]",
            f"#起始日期：[{start} 00:00:00]   终止日期：[{end} 00:00:00]",
            "#-----------------------------------------业务汇总列表----------------------------------------",
            ",".join(BILL_SUMMARY_HEADER),
            f"合计,,{trades},{refunds},{_signed_yuan(net)},{_signed_yuan(net)},0.00,0.00,0.00,"
            f"{_signed_yuan(fees)},0.00,{_signed_yuan(net - fees)}",
            "#-----------------------------------------业务汇总列表结束------------------------------------",
            f"#导出时间：[{datetime.now(BEIJING).strftime('%Y年%m月%d日 %H:%M:%S')}]",
        ]
        archive.writestr(summary, "\r\n".join(lines).encode(BILL_ENCODING) + b"\r\n")


def _flip_member_byte(out: IO[bytes]) -> None:
    """Damage the detail member's compressed bytes in place, as a broken transfer or a tamperer would."""
    out.seek(0)
    with zipfile.ZipFile(out) as archive:
        info = archive.infolist()[0]
    out.seek(info.header_offset + 26)
    name_len, extra_len = int.from_bytes(out.read(2), "little"), int.from_bytes(out.read(2), "little")
    at = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    out.seek(at)
    byte = out.read(1)
    out.seek(at)
    out.write(bytes([byte[0] ^ 0xFF]))


CASHIER_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>支付宝 cashier (simulator)</title>
</head><body><h1>支付宝 cashier (simulator)</h1>
<p>商品: <span id="subject">{subject}</span></p><p>金额: ¥<span id="amount">{amount}</span></p>
<p>商户订单号: <span id="out_trade_no">{out_trade_no}</span></p><p>状态: <span id="status">{status}</span></p>
{action}</body></html>"""

PAY_FORM = """<form method="post" action="/cashier/{trade_no}/pay"><button id="pay" type="submit">Pay ¥{amount}</button>
</form>"""


class _Handler(BaseHTTPRequestHandler):
    server_version = "AlipaySimulator/1.0"

    @property
    def sim(self) -> AlipaySimulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("%s - " + fmt, self.address_string(), *args)

    def _params(self) -> dict[str, str]:
        query = urlsplit(self.path).query
        if self.command == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
            query = f"{query}&{body}" if query else body
        return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}

    def _host_url(self) -> str:
        # Honour the Host the client used so cashier URLs survive port mappings.
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.sim.base_url

    def _send(self, status: int, body: str, ctype: str, location: str = "") -> None:
        data = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (timeout fault)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        parts = [p for p in path.split("/") if p]
        if path == "/gateway.do":
            params = self._params()
            return self._page_pay(params) if params.get("method") == PAGE_PAY else self._api(params)
        if path == "/downloadBillFile.resource" and self.command == "GET":
            return self._bill_download()
        if len(parts) == 2 and parts[0] == "cashier" and self.command == "GET":
            return self._cashier(parts[1])
        if len(parts) == 3 and parts[::2] == ["cashier", "pay"] and self.command == "POST":
            return self._pay(parts[1])
        self._send(404, "Not Found", "text/plain")

    def _api(self, params: dict[str, str]) -> None:
        faults = self.sim.faults
        if faults.take("fail_5xx"):
            return self._send(500, "Internal Server Error", "text/plain")
        hang = faults.take("timeout")
        body = self.sim.api(params, self._host_url())
        faults.before_answer()
        if hang:
            time.sleep(faults.hang_seconds)
        self._send(200, body, "application/json")

    def _bill_download(self) -> None:
        token = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}.get("token", "")
        bill = self.sim.bill_file(token)
        if bill is None:  # Alipay's answer to a link used after its 30 s: a page, not the file
            return self._send(200, "<h1>下载超时，请重新下载</h1>", "text/html")
        with bill:
            size = bill.seek(0, os.SEEK_END)
            bill.seek(0)
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                while chunk := bill.read(64 * 1024):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _page_pay(self, params: dict[str, str]) -> None:
        try:
            trade = self.sim.page_pay(params)
        except AlipayError as exc:  # a browser is looking: a page, not JSON
            text = html.escape(f"{exc.payload['sub_code']}: {exc.payload['sub_msg']}")
            return self._send(400, f"<h1>支付宝</h1><p id='error'>{text}</p>", "text/html")
        self._send(302, "", "text/plain", f"{self._host_url()}/cashier/{trade['trade_no']}")

    def _cashier(self, trade_no: str) -> None:
        trade = self.sim.trade_by_no(trade_no)
        if trade is None:
            return self._send(404, "交易不存在", "text/plain")
        amount = _yuan(trade["amount_minor"])
        action = PAY_FORM.format(trade_no=html.escape(trade_no), amount=amount) if trade["status"] == "pending" else ""
        fields = {"subject": trade["subject"], "out_trade_no": trade["out_trade_no"], "status": trade["status"]}
        page = CASHIER_HTML.format(amount=amount, action=action, **{k: html.escape(v) for k, v in fields.items()})
        self._send(200, page, "text/html")

    def _pay(self, trade_no: str) -> None:
        trade = self.sim.trade_by_no(trade_no)
        if trade is None:
            return self._send(404, "交易不存在", "text/plain")
        try:
            self.sim.pay(trade["out_trade_no"])
        except ValueError as exc:
            return self._send(409, html.escape(str(exc)), "text/html")
        if return_url := trade["return_url"]:
            sep = "&" if urlsplit(return_url).query else "?"
            query = urlencode(self.sim.return_params(trade))
            return self._send(302, "", "text/plain", f"{return_url}{sep}{query}")
        self._send(200, "<!doctype html><meta charset='utf-8'><h1 id='paid'>支付成功</h1>", "text/html")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--account-file", type=Path, help="SimAccount JSON: loaded if present, else written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sim = AlipaySimulator(args.host, args.port).start()
    if args.account_file:
        account = sim.load_or_create_account(args.account_file)
    else:
        account = sim.account()
    print(f"{sim.base_url} app_id={account.merchant_no}", flush=True)
    try:
        threading.Event().wait()  # serve until killed
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
