"""支付宝 (Alipay open platform) adapter through python-alipay-sdk: precreate QR plus a signed page.pay redirect,
RSA2 (SHA256withRSA) request signing, signed synchronous answers, RSA2-verified async notify, and payouts by
单笔转账 (alipay.fund.trans.uni.transfer, resolved by alipay.fund.trans.common.query).

Payouts: the request and answer fields are those of Alipay's API reference (opendocs.alipay.com/apis/api_28/
alipay.fund.trans.uni.transfer and .../alipay.fund.trans.common.query), cross-checked with python-alipay-sdk 3.4
`DCAliPay.api_alipay_fund_trans_uni_transfer` and Alipay's SDK response classes; see wire.py. Real Alipay serves
the fund APIs to apps in public-key-certificate mode only (app_cert_sn / alipay_root_cert_sn beside the same
RSA2 signature); this adapter signs them in the plain public-key mode of the trade APIs, which the simulator
speaks. Certificate mode is the one addition a production account needs.

Daily statement: alipay.data.dataservice.bill.downloadurl.query (opendocs.alipay.com/apis/api_15/...; request
{bill_type, bill_date}, answer bill_download_url; no SDK helper, so it goes through the SDK's signed body and verified
answer like the fund APIs), then the file behind the URL: see statement.py for the format and what it relies on.

分账 (royalty, capability SPLIT): a trade created with extend_params.royalty_freeze=true is frozen for splitting;
receivers are bound by alipay.trade.royalty.relation.bind (receiver_list {type, account, name, memo}, <= 20), a split
is alipay.trade.order.settle (out_request_no = split_no, trade_no, royalty_parameters {royalty_type, trans_in_type,
trans_in, amount, desc}, extend_params.royalty_finish, royalty_mode=async) answered by settle_no, resolved by
alipay.trade.order.settle.query (royalty_detail_list {operation_type, trans_in, amount, state, error_code,
error_desc}) or the alipay.trade.order.settle.notify message. Field names from alipay-sdk-java-all
(AlipayTradeOrderSettleModel, OpenApiRoyaltyDetailInfoPojo, AlipayTradeOrderSettleQueryModel/Response, RoyaltyDetail)
and Alipay's 分账 docs. A receiver's share comes back only through a refund of the trade carrying
refund_royalty_parameters {royalty_type, trans_out, trans_out_type, amount, desc}: split_return is that refund, of
exactly the share, so the buyer gets back what the receiver gives back (see split_return).

Balance (capability BALANCE): alipay.data.bill.balance.query (支付宝商家账户当前余额查询, no business parameter for the
app's own account) answers total_amount, available_amount and freeze_amount as yuan strings; it goes through the fund
APIs' signed body and verified answer, and a timeout or 5xx is Retryable (a read)."""

from __future__ import annotations

import binascii
import functools
import hashlib
import http.client
import json
import urllib.error
from collections.abc import Callable
from datetime import date
from typing import Any, ClassVar

from alipay import AliPay, AliPayConfig
from alipay.exceptions import AliPayException, AliPayValidationError

from core.crypto import constant_time_equals
from core.money import Money, MoneyError
from payments.channels.alipay import statement as bill
from payments.channels.alipay import wire
from payments.channels.base import (
    AccountConfig,
    Ack,
    Capability,
    ChannelBalance,
    ChannelError,
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
    RefundState,
    Retryable,
    SplitObservation,
    SplitReceiver,
    SplitRequest,
    SplitResult,
    SplitReturnObservation,
    SplitReturnRequest,
    SplitState,
    SplitToReturn,
    Statement,
    Terminal,
    Unknown,
)


@functools.lru_cache(maxsize=64)
def _client_for(app_id: str, private_pem: str, public_pem: str, timeout: float, gateway: str) -> AliPay | None:
    """One SDK client per account and key set: parsing the RSA keys costs ~30 ms, more than a whole notify.

    None when a key is missing or malformed (a bare base64 console key too): every call then refuses.
    """
    try:
        client = AliPay(
            appid=app_id,
            app_notify_url=None,
            app_private_key_string=private_pem,
            alipay_public_key_string=public_pem,
            sign_type=wire.SIGN_TYPE,
            # The SDK calls urllib's urlopen with one socket timeout for connect and read alike; the read
            # budget is the one that decides between an answer and Unknown.
            config=AliPayConfig(timeout=timeout),
        )
    except (ValueError, IndexError, TypeError):
        return None
    # The SDK has no gateway argument; debug=True would only switch to Alipay's own sandbox.
    client._gateway = gateway
    return client


class AlipayAdapter:
    code: ClassVar[str] = "alipay"
    # The buyer-facing payment methods this channel can take (routing matches the buyer's choice).
    methods: ClassVar[frozenset[str]] = frozenset({"alipay"})
    # Alipay's async notify is a form POST; nothing it sends comes by GET.
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

    def __init__(self, account: AccountConfig) -> None:
        self.account = account
        credentials = account.credentials
        self._client: AliPay | None = _client_for(
            account.merchant_no,
            credentials.get("app_private_key", ""),
            credentials.get("alipay_public_key", ""),
            account.timeouts[1],
            account.base_url.rstrip("/") + "/gateway.do",
        )

    @staticmethod
    def notification_reference(inbound: Inbound) -> str:
        return inbound.params.get("out_trade_no", "")

    @staticmethod
    def is_split_notification(inbound: Inbound) -> bool:
        """alipay.trade.order.settle.notify names its method; a trade notify has none."""
        return inbound.params.get("msg_method") == wire.SETTLE_NOTIFY_METHOD

    @staticmethod
    def ack(ok: bool) -> Ack:
        # Alipay stops re-sending only on these exact 7 characters.
        return Ack(200, "success") if ok else Ack(400, "fail")

    def _require_client(self) -> AliPay:
        if self._client is None:
            raise Terminal("alipay account keys are missing or not PEM", code="no_credentials")
        return self._client

    # ---- calls -----------------------------------------------------------------------------------------
    def _call(self, api: Callable[..., dict], **kwargs: Any) -> dict[str, Any]:
        """One signed gateway call; the SDK verifies the answer's signature over its exact bytes."""
        try:
            answer = api(**kwargs)
        except urllib.error.HTTPError as exc:  # before URLError, which it subclasses
            if exc.code >= 500:
                raise Unknown(f"alipay answered HTTP {exc.code}", code="http_5xx") from exc
            raise Terminal(f"alipay answered HTTP {exc.code}", code="http_4xx") from exc
        except urllib.error.URLError as exc:
            # urllib wraps only failures of connecting and writing the request: nothing reached Alipay.
            raise Retryable(f"alipay unreachable: {type(exc.reason).__name__}", code="connect") from exc
        except TimeoutError as exc:
            raise Unknown("alipay timed out", code="timeout") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise Unknown(f"alipay connection lost: {type(exc).__name__}", code="connection_lost") from exc
        except AliPayValidationError as exc:
            raise Unknown("alipay answer signature does not verify", code="bad_signature") from exc
        except AliPayException as exc:
            raise _unsigned_refusal(exc) from exc
        except (ValueError, KeyError, AttributeError, TypeError) as exc:  # JSON errors, SDK on odd shapes
            raise Unknown(f"alipay answer not understood: {type(exc).__name__}", code="bad_response") from exc
        if not isinstance(answer, dict):
            raise Unknown("alipay answered an unexpected shape", code="bad_response")
        return answer

    @staticmethod
    def _business_error(answer: dict[str, Any], action: str) -> ChannelError:
        """A signed non-10000 answer: ACQ.SYSTEM_ERROR and 20000 leave the outcome open, the rest refuse."""
        code, sub_code = str(answer.get("code", "")), str(answer.get("sub_code", ""))
        message = f"alipay refused {action}: {code} {sub_code} {answer.get('sub_msg', '')}"[:200]
        if sub_code == wire.SUB_SYSTEM_ERROR or code in wire.CODES_UNKNOWN:
            return Unknown(message, code="provider_busy")
        return Terminal(message, code=(sub_code or f"alipay_{code}").lower())

    # ---- create ----------------------------------------------------------------------------------------
    def create(self, order: CreateOrder) -> Created:
        """precreate (server to server: the QR) plus a locally signed page.pay URL for the same trade."""
        client = self._require_client()
        if order.amount.currency != wire.SUPPORTED_CURRENCY:
            raise Terminal(f"alipay takes {wire.SUPPORTED_CURRENCY} only", code="currency")
        total = order.amount.to_decimal_str()
        subject = order.subject[:256]
        # The SDK puts extra keywords into biz_content; precreate and page.pay open one trade, so both carry it.
        deadline: dict[str, Any] = {"time_expire": wire.time_expire(order.expires_at)} if order.expires_at else {}
        if order.split:
            # Frozen for royalty: Alipay holds the money until settle / royalty_finish instead of settling it.
            deadline["extend_params"] = {"royalty_freeze": "true"}
        answer = self._call(
            client.api_alipay_trade_precreate,
            subject=subject,
            out_trade_no=order.out_trade_no,
            total_amount=total,
            notify_url=order.notify_url or None,
            **deadline,
        )
        if answer.get("code") != wire.CODE_SUCCESS:
            raise self._business_error(answer, "precreate")
        qr_code = str(answer.get("qr_code") or "")
        if answer.get("out_trade_no") != order.out_trade_no or not qr_code:
            raise Unknown("alipay precreate answered for another trade or without qr_code", code="bad_response")
        query = client.api_alipay_trade_page_pay(
            subject,
            order.out_trade_no,
            total,
            return_url=order.return_url or None,
            notify_url=order.notify_url or None,
            **deadline,
        )
        # Alipay assigns trade_no only once the buyer scans or logs in: there is none to return yet.
        return Created(provider_trade_no="", pay_url=f"{client._gateway}?{query}", qr_content=qr_code)

    # ---- notify ----------------------------------------------------------------------------------------
    def verify_notification(self, inbound: Inbound) -> Observation | RefundObservation:
        params = dict(inbound.params)
        if self._client is None:
            raise NotificationInvalid("no_credentials", "channel account has no usable keys; notify refused")
        missing = [k for k in wire.NOTIFY_REQUIRED if not params.get(k)]
        if missing:
            raise NotificationInvalid("missing_fields", f"missing fields: {', '.join(missing)}")
        if params.get("sign_type", wire.SIGN_TYPE) != wire.SIGN_TYPE:
            raise NotificationInvalid("bad_sign_type", f"sign_type must be {wire.SIGN_TYPE}")
        signed = {k: v for k, v in params.items() if k not in wire.NOTIFY_UNSIGNED}
        try:
            verified = self._client.verify(signed, params["sign"])
        except (ValueError, binascii.Error, TypeError, AliPayException):
            verified = False
        if not verified:
            raise NotificationInvalid("bad_signature", "signature does not verify with the Alipay public key")
        if not constant_time_equals(params["app_id"], self.account.merchant_no):
            raise NotificationInvalid("wrong_merchant", "app_id is not this channel account's")
        trade_status = params["trade_status"]
        status = wire.TRADE_STATUS.get(trade_status)
        if status is None:
            raise NotificationInvalid("unknown_status", f"trade_status {trade_status[:32]!r} is not understood")
        if params.get("out_biz_no"):
            return self._refund_notification(params)
        return Observation(
            out_trade_no=params["out_trade_no"],
            provider_trade_no=params["trade_no"],
            status=status,
            amount=_notify_money(params["total_amount"]),
            # TRADE_SUCCESS and a later TRADE_FINISHED are two events; a re-sent one keeps its key.
            event_key=f"{params['trade_no']}:{trade_status}",
            provider_status=trade_status,
        )

    @staticmethod
    def _refund_notification(params: dict[str, str]) -> RefundObservation:
        missing = [k for k in wire.REFUND_NOTIFY_REQUIRED if not params.get(k)]
        if missing:
            raise NotificationInvalid("missing_fields", f"refund notify lacks {', '.join(missing)}")
        refund_no = params["out_biz_no"]
        return RefundObservation(
            refund_no=refund_no,
            provider_refund_no="",  # Alipay names refunds only by our out_request_no
            # Alipay notifies a refund only once the money went back.
            status=RefundState.SUCCEEDED,
            # refund_fee is the trade's refunded total so far, not this refund's share (they differ only after
            # an earlier partial refund).
            amount=_notify_money(params["refund_fee"]),
            provider_status=params["trade_status"],
            event_key=f"{params['trade_no']}:refund:{refund_no}",
        )

    # ---- query / close ---------------------------------------------------------------------------------
    def query(self, out_trade_no: str, provider_trade_no: str = "") -> Observation | None:
        client = self._require_client()
        by = {"trade_no": provider_trade_no} if provider_trade_no else {"out_trade_no": out_trade_no}
        answer = self._call(client.api_alipay_trade_query, **by)
        if answer.get("code") != wire.CODE_SUCCESS:
            if answer.get("sub_code") == wire.SUB_TRADE_NOT_EXIST:
                return None  # never created, or (real Alipay) a precreate QR nobody has scanned yet
            raise self._business_error(answer, "query")
        if answer.get("out_trade_no") != out_trade_no:
            raise Unknown("alipay query answered for another trade", code="bad_response")
        trade_status = str(answer.get("trade_status", ""))
        status = wire.TRADE_STATUS.get(trade_status)
        if status is None:
            raise Unknown(f"alipay query trade_status {trade_status[:32]!r} not understood", code="bad_response")
        trade_no = str(answer.get("trade_no", ""))
        return Observation(
            out_trade_no=out_trade_no,
            provider_trade_no=trade_no,
            status=status,
            amount=_answer_money(answer.get("total_amount")),
            event_key=f"{trade_no}:query:{trade_status}",
            provider_status=trade_status,
        )

    def close(self, out_trade_no: str, provider_trade_no: str = "") -> None:
        client = self._require_client()
        by = {"trade_no": provider_trade_no} if provider_trade_no else {"out_trade_no": out_trade_no}
        answer = self._call(client.api_alipay_trade_close, **by)
        if answer.get("code") == wire.CODE_SUCCESS:
            return
        sub_code = answer.get("sub_code")
        if sub_code == wire.SUB_TRADE_NOT_EXIST:
            return  # nothing to close
        if sub_code == wire.SUB_TRADE_STATUS_ERROR:
            # Alipay answers the same for "already paid" and "already closed": ask which.
            found = self.query(out_trade_no, provider_trade_no)
            if found is not None and found.status == ObservedStatus.CLOSED:
                return
            raise Terminal("alipay trade is already paid; it cannot be closed", code="already_paid")
        raise self._business_error(answer, "close")

    # ---- refunds ---------------------------------------------------------------------------------------
    def refund(self, request: RefundRequest) -> RefundObservation:
        """out_request_no = refund_no makes a resent refund a replay: Alipay refunds once."""
        client = self._require_client()
        if request.amount.currency != wire.SUPPORTED_CURRENCY:
            raise Terminal(f"alipay refunds {wire.SUPPORTED_CURRENCY} only", code="currency")
        extra: dict[str, Any] = {"refund_reason": request.reason[:256]} if request.reason else {}
        if request.split_returns:
            # The receivers fund their share of this refund; the merchant's account funds the rest.
            extra["refund_royalty_parameters"] = [_royalty_return(r) for r in request.split_returns]
        answer = self._call(
            client.api_alipay_trade_refund,
            refund_amount=request.amount.to_decimal_str(),
            out_trade_no=request.out_trade_no,
            trade_no=request.provider_trade_no or None,
            out_request_no=request.refund_no,
            **extra,
        )
        if answer.get("code") != wire.CODE_SUCCESS:
            raise self._business_error(answer, "refund")
        if answer.get("out_trade_no") != request.out_trade_no:
            raise Unknown("alipay refund answered for another trade", code="bad_response")
        if answer.get("fund_change") == wire.FUND_CHANGED:
            # The answer's refund_fee is the trade's refunded total; Alipay refunds exactly what was asked or
            # refuses, so this refund's amount is the request's.
            return RefundObservation(
                refund_no=request.refund_no,
                provider_refund_no="",
                status=RefundState.SUCCEEDED,
                amount=request.amount,
                provider_status="fund_change=Y",
            )
        # fund_change=N: a replay of an earlier out_request_no (or still in progress); the query says which.
        found = self.refund_query(request)
        if found is not None:
            return found
        return RefundObservation(
            refund_no=request.refund_no,
            provider_refund_no="",
            status=RefundState.PENDING,
            amount=request.amount,
            provider_status="fund_change=N",
        )

    def refund_query(self, request: RefundRequest) -> RefundObservation | None:
        client = self._require_client()
        answer = self._call(
            client.api_alipay_trade_fastpay_refund_query,
            out_request_no=request.refund_no,
            trade_no=request.provider_trade_no or None,
            out_trade_no=request.out_trade_no,
        )
        if answer.get("code") != wire.CODE_SUCCESS:
            if answer.get("sub_code") == wire.SUB_TRADE_NOT_EXIST:
                return None
            raise self._business_error(answer, "refund query")
        if answer.get("out_request_no") != request.refund_no:
            return None  # Alipay answers 10000 without refund fields for an out_request_no it never received
        refund_status = str(answer.get("refund_status") or "")
        return RefundObservation(
            refund_no=request.refund_no,
            provider_refund_no="",
            status=wire.REFUND_STATUS.get(refund_status, RefundState.PENDING),
            amount=_answer_money(answer.get("refund_amount")),
            provider_status=refund_status,
        )

    # ---- payouts ---------------------------------------------------------------------------------------
    def _fund_call(self, method: str, response_type: str, biz_content: dict[str, Any]) -> dict[str, Any]:
        """One signed fund API call. The SDK's transfer helper lives on its certificate-mode client and it has
        none for common.query, so the body is built and verified by the same SDK path its trade helpers use."""
        client = self._require_client()
        data = client.build_body(method, biz_content)
        return self._call(client.verified_sync_response, data=data, response_type=response_type)

    def payout(self, request: PayoutRequest) -> PayoutObservation:
        """out_biz_no = payout_no: Alipay executes one transfer per out_biz_no and answers a resent one with it."""
        self._require_client()
        if request.amount.currency != wire.SUPPORTED_CURRENCY:
            raise Terminal(f"alipay pays out {wire.SUPPORTED_CURRENCY} only", code="currency")
        identity_type = wire.payee_identity_type(request.payee)
        if identity_type == wire.IDENTITY_LOGON_ID and not request.payee_name:
            # Alipay requires the real name with a login id (and checks it against the account).
            raise Terminal("alipay needs the payee's real name with a login id", code="bad_payee")
        payee_info = {"identity": request.payee, "identity_type": identity_type}
        if request.payee_name:
            payee_info["name"] = request.payee_name
        biz: dict[str, Any] = {
            "out_biz_no": request.payout_no,
            "trans_amount": request.amount.to_decimal_str(),
            "product_code": wire.TRANSFER_PRODUCT,
            "biz_scene": wire.TRANSFER_SCENE,
            "order_title": (request.remark or "CardShop payout")[: wire.ORDER_TITLE_MAX],
            "payee_info": payee_info,
        }
        if request.remark:
            biz["remark"] = request.remark[: wire.REMARK_MAX]
        answer = self._fund_call(wire.TRANSFER, wire.TRANSFER_RESPONSE, biz)
        if answer.get("code") != wire.CODE_SUCCESS:
            return self._transfer_refused(answer, request)
        if answer.get("out_biz_no") != request.payout_no:
            raise Unknown("alipay transfer answered for another out_biz_no", code="bad_response")
        word = str(answer.get("status") or "")
        status = wire.TRANSFER_STATUS.get(word)
        if status is None:
            raise Unknown(f"alipay transfer status {word[:32]!r} not understood", code="bad_response")
        return PayoutObservation(
            payout_no=request.payout_no,
            provider_payout_no=str(answer.get("order_id") or ""),
            status=status,
            # The answer carries no amount: Alipay transfers exactly trans_amount or refuses.
            amount=request.amount,
            provider_status=word,
            failure_reason=word if status == PayoutState.FAILED else "",
        )

    def payout_query(self, request: PayoutRequest) -> PayoutObservation | None:
        # order_id names the transfer itself; out_biz_no is only unique together with product_code and biz_scene.
        if request.provider_payout_no:
            biz: dict[str, Any] = {"order_id": request.provider_payout_no}
        else:
            biz = {
                "product_code": wire.TRANSFER_PRODUCT,
                "biz_scene": wire.TRANSFER_SCENE,
                "out_biz_no": request.payout_no,
            }
        answer = self._fund_call(wire.TRANSFER_QUERY, wire.TRANSFER_QUERY_RESPONSE, biz)
        if answer.get("code") != wire.CODE_SUCCESS:
            if answer.get("sub_code") == wire.SUB_ORDER_NOT_EXIST:
                return None  # never accepted: the same payout_no may be sent again
            raise _transfer_error(answer, "transfer query")
        if answer.get("out_biz_no") != request.payout_no:
            raise Unknown("alipay transfer query answered for another out_biz_no", code="bad_response")
        word = str(answer.get("status") or "")
        status = wire.TRANSFER_STATUS.get(word)
        if status is None:
            raise Unknown(f"alipay transfer status {word[:32]!r} not understood", code="bad_response")
        reason = ""
        if status == PayoutState.FAILED:
            parts = (str(answer.get("error_code") or ""), str(answer.get("fail_reason") or ""))
            reason = ": ".join(p for p in parts if p)[:200] or word
        amount = answer.get("trans_amount")
        return PayoutObservation(
            payout_no=request.payout_no,
            provider_payout_no=str(answer.get("order_id") or ""),
            status=status,
            amount=request.amount if amount is None else _answer_money(amount),
            provider_status=word,
            failure_reason=reason,
        )

    # ---- daily statement -------------------------------------------------------------------------------
    def statement(self, day: date) -> Statement:
        """The trade bill of `day`, a Beijing (Asia/Shanghai) day as Alipay cuts them: ask for its short-lived URL,
        download the ZIP to a temporary file, stream the detail CSV. Transfers are not on this bill (they are on
        the signcustomer one), so it has payment and refund lines only."""
        biz = {"bill_type": wire.BILL_TYPE_TRADE, "bill_date": day.isoformat()}
        try:
            answer = self._fund_call(wire.BILL_URL_QUERY, wire.BILL_URL_QUERY_RESPONSE, biz)
        except Unknown as exc:
            # A read: a timeout or 5xx changed nothing, so asking again is the resolution. A forged or
            # unsigned answer stays Unknown.
            if exc.code in _READ_RETRYABLE:
                raise Retryable(str(exc), code=exc.code) from exc
            raise
        if answer.get("code") != wire.CODE_SUCCESS:
            if str(answer.get("sub_code", "")).lower() in wire.BILL_NOT_READY:
                raise Retryable(f"alipay has no bill for {day} yet", code="not_ready")
            error = self._business_error(answer, "bill download url")
            if isinstance(error, Unknown):
                raise Retryable(str(error), code=error.code)
            raise error
        url = answer.get("bill_download_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise Unknown("alipay answered no bill_download_url", code="bad_response")
        raw, source_hash = bill.download(url, self.account.timeouts)
        return bill.open_statement(raw, source_hash, day, wire.SUPPORTED_CURRENCY)

    # ---- account balance --------------------------------------------------------------------------------
    def balance(self) -> ChannelBalance:
        """alipay.data.bill.balance.query, through the same signed body and verified answer as the fund APIs:
        available_amount is what may be paid out now, freeze_amount what Alipay holds (royalty-frozen trades)."""
        try:
            answer = self._fund_call(wire.BALANCE_QUERY, wire.BALANCE_QUERY_RESPONSE, {})
        except Unknown as exc:
            if exc.code in _READ_RETRYABLE:  # a read: nothing moved, ask again later
                raise Retryable(str(exc), code=exc.code) from exc
            raise
        if answer.get("code") != wire.CODE_SUCCESS:
            error = self._business_error(answer, "balance query")
            if isinstance(error, Unknown):  # busy: still a read
                raise Retryable(str(error), code=error.code)
            raise error
        total, available, frozen = (
            wire.balance_minor(answer.get(k)) for k in ("total_amount", "available_amount", "freeze_amount")
        )
        if total is None or available is None or frozen is None:
            raise Unknown("alipay balance answer lacks an exact amount", code="bad_response")
        if total != available + frozen:
            raise Unknown("alipay balance does not add up (total != available + freeze)", code="bad_response")
        return ChannelBalance(
            available=Money(available, wire.SUPPORTED_CURRENCY),
            pending=Money(frozen, wire.SUPPORTED_CURRENCY),
            provider_status=wire.BALANCE_QUERY,
        )

    @staticmethod
    def _transfer_refused(answer: dict[str, Any], request: PayoutRequest) -> PayoutObservation:
        """A signed non-10000 transfer answer: a business refusal is a failed payout (nothing moved); a
        malformed request is Terminal, SYSTEM_ERROR and 20000 are Unknown."""
        code, sub_code = str(answer.get("code", "")), str(answer.get("sub_code", ""))
        if code != wire.CODE_BUSINESS_FAILED or sub_code in wire.TRANSFER_SUB_MALFORMED | wire.TRANSFER_SUB_UNKNOWN:
            raise _transfer_error(answer, "transfer")
        return PayoutObservation(
            payout_no=request.payout_no,
            provider_payout_no="",
            status=PayoutState.FAILED,
            amount=request.amount,
            provider_status=sub_code,
            failure_reason=f"{sub_code}: {answer.get('sub_msg', '')}"[:200],
        )

    # ---- 分账 (royalty) ----------------------------------------------------------------------------------
    def split_bind(self, receiver: SplitReceiver) -> None:
        """alipay.trade.royalty.relation.bind of one receiver; Alipay answers a bound one with success again."""
        account_type = _royalty_type(receiver.account_type)
        # out_request_no: <= 32 letters/digits/_; derived from the receiver so a resend is the same request.
        digest = hashlib.sha256(f"{account_type}:{receiver.account}".encode()).hexdigest()[:24]
        entry = {"type": account_type, "account": receiver.account, "name": receiver.name}
        if receiver.description:
            entry["memo"] = receiver.description[:200]
        biz = {"out_request_no": f"BIND{digest}", "receiver_list": [entry]}
        answer = self._fund_call(wire.ROYALTY_BIND, wire.ROYALTY_BIND_RESPONSE, biz)
        if answer.get("code") != wire.CODE_SUCCESS:
            raise self._business_error(answer, "royalty relation bind")

    def split(self, request: SplitRequest) -> SplitObservation:
        """alipay.trade.order.settle, async mode: the answer says accepted (settle_no); the outcome comes by
        split_query or the settle notify. out_request_no = split_no: Alipay settles one request number once."""
        if not request.receivers:
            raise Terminal("a split needs at least one receiver", code="no_receivers")
        if not request.provider_trade_no:
            raise Terminal("alipay settles by trade_no: the trade's provider number is missing", code="no_trade_no")
        royalty = []
        for receiver in request.receivers:
            if receiver.amount.currency != wire.SUPPORTED_CURRENCY:
                raise Terminal(f"alipay splits {wire.SUPPORTED_CURRENCY} only", code="currency")
            entry = {
                "royalty_type": wire.ROYALTY_TYPE_TRANSFER,
                "trans_in_type": _royalty_type(receiver.account_type),
                "trans_in": receiver.account,
                "amount": receiver.amount.to_decimal_str(),
            }
            if receiver.description:
                entry["desc"] = receiver.description[: wire.ROYALTY_DESC_MAX]
            royalty.append(entry)
        biz: dict[str, Any] = {
            "out_request_no": request.split_no,
            "trade_no": request.provider_trade_no,
            "royalty_parameters": royalty,
            "royalty_mode": wire.ROYALTY_MODE_ASYNC,
        }
        if request.finish:
            biz["extend_params"] = {"royalty_finish": "true"}
        answer = self._fund_call(wire.SETTLE, wire.SETTLE_RESPONSE, biz)
        if answer.get("code") != wire.CODE_SUCCESS:
            sub_code = str(answer.get("sub_code", ""))
            if answer.get("code") != wire.CODE_BUSINESS_FAILED or sub_code not in wire.SPLIT_SUB_FAILED:
                raise self._business_error(answer, "settle")
            reason = f"{sub_code}: {answer.get('sub_msg', '')}"[:200]
            results = tuple(SplitResult(r.account, r.amount, SplitState.FAILED, reason) for r in request.receivers)
            return SplitObservation(request.split_no, "", SplitState.FAILED, results, provider_status=sub_code)
        if answer.get("trade_no") != request.provider_trade_no or not answer.get("settle_no"):
            raise Unknown("alipay settle answered for another trade or without settle_no", code="bad_response")
        results = tuple(SplitResult(r.account, r.amount, SplitState.PENDING) for r in request.receivers)
        return SplitObservation(
            request.split_no, str(answer["settle_no"]), SplitState.PENDING, results, provider_status="accepted"
        )

    def split_query(self, request: SplitRequest) -> SplitObservation | None:
        """alipay.trade.order.settle.query by settle_no, else by out_request_no + trade_no."""
        if request.provider_split_no:
            biz: dict[str, Any] = {"settle_no": request.provider_split_no}
        else:
            biz = {"out_request_no": request.split_no, "trade_no": request.provider_trade_no}
        answer = self._fund_call(wire.SETTLE_QUERY, wire.SETTLE_QUERY_RESPONSE, biz)
        if answer.get("code") != wire.CODE_SUCCESS:
            if answer.get("sub_code") in (wire.SUB_SETTLE_NOT_EXIST, wire.SUB_TRADE_NOT_EXIST):
                return None  # never accepted: the same split_no may be sent again
            raise self._business_error(answer, "settle query")
        if answer.get("out_request_no") != request.split_no:
            raise Unknown("alipay settle query answered for another out_request_no", code="bad_response")
        # The query answer carries no settle_no: keep the one we know.
        return _settle_observation(request.split_no, request.provider_split_no, answer)

    def verify_split_notification(self, inbound: Inbound) -> SplitObservation:
        """The alipay.trade.order.settle.notify message (form POST: msg_method, app_id, biz_content JSON, sign):
        RSA2-verified over every field but sign and sign_type, like the trade notify."""
        params = dict(inbound.params)
        if self._client is None:
            raise NotificationInvalid("no_credentials", "channel account has no usable keys; notify refused")
        if params.get("msg_method") != wire.SETTLE_NOTIFY_METHOD or not params.get("sign"):
            raise NotificationInvalid("missing_fields", "not a settle notify")
        signed = {k: v for k, v in params.items() if k not in wire.NOTIFY_UNSIGNED}
        try:
            verified = self._client.verify(signed, params["sign"])
        except (ValueError, binascii.Error, TypeError, AliPayException):
            verified = False
        if not verified:
            raise NotificationInvalid("bad_signature", "signature does not verify with the Alipay public key")
        if not constant_time_equals(params.get("app_id", ""), self.account.merchant_no):
            raise NotificationInvalid("wrong_merchant", "app_id is not this channel account's")
        try:
            biz = json.loads(params.get("biz_content") or "")
            split_no = str(biz["out_request_no"])
            return _settle_observation(split_no, str(biz.get("settle_no") or ""), biz)
        except (ValueError, KeyError, TypeError, AttributeError, Unknown) as exc:
            raise NotificationInvalid("bad_content", "settle notify biz_content not understood") from exc

    def split_return(self, request: SplitReturnRequest) -> SplitReturnObservation:
        """A refund to the buyer of exactly the receiver's returned share, funded by that receiver
        (refund_royalty_parameters trans_out). Alipay moves royalty back only inside a refund, and a second refund
        beside the buyer's would refund the buyer twice: so the merchant's own part is refunded with refund(),
        each receiver's part with split_return. out_request_no = return_no: one refund per return_no."""
        client = self._require_client()
        receiver = request.receiver
        if receiver.amount.currency != wire.SUPPORTED_CURRENCY:
            raise Terminal(f"alipay refunds {wire.SUPPORTED_CURRENCY} only", code="currency")
        royalty = {
            "royalty_type": wire.ROYALTY_TYPE_TRANSFER,
            "trans_out": receiver.account,
            "trans_out_type": _royalty_type(receiver.account_type),
            "amount": receiver.amount.to_decimal_str(),
            "desc": (receiver.description or f"return of split {request.split_no}")[: wire.ROYALTY_DESC_MAX],
        }
        answer = self._call(
            client.api_alipay_trade_refund,
            refund_amount=receiver.amount.to_decimal_str(),
            out_trade_no=request.out_trade_no,
            trade_no=request.provider_trade_no or None,
            out_request_no=request.return_no,
            refund_royalty_parameters=[royalty],
        )
        if answer.get("code") != wire.CODE_SUCCESS:
            sub_code = str(answer.get("sub_code", ""))
            if answer.get("code") != wire.CODE_BUSINESS_FAILED or sub_code not in wire.SPLIT_SUB_FAILED:
                raise self._business_error(answer, "royalty refund")
            return SplitReturnObservation(
                request.return_no,
                "",
                SplitState.FAILED,
                receiver.amount,
                failure_reason=f"{sub_code}: {answer.get('sub_msg', '')}"[:200],
            )
        if answer.get("out_trade_no") != request.out_trade_no:
            raise Unknown("alipay royalty refund answered for another trade", code="bad_response")
        if answer.get("fund_change") != wire.FUND_CHANGED:
            # A replayed return_no: the refund query says whether that first one went through.
            found = self.refund_query(
                RefundRequest(
                    refund_no=request.return_no,
                    out_trade_no=request.out_trade_no,
                    provider_trade_no=request.provider_trade_no,
                    amount=receiver.amount,
                    total=receiver.amount,  # not sent: Alipay's refund query takes no total
                    reason="",
                    notify_url="",
                )
            )
            if found is None or found.status != RefundState.SUCCEEDED:
                return SplitReturnObservation(request.return_no, "", SplitState.PENDING, receiver.amount)
        # Alipay refunds exactly what was asked or refuses.
        return SplitReturnObservation(request.return_no, "", SplitState.SUCCEEDED, receiver.amount)


def _royalty_return(share: SplitToReturn) -> dict[str, str]:
    receiver = share.receiver
    if receiver.amount.currency != wire.SUPPORTED_CURRENCY:
        raise Terminal(f"alipay refunds {wire.SUPPORTED_CURRENCY} only", code="currency")
    return {
        "royalty_type": wire.ROYALTY_TYPE_TRANSFER,
        "trans_out": receiver.account,
        "trans_out_type": _royalty_type(receiver.account_type),
        "amount": receiver.amount.to_decimal_str(),
        "desc": (receiver.description or f"return of split {share.split_no}")[: wire.ROYALTY_DESC_MAX],
    }


# Unknown codes of `_call` that mean "no answer" (nothing is decided by a read), not "a suspicious answer".
_READ_RETRYABLE = frozenset({"http_5xx", "timeout", "connection_lost"})


def _transfer_error(answer: dict[str, Any], action: str) -> ChannelError:
    """A signed fund-API refusal that is no failed transfer: SYSTEM_ERROR and 20000 leave it open."""
    code, sub_code = str(answer.get("code", "")), str(answer.get("sub_code", ""))
    message = f"alipay refused {action}: {code} {sub_code} {answer.get('sub_msg', '')}"[:200]
    if code in wire.CODES_UNKNOWN or sub_code in wire.TRANSFER_SUB_UNKNOWN:
        return Unknown(message, code="provider_busy")
    return Terminal(message, code=(sub_code or f"alipay_{code}").lower())


def _unsigned_refusal(exc: AliPayException) -> ChannelError:
    """The SDK raises AliPayException for answers without a signature or under `error_response`.

    Gateway-level refusals (40001 missing, 40002 invalid arguments such as a bad signature or app id, 40006
    no permission) come unsigned from Alipay itself and mean nothing was done. A business answer (10000/40004)
    or a 20000 must be signed to be believed, so without one the outcome is unknown.
    """
    # The SDK keeps code and raw body in name-mangled attributes.
    code = str(getattr(exc, "_AliPayException__code", "") or "")
    sub_code = ""
    try:
        body = json.loads(getattr(exc, "_AliPayException__message", "") or "{}")
        inner = next((v for k, v in body.items() if k.endswith("_response") and isinstance(v, dict)), {})
        sub_code = str(inner.get("sub_code", ""))
    except (ValueError, AttributeError):
        pass
    if code.startswith("4") and code != wire.CODE_BUSINESS_FAILED:
        return Terminal(f"alipay refused the request: {code} {sub_code}"[:200], code=(sub_code or code).lower())
    return Unknown(f"alipay answered unsigned {code} {sub_code}"[:200], code="unsigned_answer")


def _royalty_type(account_type: str) -> str:
    if account_type not in wire.ROYALTY_ACCOUNT_TYPES:
        raise Terminal("alipay royalty accounts are userId or loginName", code="bad_receiver")
    return account_type


def _settle_observation(split_no: str, settle_no: str, answer: dict[str, Any]) -> SplitObservation:
    """settle.query answer or settle notify content -> one result per receiver (transfer lines only: the
    royalty_finish unfreeze to the merchant is a line of its own)."""
    details = answer.get("royalty_detail_list")
    if not isinstance(details, list):
        raise Unknown("alipay settle answer has no royalty_detail_list", code="bad_response")
    results = []
    for detail in details:
        if not isinstance(detail, dict):
            raise Unknown("alipay royalty detail not understood", code="bad_response")
        if detail.get("operation_type") != wire.ROYALTY_TYPE_TRANSFER:
            continue
        word = str(detail.get("state") or "")
        state = wire.ROYALTY_STATE.get(word)
        if state is None:
            raise Unknown(f"alipay royalty state {word[:32]!r} not understood", code="bad_response")
        reason = ""
        if state == SplitState.FAILED:
            parts = (str(detail.get("error_code") or ""), str(detail.get("error_desc") or ""))
            reason = ": ".join(p for p in parts if p)[:200] or word
        results.append(
            SplitResult(
                str(detail.get("trans_in") or ""), _answer_money(detail.get("amount")), SplitState(state), reason
            )
        )
    if not results:
        raise Unknown("alipay settle answer names no receiver", code="bad_response")
    states = {r.status for r in results}
    overall = (
        SplitState.FAILED
        if SplitState.FAILED in states
        else SplitState.SUCCEEDED
        if states == {SplitState.SUCCEEDED}
        else SplitState.PENDING
    )
    words = ",".join(sorted({str(d.get("state")) for d in details if isinstance(d, dict)}))
    return SplitObservation(split_no, settle_no, overall, tuple(results), provider_status=words)


def _notify_money(text: str) -> Money:
    try:
        return Money.from_decimal_str(text, wire.SUPPORTED_CURRENCY)
    except MoneyError as exc:
        raise NotificationInvalid("bad_amount", "amount is not an exact yuan amount") from exc


def _answer_money(value: object) -> Money:
    # Alipay writes amounts as JSON strings; a number (float) would already have been rounded by the parser.
    try:
        return Money.from_decimal_str(value if isinstance(value, str) else "", wire.SUPPORTED_CURRENCY)
    except MoneyError as exc:
        raise Unknown("alipay answered an amount that is not exact", code="bad_response") from exc
