"""WeChat Pay API v3 wire shapes: header names, identifier formats, error codes and provider status tables."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from payments.channels.base import ObservedStatus, PayoutState, RefundState, SplitState, Terminal

SUPPORTED_CURRENCY = "CNY"
# WeChat Pay writes and reads times as RFC 3339 in Beijing time.
BEIJING = timezone(timedelta(hours=8))
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
# Callbacks older (or newer) than this are refused: the SDK never checks Wechatpay-Timestamp itself.
TIMESTAMP_WINDOW_SECONDS = 300
UNIX_SECONDS_RE = re.compile(r"[0-9]{1,12}")
RESOURCE_TYPE = "encrypt-resource"
RESOURCE_ALGORITHM = "AEAD_AES_256_GCM"
DESCRIPTION_MAX_BYTES = 127

# Callback headers as Inbound carries them (lower-cased).
H_SIGNATURE = "wechatpay-signature"
H_TIMESTAMP = "wechatpay-timestamp"
H_NONCE = "wechatpay-nonce"
H_SERIAL = "wechatpay-serial"
H_SIGNATURE_TYPE = "wechatpay-signature-type"
CALLBACK_HEADERS = (H_SIGNATURE, H_TIMESTAMP, H_NONCE, H_SERIAL, H_SIGNATURE_TYPE)

# The SDK puts these into URL paths unescaped, so anything else must never reach it.
OUT_TRADE_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
OUT_REFUND_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")

PAYMENT_EVENT_PREFIX = "TRANSACTION."
REFUND_EVENT_PREFIX = "REFUND."

# `trade_state` (callback resource and query answer) -> our status. Anything not listed is refused, never guessed.
TRADE_STATE: dict[str, ObservedStatus] = {
    "SUCCESS": ObservedStatus.SUCCEEDED,
    # "转入退款": the payment did succeed; its refunds are followed by their own refund_no.
    "REFUND": ObservedStatus.SUCCEEDED,
    "CLOSED": ObservedStatus.CLOSED,
    "REVOKED": ObservedStatus.CLOSED,
    # The buyer's bank refused this attempt; the trade stays open, so a later SUCCESS may still come. Only the
    # query says PAYERROR: v3 notifies successful payments only.
    "PAYERROR": ObservedStatus.FAILED,
    "NOTPAY": ObservedStatus.PENDING,
    "USERPAYING": ObservedStatus.PENDING,
}

# Refund `status` (answer, query) / `refund_status` (callback) -> our refund state.
REFUND_STATUS: dict[str, RefundState] = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PROCESSING": RefundState.PENDING,
    # The money could not reach the buyer (card cancelled...): an operator must act, it will not finish alone.
    "ABNORMAL": RefundState.FAILED,
    "CLOSED": RefundState.FAILED,
}

# Error `code`s after which nothing happened and the same request may be sent again later.
RETRYABLE_CODES = frozenset({"FREQUENCY_LIMITED", "NOT_ENOUGH", "SYSTEM_ERROR", "BANK_ERROR", "USERPAYING"})
# The trade was already paid: close must not pretend it closed it.
ALREADY_PAID_CODES = frozenset({"ORDERPAID"})
NOT_FOUND_CODES = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS"})


# ---- 商家转账 (merchant transfer to a WeChat user's balance), the transfer-bills API -----------------------
TRANSFER_PATH = "/v3/fund-app/mch-transfer/transfer-bills"
TRANSFER_QUERY_PATH = TRANSFER_PATH + "/out-bill-no/{out_bill_no}"
# out_bill_no: "只能由数字、大小写字母组成", string(32). It goes into the query path, so nothing else may pass.
OUT_BILL_NO_RE = re.compile(r"^[0-9A-Za-z]{1,32}$")
TRANSFER_REMARK_MAX_CHARS = 32  # "最多允许32个字符", shown to the payee
# From 2,000 CNY on, user_name (encrypted) is required; we send it whenever we have it (WeChat then checks it).
USER_NAME_REQUIRED_FROM_FEN = 200_000
# The scene the merchant platform granted (1000 现金营销, 1006 企业报销, ...): an account credential, this default
# when the account names none. Each scene requires its own report infos; 1000 asks for 活动名称 and 奖励说明.
DEFAULT_TRANSFER_SCENE_ID = "1000"
DEFAULT_SCENE_REPORT_TYPES = ("活动名称", "奖励说明")

# Bill `state` (create answer and query) -> our payout state. Anything not listed is refused, never guessed.
TRANSFER_STATE: dict[str, PayoutState] = {
    "ACCEPTED": PayoutState.PENDING,
    "PROCESSING": PayoutState.PENDING,  # "如一直处于此状态,建议检查账户余额是否足够"
    "WAIT_USER_CONFIRM": PayoutState.PENDING,  # the payee must confirm in WeChat (package_info)
    "TRANSFERING": PayoutState.PENDING,
    "SUCCESS": PayoutState.SUCCEEDED,
    "FAIL": PayoutState.FAILED,  # fail_reason says why; the money is back in the operating account
    "CANCELING": PayoutState.FAILED,  # our cancel was accepted: it ends CANCELLED, never paid
    "CANCELLED": PayoutState.FAILED,
}
# Error codes of the create call that are a business refusal: no bill was created and nothing left the operating
# account. NOT_ENOUGH (403): WeChat says to top up and retry under the SAME out_bill_no, which a query (None)
# allows. The payee codes are the fail_reason values WeChat documents for transfers to a user.
TRANSFER_REFUSED_CODES = frozenset(
    {
        "NOT_ENOUGH",
        "OPENID_INVALID",
        "NAME_NOT_CORRECT",
        "ACCOUNT_FROZEN",
        "ACCOUNT_NOT_EXIST",
        "REAL_NAME_CHECK_FAIL",
        "TRANSFER_QUOTA_EXCEED",
        "DAY_RECEIVED_QUOTA_EXCEED",
        "MONTH_RECEIVED_QUOTA_EXCEED",
        "DAY_RECEIVED_COUNT_EXCEED",
    }
)
# "请勿更换商户单号,请使用相同参数再次调用": the outcome is open, a query decides (Unknown, never Retryable, so
# nobody sends it elsewhere under another number).
TRANSFER_UNKNOWN_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED"})
TRANSFER_NOT_FOUND_CODES = frozenset({"NOT_FOUND", "RESOURCE_NOT_EXISTS"})


def transfer_remark(remark: str) -> str:
    """The remark the payee sees, cut to 32 characters (never empty: the field is required)."""
    return (remark.strip() or "payout")[:TRANSFER_REMARK_MAX_CHARS]


def description(subject: str) -> str:
    """The goods description cut to 127 UTF-8 bytes (never inside a character): Chinese text is 3 bytes a character."""
    return subject.encode()[:DESCRIPTION_MAX_BYTES].decode(errors="ignore")


def time_expire(at: datetime) -> str:
    """The trade's deadline (`time_expire`, RFC 3339 with +08:00, e.g. 2026-12-02T18:00:00+08:00). Seconds are
    cut, never rounded up: WeChat must stop taking the payment no later than we stop waiting for it."""
    if at.tzinfo is None:
        raise Terminal("expires_at must carry a time zone", code="bad_expiry")
    return at.astimezone(BEIJING).isoformat(timespec="seconds")


# ---- 交易账单 (the daily trade bill): 申请交易账单 GET /v3/bill/tradebill, then the file at download_url ---------
TRADEBILL_PATH = "/v3/bill/tradebill"
BILL_TYPE = "ALL"  # payments and refunds of the day ("不含充值退款订单")
BILL_TAR_TYPE = "GZIP"
BILL_HASH_TYPE = "SHA1"  # "原始账单(gzip需要解压缩)的摘要值": the hash is over the uncompressed file
# "账单生成中": try again later. "请求的账单文件不存在": not produced (yet), or no trade nor refund that day.
BILL_NOT_READY_CODES = frozenset({"STATEMENT_CREATING", "NO_STATEMENT_EXIST"})
# The ALL bill's detail header and its summary header. Every data field starts with a back-tick (so that Excel
# keeps long numbers as text); amounts are in yuan with two decimals; times are Beijing time without offset.
BILL_COLUMNS = (
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
)
BILL_SUMMARY_COLUMNS = (
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
)
BILL_PAYMENT_STATE = "SUCCESS"  # 交易状态 of a payment row
BILL_REFUND_STATE = "REFUND"  # 交易状态 of a refund row (微信退款单号 / 商户退款单号 filled)
BILL_FIELD_MARK = "`"
_BILL_TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_BILL_YUAN_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


def bill_field(raw: str) -> str:
    """A bill field without its leading back-tick (header rows may carry one too)."""
    return raw[1:] if raw.startswith(BILL_FIELD_MARK) else raw


def bill_fen(text: str) -> int | None:
    """A bill amount in yuan ("12.34", "-0.01", old bills "0.00000") as signed integer fen, exactly; None when it
    is not a number or would lose a fraction of a fen."""
    m = _BILL_YUAN_RE.fullmatch(text.strip())
    if m is None:
        return None
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if frac[2:].strip("0"):
        return None
    fen = int(whole) * 100 + int(frac[:2].ljust(2, "0"))
    return -fen if sign else fen


def bill_time(text: str) -> datetime | None:
    """ "2026-12-03 10:00:00", Beijing time (the bill states no offset). Parsed by hand: strptime costs several
    times more, and a bill may have 100,000 rows."""
    m = _BILL_TIME_RE.fullmatch(text.strip())
    if m is None:
        return None
    try:
        return datetime(*(int(g) for g in m.groups()), tzinfo=BEIJING)  # type: ignore[misc]
    except ValueError:
        return None


# ---- 分账 (profit sharing), /v3/profitsharing -------------------------------------------------------------
RECEIVERS_ADD_PATH = "/v3/profitsharing/receivers/add"
SPLIT_PATH = "/v3/profitsharing/orders"
SPLIT_QUERY_PATH = SPLIT_PATH + "/{out_order_no}?transaction_id={transaction_id}"
SPLIT_RETURN_PATH = "/v3/profitsharing/return-orders"
SPLIT_RETURN_QUERY_PATH = SPLIT_RETURN_PATH + "/{out_return_no}?out_order_no={out_order_no}"
# out_order_no / out_return_no: "只能是数字、大小写字母_-|*@", string(64). Both go into query paths.
OUT_ORDER_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
TRANSACTION_ID_RE = re.compile(r"^[0-9A-Za-z]{1,32}$")
SPLIT_RECEIVER_TYPES = frozenset({"MERCHANT_ID", "PERSONAL_OPENID"})
# Returns (分账回退) debit the receiver's merchant account: an openid receiver cannot give money back.
SPLIT_RETURN_RECEIVER_TYPE = "MERCHANT_ID"
SPLIT_EVENT_PREFIX = "PROFITSHARING"  # 分账动账通知: PROFITSHARING.SUCCESS / .CLOSED
SPLIT_MAX_RECEIVERS = 50  # "每次请求最多分给50个接收方"
SPLIT_DESCRIPTION_MAX_CHARS = 80
# relation_type of a receiver we bind, unless the account names its own (split_relation_type).
DEFAULT_SPLIT_RELATION_TYPE = "PARTNER"
# Order `state`: PROCESSING until every receiver is settled, then FINISHED.
SPLIT_ORDER_STATES = frozenset({"PROCESSING", "FINISHED"})
# receivers[].result -> our state ("CLOSED": 已关闭, fail_reason says why; the share stays with the merchant).
SPLIT_RECEIVER_RESULT: dict[str, SplitState] = {
    "PENDING": SplitState.PENDING,
    "SUCCESS": SplitState.SUCCEEDED,
    "CLOSED": SplitState.FAILED,
}
# Return `result` -> our state.
SPLIT_RETURN_RESULT: dict[str, SplitState] = {
    "PROCESSING": SplitState.PENDING,
    "SUCCESS": SplitState.SUCCEEDED,
    "FAILED": SplitState.FAILED,
}
# Error codes of 请求分账 / 请求分账回退 that refuse the request as a whole for a business reason: nothing moved
# (a receiver not bound, "分账金额超出最大分账比例", a trade not created for profit sharing, too little left).
SPLIT_REFUSED_CODES = frozenset({"PARAM_ERROR", "INVALID_REQUEST", "NOT_ENOUGH", "NO_AUTH", "RULE_LIMIT"})
# The outcome is open: query under the same number before anything else.
SPLIT_UNKNOWN_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED"})
SPLIT_NOT_FOUND_CODES = frozenset({"RESOURCE_NOT_EXISTS", "NOT_FOUND", "ORDER_NOT_EXIST"})


def split_description(text: str) -> str:
    """A receiver's description (required, at most 80 characters, shown on the split bill)."""
    return (text.strip() or "profit sharing")[:SPLIT_DESCRIPTION_MAX_CHARS]


# ---- 查询账户实时余额 (capability BALANCE): GET /v3/merchant/fund/balance/{account_type} ----------------------
# account_type BASIC (基本账户: where trades settle, refunds and splits come out) or OPERATION (运营账户: what
# 商家转账 pays out of); the answer is {available_amount, pending_amount} in fen, pending being 不可用余额 (money
# held: trades frozen for profit sharing). The shop's money at WeChat is both accounts together.
BALANCE_PATH = "/v3/merchant/fund/balance/{account_type}"
BALANCE_ACCOUNT_TYPES = ("BASIC", "OPERATION")
