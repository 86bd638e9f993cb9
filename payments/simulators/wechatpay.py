"""Loopback simulator of the provider side of WeChat Pay API v3 (Native / QR pay), in public-key mode.

It plays api.mch.weixin.qq.com for one or more merchants: it verifies the `WECHATPAY2-SHA256-RSA2048`
Authorization of every /v3 request with the merchant's public key, signs every answer with the WeChat Pay
("platform") private key, and sends callbacks whose `resource` is AEAD_AES_256_GCM-encrypted with the
merchant's APIv3 key. `code_url` points at its own /scan/<code> page so a person can pay from a browser.

Routes: POST /v3/pay/transactions/native, GET /v3/pay/transactions/out-trade-no/{no}?mchid=,
GET /v3/pay/transactions/id/{id}?mchid=, POST /v3/pay/transactions/out-trade-no/{no}/close,
POST /v3/refund/domestic/refunds, GET /v3/refund/domestic/refunds/{out_refund_no}, GET/POST /scan/{code}[/pay],
POST /v3/fund-app/mch-transfer/transfer-bills, GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{no}.

Transfers (商家转账, user-confirm mode) debit the merchant's operating balance when the bill is accepted; a bill
then waits in WAIT_USER_CONFIRM for the payee to confirm in WeChat (`auto_confirm` does it at once, else
`confirm_transfer()` / `fail_transfer()`); FAIL gives the money back. Too little balance is 403 NOT_ENOUGH and no
bill; a payee WeChat refuses (`refuse_payee()`, a name that does not match `register_payee()`) is a FAIL bill.
`transfer_log` lists every execution (debit), so tests can count them per out_bill_no.

Daily trade bill (交易账单, ALL): GET /v3/bill/tradebill?bill_date=&bill_type=&tar_type= answers (signed)
{hash_type: SHA1, hash_value, download_url}; GET /v3/billdownload/file?token= (signed request, unsigned answer)
serves the file, GZIP when asked, whose SHA1 over the uncompressed bytes is hash_value. The bill lists the day's
(Beijing day) paid trades by success_time and refunds by create_time, fee `fee_rate_bp` (0.60 %) rounded half up,
refund rows with the fee given back as a negative amount; transfers are not on it (WeChat lists them on the fund
flow bill). A future day, or a day in `statements_pending`, answers 400 STATEMENT_CREATING; a day with no row
400 NO_STATEMENT_EXIST; the current day is served as it stands (the real bill comes after 10:00 the next day).
Discrepancies tests set as plain attributes (our_ref = out_trade_no, or out_refund_no for a refund row):
- `statement_omit`: set of our_refs left out of the bill;
- `statement_override`: {our_ref: {"amount": fen, "fee": fen, "status": word}} (any of the three keys);
- `statement_duplicate`: set of our_refs whose row is written twice;
- `statement_extra`: list of rows for trades we never heard of: {"our_ref", "provider_ref", "amount", "fee",
  "status" (default SUCCESS), "kind" ("payment" or "refund"), "trade_ref" (refunds), "day" (default: any day)};
- `statement_corrupt`: the served file has one byte changed after its hash was taken (hash check fails);
- `statement_bad_signature`: the tradebill answer's signature does not verify;
- `bill_link_seconds`: how long a download_url lives (300; a negative value: expired at once).
The summary always adds up the rows as written. `statement_synthetic(day, n)` adds n generated payment rows to
that day's bill without creating trades (written straight to disk, for 100,000-line benchmarks).

Balance (查询账户实时余额): GET /v3/merchant/fund/balance/{BASIC|OPERATION|FEES} answers {available_amount,
pending_amount} in fen, signed (`account_balance()`): BASIC holds the paid trades net of fee, refunds and splits (a
profit-sharing trade not finished is pending), OPERATION the operating account transfers pay out of;
`balance_bad_signature` signs the answer over another body.

Profit sharing (分账, /v3/profitsharing): a trade created with settle_info.profit_sharing=true is frozen when paid;
POST /v3/profitsharing/receivers/add binds a receiver (name RSA-OAEP encrypted like user_name); POST
/v3/profitsharing/orders splits to bound receivers (at most 50 a request, and in all at most `split_max_ratio_bp`,
30 %, of the trade), once per out_order_no, answering PROCESSING with receivers PENDING; `split_auto_settle` settles
at once after the answer, else `settle_split()` does (`split_fail_accounts`: {account: fail_reason} close those
receivers). Settled, an order reads FINISHED, its receivers SUCCESS or CLOSED, and unfreeze_unsplit releases the rest
of the trade to the merchant (the query then lists the merchant itself as a receiver, "解冻给分账方"); a
PROFITSHARING.SUCCESS callback goes to the trade's notify_url. GET /v3/profitsharing/orders/{no}?transaction_id=;
POST /v3/profitsharing/orders/unfreeze. POST /v3/profitsharing/return-orders takes back part of what a MERCHANT_ID
receiver got, once per out_return_no (GET .../return-orders/{no}?out_order_no=). `split_log` / `split_return_log`
list every execution; `split_ledger(out_trade_no)` gives per trade what was split, returned, frozen and released.

Runnable as ``python -m payments.simulators.wechatpay --port 8002 --account-file var/wechatpay.json``.
Written from the protocol, not from our adapter: it must not import ``payments.channels``, the wechatpayv3 SDK
or anything Django.
"""

from __future__ import annotations

import argparse
import base64
import copy
import csv
import gzip
import hashlib
import html
import io
import json
import logging
import os
import re
import secrets
import shutil
import string
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, PKCS1v15
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA1, SHA256

from payments.simulators.base import (
    BAD_SIGNATURE,
    CLOSED,
    STALE_TIMESTAMP,
    TAMPERED_CIPHERTEXT,
    UNKNOWN_ORDER,
    VALID,
    WRONG_AMOUNT,
    WRONG_CURRENCY,
    WRONG_MERCHANT,
    Faults,
    LoopbackServer,
    NotifyRequest,
    SimAccount,
)

logger = logging.getLogger(__name__)

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
AUTH_WINDOW_SECONDS = 300
NOTIFY_TIMEOUT = 5.0
CST = timezone(timedelta(hours=8))  # WeChat writes times in Beijing time, RFC 3339
OUT_TRADE_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
OUT_REFUND_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
AUTH_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
OUT_BILL_NO_RE = re.compile(r"^[0-9A-Za-z]{1,32}$")
TRANSFER_PATH = "/v3/fund-app/mch-transfer/transfer-bills"
USER_NAME_REQUIRED_FROM_FEN = 200_000  # 2,000 CNY
DEFAULT_BALANCE_FEN = 10_000_000  # each merchant's operating account starts with 100,000 CNY
# time_expire: RFC 3339 with an explicit offset ("yyyy-MM-DDTHH:mm:ss+TIMEZONE").
TIME_EXPIRE_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9]{2}:[0-9]{2}|Z)"
)
BILL_PATH = "/v3/bill/tradebill"
BALANCE_PATH = "/v3/merchant/fund/balance/"
BALANCE_ACCOUNT_TYPES = ("BASIC", "OPERATION", "FEES")
BILL_DOWNLOAD_PATH = "/v3/billdownload/file"
BILL_LINK_SECONDS = 300  # "该地址5min内有效"
BILL_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
BILL_COLUMNS = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注"
).split(",")
BILL_SUMMARY_COLUMNS = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额".split(",")
)
DEFAULT_FEE_RATE_BP = 60  # 0.60 %, WeChat's usual rate for online goods
# 分账 (profit sharing)
SPLIT_MAX_RATIO_BP = 3000  # "目前默认最高分账比例30%"
SPLIT_MAX_RECEIVERS = 50  # "每次请求最多分给50个接收方"
SPLIT_MAX_ORDERS = 50  # "对同一笔订单最多能发起50次分账请求"
OUT_ORDER_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
SPLIT_RECEIVER_TYPES = ("MERCHANT_ID", "PERSONAL_OPENID")
SPLIT_RELATION_TYPES = frozenset(
    {
        "STORE",
        "STAFF",
        "STORE_OWNER",
        "PARTNER",
        "HEADQUARTER",
        "BRAND",
        "DISTRIBUTOR",
        "USER",
        "SUPPLIER",
        "CUSTOM",
        "SERVICE_PROVIDER",
    }
)
TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "CLOSED": "订单已关闭",
    "PAYERROR": "支付失败(其他原因，如银行返回失败)",
}


class WxError(Exception):
    """A request WeChat Pay refuses: HTTP status plus the v3 error body {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class _Merchant:
    mchid: str
    appid: str
    serial_no: str
    apiv3_key: str
    public_key: rsa.RSAPublicKey


def _now_text() -> str:
    return datetime.now(CST).isoformat(timespec="seconds")


def _digits(n: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(n))


def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _dumps(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class WechatPaySimulator(LoopbackServer):
    code = "wechatpay"
    notify_variants = frozenset(
        {
            VALID,
            BAD_SIGNATURE,
            WRONG_AMOUNT,
            WRONG_CURRENCY,
            WRONG_MERCHANT,
            UNKNOWN_ORDER,
            STALE_TIMESTAMP,
            TAMPERED_CIPHERTEXT,
            CLOSED,
        }
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        platform_private_key: str | None = None,
        platform_public_key_id: str | None = None,
        refund_delay: float | None = 0.0,
        auto_confirm: bool = True,
    ) -> None:
        """`refund_delay`: 0 settles refunds at once (answer SUCCESS), > 0 answers PROCESSING and settles
        after that many seconds, None leaves them PROCESSING until `complete_refund()`. `auto_confirm`: the
        payee confirms each transfer right after it is answered (WAIT_USER_CONFIRM), so a query reads SUCCESS;
        False leaves it waiting until `confirm_transfer()` or `fail_transfer()`."""
        self.faults = Faults()
        self.refund_delay = refund_delay
        self.auto_confirm = auto_confirm
        self._address = (host, port)
        self.handler_class = _Handler
        if platform_private_key:
            loaded = serialization.load_pem_private_key(platform_private_key.encode(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("the platform key must be RSA")
            self._platform_key = loaded
        else:
            self._platform_key = _new_key()
        self.platform_public_key_id = platform_public_key_id or "PUB_KEY_ID_" + _digits(32)
        self._lock = threading.Lock()
        self._merchants: dict[str, _Merchant] = {}
        self._account: SimAccount | None = None
        self._account_credentials: dict[str, str] = {}
        self._trades: dict[tuple[str, str], dict[str, Any]] = {}  # (mchid, out_trade_no) -> trade
        self._by_code: dict[str, tuple[str, str]] = {}  # scan-page code -> trade key
        self._refunds: dict[tuple[str, str], dict[str, Any]] = {}  # (mchid, out_refund_no) -> refund
        self._bills: dict[tuple[str, str], dict[str, Any]] = {}  # (mchid, out_bill_no) -> transfer bill
        self._balances: dict[str, int] = {}  # mchid -> operating account, fen
        self._payee_names: dict[str, str] = {}  # openid -> the real name WeChat checks user_name against
        self._refused_payees: dict[str, str] = {}  # openid -> fail_reason
        self.transfer_log: list[dict[str, Any]] = []  # one entry per executed (debited) transfer
        # Profit sharing (see the module docstring).
        self.split_auto_settle = True
        self.split_max_ratio_bp = SPLIT_MAX_RATIO_BP
        self.split_fail_accounts: dict[str, str] = {}
        self._receivers: dict[tuple[str, str, str], dict[str, Any]] = {}  # (mchid, type, account) -> binding
        self._splits: dict[tuple[str, str], dict[str, Any]] = {}  # (mchid, out_order_no) -> split order
        self._split_returns: dict[tuple[str, str], dict[str, Any]] = {}  # (mchid, out_return_no) -> return
        self.split_log: list[dict[str, Any]] = []  # one entry per executed split order
        self.split_return_log: list[dict[str, Any]] = []  # one entry per executed return
        # The daily bill and what tests inject into it (see the module docstring).
        self.fee_rate_bp = DEFAULT_FEE_RATE_BP
        self.bill_link_seconds: float = BILL_LINK_SECONDS
        self.statements_pending: set[date] = set()
        self.statement_omit: set[str] = set()
        self.statement_override: dict[str, dict[str, Any]] = {}
        self.statement_duplicate: set[str] = set()
        self.statement_extra: list[dict[str, Any]] = []
        self.statement_corrupt = False
        self.statement_bad_signature = False
        self._synthetic: dict[tuple[str, date], dict[str, Any]] = {}  # pre-written rows: {path, count, amount, fee}
        self._bill_dir = tempfile.mkdtemp(prefix="wechatpay-sim-bills-")
        self._bill_links: dict[str, dict[str, Any]] = {}  # token -> {mchid, path, expires, gzip}
        self.balance_bad_signature = False  # the balance answers are signed over another body

    @property
    def platform_private_key_pem(self) -> str:
        """The provider's own signing key: what the CLI keeps beside the account file, never in it."""
        return _pem_private(self._platform_key)

    def platform_public_key_pem(self) -> str:
        return _pem_public(self._platform_key.public_key())

    # ---- merchants -----------------------------------------------------------------------------
    def account(self, *, webhook_url: str = "") -> SimAccount:
        """The demo merchant (keys generated on first call). WeChat takes a notify_url per payment:
        `webhook_url` is not used."""
        if self._account is None:
            key = _new_key()
            credentials = {
                "mch_private_key": _pem_private(key),
                "mch_serial_no": secrets.token_hex(20).upper(),
                "apiv3_key": "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32)),
                "platform_public_key": self.platform_public_key_pem(),
                "platform_public_key_id": self.platform_public_key_id,
                "appid": "wx" + secrets.token_hex(8),
            }
            self.add_merchant("19" + _digits(8), credentials)
        assert self._account is not None
        return SimAccount(
            merchant_no=self._account.merchant_no,
            base_url=self.base_url,
            currency=self._account.currency,
            credentials=dict(self._account.credentials),
        )

    def add_merchant(self, mchid: str, credentials: dict[str, str]) -> None:
        """Register a merchant from the credentials our side holds (its public key is derived from them).
        The first merchant added is the one `account()` returns."""
        private = serialization.load_pem_private_key(credentials["mch_private_key"].encode(), password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError("the merchant key must be RSA")
        merchant = _Merchant(
            mchid=mchid,
            appid=credentials["appid"],
            serial_no=credentials["mch_serial_no"],
            apiv3_key=credentials["apiv3_key"],
            public_key=private.public_key(),
        )
        with self._lock:
            self._merchants[mchid] = merchant
            self._balances.setdefault(mchid, DEFAULT_BALANCE_FEN)
            if self._account is None:
                self._account = SimAccount(mchid, "", "CNY", dict(credentials))

    def _merchant(self, mchid: str) -> _Merchant | None:
        with self._lock:
            return self._merchants.get(mchid)

    # ---- signing -----------------------------------------------------------------------------------
    def sign(self, timestamp: str, nonce: str, body: bytes) -> str:
        """Wechatpay-Signature of an answer or callback: SHA256withRSA over `ts\\nnonce\\nbody\\n`."""
        message = timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
        return base64.b64encode(self._platform_key.sign(message, PKCS1v15(), SHA256())).decode()

    def signed_headers(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16).upper()
        return {
            "Content-Type": "application/json; charset=utf-8",
            "Request-ID": str(uuid.uuid4()),
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": self.sign(ts, nonce, body),
            "Wechatpay-Serial": self.platform_public_key_id,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
        }

    def authenticate(self, method: str, target: str, body: bytes, authorization: str) -> _Merchant:
        """Check the merchant's Authorization over `METHOD\\nPATH?QUERY\\nts\\nnonce\\nbody\\n`."""
        scheme, _, rest = authorization.partition(" ")
        if scheme != SIGNATURE_TYPE:
            raise WxError(401, "SIGN_ERROR", "Authorization 认证类型错误")
        params = dict(AUTH_PARAM_RE.findall(rest))
        needed = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
        if any(not params.get(k) for k in needed):
            raise WxError(401, "SIGN_ERROR", "Authorization 缺少参数")
        merchant = self._merchant(params["mchid"])
        if merchant is None:
            raise WxError(401, "SIGN_ERROR", "商户号不存在")
        if params["serial_no"].upper() != merchant.serial_no.upper():
            raise WxError(401, "SIGN_ERROR", "商户证书序列号有误")
        ts = params["timestamp"]
        if not ts.isdigit() or abs(time.time() - int(ts)) > AUTH_WINDOW_SECONDS:
            raise WxError(401, "SIGN_ERROR", "请求的时间戳已过期")
        message = f"{method}\n{target}\n{ts}\n{params['nonce_str']}\n".encode() + body + b"\n"
        try:
            signature = base64.b64decode(params["signature"], validate=True)
            merchant.public_key.verify(signature, message, PKCS1v15(), SHA256())
        except (InvalidSignature, ValueError):
            raise WxError(401, "SIGN_ERROR", "签名错误") from None
        return merchant

    # ---- trades ------------------------------------------------------------------------------------
    def create(self, merchant: _Merchant, data: dict, host_base: str) -> dict[str, Any]:
        if data.get("mchid") != merchant.mchid:
            raise WxError(400, "PARAM_ERROR", "mchid与请求签名的商户号不一致")
        if data.get("appid") != merchant.appid:
            raise WxError(400, "PARAM_ERROR", "appid和mch_id不匹配")
        out_trade_no = data.get("out_trade_no")
        if not isinstance(out_trade_no, str) or not OUT_TRADE_NO_RE.match(out_trade_no):
            raise WxError(400, "PARAM_ERROR", "out_trade_no 格式错误")
        description = data.get("description")
        if not isinstance(description, str) or not 1 <= len(description.encode()) <= 127:
            raise WxError(400, "PARAM_ERROR", "description 长度须在1-127字节之间")
        notify_url = data.get("notify_url")
        parts = urlsplit(notify_url) if isinstance(notify_url, str) else None
        # Real WeChat also requires https; loopback demos use http.
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise WxError(400, "PARAM_ERROR", "notify_url 须为不带参数的 http(s) 地址")
        total, currency = self._amount_in(data.get("amount"), "total")
        time_expire, deadline = self._deadline(data.get("time_expire"))
        settle_info = data.get("settle_info")
        if settle_info is not None and (
            not isinstance(settle_info, dict) or not isinstance(settle_info.get("profit_sharing", False), bool)
        ):
            raise WxError(400, "PARAM_ERROR", "settle_info.profit_sharing 须为布尔值")
        profit_sharing = bool(settle_info and settle_info.get("profit_sharing"))
        fingerprint = {
            "description": description,
            "total": total,
            "notify_url": notify_url,
            "profit_sharing": profit_sharing,
        }
        key = (merchant.mchid, out_trade_no)
        with self._lock:
            if (trade := self._trades.get(key)) is not None:
                self._lapse(trade)
                if trade["status"] == "closed":
                    raise WxError(400, "ORDER_CLOSED", "订单已关闭")
                if trade["status"] != "pending":
                    raise WxError(400, "ORDERPAID", "该订单已支付")
                if trade["fingerprint"] != fingerprint:
                    raise WxError(400, "INVALID_REQUEST", "201 商户订单号重复")
                return copy.deepcopy(trade)
            code = secrets.token_urlsafe(12)
            trade = {
                "mchid": merchant.mchid,
                "appid": merchant.appid,
                "out_trade_no": out_trade_no,
                "description": description,
                "amount_minor": total,
                "currency": currency,
                "notify_url": notify_url,
                "status": "pending",
                "provider_trade_no": "4200" + datetime.now(CST).strftime("%Y%m%d") + _digits(16),
                "code": code,
                "code_url": f"{host_base}/scan/{code}",
                "create_time": _now_text(),
                "success_time": "",
                "time_expire": time_expire,  # as received, for tests of the wire format
                "deadline": deadline,
                "refunded_minor": 0,
                # Profit sharing: frozen when paid; split_minor went to receivers (returned_minor came back),
                # released_minor was unfrozen to the merchant (unfreeze_unsplit).
                "profit_sharing": profit_sharing,
                "split_minor": 0,
                "returned_minor": 0,
                "released_minor": 0,
                "split_finished": False,
                "openid": "o" + secrets.token_urlsafe(20),
                "fingerprint": fingerprint,
                "notify_attempts": [],
            }
            self._trades[key] = trade
            self._by_code[code] = key
            return copy.deepcopy(trade)

    @staticmethod
    def _amount_in(amount: object, field: str) -> tuple[int, str]:
        if not isinstance(amount, dict):
            raise WxError(400, "PARAM_ERROR", "缺少参数 amount")
        value = amount.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise WxError(400, "PARAM_ERROR", f"amount.{field} 须为正整数（单位：分）")
        currency = amount.get("currency", "CNY")
        if currency != "CNY":
            raise WxError(400, "PARAM_ERROR", "境内商户号仅支持人民币 CNY")
        return value, currency

    @staticmethod
    def _deadline(value: object) -> tuple[str, float | None]:
        if value is None:
            return "", None
        if not isinstance(value, str) or not TIME_EXPIRE_RE.fullmatch(value):
            raise WxError(400, "PARAM_ERROR", "time_expire 须为 rfc3339 格式，如 2018-06-08T10:34:56+08:00")
        try:
            return value, datetime.fromisoformat(value).timestamp()
        except ValueError:
            raise WxError(400, "PARAM_ERROR", "time_expire 不是合法时间") from None

    @staticmethod
    def _lapse(trade: dict) -> None:
        """An unpaid trade past its time_expire can no longer be paid and reads CLOSED. Applied whenever the
        trade is looked at (callers hold the lock)."""
        if trade["status"] == "pending" and trade.get("deadline") is not None and time.time() >= trade["deadline"]:
            trade["status"] = "closed"

    def _find(self, out_trade_no: str, mchid: str | None = None) -> tuple[str, str] | None:
        with self._lock:
            if mchid is not None:
                return (mchid, out_trade_no) if (mchid, out_trade_no) in self._trades else None
            return next((k for k in self._trades if k[1] == out_trade_no), None)

    def trade_for(self, out_trade_no: str) -> dict | None:
        """The provider's record; status is pending, paid, closed or refunded (refunded in full)."""
        key = self._find(out_trade_no)
        if key is None:
            return None
        with self._lock:
            self._lapse(self._trades[key])
            trade = copy.deepcopy(self._trades[key])
            trade["refunds"] = [copy.deepcopy(r) for r in self._refunds.values() if r["trade_key"] == key]
        if trade["status"] == "paid" and trade["refunded_minor"] >= trade["amount_minor"]:
            trade["status"] = "refunded"
        return trade

    @staticmethod
    def _trade_state(trade: dict) -> str:
        if trade["status"] == "paid":
            return "REFUND" if trade["refunded_minor"] else "SUCCESS"
        if trade["status"] == "pending" and trade.get("declined"):
            return "PAYERROR"
        return {"pending": "NOTPAY", "closed": "CLOSED"}[trade["status"]]

    def _transaction(self, trade: dict, trade_state: str | None = None) -> dict[str, Any]:
        """A trade as the query API and the TRANSACTION callbacks describe it."""
        state = trade_state or self._trade_state(trade)
        view: dict[str, Any] = {
            "appid": trade["appid"],
            "mchid": trade["mchid"],
            "out_trade_no": trade["out_trade_no"],
            "trade_type": "NATIVE",
            "trade_state": state,
            "trade_state_desc": TRADE_STATE_DESC.get(state, state),
            "attach": "",
        }
        if state in ("SUCCESS", "REFUND"):
            view.update(
                transaction_id=trade["provider_trade_no"],
                bank_type="OTHERS",
                success_time=trade["success_time"] or _now_text(),
                payer={"openid": trade["openid"]},
                amount={
                    "total": trade["amount_minor"],
                    "payer_total": trade["amount_minor"],
                    "currency": trade["currency"],
                    "payer_currency": trade["currency"],
                },
            )
        else:
            # Unpaid trades come without transaction_id and without amount.currency.
            view["amount"] = {"total": trade["amount_minor"], "payer_currency": trade["currency"]}
        return view

    def query(self, merchant: _Merchant, out_trade_no: str = "", transaction_id: str = "") -> dict[str, Any]:
        with self._lock:
            if transaction_id:
                found = [
                    t
                    for k, t in self._trades.items()
                    if k[0] == merchant.mchid and t["provider_trade_no"] == transaction_id
                ]
                trade = copy.deepcopy(found[0]) if found and found[0]["status"] != "pending" else None
            else:
                if (live := self._trades.get((merchant.mchid, out_trade_no))) is not None:
                    self._lapse(live)
                trade = copy.deepcopy(live)
        if trade is None:
            raise WxError(404, "ORDER_NOT_EXIST", "订单不存在")
        return self._transaction(trade)

    def close(self, merchant: _Merchant, out_trade_no: str) -> None:
        with self._lock:
            trade = self._trades.get((merchant.mchid, out_trade_no))
            if trade is None:
                raise WxError(404, "ORDER_NOT_EXIST", "订单不存在")
            if trade["status"] == "paid":
                raise WxError(400, "ORDERPAID", "订单已支付")
            trade["status"] = "closed"

    # ---- the buyer pays ----------------------------------------------------------------------------
    def pay(self, out_trade_no: str) -> None:
        """The buyer scans and pays: the trade is paid, then the callback goes out (faults apply).
        A notify endpoint that fails does not undo the payment."""
        key = self._find(out_trade_no)
        if key is None:
            raise KeyError(out_trade_no)
        with self._lock:
            trade = self._trades[key]
            self._lapse(trade)
            if trade["status"] == "closed":
                raise ValueError(f"trade {out_trade_no} is closed")
            if trade["status"] == "pending":
                trade.update(status="paid", success_time=_now_text(), declined=False)
            url = trade["notify_url"]
        self._dispatch(key, url, lambda: self.notify_request(out_trade_no), background=False)

    def decline(self, out_trade_no: str) -> None:
        """The buyer's bank refuses this attempt: the query reads PAYERROR until the buyer pays with another
        card (the trade stays open). API v3 notifies only successful payments, so no callback is sent."""
        key = self._find(out_trade_no)
        if key is None:
            raise KeyError(out_trade_no)
        with self._lock:
            trade = self._trades[key]
            self._lapse(trade)
            if trade["status"] != "pending":
                raise ValueError(f"trade {out_trade_no} is {trade['status']}: nothing to decline")
            trade["declined"] = True

    def _dispatch(
        self, key: tuple[str, str], url: str, build: Callable[[], NotifyRequest], *, background: bool
    ) -> None:
        """Send one callback as the faults say: dropped, sent twice (same body, as a re-notify), or later."""
        if self.faults.take("drop_notify"):
            self._record(key, {"at": _now_text(), "dropped": True})
            return
        copies = 2 if self.faults.take("duplicate_notify") else 1
        delay = self.faults.notify_delay

        def send() -> None:
            if delay:
                time.sleep(delay)
            notify = build()  # built at sending time: the timestamp must be fresh
            for _ in range(copies):
                self._post(key, url, notify)

        if background or delay > 0:
            threading.Thread(target=send, daemon=True).start()
        else:
            send()

    def _post(self, key: tuple[str, str], url: str, notify: NotifyRequest) -> None:
        attempt: dict[str, Any] = {"at": _now_text(), "url": url, "status_code": None, "error": None}
        try:
            resp = requests.post(url, data=notify.body, headers=notify.headers, timeout=NOTIFY_TIMEOUT)
            # WeChat stops re-notifying on 200 or 204; the body is not read.
            attempt.update(status_code=resp.status_code, acknowledged=resp.status_code in (200, 204))
        except requests.RequestException as exc:
            attempt.update(error=type(exc).__name__, acknowledged=False)
            logger.warning("wechatpay simulator: notify to %s failed: %s", url, type(exc).__name__)
        self._record(key, attempt)

    def _record(self, key: tuple[str, str], attempt: dict[str, Any]) -> None:
        with self._lock:
            if key in self._trades:
                self._trades[key]["notify_attempts"].append(attempt)

    # ---- callbacks -----------------------------------------------------------------------------------
    def notify_request(self, out_trade_no: str, *, variant: str = VALID, amount: object = None) -> NotifyRequest:
        """A TRANSACTION callback for the trade (paid; closed for CLOSED), forged as `variant` says. `amount`
        replaces amount.total with any JSON value (a dict: merged into `amount`), still encrypted and signed."""
        if variant not in self.notify_variants:
            raise ValueError(f"unknown variant {variant!r}")
        trade = self.trade_for(out_trade_no)
        if trade is None:
            raise KeyError(out_trade_no)
        merchant = self._merchant(trade["mchid"])
        assert merchant is not None
        if variant == CLOSED:
            resource = self._transaction(trade, "CLOSED")
            resource["amount"]["currency"] = trade["currency"]  # callbacks always state the currency
            event_type, summary = "TRANSACTION.CLOSED", "订单已关闭"
        else:
            resource = self._transaction(trade, "SUCCESS")
            event_type, summary = "TRANSACTION.SUCCESS", "支付成功"
        fields = resource["amount"]
        if variant == WRONG_AMOUNT:
            fields["total"] = fields["payer_total"] = 1 if fields["total"] != 1 else 2
        elif variant == WRONG_CURRENCY:
            fields["currency"] = fields["payer_currency"] = "USD"
        elif variant == WRONG_MERCHANT:
            mchid = trade["mchid"]
            resource["mchid"] = str(int(mchid) + 1) if mchid.isdigit() else mchid + "0"
        elif variant == UNKNOWN_ORDER:
            resource["out_trade_no"] = "UNKNOWN" + _digits(12)
        if isinstance(amount, dict):
            fields.update(amount)
        elif amount is not None:
            fields["total"] = amount
        return self._callback(
            merchant,
            resource,
            event_type=event_type,
            summary=summary,
            original_type="transaction",
            stale=variant == STALE_TIMESTAMP,
            tamper=variant == TAMPERED_CIPHERTEXT,
            bad_signature=variant == BAD_SIGNATURE,
        )

    def refund_notify_request(self, out_refund_no: str) -> NotifyRequest:
        """The REFUND.<status> callback of a settled refund (its resource has no appid and no currency)."""
        with self._lock:
            refund = copy.deepcopy(next(r for r in self._refunds.values() if r["out_refund_no"] == out_refund_no))
        resource = {
            "mchid": refund["mchid"],
            "transaction_id": refund["transaction_id"],
            "out_trade_no": refund["out_trade_no"],
            "refund_id": refund["refund_id"],
            "out_refund_no": refund["out_refund_no"],
            "refund_status": refund["status"],
            "success_time": refund["success_time"],
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": refund["total"],
                "refund": refund["refund"],
                "payer_total": refund["total"],
                "payer_refund": refund["refund"],
            },
        }
        summary = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}.get(refund["status"], "")
        return self._callback(
            self._merchants[refund["mchid"]],
            resource,
            event_type=f"REFUND.{refund['status']}",
            summary=summary,
            original_type="refund",
        )

    def _callback(
        self,
        merchant: _Merchant,
        resource: dict,
        *,
        event_type: str,
        summary: str,
        original_type: str,
        stale: bool = False,
        tamper: bool = False,
        bad_signature: bool = False,
    ) -> NotifyRequest:
        nonce = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))
        sealed = AESGCM(merchant.apiv3_key.encode()).encrypt(nonce.encode(), _dumps(resource), original_type.encode())
        if tamper:
            sealed = bytes([sealed[0] ^ 0x01]) + sealed[1:]
        envelope = {
            "id": str(uuid.uuid4()),
            "create_time": _now_text(),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(),
                "associated_data": original_type,
                "nonce": nonce,
            },
        }
        body = _dumps(envelope)
        # A tampered ciphertext is still signed by us: the receiver's AES-GCM check is what must catch it.
        headers = self.signed_headers(body, timestamp=int(time.time()) - 600 if stale else None)
        if bad_signature:
            headers["Wechatpay-Signature"] = self.sign(headers["Wechatpay-Timestamp"], "x", body)
        return NotifyRequest(method="POST", body=body, headers=headers, content_type="application/json")

    # ---- refunds -------------------------------------------------------------------------------------
    def refund(self, merchant: _Merchant, data: dict) -> dict[str, Any]:
        out_refund_no = data.get("out_refund_no")
        if not isinstance(out_refund_no, str) or not OUT_REFUND_NO_RE.match(out_refund_no):
            raise WxError(400, "PARAM_ERROR", "out_refund_no 格式错误")
        amount = data.get("amount")
        refund_minor, _ = self._amount_in(amount, "refund")
        total, _ = self._amount_in(amount, "total")
        if "currency" not in amount:  # type: ignore[operator]
            raise WxError(400, "PARAM_ERROR", "缺少参数 amount.currency")
        with self._lock:
            if data.get("out_trade_no"):
                key = (merchant.mchid, str(data["out_trade_no"]))
            else:
                tid = data.get("transaction_id")
                key = next((k for k, t in self._trades.items() if t["provider_trade_no"] == tid), ("", ""))
            trade = self._trades.get(key)
            if trade is None or trade["mchid"] != merchant.mchid:
                raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
            rkey = (merchant.mchid, out_refund_no)
            if (existing := self._refunds.get(rkey)) is not None:
                # Same out_refund_no: the same refund, answered again, never a second one.
                if existing["trade_key"] != key or existing["refund"] != refund_minor:
                    raise WxError(400, "INVALID_REQUEST", "退款单号已存在且参数不一致")
                return self._refund_view(existing)
            if trade["status"] != "paid":
                raise WxError(400, "INVALID_REQUEST", "订单未支付，不能退款")
            if total != trade["amount_minor"]:
                raise WxError(400, "PARAM_ERROR", "订单金额 amount.total 与原订单不一致")
            if refund_minor > trade["amount_minor"] - trade["refunded_minor"]:
                raise WxError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
            given_away = trade["split_minor"] - trade["returned_minor"]
            if refund_minor > trade["amount_minor"] - trade["refunded_minor"] - given_away:
                # What the receivers hold is not the merchant's to refund: it must be returned (分账回退) first.
                raise WxError(403, "NOT_ENOUGH", "可退金额不足，请先发起分账回退")
            trade["refunded_minor"] += refund_minor
            refund = {
                "trade_key": key,
                "mchid": merchant.mchid,
                "out_trade_no": trade["out_trade_no"],
                "transaction_id": trade["provider_trade_no"],
                "out_refund_no": out_refund_no,
                "refund_id": "50" + _digits(30),
                "refund": refund_minor,
                "total": total,
                "status": "PROCESSING",
                "create_time": _now_text(),
                "success_time": "",
                "notify_url": str(data.get("notify_url") or ""),
                "reason": str(data.get("reason") or ""),
            }
            self._refunds[rkey] = refund
            answer = self._refund_view(refund)
        if self.refund_delay == 0:
            self.complete_refund(out_refund_no, background=True)
            with self._lock:
                answer = self._refund_view(self._refunds[rkey])
        elif self.refund_delay is not None:
            timer = threading.Timer(self.refund_delay, self.complete_refund, args=(out_refund_no,))
            timer.daemon = True
            timer.start()
        return answer

    def complete_refund(self, out_refund_no: str, status: str = "SUCCESS", *, background: bool = True) -> None:
        """Settle a PROCESSING refund (SUCCESS, ABNORMAL or CLOSED) and send its callback if it named a URL."""
        if status not in ("SUCCESS", "ABNORMAL", "CLOSED"):
            raise ValueError(status)
        with self._lock:
            refund = next(r for r in self._refunds.values() if r["out_refund_no"] == out_refund_no)
            if refund["status"] != "PROCESSING":
                return
            refund["status"] = status
            if status == "SUCCESS":
                refund["success_time"] = _now_text()
            elif status == "CLOSED":
                self._trades[refund["trade_key"]]["refunded_minor"] -= refund["refund"]
            key, url = refund["trade_key"], refund["notify_url"]
        if url:
            self._dispatch(key, url, lambda: self.refund_notify_request(out_refund_no), background=background)

    def refund_query(self, merchant: _Merchant, out_refund_no: str) -> dict[str, Any]:
        with self._lock:
            refund = self._refunds.get((merchant.mchid, out_refund_no))
            if refund is None:
                raise WxError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            return self._refund_view(refund)

    @staticmethod
    def _refund_view(refund: dict) -> dict[str, Any]:
        view = {
            "refund_id": refund["refund_id"],
            "out_refund_no": refund["out_refund_no"],
            "transaction_id": refund["transaction_id"],
            "out_trade_no": refund["out_trade_no"],
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": refund["create_time"],
            "status": refund["status"],
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund["total"],
                "refund": refund["refund"],
                "payer_total": refund["total"],
                "payer_refund": refund["refund"],
                "settlement_total": refund["total"],
                "settlement_refund": refund["refund"],
                "discount_refund": 0,
                "currency": "CNY",
                "from": [],
            },
        }
        if refund["success_time"]:
            view["success_time"] = refund["success_time"]
        return view

    # ---- transfers (商家转账) -----------------------------------------------------------------------
    def _mchid(self, mchid: str | None) -> str:
        if mchid is not None:
            return mchid
        if self._account is None:
            self.account()
        assert self._account is not None
        return self._account.merchant_no

    def balance(self, mchid: str | None = None) -> int:
        """The merchant's operating account in fen (the demo merchant's when `mchid` is None)."""
        key = self._mchid(mchid)
        with self._lock:
            return self._balances[key]

    def set_balance(self, fen: int, mchid: str | None = None) -> None:
        key = self._mchid(mchid)
        with self._lock:
            self._balances[key] = fen

    def account_balance(self, account_type: str = "BASIC", mchid: str | None = None) -> dict[str, int]:
        """What 查询账户实时余额 answers, in fen. BASIC: every paid trade net of the fee, of its refunds not closed
        (the fee's share coming back) and of what went to receivers and was not returned; a profit-sharing trade
        not finished yet is all pending (frozen), the rest available. OPERATION: the operating account transfers
        pay out of (`balance()`). FEES (手续费账户) holds nothing here."""
        key = self._mchid(mchid)
        with self._lock:
            if account_type == "OPERATION":
                return {"available_amount": self._balances[key], "pending_amount": 0}
            available = pending = 0
            if account_type == "BASIC":
                for (trade_mchid, _), trade in self._trades.items():
                    if trade_mchid != key or trade["status"] != "paid":
                        continue
                    amount = trade["amount_minor"]
                    net = amount - self._fee(amount) - (trade["split_minor"] - trade["returned_minor"])
                    for refund in self._refunds.values():
                        if refund["trade_key"] == (trade_mchid, trade["out_trade_no"]) and refund["status"] != "CLOSED":
                            net -= refund["refund"] - self._fee(refund["refund"])
                    if self._frozen(trade):
                        pending += net
                    else:
                        available += net
            return {"available_amount": available, "pending_amount": pending}

    def register_payee(self, openid: str, real_name: str) -> None:
        """The payee's real name: a transfer naming another user_name fails NAME_NOT_CORRECT."""
        with self._lock:
            self._payee_names[openid] = real_name

    def refuse_payee(self, openid: str, reason: str = "OPENID_INVALID") -> None:
        """WeChat refuses transfers to this payee: the bill is created and answered FAIL with `reason`."""
        with self._lock:
            self._refused_payees[openid] = reason

    def transfers(self) -> dict[str, dict[str, Any]]:
        """Executed transfers (the balance was debited), keyed by out_bill_no."""
        with self._lock:
            return {b["out_bill_no"]: copy.deepcopy(b) for b in self._bills.values() if b["executed"]}

    def transfer_for(self, out_bill_no: str) -> dict[str, Any] | None:
        """The bill under that number (any state, executed or not), or None."""
        with self._lock:
            bill = next((b for b in self._bills.values() if b["out_bill_no"] == out_bill_no), None)
            return copy.deepcopy(bill)

    def _decrypt_sensitive(self, value: object, serial: str) -> str:
        if serial != self.platform_public_key_id:
            raise WxError(400, "PARAM_ERROR", "Wechatpay-Serial 与加密使用的微信支付公钥不一致")
        try:
            sealed = base64.b64decode(str(value), validate=True)
            oaep = OAEP(mgf=MGF1(algorithm=SHA1()), algorithm=SHA1(), label=None)  # noqa: S303 (the protocol's)
            return self._platform_key.decrypt(sealed, oaep).decode()
        except ValueError:
            raise WxError(400, "PARAM_ERROR", "user_name 解密失败，请使用微信支付公钥加密") from None

    def transfer_bill(self, merchant: _Merchant, data: dict, serial: str) -> dict[str, Any]:
        """发起转账: validate, then answer the existing bill under that out_bill_no, or refuse, or debit."""
        if data.get("appid") != merchant.appid:
            raise WxError(400, "PARAM_ERROR", "appid和mch_id不匹配")
        out_bill_no = data.get("out_bill_no")
        if not isinstance(out_bill_no, str) or not OUT_BILL_NO_RE.match(out_bill_no):
            raise WxError(400, "PARAM_ERROR", "out_bill_no 只能由数字、大小写字母组成，最长32位")
        scene = data.get("transfer_scene_id")
        if not isinstance(scene, str) or not 1 <= len(scene) <= 36:
            raise WxError(400, "PARAM_ERROR", "缺少参数 transfer_scene_id")
        openid = data.get("openid")
        if not isinstance(openid, str) or not 1 <= len(openid) <= 64:
            raise WxError(400, "PARAM_ERROR", "缺少参数 openid")
        amount = data.get("transfer_amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise WxError(400, "PARAM_ERROR", "transfer_amount 须为正整数（单位：分）")
        remark = data.get("transfer_remark")
        if not isinstance(remark, str) or not 1 <= len(remark) <= 32:
            raise WxError(400, "PARAM_ERROR", "transfer_remark 最多允许32个字符")
        infos = data.get("transfer_scene_report_infos")
        if (
            not isinstance(infos, list)
            or not infos
            or not all(
                isinstance(i, dict) and isinstance(i.get("info_type"), str) and isinstance(i.get("info_content"), str)
                for i in infos
            )
        ):
            raise WxError(400, "PARAM_ERROR", "transfer_scene_report_infos 须按转账场景报备")
        user_name = self._decrypt_sensitive(data["user_name"], serial) if "user_name" in data else ""
        if amount >= USER_NAME_REQUIRED_FROM_FEN and not user_name:
            raise WxError(400, "PARAM_ERROR", "转账金额 >= 2,000元时，收款用户姓名必填")
        fingerprint = {"openid": openid, "transfer_amount": amount, "transfer_scene_id": scene}
        key = (merchant.mchid, out_bill_no)
        with self._lock:
            if (bill := self._bills.get(key)) is not None:
                # The same out_bill_no is the same transfer: answered again, never executed twice.
                if bill["fingerprint"] != fingerprint:
                    raise WxError(400, "INVALID_REQUEST", "商户单号重复，且请求参数与原单不一致")
                return self._bill_answer(bill)
            reason = self._refused_payees.get(openid, "")
            known_name = self._payee_names.get(openid)
            if not reason and user_name and known_name is not None and known_name != user_name:
                reason = "NAME_NOT_CORRECT"
            if not reason and self._balances[merchant.mchid] < amount:
                # No bill: WeChat asks for the same out_bill_no again once the account is topped up.
                raise WxError(403, "NOT_ENOUGH", "商户运营账户资金不足,充值后可以原单号发起重试,请勿更换商户单号")
            now = _now_text()
            bill = {
                "mchid": merchant.mchid,
                "appid": merchant.appid,
                "out_bill_no": out_bill_no,
                "transfer_bill_no": "1330" + _digits(36),
                "transfer_scene_id": scene,
                "openid": openid,
                "user_name": user_name,
                "transfer_amount": amount,
                "transfer_remark": remark,
                "notify_url": str(data.get("notify_url") or ""),
                "state": "FAIL" if reason else "WAIT_USER_CONFIRM",
                "fail_reason": reason,
                "package_info": "" if reason else secrets.token_urlsafe(48),
                "create_time": now,
                "update_time": now,
                "executed": not reason,
                "fingerprint": fingerprint,
            }
            self._bills[key] = bill
            if not reason:
                self._balances[merchant.mchid] -= amount
                self.transfer_log.append({"mchid": merchant.mchid, "out_bill_no": out_bill_no, "amount": amount})
            answer = self._bill_answer(bill)
            if self.auto_confirm and not reason:
                self._settle(bill, "SUCCESS")
        return answer

    def confirm_transfer(self, out_bill_no: str) -> None:
        """The payee confirms in WeChat: the waiting bill becomes SUCCESS."""
        with self._lock:
            self._settle(self._waiting_bill(out_bill_no), "SUCCESS")

    def fail_transfer(self, out_bill_no: str, reason: str = "ACCOUNT_FROZEN") -> None:
        """The waiting bill fails (payee frozen, confirm window over...): FAIL, the money goes back."""
        with self._lock:
            self._settle(self._waiting_bill(out_bill_no), "FAIL", reason)

    def _waiting_bill(self, out_bill_no: str) -> dict[str, Any]:
        bill = next((b for b in self._bills.values() if b["out_bill_no"] == out_bill_no), None)
        if bill is None:
            raise KeyError(out_bill_no)
        if bill["state"] != "WAIT_USER_CONFIRM":
            raise ValueError(f"bill {out_bill_no} is {bill['state']}: nothing to settle")
        return bill

    def _settle(self, bill: dict[str, Any], state: str, reason: str = "") -> None:
        """Callers hold the lock."""
        bill.update(state=state, fail_reason=reason, update_time=_now_text(), package_info="")
        if state == "FAIL":
            self._balances[bill["mchid"]] += bill["transfer_amount"]

    @staticmethod
    def _bill_answer(bill: dict[str, Any]) -> dict[str, Any]:
        """The create answer: out_bill_no, transfer_bill_no, create_time, state, package_info (to confirm)."""
        answer = {
            "out_bill_no": bill["out_bill_no"],
            "transfer_bill_no": bill["transfer_bill_no"],
            "create_time": bill["create_time"],
            "state": bill["state"],
        }
        if bill["state"] == "WAIT_USER_CONFIRM":
            answer["package_info"] = bill["package_info"]
        if bill["fail_reason"]:
            answer["fail_reason"] = bill["fail_reason"]
        return answer

    def transfer_query(self, merchant: _Merchant, out_bill_no: str) -> dict[str, Any]:
        """商户单号查询转账单."""
        with self._lock:
            bill = self._bills.get((merchant.mchid, out_bill_no))
            if bill is None:
                raise WxError(404, "NOT_FOUND", "记录不存在")
            view = {
                "mch_id": bill["mchid"],
                "out_bill_no": bill["out_bill_no"],
                "transfer_bill_no": bill["transfer_bill_no"],
                "appid": bill["appid"],
                "state": bill["state"],
                "transfer_amount": bill["transfer_amount"],
                "transfer_remark": bill["transfer_remark"],
                "openid": bill["openid"],
                "create_time": bill["create_time"],
                "update_time": bill["update_time"],
            }
            if bill["fail_reason"]:
                view["fail_reason"] = bill["fail_reason"]
            return view

    # ---- profit sharing (分账) -----------------------------------------------------------------------------
    def add_receiver(self, merchant: _Merchant, data: dict, serial: str) -> dict[str, Any]:
        """添加分账接收方: binding again is accepted (it updates the relation)."""
        if data.get("appid") != merchant.appid:
            raise WxError(400, "PARAM_ERROR", "appid和mch_id不匹配")
        kind, account = data.get("type"), data.get("account")
        if kind not in SPLIT_RECEIVER_TYPES:
            raise WxError(400, "PARAM_ERROR", "type 须为 MERCHANT_ID 或 PERSONAL_OPENID")
        if not isinstance(account, str) or not 1 <= len(account) <= 64:
            raise WxError(400, "PARAM_ERROR", "缺少参数 account")
        relation = data.get("relation_type")
        if relation not in SPLIT_RELATION_TYPES:
            raise WxError(400, "PARAM_ERROR", "relation_type 不合法")
        if relation == "CUSTOM" and not data.get("custom_relation"):
            raise WxError(400, "PARAM_ERROR", "relation_type 为 CUSTOM 时 custom_relation 必填")
        name = self._decrypt_sensitive(data["name"], serial) if "name" in data else ""
        if kind == "MERCHANT_ID" and not name:
            raise WxError(400, "PARAM_ERROR", "分账接收方类型为MERCHANT_ID时，name(商户全称)必填")
        with self._lock:
            self._receivers[(merchant.mchid, kind, account)] = {
                "type": kind,
                "account": account,
                "name": name,
                "relation_type": relation,
                "custom_relation": str(data.get("custom_relation") or ""),
            }
        answer: dict[str, Any] = {"type": kind, "account": account, "relation_type": relation}
        if relation == "CUSTOM":
            answer["custom_relation"] = data["custom_relation"]
        return answer

    def receivers(self, mchid: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """Bound receivers of the merchant, keyed by (type, account)."""
        key = self._mchid(mchid)
        with self._lock:
            return {(k[1], k[2]): copy.deepcopy(v) for k, v in self._receivers.items() if k[0] == key}

    def _sharing_trade(self, merchant: _Merchant, transaction_id: object) -> tuple[tuple[str, str], dict[str, Any]]:
        """The paid, profit-sharing trade under transaction_id (callers hold the lock)."""
        found = next(
            (
                (k, t)
                for k, t in self._trades.items()
                if k[0] == merchant.mchid and t["provider_trade_no"] == transaction_id
            ),
            None,
        )
        if found is None or found[1]["status"] != "paid":
            raise WxError(404, "RESOURCE_NOT_EXISTS", "订单不存在或未支付")
        if not found[1]["profit_sharing"]:
            raise WxError(400, "INVALID_REQUEST", "该笔订单下单时未设置分账标识(profit_sharing)，不支持分账")
        return found

    def split(self, merchant: _Merchant, data: dict) -> dict[str, Any]:
        """请求分账: once per out_order_no; checked against bindings and the maximum ratio before anything moves."""
        if data.get("appid") != merchant.appid:
            raise WxError(400, "PARAM_ERROR", "appid和mch_id不匹配")
        out_order_no = data.get("out_order_no")
        if not isinstance(out_order_no, str) or not OUT_ORDER_NO_RE.match(out_order_no):
            raise WxError(400, "PARAM_ERROR", "out_order_no 只能是数字、大小写字母_-|*@，最长64位")
        unfreeze = data.get("unfreeze_unsplit")
        if not isinstance(unfreeze, bool):
            raise WxError(400, "PARAM_ERROR", "缺少参数 unfreeze_unsplit")
        raw = data.get("receivers")
        if not isinstance(raw, list) or not raw:
            raise WxError(400, "PARAM_ERROR", "缺少参数 receivers")
        if len(raw) > SPLIT_MAX_RECEIVERS:
            raise WxError(400, "PARAM_ERROR", f"每次请求最多分给{SPLIT_MAX_RECEIVERS}个接收方")
        wanted = []
        for r in raw:
            if not isinstance(r, dict) or r.get("type") not in SPLIT_RECEIVER_TYPES:
                raise WxError(400, "PARAM_ERROR", "receivers.type 须为 MERCHANT_ID 或 PERSONAL_OPENID")
            amount, account, text = r.get("amount"), r.get("account"), r.get("description")
            if not isinstance(account, str) or not account:
                raise WxError(400, "PARAM_ERROR", "缺少参数 receivers.account")
            if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                raise WxError(400, "PARAM_ERROR", "receivers.amount 须为正整数（单位：分）")
            if not isinstance(text, str) or not 1 <= len(text) <= 80:
                raise WxError(400, "PARAM_ERROR", "receivers.description 必填，最多80个字符")
            wanted.append({"type": r["type"], "account": account, "amount": amount, "description": text})
        fingerprint = {"transaction_id": data.get("transaction_id"), "receivers": wanted, "unfreeze": unfreeze}
        with self._lock:
            if (order := self._splits.get((merchant.mchid, out_order_no))) is not None:
                # "同一分账单号多次请求等同一次"
                if order["fingerprint"] != fingerprint:
                    raise WxError(400, "INVALID_REQUEST", "商户分账单号重复，且请求参数与原单不一致")
                return self._split_view(order)
            key, trade = self._sharing_trade(merchant, data.get("transaction_id"))
            if trade["split_finished"]:
                raise WxError(400, "INVALID_REQUEST", "订单已完结分账，剩余资金已解冻")
            if sum(1 for o in self._splits.values() if o["trade_key"] == key) >= SPLIT_MAX_ORDERS:
                raise WxError(400, "INVALID_REQUEST", f"对同一笔订单最多能发起{SPLIT_MAX_ORDERS}次分账请求")
            for r in wanted:
                if (merchant.mchid, r["type"], r["account"]) not in self._receivers:
                    raise WxError(400, "PARAM_ERROR", "分账接收方关系不存在，请检查参数中每个接收方的关系")
            total = sum(r["amount"] for r in wanted)
            if trade["split_minor"] + total > trade["amount_minor"] * self.split_max_ratio_bp // 10_000:
                raise WxError(400, "INVALID_REQUEST", "分账金额超出最大分账比例")
            if total > self._frozen(trade):
                raise WxError(403, "NOT_ENOUGH", "订单剩余待分金额不足")
            now = _now_text()
            order = {
                "trade_key": key,
                "mchid": merchant.mchid,
                "transaction_id": trade["provider_trade_no"],
                "out_order_no": out_order_no,
                "order_id": "3008" + _digits(28),
                "state": "PROCESSING",
                "unfreeze_unsplit": unfreeze,
                "receivers": [
                    dict(
                        r,
                        result="PENDING",
                        fail_reason="",
                        detail_id="3601" + _digits(28),
                        create_time=now,
                        finish_time="",
                    )
                    for r in wanted
                ],
                "fingerprint": fingerprint,
                "released_minor": 0,
            }
            self._splits[(merchant.mchid, out_order_no)] = order
            # The money leaves the frozen part now (it is in flight); a CLOSED receiver gives its share back.
            trade["split_minor"] += total
            self.split_log.append({"mchid": merchant.mchid, "out_order_no": out_order_no, "amount": total})
            answer = self._split_view(order)
        if self.split_auto_settle:
            self.settle_split(out_order_no)
        return answer

    @staticmethod
    def _frozen(trade: dict[str, Any]) -> int:
        """What is still frozen on a paid profit-sharing trade (callers hold the lock)."""
        if not trade["profit_sharing"] or trade["split_finished"]:
            return 0
        return trade["amount_minor"] - trade["refunded_minor"] - trade["split_minor"] + trade["returned_minor"]

    def settle_split(self, out_order_no: str, *, background: bool = True) -> None:
        """WeChat finishes the order: receivers SUCCESS (or CLOSED per `split_fail_accounts`), the rest released
        when it said unfreeze_unsplit, then the PROFITSHARING callback to the trade's notify_url."""
        with self._lock:
            order = next((o for o in self._splits.values() if o["out_order_no"] == out_order_no), None)
            if order is None:
                raise KeyError(out_order_no)
            if order["state"] != "PROCESSING":
                return
            trade = self._trades[order["trade_key"]]
            now = _now_text()
            for r in order["receivers"]:
                reason = self.split_fail_accounts.get(r["account"], "")
                r.update(result="CLOSED" if reason else "SUCCESS", fail_reason=reason, finish_time=now)
                if reason:
                    trade["split_minor"] -= r["amount"]
            if order["unfreeze_unsplit"]:
                order["released_minor"] = self._frozen(trade)
                trade["released_minor"] += order["released_minor"]
                trade["split_finished"] = True
                if order["released_minor"]:
                    order["self_line"] = self._self_line(order["mchid"], order["released_minor"], "解冻给分账方", now)
            order["state"] = "FINISHED"
            key, url = order["trade_key"], trade["notify_url"]
            paid = [copy.deepcopy(r) for r in order["receivers"] if r["result"] == "SUCCESS"]
        for r in paid:
            self._dispatch(key, url, lambda r=r: self.split_notify_request(out_order_no, r), background=background)

    def split_notify_request(self, out_order_no: str, receiver: dict[str, Any]) -> NotifyRequest:
        """分账动账通知 (PROFITSHARING.SUCCESS) for one receiver of a finished order."""
        with self._lock:
            order = copy.deepcopy(next(o for o in self._splits.values() if o["out_order_no"] == out_order_no))
        resource = {
            "mchid": order["mchid"],
            "transaction_id": order["transaction_id"],
            "order_id": order["order_id"],
            "out_order_no": order["out_order_no"],
            "receiver": {
                "type": receiver["type"],
                "account": receiver["account"],
                "amount": receiver["amount"],
                "description": receiver["description"],
            },
            "success_time": receiver["finish_time"],
        }
        return self._callback(
            self._merchants[order["mchid"]],
            resource,
            event_type="PROFITSHARING.SUCCESS",
            summary="分账成功",
            original_type="profitsharing",
        )

    @staticmethod
    def _self_line(mchid: str, fen: int, description: str, at: str) -> dict[str, Any]:
        """What an unfreeze gave the merchant itself, listed among the order's receivers as WeChat does."""
        return {
            "amount": fen,
            "description": description,
            "type": "MERCHANT_ID",
            "account": mchid,
            "result": "SUCCESS",
            "detail_id": "3601" + _digits(28),
            "create_time": at,
            "finish_time": at,
        }

    def _split_view(self, order: dict[str, Any]) -> dict[str, Any]:
        """The answer of 请求分账 and 查询分账结果 (callers hold the lock)."""
        receivers = [
            {k: r[k] for k in ("amount", "description", "type", "account", "result", "detail_id", "create_time")}
            | ({"finish_time": r["finish_time"]} if r["finish_time"] else {})
            | ({"fail_reason": r["fail_reason"]} if r["fail_reason"] else {})
            for r in order["receivers"]
        ]
        if order.get("self_line"):
            receivers.append(dict(order["self_line"]))
        return {
            "transaction_id": order["transaction_id"],
            "out_order_no": order["out_order_no"],
            "order_id": order["order_id"],
            "state": order["state"],
            "receivers": receivers,
        }

    def split_query(self, merchant: _Merchant, out_order_no: str, transaction_id: str) -> dict[str, Any]:
        with self._lock:
            order = self._splits.get((merchant.mchid, out_order_no))
            if order is None or order["transaction_id"] != transaction_id:
                raise WxError(404, "RESOURCE_NOT_EXISTS", "记录不存在")
            return self._split_view(order)

    def unfreeze(self, merchant: _Merchant, data: dict) -> dict[str, Any]:
        """解冻剩余资金: an order of its own (out_order_no) that releases what is frozen to the merchant."""
        out_order_no = data.get("out_order_no")
        if not isinstance(out_order_no, str) or not OUT_ORDER_NO_RE.match(out_order_no):
            raise WxError(400, "PARAM_ERROR", "out_order_no 格式错误")
        if not isinstance(data.get("description"), str) or not data["description"]:
            raise WxError(400, "PARAM_ERROR", "缺少参数 description")
        with self._lock:
            if (order := self._splits.get((merchant.mchid, out_order_no))) is not None:
                return self._split_view(order)
            key, trade = self._sharing_trade(merchant, data.get("transaction_id"))
            if trade["split_finished"]:
                raise WxError(400, "INVALID_REQUEST", "订单已完结分账，剩余资金已解冻")
            released = self._frozen(trade)
            trade.update(released_minor=trade["released_minor"] + released, split_finished=True)
            now = _now_text()
            order = {
                "trade_key": key,
                "mchid": merchant.mchid,
                "transaction_id": trade["provider_trade_no"],
                "out_order_no": out_order_no,
                "order_id": "3008" + _digits(28),
                "state": "FINISHED",
                "unfreeze_unsplit": True,
                "receivers": [],
                "fingerprint": {"unfreeze": True},
                "released_minor": released,
            }
            self._splits[(merchant.mchid, out_order_no)] = order
            if released:
                order["self_line"] = self._self_line(merchant.mchid, released, data["description"], now)
            return self._split_view(order)

    def split_return(self, merchant: _Merchant, data: dict) -> dict[str, Any]:
        """请求分账回退: at most what that MERCHANT_ID receiver got in the order, once per out_return_no."""
        out_return_no = data.get("out_return_no")
        if not isinstance(out_return_no, str) or not OUT_ORDER_NO_RE.match(out_return_no):
            raise WxError(400, "PARAM_ERROR", "out_return_no 只能是数字、大小写字母_-|*@，最长64位")
        amount, text, mchid = data.get("amount"), data.get("description"), data.get("return_mchid")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise WxError(400, "PARAM_ERROR", "amount 须为正整数（单位：分）")
        if not isinstance(text, str) or not 1 <= len(text) <= 80:
            raise WxError(400, "PARAM_ERROR", "description 必填，最多80个字符")
        if not isinstance(mchid, str) or not mchid.isdigit():
            raise WxError(400, "PARAM_ERROR", "return_mchid 须为分账接收方的商户号")
        with self._lock:
            if (ret := self._split_returns.get((merchant.mchid, out_return_no))) is not None:
                if (ret["return_mchid"], ret["amount"]) != (mchid, amount):
                    raise WxError(400, "INVALID_REQUEST", "商户回退单号重复，且请求参数与原单不一致")
                return self._return_view(ret)
            order = next(
                (
                    o
                    for o in self._splits.values()
                    if o["mchid"] == merchant.mchid
                    and (o["order_id"] == data.get("order_id") or o["out_order_no"] == data.get("out_order_no"))
                ),
                None,
            )
            if order is None:
                raise WxError(404, "RESOURCE_NOT_EXISTS", "分账单不存在")
            share = next(
                (
                    r
                    for r in order["receivers"]
                    if r["type"] == "MERCHANT_ID" and r["account"] == mchid and r["result"] == "SUCCESS"
                ),
                None,
            )
            if share is None:
                # Only a merchant receiver can give money back; an openid has no account WeChat can debit.
                raise WxError(400, "PARAM_ERROR", "回退商户号不是该分账单中分账成功的商户类型接收方")
            back = sum(
                r["amount"]
                for r in self._split_returns.values()
                if r["order_key"] == order["out_order_no"] and r["return_mchid"] == mchid and r["result"] != "FAILED"
            )
            if amount > share["amount"] - back:
                raise WxError(400, "INVALID_REQUEST", "回退金额超过该接收方可回退金额")
            now = _now_text()
            ret = {
                "mchid": merchant.mchid,
                "order_key": order["out_order_no"],
                "order_id": order["order_id"],
                "out_order_no": order["out_order_no"],
                "out_return_no": out_return_no,
                "return_id": "3008" + _digits(28),
                "return_mchid": mchid,
                "amount": amount,
                "description": text,
                "result": "SUCCESS",
                "create_time": now,
                "finish_time": now,
            }
            self._split_returns[(merchant.mchid, out_return_no)] = ret
            self._trades[order["trade_key"]]["returned_minor"] += amount
            self.split_return_log.append({"mchid": merchant.mchid, "out_return_no": out_return_no, "amount": amount})
            return self._return_view(ret)

    @staticmethod
    def _return_view(ret: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "order_id",
            "out_order_no",
            "out_return_no",
            "return_id",
            "return_mchid",
            "amount",
            "description",
            "result",
            "create_time",
            "finish_time",
        )
        return {k: ret[k] for k in keys}

    def split_return_query(self, merchant: _Merchant, out_return_no: str, out_order_no: str) -> dict[str, Any]:
        with self._lock:
            ret = self._split_returns.get((merchant.mchid, out_return_no))
            if ret is None or ret["out_order_no"] != out_order_no:
                raise WxError(404, "RESOURCE_NOT_EXISTS", "记录不存在")
            return self._return_view(ret)

    def split_ledger(self, out_trade_no: str) -> dict[str, Any]:
        """Per trade: split (net of closed receivers), returned, refunded, frozen and released, and per receiver
        account what it got (successful shares) and gave back."""
        key = self._find(out_trade_no)
        if key is None:
            raise KeyError(out_trade_no)
        with self._lock:
            trade = self._trades[key]
            got: dict[str, int] = {}
            for o in self._splits.values():
                if o["trade_key"] == key:
                    for r in o["receivers"]:
                        if r["result"] == "SUCCESS":
                            got[r["account"]] = got.get(r["account"], 0) + r["amount"]
            returned: dict[str, int] = {}
            orders = {o["out_order_no"] for o in self._splits.values() if o["trade_key"] == key}
            for r in self._split_returns.values():
                if r["order_key"] in orders and r["result"] == "SUCCESS":
                    returned[r["return_mchid"]] = returned.get(r["return_mchid"], 0) + r["amount"]
            return {
                "total": trade["amount_minor"],
                "split": trade["split_minor"],
                "returned": trade["returned_minor"],
                "refunded": trade["refunded_minor"],
                "frozen": self._frozen(trade),
                "released": trade["released_minor"],
                "finished": trade["split_finished"],
                "received": got,
                "returned_by": returned,
            }

    # ---- the daily trade bill (交易账单) ------------------------------------------------------------------
    def statement_reset(self) -> None:
        """Forget every injected discrepancy and synthetic bill (tests call it between cases)."""
        self.fee_rate_bp = DEFAULT_FEE_RATE_BP
        self.bill_link_seconds = BILL_LINK_SECONDS
        self.statements_pending = set()
        self.statement_omit = set()
        self.statement_override = {}
        self.statement_duplicate = set()
        self.statement_extra = []
        self.statement_corrupt = self.statement_bad_signature = False
        with self._lock:
            for made in self._synthetic.values():
                os.unlink(made["path"])
            self._synthetic.clear()

    def statement_synthetic(self, day: date, n: int, mchid: str | None = None) -> dict[str, int]:
        """Add n generated payment rows to `day`'s bill (no trade is created). Like WeChat, which produces its
        bills ahead of the request, the rows are written to disk now and copied into every bill of that day.
        Returns their control totals {"count", "amount", "fee"} in fen."""
        key = (self._mchid(mchid), day)
        merchant = self._merchants[key[0]]
        fd, path = tempfile.mkstemp(dir=self._bill_dir, suffix=".rows")
        amount = fee = 0
        stamp = datetime.combine(day, datetime.min.time(), CST) + timedelta(hours=12)
        with os.fdopen(fd, "wb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\r\n")
            for i in range(n):
                row = {
                    "kind": "payment",
                    "time": (stamp + timedelta(seconds=i % 43_200)).isoformat(),
                    "appid": merchant.appid,
                    "provider_ref": f"4200{day:%Y%m%d}{i:016d}",
                    "our_ref": f"SYN{day:%Y%m%d}{i:010d}",
                    "openid": "oSynthetic",
                    "status": "SUCCESS",
                    "amount": self._synthetic_amount(i),
                    "fee": self._fee(self._synthetic_amount(i)),
                    "description": "synthetic",
                }
                writer.writerow(self._bill_fields(merchant.mchid, row))
                amount += row["amount"]
                fee += row["fee"]
            text.flush()
            text.detach()
        with self._lock:
            if (old := self._synthetic.pop(key, None)) is not None:
                os.unlink(old["path"])
            self._synthetic[key] = {"path": path, "count": n, "amount": amount, "fee": fee}
        return {"count": n, "amount": amount, "fee": fee}

    @staticmethod
    def _synthetic_amount(i: int) -> int:
        return 100 + (i * 7919) % 99_900  # 1.00 to 999.99 CNY, deterministic

    def _fee(self, fen: int) -> int:
        """The fee WeChat keeps on an amount: the rate applied and rounded half up to the fen."""
        return (fen * self.fee_rate_bp + 5_000) // 10_000

    def tradebill(self, merchant: _Merchant, query: dict[str, str], host_base: str) -> dict[str, Any]:
        """申请交易账单: write the day's bill to disk and answer its SHA1 and a 5-minute download link."""
        text = query.get("bill_date", "")
        try:
            day = date.fromisoformat(text) if BILL_DATE_RE.fullmatch(text) else None
        except ValueError:
            day = None
        if day is None:
            raise WxError(400, "PARAM_ERROR", "bill_date 格式须为 yyyy-MM-DD")
        bill_type = query.get("bill_type", "ALL")
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise WxError(400, "PARAM_ERROR", "bill_type 取值错误")
        tar_type = query.get("tar_type", "")
        if tar_type not in ("", "GZIP"):
            raise WxError(400, "PARAM_ERROR", "tar_type 取值错误")
        if day > datetime.now(CST).date() or day in self.statements_pending:
            raise WxError(400, "STATEMENT_CREATING", "账单生成中")
        rows = self._bill_rows(merchant, day, bill_type)
        with self._lock:
            synthetic = dict(self._synthetic.get((merchant.mchid, day)) or {}) if bill_type != "REFUND" else {}
        path, sha1 = self._write_bill(rows, synthetic, mchid=merchant.mchid, gzipped=tar_type == "GZIP")
        if path is None:
            raise WxError(400, "NO_STATEMENT_EXIST", "请求的账单文件不存在")
        token = secrets.token_urlsafe(36)
        with self._lock:
            now = time.time()
            for old in [t for t, link in self._bill_links.items() if link["expires"] < now]:
                self._drop_link(old)
            self._bill_links[token] = {"mchid": merchant.mchid, "path": path, "expires": now + self.bill_link_seconds}
        query_text = urlencode({"token": token, **({"tartype": "gzip"} if tar_type else {})})
        return {
            "hash_type": "SHA1",
            "hash_value": sha1,
            "download_url": f"{host_base}{BILL_DOWNLOAD_PATH}?{query_text}",
        }

    def bill_file(self, merchant: _Merchant, token: str) -> str:
        """下载账单: the path of the file behind a live link of this merchant."""
        with self._lock:
            link = self._bill_links.get(token)
            if link is None or link["mchid"] != merchant.mchid:
                raise WxError(400, "INVALID_REQUEST", "下载链接无效")
            if link["expires"] < time.time():
                self._drop_link(token)
                raise WxError(400, "INVALID_REQUEST", "下载链接过期,请重新请求文件下载")
            return link["path"]

    def _drop_link(self, token: str) -> None:
        """Callers hold the lock."""
        link = self._bill_links.pop(token)
        try:
            os.unlink(link["path"])
        except FileNotFoundError:
            pass

    def _bill_rows(self, merchant: _Merchant, day: date, bill_type: str) -> Any:
        """The day's rows as written: recorded trades and refunds, then the injected ones."""
        with self._lock:
            trades = [copy.deepcopy(t) for t in self._trades.values() if t["mchid"] == merchant.mchid]
            refunds = [copy.deepcopy(r) for r in self._refunds.values() if r["mchid"] == merchant.mchid]
        by_key = {(t["mchid"], t["out_trade_no"]): t for t in trades}

        def on_day(stamp: str) -> bool:
            return bool(stamp) and datetime.fromisoformat(stamp).astimezone(CST).date() == day

        def payment(trade: dict[str, Any]) -> dict[str, Any]:
            amount = trade["amount_minor"]
            return {
                "kind": "payment",
                "time": trade["success_time"],
                "appid": trade["appid"],
                "provider_ref": trade["provider_trade_no"],
                "our_ref": trade["out_trade_no"],
                "openid": trade["openid"],
                "status": "SUCCESS",
                "amount": amount,
                "fee": self._fee(amount),
                "description": trade["description"],
            }

        def refund(ref: dict[str, Any]) -> dict[str, Any]:
            trade = by_key.get(ref["trade_key"], {})
            return {
                "kind": "refund",
                "time": ref["create_time"],
                "appid": trade.get("appid", merchant.appid),
                "provider_ref": ref["refund_id"],
                "our_ref": ref["out_refund_no"],
                "trade_ref": ref["transaction_id"],
                "trade_our_ref": ref["out_trade_no"],
                "openid": trade.get("openid", ""),
                "status": ref["status"],
                "amount": ref["refund"],
                "fee": self._fee(ref["refund"]),
                "description": trade.get("description", ""),
            }

        recorded: list[dict[str, Any]] = []
        if bill_type in ("ALL", "SUCCESS"):
            recorded += [payment(t) for t in trades if t["status"] == "paid" and on_day(t["success_time"])]
        if bill_type in ("ALL", "REFUND"):
            recorded += [refund(r) for r in refunds if r["status"] != "CLOSED" and on_day(r["create_time"])]
        for extra in self.statement_extra:
            if extra.get("day") not in (None, day):
                continue
            kind = extra.get("kind", "payment")
            recorded.append(
                {
                    "kind": kind,
                    "time": extra.get("time") or datetime.combine(day, datetime.min.time(), CST).isoformat(),
                    "appid": merchant.appid,
                    "provider_ref": extra["provider_ref"],
                    "our_ref": extra["our_ref"],
                    "trade_ref": extra.get("trade_ref", ""),
                    "trade_our_ref": extra.get("trade_our_ref", ""),
                    "openid": "o" + secrets.token_urlsafe(20),
                    "status": extra.get("status", "SUCCESS"),
                    "amount": extra["amount"],
                    "fee": extra.get("fee", self._fee(extra["amount"])),
                    "description": extra.get("description", "unknown"),
                }
            )
        for row in recorded:
            if row["our_ref"] in self.statement_omit:
                continue
            row.update(self.statement_override.get(row["our_ref"], {}))
            yield row
            if row["our_ref"] in self.statement_duplicate:
                yield row

    def _bill_fields(self, mchid: str, row: dict[str, Any]) -> list[str]:
        when = datetime.fromisoformat(row["time"]).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
        rate = f"{self.fee_rate_bp / 100:.2f}%"
        if row["kind"] == "refund":
            amount = _yuan(row["amount"])
            fields = [when, row["appid"], mchid, "0", "", row["trade_ref"], row.get("trade_our_ref", ""),
                      row["openid"], "NATIVE", "REFUND", "OTHERS", "CNY", "0.00", "0.00", row["provider_ref"],
                      row["our_ref"], amount, "0.00", "ORIGINAL", row["status"], row["description"], "",
                      "-" + _yuan(row["fee"]), rate, "0.00", amount, ""]  # fmt: skip
        else:
            amount = _yuan(row["amount"])
            fields = [when, row["appid"], mchid, "0", "", row["provider_ref"], row["our_ref"], row["openid"],
                      "NATIVE", row["status"], "OTHERS", "CNY", amount, "0.00", "0", "0", "0.00", "0.00", "", "",
                      row["description"], "", _yuan(row["fee"]), rate, amount, "0.00", ""]  # fmt: skip
        return ["`" + f for f in fields]

    def _write_bill(self, rows: Any, synthetic: dict[str, Any], *, mchid: str, gzipped: bool) -> tuple[str | None, str]:
        """Write the bill (UTF-8 CSV, back-ticked fields, summary last) to disk as it is generated; hash it; GZIP
        it when asked. (None, "") when there is no row at all."""
        first = next(rows, None)
        if first is None and not synthetic.get("count"):
            return None, ""
        fd, plain_path = tempfile.mkstemp(dir=self._bill_dir, suffix=".csv")
        count = paid = refunded = fee = ordered = asked = 0
        with os.fdopen(fd, "wb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(BILL_COLUMNS)
            for row in _chain(first, rows) if first is not None else ():
                writer.writerow(self._bill_fields(mchid, row))
                count += 1
                if row["kind"] == "refund":
                    refunded += row["amount"]
                    asked += row["amount"]
                    fee -= row["fee"]
                else:
                    paid += row["amount"]
                    ordered += row["amount"]
                    fee += row["fee"]
            if synthetic:
                text.flush()
                with open(synthetic["path"], "rb") as made:
                    shutil.copyfileobj(made, raw, 65536)
                count += synthetic["count"]
                paid += synthetic["amount"]
                ordered += synthetic["amount"]
                fee += synthetic["fee"]
            writer.writerow(BILL_SUMMARY_COLUMNS)
            totals = [str(count), _yuan(paid), _yuan(refunded), "0.00", _signed_yuan(fee), _yuan(ordered), _yuan(asked)]
            writer.writerow(["`" + t for t in totals])
            text.flush()
            text.detach()
        sha1 = hashlib.sha1()  # noqa: S324 (the protocol's file hash)
        with open(plain_path, "rb") as f:
            while chunk := f.read(65536):
                sha1.update(chunk)
        if self.statement_corrupt:
            with open(plain_path, "r+b") as f:  # one digit of the summary changes after the hash was taken
                f.seek(-3, os.SEEK_END)
                last = f.read(1)
                f.seek(-3, os.SEEK_END)
                f.write(bytes([last[0] ^ 0x01]))
        if not gzipped:
            return plain_path, sha1.hexdigest()
        gz_path = plain_path + ".gz"
        with open(plain_path, "rb") as src, gzip.open(gz_path, "wb") as dst:
            shutil.copyfileobj(src, dst, 65536)
        os.unlink(plain_path)
        return gz_path, sha1.hexdigest()

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._bill_dir, ignore_errors=True)

    # ---- the scan page ---------------------------------------------------------------------------
    def trade_by_code(self, code: str) -> dict | None:
        with self._lock:
            key = self._by_code.get(code)
        return self.trade_for(key[1]) if key else None


SCAN_HTML = """<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>WeChat Pay (simulator)</title></head><body><h1>微信支付 WeChat Pay (simulator)</h1>
<p>商品: <span id="description">{description}</span></p>
<p>金额: ¥<span id="amount">{amount}</span></p>
<p>商户订单号: <span id="out_trade_no">{out_trade_no}</span></p>
<p>状态: <span id="status">{status}</span></p>{action}</body></html>"""

PAY_FORM = (
    """<form method="post" action="/scan/{code}/pay"><button id="pay" type="submit">Pay ¥{amount}</button></form>"""
)

PAID_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Paid</title></head><body>
<h1>Paid</h1><p>You can go back to the shop's page: it updates by itself.</p>
<p>Callback: <span id="notify">{notify}</span></p></body></html>"""


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _signed_yuan(fen: int) -> str:
    return ("-" if fen < 0 else "") + _yuan(abs(fen))


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


class _Handler(BaseHTTPRequestHandler):
    server_version = "WechatPaySimulator/1.0"

    @property
    def sim(self) -> WechatPaySimulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("%s - " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _host_base(self) -> str:
        # Honour the Host the client used so code_urls survive port mappings.
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.sim.base_url

    def _route(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/v3/"):
            self._api(path)
            return
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "scan" and self.command == "GET":
            self._scan_page(parts[1])
        elif len(parts) == 3 and parts[0] == "scan" and parts[2] == "pay" and self.command == "POST":
            self._body()
            self._scan_pay(parts[1])
        else:
            self._send(404, b"Not Found", "text/plain; charset=utf-8")

    # ---- /v3 API ---------------------------------------------------------------------------------
    def _api(self, path: str) -> None:
        body = self._body()
        faults = self.sim.faults
        if faults.take("fail_5xx"):
            self._answer(500, {"code": "SYSTEM_ERROR", "message": "系统错误"})
            return
        faults.before_answer()
        try:
            merchant = self.sim.authenticate(self.command, self.path, body, self.headers.get("Authorization", ""))
            if path == BILL_DOWNLOAD_PATH and self.command == "GET":
                self._send_bill(merchant)
                return
            status, payload = self._dispatch_api(merchant, path, body)
        except WxError as exc:
            status, payload = exc.status, {"code": exc.code, "message": exc.message}
        if faults.take("timeout"):
            time.sleep(faults.hang_seconds)  # acted, but the caller has given up by now
        forge = status == 200 and (
            (path == BILL_PATH and self.sim.statement_bad_signature)
            or (path.startswith(BALANCE_PATH) and self.sim.balance_bad_signature)
        )
        self._answer(status, payload, forge=forge)

    def _send_bill(self, merchant: _Merchant) -> None:
        """The file itself, streamed from disk and unsigned (WeChat sends no Wechatpay-Signature on downloads)."""
        token = parse_qs(urlsplit(self.path).query).get("token", [""])[-1]
        file_path = self.sim.bill_file(merchant, token)
        gzipped = file_path.endswith(".gz")
        try:
            size = os.path.getsize(file_path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip" if gzipped else "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with open(file_path, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 65536)
        except OSError:  # the client gave up, or the link expired under us
            pass

    def _dispatch_api(self, merchant: _Merchant, path: str, body: bytes) -> tuple[int, dict | None]:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        parts = path.strip("/").split("/")
        get, post = self.command == "GET", self.command == "POST"
        if post and path == "/v3/pay/transactions/native":
            trade = self.sim.create(merchant, self._json(body), self._host_base())
            return 200, {"code_url": trade["code_url"]}
        if parts[:3] == ["v3", "pay", "transactions"] and len(parts) == 5 and get:
            if query.get("mchid") != merchant.mchid:
                raise WxError(400, "PARAM_ERROR", "mchid 与请求签名的商户号不一致")
            if parts[3] == "out-trade-no":
                return 200, self.sim.query(merchant, out_trade_no=parts[4])
            if parts[3] == "id":
                return 200, self.sim.query(merchant, transaction_id=parts[4])
        if parts[:4] == ["v3", "pay", "transactions", "out-trade-no"] and len(parts) == 6 and parts[5] == "close":
            if post:
                if self._json(body).get("mchid") != merchant.mchid:
                    raise WxError(400, "PARAM_ERROR", "mchid 与请求签名的商户号不一致")
                self.sim.close(merchant, parts[4])
                return 204, None
        if path == TRANSFER_PATH and post:
            serial = self.headers.get("Wechatpay-Serial", "")
            return 200, self.sim.transfer_bill(merchant, self._json(body), serial)
        if parts[:5] == ["v3", "fund-app", "mch-transfer", "transfer-bills", "out-bill-no"] and len(parts) == 6:
            if get:
                return 200, self.sim.transfer_query(merchant, parts[5])
        if parts[:2] == ["v3", "profitsharing"]:
            if path == "/v3/profitsharing/receivers/add" and post:
                return 200, self.sim.add_receiver(merchant, self._json(body), self.headers.get("Wechatpay-Serial", ""))
            if path == "/v3/profitsharing/orders/unfreeze" and post:
                return 200, self.sim.unfreeze(merchant, self._json(body))
            if path == "/v3/profitsharing/orders" and post:
                return 200, self.sim.split(merchant, self._json(body))
            if parts[2] == "orders" and len(parts) == 4 and get:
                return 200, self.sim.split_query(merchant, parts[3], query.get("transaction_id", ""))
            if path == "/v3/profitsharing/return-orders" and post:
                return 200, self.sim.split_return(merchant, self._json(body))
            if parts[2] == "return-orders" and len(parts) == 4 and get:
                return 200, self.sim.split_return_query(merchant, parts[3], query.get("out_order_no", ""))
        if parts[:4] == ["v3", "merchant", "fund", "balance"] and len(parts) == 5 and get:
            if parts[4] not in BALANCE_ACCOUNT_TYPES:
                raise WxError(400, "PARAM_ERROR", "account_type 须为 BASIC、OPERATION 或 FEES")
            return 200, self.sim.account_balance(parts[4], merchant.mchid)
        if path == BILL_PATH and get:
            return 200, self.sim.tradebill(merchant, query, self._host_base())
        if path == "/v3/refund/domestic/refunds" and post:
            return 200, self.sim.refund(merchant, self._json(body))
        if parts[:4] == ["v3", "refund", "domestic", "refunds"] and len(parts) == 5 and get:
            return 200, self.sim.refund_query(merchant, parts[4])
        raise WxError(404, "NOT_FOUND", "接口不存在")

    @staticmethod
    def _json(body: bytes) -> dict:
        try:
            data = json.loads(body)
        except ValueError:
            raise WxError(400, "PARAM_ERROR", "请求体不是合法的 JSON") from None
        if not isinstance(data, dict):
            raise WxError(400, "PARAM_ERROR", "请求体须为 JSON 对象")
        return data

    def _answer(self, status: int, payload: dict | None, *, forge: bool = False) -> None:
        """Every /v3 answer is signed by the platform key, errors and 204s included (`forge`: signed over
        another body, so the signature does not verify)."""
        body = b"" if payload is None else _dumps(payload)
        headers = self.sim.signed_headers(body)
        if forge:
            headers["Wechatpay-Signature"] = self.sim.sign(
                headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], b"{}"
            )
        self._send(status, body, extra=headers)

    def _send(self, status: int, body: bytes, ctype: str = "", extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            for name, value in (extra or {"Content-Type": ctype}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except OSError:  # the client gave up (timeout fault): nothing to answer
            pass

    # ---- scan page -------------------------------------------------------------------------------
    def _scan_page(self, code: str) -> None:
        trade = self.sim.trade_by_code(code)
        if trade is None:
            self._send(404, "二维码已失效".encode(), "text/plain; charset=utf-8")
            return
        amount = _yuan(trade["amount_minor"])
        action = PAY_FORM.format(code=html.escape(code), amount=amount) if trade["status"] == "pending" else ""
        page = SCAN_HTML.format(
            description=html.escape(trade["description"]),
            amount=amount,
            out_trade_no=html.escape(trade["out_trade_no"]),
            status=html.escape(trade["status"]),
            action=action,
        )
        self._send(200, page.encode(), "text/html; charset=utf-8")

    def _scan_pay(self, code: str) -> None:
        trade = self.sim.trade_by_code(code)
        if trade is None or trade["status"] == "closed":
            self._send(400, "订单已关闭或不存在".encode(), "text/plain; charset=utf-8")
            return
        self.sim.pay(trade["out_trade_no"])
        attempts = (self.sim.trade_by_code(code) or {}).get("notify_attempts") or [{}]
        last = attempts[-1]
        notify = last.get("status_code") or last.get("error") or ("dropped" if last.get("dropped") else "pending")
        # WeChat Native has no return URL: the shop's pay page polls and moves on by itself.
        self._send(200, PAID_HTML.format(notify=html.escape(str(notify))).encode(), "text/html; charset=utf-8")


def serve_account_file(path: str | Path, *, host: str = "127.0.0.1", port: int = 0) -> WechatPaySimulator:
    """Start a simulator whose merchant is the one in `path` (created and written there on first run).

    The provider's own signing key lives beside it in `<path>.provider-key.pem`: the account file holds only
    what the shop's channel account form takes.
    """
    path = Path(path)
    key_path = path.with_name(path.name + ".provider-key.pem")
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        if not key_path.exists():
            raise SystemExit(f"{key_path} is missing: delete {path} to start over with new keys")
        sim = WechatPaySimulator(
            host,
            port,
            platform_private_key=key_path.read_text(encoding="utf-8"),
            platform_public_key_id=data["credentials"]["platform_public_key_id"],
        ).start()
        if sim.platform_public_key_pem() != data["credentials"]["platform_public_key"]:
            sim.stop()
            raise SystemExit(f"{key_path} does not match the platform_public_key in {path}")
        sim.add_merchant(data["merchant_no"], data["credentials"])
    else:
        sim = WechatPaySimulator(host, port).start()
        path.parent.mkdir(parents=True, exist_ok=True)
        key_path.write_text(sim.platform_private_key_pem, encoding="utf-8")
        key_path.chmod(0o600)
    account = sim.account()
    path.write_text(json.dumps(asdict(account), indent=2, ensure_ascii=False), encoding="utf-8")
    path.chmod(0o600)
    return sim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--account-file", required=True, help="SimAccount JSON: read if present, else written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sim = serve_account_file(args.account_file, host=args.host, port=args.port)
    print(sim.base_url, flush=True)
    try:
        threading.Event().wait()  # serve until killed
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
