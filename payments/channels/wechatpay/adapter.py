"""WeChat Pay API v3 adapter (Native / QR) through `wechatpayv3` in public-key mode.

Requests go through the SDK (it signs the Authorization header and verifies the signed answers); callbacks are
verified and decrypted in `signing` so that every check is explicit and none of them does network I/O.

Payouts use 商家转账 "发起转账" (POST /v3/fund-app/mch-transfer/transfer-bills) and "商户单号查询转账单"
(GET .../transfer-bills/out-bill-no/{out_bill_no}). Field names, states and error codes from the WeChat Pay
merchant docs (pay.weixin.qq.com/doc/v3/merchant/4012716434 发起转账; 4012716457 微信单号查询转账单, whose answer
the out-bill-no query shares: mch_id, out_bill_no, transfer_bill_no, appid, state, transfer_amount, fail_reason;
errors: 403 NOT_ENOUGH "充值后可以原单号发起重试", 429 FREQUENCY_LIMITED, 500 SYSTEM_ERROR "请勿更换商户单号") and
from wechatpayv3 2.0.4 `mchtransfer.mch_transfer_bills` (user_name RSA-OAEP encrypted with the WeChat Pay public
key, Wechatpay-Serial set). They are signed with the SDK's own `build_authorization` but sent here rather than through
`mch_transfer_bills`: the SDK verifies only 2xx answers (a forged 403 NOT_ENOUGH would read as a refusal), drops
user_name under 30 fen, and raises bare Exception for a missing field, which would look like a bad signature.

Profit sharing (分账) follows the WeChat Pay v3 merchant docs (pay.weixin.qq.com/wiki/doc/apiv3/apis/chapter8_1_*:
请求分账 POST /v3/profitsharing/orders, 查询分账结果 GET .../orders/{out_order_no}?transaction_id=, 请求分账回退 POST
/v3/profitsharing/return-orders, 查询分账回退结果 GET .../return-orders/{out_return_no}?out_order_no=, 解冻剩余资金
POST .../orders/unfreeze, 添加分账接收方 POST /v3/profitsharing/receivers/add; "分账失败处理指引" 4015505153 for
fail_reason; "每次请求最多分给50个接收方", "目前默认最高分账比例30%") and wechatpayv3 2.0.4 `profitsharing` (field
names; receiver name RSA-OAEP encrypted). Sent through `_v3`, like payouts, so that refusals are verified too.

The daily statement is the trade bill (申请交易账单 GET /v3/bill/tradebill, pay.weixin.qq.com/doc/v3/merchant/
4012556654; its FAQ 4013071254: STATEMENT_CREATING / NO_STATEMENT_EXIST, and "下载账单微信不返回签名头信息", so
the download is checked by the signed SHA1 hash_value only). Sent through `_v3` and a streamed download rather
than the SDK's `trade_bill` / `download_bill`, which read the whole file into memory as text. Bills, transfers
excepted (they are on the fund flow bill), are cut by Beijing day; `statement` parses them in `statement.py`.

The balance (capability BALANCE) is 查询账户实时余额 GET /v3/merchant/fund/balance/{account_type} (the WeChat Pay v3
merchant docs, 资金账户; answer available_amount and pending_amount in fen), asked for BASIC and OPERATION and added up: trades settle into the basic account while 商家转账 pays out of
the operating one, so only both together are what the ledger's clearing account should hold. Sent through `_v3`;
an answer without a valid signature is Unknown, a timeout or 5xx Retryable (a read).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import date
from typing import IO, Any, ClassVar
from urllib.parse import urlencode, urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import build_authorization

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
    ObservedStatus,
    PayoutObservation,
    PayoutRequest,
    PayoutState,
    RefundObservation,
    RefundRequest,
    Retryable,
    SplitObservation,
    SplitReceiver,
    SplitRequest,
    SplitResult,
    SplitReturnObservation,
    SplitReturnRequest,
    SplitState,
    Statement,
    Terminal,
    Unknown,
    decline_code_or_empty,
)
from payments.channels.wechatpay import signing, wire
from payments.channels.wechatpay import statement as bill

REQUIRED_CREDENTIALS = (
    "mch_private_key",
    "mch_serial_no",
    "apiv3_key",
    "platform_public_key",
    "platform_public_key_id",
    "appid",
)

# Building a client parses and validates the merchant RSA key (~35 ms), and the shop builds one adapter per
# callback and per call: keep the clients, keyed by account and a digest of everything the client is made of.
_CLIENTS_MAX = 64
_clients: OrderedDict[tuple[Any, ...], WeChatPay] = OrderedDict()
_clients_lock = threading.Lock()


def _client_key(account: AccountConfig) -> tuple[Any, ...]:
    material = json.dumps([account.merchant_no, sorted(account.credentials.items())]).encode()
    return (account.account_id, hashlib.sha256(material).hexdigest(), account.base_url, tuple(account.timeouts))


def _build_client(account: AccountConfig) -> WeChatPay:
    creds = account.credentials
    missing = [k for k in REQUIRED_CREDENTIALS if not creds.get(k)]
    if missing or not account.merchant_no:
        raise Terminal(f"wechatpay account lacks {', '.join(missing) or 'merchant_no'}", code="no_credentials")
    if len(creds["apiv3_key"].encode()) != 32:
        raise Terminal("wechatpay apiv3_key must be 32 bytes", code="bad_credentials")
    try:
        # public_key + public_key_id select public-key mode: without them __init__ downloads platform
        # certificates from the real host, before the gateway below can be changed. No logger: the SDK
        # logs request headers (signatures) and callback bodies.
        client = WeChatPay(
            wechatpay_type=WeChatPayType.NATIVE,
            mchid=account.merchant_no,
            private_key=creds["mch_private_key"],
            cert_serial_no=creds["mch_serial_no"],
            appid=creds["appid"],
            apiv3_key=creds["apiv3_key"],
            notify_url=None,
            cert_dir=None,
            logger=None,
            timeout=tuple(account.timeouts),
            public_key=creds["platform_public_key"],
            public_key_id=creds["platform_public_key_id"],
        )
    except Exception as exc:  # the SDK raises bare Exception for a key it cannot load (it wants PKCS#8 PEM)
        raise Terminal(
            "wechatpay keys do not load (PKCS#8 private key, SPKI public key)", code="bad_credentials"
        ) from exc
    client._core._gate_way = account.base_url.rstrip("/")  # no constructor argument for the gateway
    return client


def _client_for(account: AccountConfig) -> WeChatPay:
    key = _client_key(account)
    with _clients_lock:
        if (client := _clients.get(key)) is not None:
            _clients.move_to_end(key)
            return client
    client = _build_client(account)  # outside the lock: a slow build must not stall other accounts
    with _clients_lock:
        _clients[key] = client
        while len(_clients) > _CLIENTS_MAX:
            _clients.popitem(last=False)
    return client


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Refused / unreachable / connect timeout. A ConnectionError raised after the request went out
    ("connection aborted", reset mid-answer) is not this: the provider may have acted."""
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, MaxRetryError) and isinstance(inner.reason, ConnectTimeoutError)


class WechatPayAdapter:
    code: ClassVar[str] = "wechatpay"
    # The buyer-facing payment methods this channel can take (routing matches the buyer's choice).
    methods: ClassVar[frozenset[str]] = frozenset({"wxpay"})
    # API v3 callbacks are JSON POSTs.
    notify_methods: ClassVar[frozenset[str]] = frozenset({"POST"})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.QUERY,
            Capability.CLOSE,
            Capability.REFUND,
            Capability.PARTIAL_REFUND,
            Capability.PAYOUT,
            Capability.STATEMENT,
            Capability.SPLIT,
            Capability.BALANCE,
        }
    )
    # The bill is asked for GZIP (as the SDK does by default); the simulator serves both.
    statement_tar_type: str = wire.BILL_TAR_TYPE

    def __init__(self, account: AccountConfig) -> None:
        self.account = account
        self._creds: Mapping[str, str] = account.credentials
        self._client: WeChatPay | None = None
        self._platform_key: RSAPublicKey | None = None

    @staticmethod
    def notification_reference(inbound: Inbound) -> str:
        return ""  # out_trade_no is inside the encrypted resource

    @staticmethod
    def notification_account_hint(inbound: Inbound) -> str:
        # The WeChat Pay public key id the callback is signed with; each merchant has its own.
        return inbound.headers.get(wire.H_SERIAL, "")

    def account_hint(self) -> str:
        return self._creds.get("platform_public_key_id", "")

    @staticmethod
    def ack(ok: bool) -> Ack:
        # WeChat stops re-notifying on 200/204; any other status is retried for 24 h.
        if ok:
            return Ack(204, "", "application/json")
        return Ack(400, json.dumps({"code": "FAIL", "message": "notification rejected"}), "application/json")

    # ---- requests through the SDK -------------------------------------------------------------
    def _sdk(self) -> WeChatPay:
        if self._client is None:
            self._client = _client_for(self.account)
        return self._client

    def _call(self, what: str, method: Callable[..., tuple[int, Any]], **kwargs: Any) -> tuple[int, dict]:
        """One SDK call -> (HTTP status, JSON body or {}). Transport failures become typed errors here."""
        try:
            status, text = method(**kwargs)
        except requests.ConnectionError as exc:  # includes ConnectTimeout
            if _never_sent(exc):
                raise Retryable(f"wechatpay unreachable on {what}", code="connect") from exc
            raise Unknown(f"wechatpay connection broke during {what}", code="connection_lost") from exc
        except requests.Timeout as exc:
            raise Unknown(f"wechatpay {what} timed out", code="timeout") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
            raise Terminal("wechatpay base_url is not a URL", code="bad_base_url") from exc
        except requests.RequestException as exc:
            raise Unknown(f"wechatpay {what} failed after sending: {type(exc).__name__}", code="transport") from exc
        except Exception as exc:  # the SDK raises bare Exception when a 2xx answer's signature does not verify
            raise Unknown(f"wechatpay {what} answer did not verify", code="bad_signature") from exc
        if status >= 500:
            raise Unknown(f"wechatpay answered {status} to {what}", code="http_5xx")
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not text:
            return status, {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            if 200 <= status < 300:
                raise Unknown(f"wechatpay answered non-JSON to {what}", code="bad_response") from exc
            data = {}
        if not isinstance(data, dict):
            raise Unknown(f"wechatpay answered an unexpected shape to {what}", code="bad_response")
        return status, data

    @staticmethod
    def _refused(what: str, status: int, data: dict) -> Retryable | Terminal:
        code = str(data.get("code", ""))
        message = f"wechatpay refused {what}: {status} {code} {str(data.get('message', ''))[:120]}"
        if status == 429 or code in wire.RETRYABLE_CODES:
            return Retryable(message, code="busy")
        return Terminal(message, code="refused")

    def create(self, order: CreateOrder) -> Created:
        if order.amount.currency != wire.SUPPORTED_CURRENCY:
            raise Terminal(f"wechatpay takes {wire.SUPPORTED_CURRENCY} only", code="currency")
        if order.amount.amount_minor <= 0:
            raise Terminal("wechatpay amount must be positive", code="bad_amount")
        if not wire.OUT_TRADE_NO_RE.match(order.out_trade_no):
            raise Terminal("out_trade_no must be 6-32 of [0-9A-Za-z_-|*]", code="bad_out_trade_no")
        if not order.notify_url:
            raise Terminal("wechatpay needs a notify_url", code="no_notify_url")
        status, data = self._call(
            "create",
            self._sdk().pay,
            description=wire.description(order.subject or order.out_trade_no),
            out_trade_no=order.out_trade_no,
            amount={"total": order.amount.amount_minor, "currency": wire.SUPPORTED_CURRENCY},
            time_expire=wire.time_expire(order.expires_at) if order.expires_at else None,
            notify_url=order.notify_url,
            scene_info={"payer_client_ip": order.client_ip} if order.client_ip else None,
            # Without it WeChat settles the trade at once and nothing of it can be split later.
            settle_info={"profit_sharing": True} if order.split else None,
            pay_type=WeChatPayType.NATIVE,
        )
        if status != 200:
            raise self._refused("create", status, data)
        code_url = data.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise Unknown("wechatpay create answered without code_url", code="bad_response")
        # Real code_urls are weixin:// links only the WeChat app opens; a browser can follow http(s) ones.
        pay_url = code_url if code_url.startswith(("http://", "https://")) else ""
        # Native pay names no transaction_id until the buyer has paid.
        return Created(provider_trade_no="", pay_url=pay_url, qr_content=code_url)

    def query(self, out_trade_no: str, provider_trade_no: str = "") -> Observation | None:
        if not wire.OUT_TRADE_NO_RE.match(out_trade_no):
            return None  # create refuses such numbers, so the provider cannot know one
        status, data = self._call("query", self._sdk().query, out_trade_no=out_trade_no)
        if status == 404 or str(data.get("code", "")) in wire.NOT_FOUND_CODES:
            return None
        if status != 200:
            raise self._refused("query", status, data)
        if (
            data.get("out_trade_no") != out_trade_no
            or data.get("mchid") != self.account.merchant_no
            or data.get("appid") != self._creds.get("appid")
        ):
            raise Unknown("wechatpay query answered for another trade or merchant", code="bad_response")
        state = str(data.get("trade_state", ""))
        observed = wire.TRADE_STATE.get(state)
        if observed is None:
            raise Unknown(f"wechatpay trade_state {state[:32]!r} not understood", code="bad_response")
        amount = _amount(data.get("amount"), "total", default_currency=True)
        if amount is None:
            raise Unknown("wechatpay query amount not understood", code="bad_response")
        trade_no = str(data.get("transaction_id") or "")
        return Observation(
            out_trade_no=out_trade_no,
            provider_trade_no=trade_no,
            status=observed,
            amount=amount,
            event_key=f"{trade_no or out_trade_no}:query:{state}",
            provider_status=state,
            # WeChat Pay gives no reason code (trade_state_desc is free text): its decline word is the code.
            decline_code=state if observed == ObservedStatus.FAILED else "",
        )

    def close(self, out_trade_no: str, provider_trade_no: str = "") -> None:
        if not wire.OUT_TRADE_NO_RE.match(out_trade_no):
            raise Terminal("out_trade_no must be 6-32 of [0-9A-Za-z_-|*]", code="bad_out_trade_no")
        status, data = self._call("close", self._sdk().close, out_trade_no=out_trade_no)
        code = str(data.get("code", ""))
        if status in (200, 204):
            return
        if code in wire.ALREADY_PAID_CODES:
            raise Terminal("wechatpay trade is already paid", code="already_paid")
        if status == 404 or code in wire.NOT_FOUND_CODES:
            return  # never created: nothing can be paid under it
        raise self._refused("close", status, data)

    def refund(self, request: RefundRequest) -> RefundObservation:
        self._check_refund(request)
        if request.amount.currency != wire.SUPPORTED_CURRENCY or request.total.currency != wire.SUPPORTED_CURRENCY:
            raise Terminal(f"wechatpay refunds {wire.SUPPORTED_CURRENCY} only", code="currency")
        if not 0 < request.amount.amount_minor <= request.total.amount_minor:
            raise Terminal("refund amount must be positive and at most the total", code="bad_amount")
        self._split_returns_settle(request)
        status, data = self._call(
            "refund",
            self._sdk().refund,
            out_refund_no=request.refund_no,
            # By our number: the transaction_id is unknown when the payment's answer was lost.
            out_trade_no=request.out_trade_no,
            amount={
                "refund": request.amount.amount_minor,
                "total": request.total.amount_minor,
                "currency": wire.SUPPORTED_CURRENCY,
            },
            reason=request.reason[:80] or None,
            notify_url=request.notify_url or None,
        )
        if status != 200:
            raise self._refused("refund", status, data)
        return self._refund_observation(data, request.refund_no)

    def _split_returns_settle(self, request: RefundRequest) -> None:
        """WeChat refunds only what the merchant's account holds: a share split off the trade is returned first
        (分账回退), one out_return_no per share derived from the refund_no, so a resent refund returns once."""
        for i, share in enumerate(request.split_returns, 1):
            returned = self.split_return(
                SplitReturnRequest(
                    return_no=f"{request.refund_no}-{i}",
                    split_no=share.split_no,
                    provider_split_no=share.provider_split_no,
                    out_trade_no=request.out_trade_no,
                    provider_trade_no=request.provider_trade_no,
                    receiver=share.receiver,
                )
            )
            if returned.status == SplitState.FAILED:
                raise Terminal(f"wechatpay refused the split return: {returned.failure_reason}", code="split_return")
            if returned.status != SplitState.SUCCEEDED:
                raise Retryable("wechatpay is still returning the split; refunded once it has", code="split_return")

    def refund_query(self, request: RefundRequest) -> RefundObservation | None:
        self._check_refund(request)
        status, data = self._call("refund query", self._sdk().query_refund, out_refund_no=request.refund_no)
        if status == 404 or str(data.get("code", "")) in wire.NOT_FOUND_CODES:
            return None
        if status != 200:
            raise self._refused("refund query", status, data)
        return self._refund_observation(data, request.refund_no)

    @staticmethod
    def _check_refund(request: RefundRequest) -> None:
        if not wire.OUT_REFUND_NO_RE.match(request.refund_no):
            raise Terminal("refund_no must be 1-64 of [0-9A-Za-z_-|*@]", code="bad_refund_no")
        if not wire.OUT_TRADE_NO_RE.match(request.out_trade_no):
            raise Terminal("out_trade_no must be 6-32 of [0-9A-Za-z_-|*]", code="bad_out_trade_no")

    @staticmethod
    def _refund_observation(data: dict, refund_no: str) -> RefundObservation:
        if data.get("out_refund_no") != refund_no:
            raise Unknown("wechatpay answered for another refund", code="bad_response")
        state = str(data.get("status", ""))
        observed = wire.REFUND_STATUS.get(state)
        if observed is None:
            raise Unknown(f"wechatpay refund status {state[:32]!r} not understood", code="bad_response")
        amount = _amount(data.get("amount"), "refund", default_currency=True)
        if amount is None:
            raise Unknown("wechatpay refund amount not understood", code="bad_response")
        refund_id = str(data.get("refund_id", ""))
        return RefundObservation(
            refund_no=refund_no,
            provider_refund_no=refund_id,
            status=observed,
            amount=amount,
            provider_status=state,
            event_key=f"{refund_id or refund_no}:answer:{state}",
        )

    # ---- payouts (商家转账) -------------------------------------------------------------------------
    def payout(self, request: PayoutRequest) -> PayoutObservation:
        self._check_payout(request)
        amount = request.amount
        if amount.currency != wire.SUPPORTED_CURRENCY:
            raise Terminal(f"wechatpay pays out {wire.SUPPORTED_CURRENCY} only", code="currency")
        if amount.amount_minor <= 0:
            raise Terminal("wechatpay payout amount must be positive", code="bad_amount")
        if not request.payee:
            raise Terminal("wechatpay payout needs the payee's openid", code="no_payee")
        if amount.amount_minor >= wire.USER_NAME_REQUIRED_FROM_FEN and not request.payee_name:
            raise Terminal("wechatpay requires the payee's name from 2000 CNY", code="no_payee_name")
        remark = wire.transfer_remark(request.remark)
        payload: dict[str, Any] = {
            "appid": self._creds.get("appid", ""),
            "out_bill_no": request.payout_no,
            "transfer_scene_id": self._creds.get("transfer_scene_id") or wire.DEFAULT_TRANSFER_SCENE_ID,
            "openid": request.payee,
            "transfer_amount": amount.amount_minor,
            "transfer_remark": remark,
            "transfer_scene_report_infos": self._scene_report_infos(remark),
        }
        if request.payee_name:
            payload["user_name"] = signing.encrypt_sensitive(self._payout_key(), request.payee_name)
        if notify_url := self._creds.get("transfer_notify_url"):
            payload["notify_url"] = notify_url
        status, data, verified = self._v3("payout", "POST", wire.TRANSFER_PATH, payload)
        code = str(data.get("code", ""))
        if status == 200:
            if not verified:
                raise Unknown("wechatpay payout answer did not verify", code="bad_signature")
            return self._payout_observation(data, request, stated_amount=False)
        if code in wire.TRANSFER_REFUSED_CODES:
            # Nothing moved, so a refusal must be WeChat's own word: an unsigned one could hide a real transfer.
            if not verified:
                raise Unknown(f"wechatpay payout refusal {code} did not verify", code="bad_signature")
            return PayoutObservation(
                payout_no=request.payout_no,
                provider_payout_no="",
                status=PayoutState.FAILED,
                amount=amount,
                provider_status=code,
                failure_reason=code,
            )
        if status == 429 or code in wire.TRANSFER_UNKNOWN_CODES:
            raise Unknown(f"wechatpay payout answered {status} {code}: query before anything else", code="busy")
        raise Terminal(
            f"wechatpay refused payout: {status} {code} {str(data.get('message', ''))[:120]}", code="refused"
        )

    def payout_query(self, request: PayoutRequest) -> PayoutObservation | None:
        if not wire.OUT_BILL_NO_RE.match(request.payout_no):
            return None  # payout refuses such numbers, so WeChat cannot know one
        path = wire.TRANSFER_QUERY_PATH.format(out_bill_no=request.payout_no)
        status, data, verified = self._v3("payout query", "GET", path)
        code = str(data.get("code", ""))
        # An unsigned 404 is safe to believe: the caller may only resend under the same out_bill_no.
        if status == 404 or code in wire.TRANSFER_NOT_FOUND_CODES:
            return None
        if status != 200:
            if status == 429 or code in wire.TRANSFER_UNKNOWN_CODES:
                raise Retryable(f"wechatpay payout query answered {status} {code}", code="busy")
            raise Terminal(f"wechatpay refused payout query: {status} {code}", code="refused")
        if not verified:
            raise Unknown("wechatpay payout query answer did not verify", code="bad_signature")
        # The query names the merchant `mch_id` (not `mchid` as the payment APIs do).
        if data.get("appid") not in (None, self._creds.get("appid")) or data.get("mch_id") not in (
            None,
            self.account.merchant_no,
        ):
            raise Unknown("wechatpay payout query answered for another app or merchant", code="bad_response")
        return self._payout_observation(data, request, stated_amount=True)

    @staticmethod
    def _check_payout(request: PayoutRequest) -> None:
        if not wire.OUT_BILL_NO_RE.match(request.payout_no):
            raise Terminal("payout_no must be 1-32 of [0-9A-Za-z]", code="bad_payout_no")

    def _scene_report_infos(self, remark: str) -> list[dict[str, str]]:
        configured = self._creds.get("transfer_scene_report_infos")
        if not configured:
            return [{"info_type": t, "info_content": remark} for t in wire.DEFAULT_SCENE_REPORT_TYPES]
        try:
            infos = json.loads(configured)
        except ValueError as exc:
            raise Terminal("transfer_scene_report_infos is not JSON", code="bad_credentials") from exc
        if not isinstance(infos, list) or not all(
            isinstance(i, dict) and isinstance(i.get("info_type"), str) and isinstance(i.get("info_content"), str)
            for i in infos
        ):
            raise Terminal("transfer_scene_report_infos must be [{info_type, info_content}]", code="bad_credentials")
        return infos

    @staticmethod
    def _payout_observation(data: dict, request: PayoutRequest, *, stated_amount: bool) -> PayoutObservation:
        """The bill as the create answer (no amount: it is what we sent) or the query (transfer_amount) states it."""
        if data.get("out_bill_no") != request.payout_no:
            raise Unknown("wechatpay answered for another transfer bill", code="bad_response")
        state = str(data.get("state", ""))
        observed = wire.TRANSFER_STATE.get(state)
        if observed is None:
            raise Unknown(f"wechatpay transfer state {state[:32]!r} not understood", code="bad_response")
        amount = request.amount
        if stated_amount:
            value = data.get("transfer_amount")
            if not _fen(value) or not value:
                raise Unknown("wechatpay transfer_amount not understood", code="bad_response")
            amount = Money(value, wire.SUPPORTED_CURRENCY)  # transfers are CNY only
        reason = ""
        if observed == PayoutState.FAILED:
            reason = decline_code_or_empty(data.get("fail_reason")) or state
        return PayoutObservation(
            payout_no=request.payout_no,
            provider_payout_no=str(data.get("transfer_bill_no") or ""),
            status=observed,
            amount=amount,
            provider_status=state,
            failure_reason=reason,
        )

    # ---- profit sharing (分账) ------------------------------------------------------------------------------
    def split_bind(self, receiver: SplitReceiver) -> None:
        """添加分账接收方. WeChat accepts the same binding again, so a lost answer is resolved by binding again."""
        self._check_receiver(receiver, amount=False)
        payload: dict[str, Any] = {
            "appid": self._creds.get("appid", ""),
            "type": receiver.account_type,
            "account": receiver.account,
            "relation_type": self._creds.get("split_relation_type") or wire.DEFAULT_SPLIT_RELATION_TYPE,
        }
        if receiver.name:
            payload["name"] = signing.encrypt_sensitive(self._payout_key(), receiver.name)
        elif receiver.account_type == wire.SPLIT_RETURN_RECEIVER_TYPE:
            raise Terminal("wechatpay binds a merchant receiver by its full name", code="no_receiver_name")
        status, data, verified = self._v3("split bind", "POST", wire.RECEIVERS_ADD_PATH, payload)
        if status == 200:
            if not verified:
                raise Unknown("wechatpay split bind answer did not verify", code="bad_signature")
            if data.get("account") != receiver.account or data.get("type") != receiver.account_type:
                raise Unknown("wechatpay bound another receiver", code="bad_response")
            return
        raise self._refused("split bind", status, data)

    def split(self, request: SplitRequest) -> SplitObservation:
        """请求分账 (or, with no receiver and finish, 解冻剩余资金) under out_order_no = split_no."""
        self._check_split(request)
        if request.receivers:
            path = wire.SPLIT_PATH
            payload: dict[str, Any] = {
                "appid": self._creds.get("appid", ""),
                "transaction_id": request.provider_trade_no,
                "out_order_no": request.split_no,
                "receivers": [
                    {
                        "type": r.account_type,
                        "account": r.account,
                        "amount": r.amount.amount_minor,
                        "description": wire.split_description(r.description),
                    }
                    for r in request.receivers
                ],
                "unfreeze_unsplit": request.finish,
            }
        else:
            path = wire.SPLIT_PATH + "/unfreeze"
            payload = {
                "transaction_id": request.provider_trade_no,
                "out_order_no": request.split_no,
                "description": "解冻全部剩余资金",
            }
        status, data, verified = self._v3("split", "POST", path, payload)
        if status == 200:
            if not verified:
                raise Unknown("wechatpay split answer did not verify", code="bad_signature")
            return self._split_observation(data, request)
        code = str(data.get("code", ""))
        if code in wire.SPLIT_REFUSED_CODES and status in (400, 403):
            # Nothing moved, so the refusal must be WeChat's own word (an unsigned one could hide a real split), and
            # it must not be about another request under this number ("商户分账单号重复"): believed only when
            # WeChat does not know split_no.
            if not verified:
                raise Unknown(f"wechatpay split refusal {code} did not verify", code="bad_signature")
            if (known := self.split_query(request)) is not None:
                return known
            reason = f"{code}: {str(data.get('message', ''))[:100]}"
            return SplitObservation(
                split_no=request.split_no,
                provider_split_no="",
                status=SplitState.FAILED,
                receivers=tuple(
                    SplitResult(account=r.account, amount=r.amount, status=SplitState.FAILED, failure_reason=reason)
                    for r in request.receivers
                ),
                provider_status=code,
            )
        if status == 429 or code in wire.SPLIT_UNKNOWN_CODES:
            raise Unknown(f"wechatpay split answered {status} {code}: query before anything else", code="busy")
        raise Terminal(f"wechatpay refused split: {status} {code} {str(data.get('message', ''))[:120]}", code="refused")

    def split_query(self, request: SplitRequest) -> SplitObservation | None:
        """查询分账结果 by out_order_no and transaction_id."""
        if not wire.OUT_ORDER_NO_RE.match(request.split_no) or not wire.TRANSACTION_ID_RE.match(
            request.provider_trade_no
        ):
            return None  # split refuses such numbers, so WeChat cannot know one
        path = wire.SPLIT_QUERY_PATH.format(out_order_no=request.split_no, transaction_id=request.provider_trade_no)
        status, data, verified = self._v3("split query", "GET", path)
        code = str(data.get("code", ""))
        # An unsigned 404 is safe to believe: the caller may only resend under the same split_no.
        if status == 404 or code in wire.SPLIT_NOT_FOUND_CODES:
            return None
        if status != 200:
            if status == 429 or code in wire.SPLIT_UNKNOWN_CODES:
                raise Retryable(f"wechatpay split query answered {status} {code}", code="busy")
            raise Terminal(f"wechatpay refused split query: {status} {code}", code="refused")
        if not verified:
            raise Unknown("wechatpay split query answer did not verify", code="bad_signature")
        return self._split_observation(data, request)

    def split_return(self, request: SplitReturnRequest) -> SplitReturnObservation:
        """请求分账回退: from the receiver's merchant account (return_mchid) back to ours, by out_order_no."""
        self._check_split_return(request)
        payload = {
            "out_order_no": request.split_no,
            "out_return_no": request.return_no,
            "return_mchid": request.receiver.account,
            "amount": request.receiver.amount.amount_minor,
            "description": wire.split_description(request.receiver.description or "退款回退"),
        }
        status, data, verified = self._v3("split return", "POST", wire.SPLIT_RETURN_PATH, payload)
        if status == 200:
            if not verified:
                raise Unknown("wechatpay split return answer did not verify", code="bad_signature")
            return self._return_observation(data, request)
        code = str(data.get("code", ""))
        if code in wire.SPLIT_REFUSED_CODES and status in (400, 403):
            if not verified:
                raise Unknown(f"wechatpay split return refusal {code} did not verify", code="bad_signature")
            if (known := self.split_return_query(request)) is not None:
                return known
            return SplitReturnObservation(
                return_no=request.return_no,
                provider_return_no="",
                status=SplitState.FAILED,
                amount=request.receiver.amount,
                failure_reason=f"{code}: {str(data.get('message', ''))[:100]}",
            )
        if status == 429 or code in wire.SPLIT_UNKNOWN_CODES:
            raise Unknown(f"wechatpay split return answered {status} {code}: query first", code="busy")
        raise Terminal(
            f"wechatpay refused split return: {status} {code} {str(data.get('message', ''))[:120]}", code="refused"
        )

    def split_return_query(self, request: SplitReturnRequest) -> SplitReturnObservation | None:
        """查询分账回退结果 by out_return_no and out_order_no; None when WeChat does not know return_no."""
        if not wire.OUT_ORDER_NO_RE.match(request.return_no) or not wire.OUT_ORDER_NO_RE.match(request.split_no):
            return None
        path = wire.SPLIT_RETURN_QUERY_PATH.format(out_return_no=request.return_no, out_order_no=request.split_no)
        status, data, verified = self._v3("split return query", "GET", path)
        code = str(data.get("code", ""))
        if status == 404 or code in wire.SPLIT_NOT_FOUND_CODES:
            return None
        if status != 200:
            if status == 429 or code in wire.SPLIT_UNKNOWN_CODES:
                raise Retryable(f"wechatpay split return query answered {status} {code}", code="busy")
            raise Terminal(f"wechatpay refused split return query: {status} {code}", code="refused")
        if not verified:
            raise Unknown("wechatpay split return query answer did not verify", code="bad_signature")
        return self._return_observation(data, request)

    @staticmethod
    def _check_receiver(receiver: SplitReceiver, *, amount: bool = True) -> None:
        if receiver.account_type not in wire.SPLIT_RECEIVER_TYPES:
            raise Terminal("wechatpay receivers are MERCHANT_ID or PERSONAL_OPENID", code="bad_receiver_type")
        if not receiver.account or len(receiver.account) > 64:
            raise Terminal("wechatpay receiver account must be 1-64 characters", code="bad_receiver")
        if amount:
            if receiver.amount.currency != wire.SUPPORTED_CURRENCY:
                raise Terminal(f"wechatpay splits {wire.SUPPORTED_CURRENCY} only", code="currency")
            if receiver.amount.amount_minor <= 0:
                raise Terminal("wechatpay split amounts must be positive", code="bad_amount")

    def _check_split(self, request: SplitRequest) -> None:
        if not wire.OUT_ORDER_NO_RE.match(request.split_no):
            raise Terminal("split_no must be 1-64 of [0-9A-Za-z_-|*@]", code="bad_split_no")
        if not wire.TRANSACTION_ID_RE.match(request.provider_trade_no):
            raise Terminal("wechatpay splits by transaction_id: the trade's must be known", code="no_trade_no")
        if len(request.receivers) > wire.SPLIT_MAX_RECEIVERS:
            raise Terminal(f"wechatpay splits to at most {wire.SPLIT_MAX_RECEIVERS} receivers", code="too_many")
        if not request.receivers and not request.finish:
            raise Terminal("a split names receivers or finishes the trade", code="no_receivers")
        for receiver in request.receivers:
            self._check_receiver(receiver)

    def _check_split_return(self, request: SplitReturnRequest) -> None:
        if not wire.OUT_ORDER_NO_RE.match(request.return_no):
            raise Terminal("return_no must be 1-64 of [0-9A-Za-z_-|*@]", code="bad_return_no")
        if not wire.OUT_ORDER_NO_RE.match(request.split_no):
            raise Terminal("split_no must be 1-64 of [0-9A-Za-z_-|*@]", code="bad_split_no")
        self._check_receiver(request.receiver)
        if request.receiver.account_type != wire.SPLIT_RETURN_RECEIVER_TYPE:
            # WeChat takes a return only from a merchant receiver (return_mchid): an openid cannot be debited.
            raise Terminal("wechatpay returns a share only from a MERCHANT_ID receiver", code="not_returnable")

    def _split_observation(self, data: dict, request: SplitRequest) -> SplitObservation:
        if data.get("out_order_no") != request.split_no or data.get("transaction_id") != request.provider_trade_no:
            raise Unknown("wechatpay answered for another split or trade", code="bad_response")
        state = str(data.get("state", ""))
        raw = data.get("receivers", [])
        if state not in wire.SPLIT_ORDER_STATES or not isinstance(raw, list):
            raise Unknown(f"wechatpay split state {state[:32]!r} not understood", code="bad_response")
        results = []
        for entry in raw:
            if not isinstance(entry, dict):
                raise Unknown("wechatpay split receiver not understood", code="bad_response")
            # Unfreezing lists the merchant itself as a receiver ("解冻给分账方"): that is not a share.
            if entry.get("type") == "MERCHANT_ID" and entry.get("account") == self.account.merchant_no:
                continue
            result = str(entry.get("result", ""))
            observed = wire.SPLIT_RECEIVER_RESULT.get(result)
            value = entry.get("amount")
            if observed is None or not _fen(value) or not isinstance(entry.get("account"), str):
                raise Unknown(f"wechatpay split receiver result {result[:32]!r} not understood", code="bad_response")
            reason = ""
            if observed == SplitState.FAILED:
                reason = decline_code_or_empty(entry.get("fail_reason")) or result
            results.append(
                SplitResult(
                    account=entry["account"],
                    amount=Money(value, wire.SUPPORTED_CURRENCY),  # profit sharing is CNY only
                    status=observed,
                    failure_reason=reason,
                )
            )
        if any(r.status == SplitState.FAILED for r in results):
            status = SplitState.FAILED
        elif state == "FINISHED" and all(r.status == SplitState.SUCCEEDED for r in results):
            status = SplitState.SUCCEEDED
        else:
            status = SplitState.PENDING
        return SplitObservation(
            split_no=request.split_no,
            provider_split_no=str(data.get("order_id") or ""),
            status=status,
            receivers=tuple(results),
            provider_status=state,
        )

    @staticmethod
    def _return_observation(data: dict, request: SplitReturnRequest) -> SplitReturnObservation:
        if (
            data.get("out_return_no") != request.return_no
            or data.get("out_order_no") not in (None, request.split_no)
            or data.get("return_mchid") != request.receiver.account
        ):
            raise Unknown("wechatpay answered for another split return", code="bad_response")
        result = str(data.get("result", ""))
        observed = wire.SPLIT_RETURN_RESULT.get(result)
        value = data.get("amount")
        if observed is None or not _fen(value) or not value:
            raise Unknown(f"wechatpay split return result {result[:32]!r} not understood", code="bad_response")
        reason = ""
        if observed == SplitState.FAILED:
            reason = decline_code_or_empty(data.get("fail_reason")) or result
        return SplitReturnObservation(
            return_no=request.return_no,
            provider_return_no=str(data.get("return_id") or ""),
            status=observed,
            amount=Money(value, wire.SUPPORTED_CURRENCY),
            failure_reason=reason,
        )

    # ---- the daily trade bill (交易账单) ------------------------------------------------------------------
    def statement(self, day: date) -> Statement:
        """The ALL trade bill of `day`, a Beijing (Asia/Shanghai) calendar day as WeChat cuts its bills. The
        file is downloaded to a temporary file, checked against the signed SHA1, then parsed as it is iterated."""
        query = {"bill_date": day.isoformat(), "bill_type": wire.BILL_TYPE}
        if self.statement_tar_type:
            query["tar_type"] = self.statement_tar_type
        path = f"{wire.TRADEBILL_PATH}?{urlencode(query)}"
        status, data, verified = self._read("statement", lambda: self._v3("statement", "GET", path))
        code = str(data.get("code", ""))
        if status != 200:
            if code in wire.BILL_NOT_READY_CODES:
                raise Retryable(f"wechatpay bill of {day} not produced: {code}", code="not_ready")
            if status == 429 or code in wire.RETRYABLE_CODES:
                raise Retryable(f"wechatpay bill of {day}: {status} {code}", code="busy")
            raise self._refused("statement", status, data)
        if not verified:
            raise Unknown("wechatpay bill answer did not verify", code="bad_signature")
        url, hash_type, hash_value = data.get("download_url"), data.get("hash_type"), data.get("hash_value")
        if not isinstance(url, str) or not isinstance(hash_value, str) or not hash_value:
            raise Unknown("wechatpay bill answer lacks download_url or hash_value", code="bad_response")
        if hash_type != wire.BILL_HASH_TYPE:
            raise Unknown(f"wechatpay bill hash_type {str(hash_type)[:16]!r} not understood", code="bad_response")
        raw = self._read("statement download", lambda: self._download(url))
        try:
            digest = hashlib.sha256()
            raw.seek(0)
            while chunk := raw.read(64 * 1024):
                digest.update(chunk)
            gzipped = self.statement_tar_type == wire.BILL_TAR_TYPE
            bill.check_hash(raw, gzipped=gzipped, hash_value=hash_value)
        except BaseException:
            raw.close()
            raise
        result = Statement(day=day, lines=iter(()), source_hash=digest.hexdigest())
        result.lines = bill.lines(raw, gzipped=gzipped, statement=result)
        return result

    def balance(self) -> ChannelBalance:
        """查询账户实时余额 of the basic and the operating account, added up: trades settle into the first,
        商家转账 pays out of the second. Each answer must carry a valid WeChat Pay signature."""
        available = pending = 0
        for account_type in wire.BALANCE_ACCOUNT_TYPES:
            path = wire.BALANCE_PATH.format(account_type=account_type)
            status, data, verified = self._read("balance", lambda path=path: self._v3("balance", "GET", path))
            if status != 200:
                code = str(data.get("code", ""))
                if status == 429 or code in wire.RETRYABLE_CODES:
                    raise Retryable(f"wechatpay balance {account_type}: {status} {code}", code="busy")
                raise self._refused(f"balance {account_type}", status, data)
            if not verified:
                raise Unknown(f"wechatpay balance {account_type} answer did not verify", code="bad_signature")
            values = data.get("available_amount"), data.get("pending_amount", 0)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise Unknown(f"wechatpay balance {account_type} amounts not understood", code="bad_response")
            available, pending = available + values[0], pending + values[1]
        return ChannelBalance(
            available=Money(available, wire.SUPPORTED_CURRENCY),
            pending=Money(pending, wire.SUPPORTED_CURRENCY),
            provider_status="+".join(wire.BALANCE_ACCOUNT_TYPES),
        )

    def _read(self, what: str, call: Callable[[], Any]) -> Any:
        """A statement call is a read: a timeout or a 5xx changed nothing, so it may simply be tried again."""
        try:
            return call()
        except Unknown as exc:
            if exc.code in ("timeout", "http_5xx", "connection_lost", "transport"):
                raise Retryable(f"wechatpay {what}: {exc}", code=exc.code) from exc
            raise

    def _download(self, url: str) -> IO[bytes]:
        """下载账单: GET download_url signed like any v3 request; the answer is the file, unsigned. Streamed into
        an anonymous temporary file (gone when closed)."""
        core = self._sdk()._core
        target, gateway = urlsplit(url), urlsplit(core._gate_way)
        # Our Authorization goes only to WeChat's own host, whatever a download_url names.
        if (target.scheme, target.netloc) != (gateway.scheme, gateway.netloc):
            raise Unknown("wechatpay download_url is not on the gateway's host", code="bad_response")
        signed_path = target.path + (f"?{target.query}" if target.query else "")
        headers = {
            "Authorization": build_authorization(
                signed_path, "GET", self.account.merchant_no, self._creds["mch_serial_no"], core._private_key
            ),
            "Accept": "*/*",
        }
        raw: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the line iterator, which closes it)
        try:
            status = self._call("statement download", lambda: self._fetch(url, headers, raw))[0]
        except BaseException:
            raw.close()
            raise
        if status == 200:
            return raw
        raw.seek(0)
        try:
            data = json.loads(raw.read(64 * 1024))
        except ValueError:
            data = {}
        raw.close()
        data = data if isinstance(data, dict) else {}
        code = str(data.get("code", ""))
        # A download link lives 5 minutes (older docs: 30 s): an expired one is asked for again from the start.
        if status in (400, 404, 429) or code in wire.RETRYABLE_CODES:
            raise Retryable(f"wechatpay bill download answered {status} {code}", code="download_refused")
        raise self._refused("statement download", status, data)

    def _fetch(self, url: str, headers: Mapping[str, str], raw: IO[bytes]) -> tuple[int, bytes]:
        with requests.get(url, headers=dict(headers), stream=True, timeout=tuple(self.account.timeouts)) as resp:
            for chunk in resp.iter_content(64 * 1024):
                raw.write(chunk)
            return resp.status_code, b""

    def _v3(self, what: str, method: str, path: str, payload: dict | None = None) -> tuple[int, dict, bool]:
        """One signed v3 call -> (status, JSON body, whether the answer carries a valid WeChat Pay signature).
        Every status is checked, not only 2xx: refusals decide money too."""
        core = self._sdk()._core  # the client's loaded merchant key and gateway
        body = json.dumps(payload) if payload is not None else ""
        answer: dict[str, Any] = {}

        def send() -> tuple[int, bytes]:
            headers = {
                # The same string is signed and sent: build_authorization signs a str body as given.
                "Authorization": build_authorization(
                    path,
                    method,
                    self.account.merchant_no,
                    self._creds["mch_serial_no"],
                    core._private_key,
                    data=body or None,
                ),
                "Accept": "application/json",
                "Content-Type": "application/json",
                # Names the key user_name is encrypted with (and, in public-key mode, the one we verify with).
                "Wechatpay-Serial": self._creds["platform_public_key_id"],
            }
            resp = requests.request(
                method,
                core._gate_way + path,
                data=body.encode() if body else None,
                headers=headers,
                timeout=tuple(self.account.timeouts),
            )
            answer["headers"], answer["body"] = resp.headers, resp.content
            return resp.status_code, resp.content

        status, data = self._call(what, send)
        return status, data, self._answer_verified(answer.get("headers") or {}, answer.get("body", b""))

    def _answer_verified(self, headers: Mapping[str, str], body: bytes) -> bool:
        signature, timestamp = headers.get("Wechatpay-Signature", ""), headers.get("Wechatpay-Timestamp", "")
        nonce, serial = headers.get("Wechatpay-Nonce", ""), headers.get("Wechatpay-Serial", "")
        if not (signature and timestamp and nonce and serial):
            return False
        if headers.get("Wechatpay-Signature-Type", wire.SIGNATURE_TYPE) != wire.SIGNATURE_TYPE:
            return False
        if not constant_time_equals(serial, self._creds.get("platform_public_key_id", "")):
            return False
        if (
            not wire.UNIX_SECONDS_RE.fullmatch(timestamp)
            or abs(time.time() - int(timestamp)) > wire.TIMESTAMP_WINDOW_SECONDS
        ):
            return False
        return signing.verify(self._payout_key(), timestamp, nonce, body, signature)

    def _payout_key(self) -> RSAPublicKey:
        try:
            return self._platform_public_key()
        except NotificationInvalid as exc:
            raise Terminal("platform_public_key does not load", code="bad_credentials") from exc

    # ---- callbacks ------------------------------------------------------------------------------
    def verify_notification(self, inbound: Inbound) -> Observation | RefundObservation:
        event_type, resource = self._verified_resource(inbound)
        if not constant_time_equals(str(resource.get("mchid", "")), self.account.merchant_no):
            raise NotificationInvalid("wrong_merchant", "mchid is not this channel account's")
        # Same event (a re-notify carries the same resource) -> same key; any changed field -> another key.
        digest = hashlib.sha256(json.dumps(resource, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
        if event_type.startswith(wire.REFUND_EVENT_PREFIX):
            return self._refund_notification(resource, digest)
        if not event_type.startswith(wire.PAYMENT_EVENT_PREFIX):
            raise NotificationInvalid("unsupported_event", f"event_type {event_type[:40]!r} is not handled")
        if not constant_time_equals(str(resource.get("appid", "")), self._creds.get("appid", "")):
            raise NotificationInvalid("wrong_app", "appid is not this channel account's")
        state = str(resource.get("trade_state", ""))
        observed = wire.TRADE_STATE.get(state)
        if observed is None:
            raise NotificationInvalid("unknown_status", f"trade_state {state[:32]!r} is not understood")
        out_trade_no = resource.get("out_trade_no")
        if not isinstance(out_trade_no, str) or not out_trade_no:
            raise NotificationInvalid("missing_fields", "resource has no out_trade_no")
        amount = _amount(resource.get("amount"), "total", default_currency=False)
        if amount is None:
            raise NotificationInvalid("bad_amount", "amount.total/amount.currency not understood")
        trade_no = str(resource.get("transaction_id") or "")
        return Observation(
            out_trade_no=out_trade_no,
            provider_trade_no=trade_no,
            status=observed,
            amount=amount,
            event_key=f"{trade_no or out_trade_no}:{state}:{digest}",
            provider_status=state,
            # WeChat Pay gives no reason code (trade_state_desc is free text): its decline word is the code.
            decline_code=state if observed == ObservedStatus.FAILED else "",
        )

    @staticmethod
    def is_split_notification(inbound: Inbound) -> bool:
        """The envelope's event_type is plain text (only the resource is encrypted): PROFITSHARING.*"""
        try:
            envelope = json.loads(inbound.body)
        except ValueError:
            return False
        return isinstance(envelope, dict) and str(envelope.get("event_type", "")).startswith(wire.SPLIT_EVENT_PREFIX)

    def verify_split_notification(self, inbound: Inbound) -> SplitObservation:
        """分账动账通知: verified and decrypted like every callback, it names one receiver's movement of one
        split; the split's whole state is then asked of WeChat (the query is the truth, the callback a hint)."""
        event_type, resource = self._verified_resource(inbound)
        if not event_type.startswith(wire.SPLIT_EVENT_PREFIX):
            raise NotificationInvalid("unsupported_event", f"event_type {event_type[:40]!r} is no split")
        if not constant_time_equals(str(resource.get("mchid", "")), self.account.merchant_no):
            raise NotificationInvalid("wrong_merchant", "mchid is not this channel account's")
        split_no, trade_no = str(resource.get("out_order_no") or ""), str(resource.get("transaction_id") or "")
        if not split_no or not trade_no:
            raise NotificationInvalid("missing_fields", "resource has no out_order_no or transaction_id")
        try:
            seen = self.split_query(SplitRequest(split_no, "", trade_no, receivers=()))
        except (Retryable, Terminal, Unknown) as exc:
            raise NotificationInvalid("query_failed", f"the split could not be confirmed ({exc.code})") from exc
        if seen is None:
            raise NotificationInvalid("unknown_split", "WeChat Pay does not know this split")
        return seen

    def _refund_notification(self, resource: dict, digest: str) -> RefundObservation:
        state = str(resource.get("refund_status", ""))
        observed = wire.REFUND_STATUS.get(state)
        if observed is None:
            raise NotificationInvalid("unknown_status", f"refund_status {state[:32]!r} is not understood")
        refund_no = resource.get("out_refund_no")
        if not isinstance(refund_no, str) or not refund_no:
            raise NotificationInvalid("missing_fields", "resource has no out_refund_no")
        # Refund callbacks carry no currency: the API refunds CNY only.
        amount = _amount(resource.get("amount"), "refund", default_currency=True)
        if amount is None:
            raise NotificationInvalid("bad_amount", "amount.refund not understood")
        refund_id = str(resource.get("refund_id", ""))
        return RefundObservation(
            refund_no=refund_no,
            provider_refund_no=refund_id,
            status=observed,
            amount=amount,
            provider_status=state,
            event_key=f"{refund_id or refund_no}:{state}:{digest}",
        )

    def _verified_resource(self, inbound: Inbound) -> tuple[str, dict]:
        """Signature (type, serial, window, RSA), then the envelope, then AES-GCM: (event_type, resource)."""
        headers = inbound.headers
        apiv3_key = self._creds.get("apiv3_key", "")
        key_id = self._creds.get("platform_public_key_id", "")
        if not apiv3_key or not key_id or not self._creds.get("platform_public_key"):
            raise NotificationInvalid("no_credentials", "channel account has no WeChat Pay keys; notify refused")
        missing = [h for h in wire.CALLBACK_HEADERS if not headers.get(h)]
        if missing:
            raise NotificationInvalid("missing_headers", f"missing headers: {', '.join(missing)}")
        if headers[wire.H_SIGNATURE_TYPE] != wire.SIGNATURE_TYPE:
            raise NotificationInvalid("bad_sign_type", f"signature type must be {wire.SIGNATURE_TYPE}")
        if not constant_time_equals(headers[wire.H_SERIAL], key_id):
            raise NotificationInvalid("unknown_serial", "Wechatpay-Serial is not this account's public key id")
        timestamp = headers[wire.H_TIMESTAMP]
        # ASCII digits only: str.isdigit() also takes "²", which int() then refuses with a ValueError.
        if (
            not wire.UNIX_SECONDS_RE.fullmatch(timestamp)
            or abs(time.time() - int(timestamp)) > wire.TIMESTAMP_WINDOW_SECONDS
        ):
            raise NotificationInvalid("stale_timestamp", "Wechatpay-Timestamp is outside the 300 s window")
        if not signing.verify(
            self._platform_public_key(), timestamp, headers[wire.H_NONCE], inbound.body, headers[wire.H_SIGNATURE]
        ):
            raise NotificationInvalid("bad_signature", "signature does not verify")
        try:
            envelope = json.loads(inbound.body)
        except ValueError as exc:
            raise NotificationInvalid("bad_body", "body is not JSON") from exc
        if not isinstance(envelope, dict):
            raise NotificationInvalid("bad_body", "body is not a JSON object")
        res = envelope.get("resource")
        if envelope.get("resource_type") != wire.RESOURCE_TYPE or not isinstance(res, dict):
            raise NotificationInvalid("bad_body", "no encrypted resource")
        if res.get("algorithm") != wire.RESOURCE_ALGORITHM:
            raise NotificationInvalid("bad_body", f"resource algorithm must be {wire.RESOURCE_ALGORITHM}")
        fields = (res.get("nonce"), res.get("ciphertext"), res.get("associated_data", ""))
        if not all(isinstance(f, str) for f in fields) or not fields[0] or not fields[1]:
            raise NotificationInvalid("bad_body", "resource lacks nonce or ciphertext")
        nonce, ciphertext, associated_data = fields
        try:
            plain = signing.decrypt_resource(
                apiv3_key, nonce=nonce, ciphertext_b64=ciphertext, associated_data=associated_data
            )
            resource = json.loads(plain)
        except (signing.DecryptError, ValueError) as exc:
            raise NotificationInvalid("decrypt_failed", "resource does not decrypt with this account's key") from exc
        if not isinstance(resource, dict):
            raise NotificationInvalid("bad_body", "decrypted resource is not an object")
        return str(envelope.get("event_type", "")), resource

    def _platform_public_key(self) -> RSAPublicKey:
        if self._platform_key is None:
            try:
                self._platform_key = signing.load_platform_key(self._creds["platform_public_key"])
            except ValueError as exc:
                raise NotificationInvalid("no_credentials", "platform_public_key does not load") from exc
        return self._platform_key


def _amount(raw: object, field: str, *, default_currency: bool) -> Money | None:
    """Integer fen from amount[field]; currency as stated (answers omit it on unpaid trades and refund
    callbacks never carry it: the API only knows CNY)."""
    if not isinstance(raw, dict):
        return None
    value = raw.get(field)
    currency = raw.get("currency") or (wire.SUPPORTED_CURRENCY if default_currency else None)
    if not _fen(value) or not isinstance(currency, str):
        return None
    # What the buyer paid may differ from the total (coupons), but it too must be whole fen when present.
    payer_field = f"payer_{field}"
    if payer_field in raw and not _fen(raw[payer_field]):
        return None
    try:
        return Money(value, currency)
    except MoneyError:
        return None


def _fen(value: object) -> bool:
    """A JSON integer count of fen: not a bool (True is an int in Python), not a float, not a numeric string."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
