"""Alipay open-platform wire shapes: method names, result codes, the money string, provider status tables.

Payouts (单笔转账到支付宝账户) follow Alipay's API reference for alipay.fund.trans.uni.transfer and
alipay.fund.trans.common.query (opendocs.alipay.com/apis/api_28/...), as also encoded by python-alipay-sdk 3.4
(`DCAliPay.api_alipay_fund_trans_uni_transfer`: payee_info {identity, identity_type, name}, product_code
TRANS_ACCOUNT_NO_PWD, biz_scene DIRECT_TRANSFER), Alipay's own SDKs' AlipayFundTransCommonQueryResponse
(order_id, out_biz_no, status, fail_reason, error_code, pay_date) and go-pay's FundTransCommonQuery (trans_amount).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from payments.channels.base import ObservedStatus, PayoutState, RefundState, Terminal

# Alipay's domestic acquiring settles CNY only and sends no currency field: amounts are yuan strings ("9.90").
SUPPORTED_CURRENCY = "CNY"

# Alipay reads wall-clock times in Beijing time.
TIME_ZONE = ZoneInfo("Asia/Shanghai")

PRECREATE = "alipay.trade.precreate"
PAGE_PAY_PRODUCT = "FAST_INSTANT_TRADE_PAY"

# Gateway result codes. 10000 is the only success; 40004 is a signed business refusal whose sub_code says why.
CODE_SUCCESS = "10000"
CODE_BUSINESS_FAILED = "40004"
# 20000 "service unavailable": Alipay says the outcome is unknown and the call may be retried or queried.
CODES_UNKNOWN = frozenset({"20000"})

# Business sub_codes with a meaning of their own; any other 40004 is an explicit refusal.
SUB_SYSTEM_ERROR = "ACQ.SYSTEM_ERROR"  # Alipay's "retry the same request": the outcome is not known
SUB_TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
SUB_TRADE_STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"  # close of a paid (or already closed) trade

# Async notify / alipay.trade.query `trade_status` -> our status. Anything not listed is refused, never guessed.
# TRADE_SUCCESS (paid, refundable) and TRADE_FINISHED (paid, final) are two distinct events about one payment.
TRADE_STATUS: dict[str, ObservedStatus] = {
    "WAIT_BUYER_PAY": ObservedStatus.PENDING,
    "TRADE_SUCCESS": ObservedStatus.SUCCEEDED,
    "TRADE_FINISHED": ObservedStatus.SUCCEEDED,
    "TRADE_CLOSED": ObservedStatus.CLOSED,
}

# alipay.trade.fastpay.refund.query `refund_status`. Alipay only ever states success; a known request
# without it is still in progress (or failed and will be retried with the same out_request_no).
REFUND_STATUS: dict[str, RefundState] = {"REFUND_SUCCESS": RefundState.SUCCEEDED}

# alipay.trade.refund `fund_change`: "Y" only on the call that moved money; a replayed out_request_no says "N".
FUND_CHANGED = "Y"

# ---- payouts ------------------------------------------------------------------------------------------------
TRANSFER = "alipay.fund.trans.uni.transfer"
TRANSFER_RESPONSE = "alipay_fund_trans_uni_transfer_response"
TRANSFER_QUERY = "alipay.fund.trans.common.query"
TRANSFER_QUERY_RESPONSE = "alipay_fund_trans_common_query_response"
# 单笔无密转账到支付宝账户; the query needs both to find a transfer by out_biz_no.
TRANSFER_PRODUCT = "TRANS_ACCOUNT_NO_PWD"
TRANSFER_SCENE = "DIRECT_TRANSFER"
# The lengths Alipay takes for the texts it shows the payee.
ORDER_TITLE_MAX, REMARK_MAX = 128, 200

IDENTITY_USER_ID = "ALIPAY_USER_ID"  # 2088 + 12 digits
IDENTITY_LOGON_ID = "ALIPAY_LOGON_ID"  # the login: an e-mail address or a mobile number; needs the real name
_USER_ID_RE = re.compile(r"2088\d{12}")
_LOGON_ID_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+|1\d{10}|\+\d{6,15}")

# The transfer's / query's `status` -> ours. REFUND (退票) is a transfer whose money came back: failed. INIT and
# DEALING are still in progress; anything not listed (UNKNOWN included) is not guessed.
TRANSFER_STATUS: dict[str, PayoutState] = {
    "SUCCESS": PayoutState.SUCCEEDED,
    "INIT": PayoutState.PENDING,
    "DEALING": PayoutState.PENDING,
    "FAIL": PayoutState.FAILED,
    "REFUND": PayoutState.FAILED,
}

# 40004 sub_codes of a transfer. Most are a final business refusal (payee unknown or its name wrong, our balance
# short, limits): nothing moved, the payout failed. These mean something else:
SUB_TRANSFER_SYSTEM_ERROR = "SYSTEM_ERROR"  # "query, or retry the same out_biz_no": the outcome is not known
SUB_ORDER_NOT_EXIST = "ORDER_NOT_EXIST"  # common.query: Alipay never accepted this out_biz_no
TRANSFER_SUB_UNKNOWN = frozenset({SUB_TRANSFER_SYSTEM_ERROR, "ACQ.SYSTEM_ERROR"})
TRANSFER_SUB_MALFORMED = frozenset(
    {
        "INVALID_PARAMETER",
        "MISSING_PARAMETER",
        "ILLEGAL_ARGUMENT",
        "NO_ACCOUNT_RECEIVE_PERMISSION",
        "PERMIT_CHECK_PERM_LIMITED",
        # The same out_biz_no was sent before with another payee or amount: the first one may well have paid,
        # so this is no failed payout but a bug of ours.
        "PAYMENT_INFO_INCONSISTENCY",
    }
)


def payee_identity_type(payee: str) -> str:
    """ALIPAY_USER_ID for a 2088 user id, ALIPAY_LOGON_ID for an e-mail or phone login; Terminal otherwise."""
    if _USER_ID_RE.fullmatch(payee):
        return IDENTITY_USER_ID
    if _LOGON_ID_RE.fullmatch(payee):
        return IDENTITY_LOGON_ID
    raise Terminal("alipay payee is neither a 2088 user id nor a login (e-mail or phone)", code="bad_payee")


NOTIFY_REQUIRED = ("app_id", "trade_no", "out_trade_no", "trade_status", "total_amount", "sign")
# A trade notify carrying these is about a refund (out_biz_no is our refund number).
REFUND_NOTIFY_REQUIRED = ("out_biz_no", "refund_fee")

# Never part of the notify's signed content (the SDK's verify() drops sign_type; we drop sign).
NOTIFY_UNSIGNED = ("sign", "sign_type")
SIGN_TYPE = "RSA2"


def time_expire(at: datetime) -> str:
    """The trade's absolute deadline (`time_expire`, "yyyy-MM-dd HH:mm:ss" Beijing time). Seconds are cut, never
    rounded up: Alipay must stop taking the payment no later than we stop waiting for it."""
    if at.tzinfo is None:
        raise Terminal("expires_at must carry a time zone", code="bad_expiry")
    return at.astimezone(TIME_ZONE).strftime("%Y-%m-%d %H:%M:%S")


# ---- daily statement (对账单, bill_type=trade) ------------------------------------------------------------
# alipay.data.dataservice.bill.downloadurl.query answers a short-lived (30 s) URL of a ZIP of GBK CSV files.
BILL_URL_QUERY = "alipay.data.dataservice.bill.downloadurl.query"
BILL_URL_QUERY_RESPONSE = "alipay_data_dataservice_bill_downloadurl_query_response"
BILL_TYPE_TRADE = "trade"  # 业务账单: the acquiring trades and refunds (transfers are on signcustomer, not here)
# sub_codes of "this day's bill does not exist (yet)": Alipay produces a day's bill the next morning (T+1).
BILL_NOT_READY = frozenset({"isp.bill_not_exist", "bill_not_exist"})


# ---- 分账 (royalty: the provider splits a paid trade) ------------------------------------------------------
# Field names as in Alipay's SDK models (alipay-sdk-java-all AlipayTradeOrderSettleModel / OpenApiRoyaltyDetailInfoPojo,
# AlipayTradeOrderSettleQueryModel {settle_no, out_request_no, trade_no}, AlipayTradeOrderSettleQueryResponse
# {out_request_no, operation_dt, royalty_detail_list of RoyaltyDetail}) and the Alipay 分账 docs.
ROYALTY_BIND = "alipay.trade.royalty.relation.bind"
ROYALTY_BIND_RESPONSE = "alipay_trade_royalty_relation_bind_response"
SETTLE = "alipay.trade.order.settle"
SETTLE_RESPONSE = "alipay_trade_order_settle_response"
SETTLE_QUERY = "alipay.trade.order.settle.query"
SETTLE_QUERY_RESPONSE = "alipay_trade_order_settle_query_response"
SETTLE_NOTIFY_METHOD = "alipay.trade.order.settle.notify"
ROYALTY_TYPE_TRANSFER = "transfer"
ROYALTY_MODE_ASYNC = "async"
ROYALTY_ACCOUNT_TYPES = frozenset({"userId", "loginName"})
ROYALTY_BIND_MAX = 20  # receivers per relation.bind call
ROYALTY_DESC_MAX = 1000
# RoyaltyDetail.state -> ours; a detail in another state is not guessed.
ROYALTY_STATE: dict[str, str] = {"SUCCESS": "succeeded", "FAIL": "failed", "PROCESSING": "pending"}
# 40004 sub_codes of a settle / royalty refund that refuse a receiver or an amount for good: a FAILED split (nothing
# moved), not a malformed request. Any other 40004 is Terminal, SYSTEM_ERROR and 20000 Unknown.
SUB_SETTLE_NOT_EXIST = "ACQ.SETTLE_NOT_EXIST"  # settle.query of an out_request_no Alipay never accepted
SPLIT_SUB_FAILED = frozenset(
    {
        "ACQ.ROYALTY_RECEIVER_NOT_BIND",  # 分账关系未绑定
        "ACQ.ALLOC_AMOUNT_VALIDATE_ERROR",  # 分账金额超过最大可分账金额 (the 30 % ratio by default)
        "ACQ.ROYALTY_ACCOUNT_INVALID",  # 分账收入方账户无效
        "ACQ.ROYALTY_RETURN_AMOUNT_EXCEED",  # 退分账金额超过该收入方已分得的金额
    }
)


# ---- account balance (capability BALANCE) -----------------------------------------------------------------
# alipay.data.bill.balance.query (opendocs.alipay.com/apis/api_15/alipay.data.bill.balance.query, 支付宝商家账户
# 当前余额查询): no business parameter for the app's own account; the answer's total_amount (账户余额),
# available_amount (可用余额) and freeze_amount (冻结余额) are yuan strings, total = available + freeze.
BALANCE_QUERY = "alipay.data.bill.balance.query"
BALANCE_QUERY_RESPONSE = "alipay_data_bill_balance_query_response"
_BALANCE_YUAN_RE = re.compile(r"(-?)([0-9]+(?:\.[0-9]{1,2})?)")


def balance_minor(value: object) -> int | None:
    """A balance field ("1234.56", "-0.01": a balance may be overdrawn) as signed fen, exactly; None otherwise."""
    m = _BALANCE_YUAN_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return None
    whole, _, frac = m.group(2).partition(".")
    fen = int(whole) * 100 + int(frac.ljust(2, "0"))
    return -fen if m.group(1) else fen
