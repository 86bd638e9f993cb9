"""Loopback simulator of the *bank side* of the CardShop bank gateway (SOAP 1.1 document/literal).

It plays the bank a merchant integrates with: ``POST /soap`` answers CreatePayment, QueryPayment,
ClosePayment, Refund, QueryRefund, Transfer, TransferQuery, Statement and Balance after checking the WS-Security
UsernameToken (PasswordDigest, Created window, nonce replay) and validating the body against the schema in the
WSDL; ``GET /soap?wsdl`` publishes that WSDL; ``/cashier/<bankRef>`` is a one-button cashier; paying sends the HMAC-SHA256-signed form callback
to the trade's notifyUrl. Transfers pay out of each merchant's balance here (debited when the bank accepts,
given back if it later rejects), are idempotent on transferRef and carry the body signature both ways; the
transfers that moved money are listed by ``executed_transfers``. SOAP handling is plain lxml on WSGI (no SOAP
library), so it checks our zeep client against a second implementation.

Statement pages a merchant's bank day (Asia/Shanghai) built from what this bank booked that day: paid payments
(at paid_at, with the merchant's fee_bps), refunds (the refunded share of the fee given back), transfers not
rejected (with transfer_fee_minor) and fees billed apart (``book_fee``), each page signed. Booking times come
from ``clock`` (tests pin it to a day); a day is NOT_READY until ``clock`` has passed its end. A test shapes the
next statements through plain attributes (reset them between tests; refs are our merchantRef, amounts positive):

- ``statement_omit``: set of merchantRefs left out.
- ``statement_override``: merchantRef -> {"amount_minor": .., "fee_minor": .., "status": ..} (any of them).
- ``statement_duplicate``: set of merchantRefs listed twice.
- ``statement_extra``: list of entries the bank books that we never sent, each {"our_ref", "provider_ref",
  "amount_minor", "fee_minor", "status"} plus optional "entry_type" (PAYMENT), "original_ref" (for a REFUND) and
  "booked_at" (an aware datetime; without it the entry is listed at noon of whichever day is asked for).
- ``statement_forgery``: one of STATEMENT_FORGERIES, on page ``statement_forgery_page`` (0: every page):
  "tampered" (an entry edited after signing), "bad_key", "unsigned", "miscounted" (totals that do not add up,
  correctly signed: the bank's own error).

The control totals always add up the entries as listed (injections included), as a real bank's statement does;
only "miscounted" breaks that. ``statement_synthetic(day, n)`` makes the day's statement N generated payment
lines with consistent totals, produced page by page without creating trades (injections do not apply to it).

Balance answers ``account_balance()``, signed like the transfers: availableMinor is the transfer balance (less
transfers not final) plus the paid payments net of their fee less the refunds net of the fee they gave back,
pendingMinor the transfers accepted and not final. ``forge_answers`` spoils it like a transfer answer.

The WSDL is the one contract both sides share: it is read as a file, nothing of ``payments.channels`` is
imported. Must not import ``payments.channels``, zeep or anything Django.

    python -m payments.simulators.bankgw --port 8006 --account-file var/bankgw-account.json
"""

from __future__ import annotations

import argparse
import base64
import copy
import dataclasses
import hashlib
import hmac
import html
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import urlencode, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from zoneinfo import ZoneInfo

import requests
from lxml import etree

from payments.simulators.base import (
    BAD_SIGNATURE,
    CLOSED,
    STALE_TIMESTAMP,
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

WSDL_FILE = Path(__file__).resolve().parent.parent / "channels" / "bankgw" / "bank.wsdl"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD = "http://www.w3.org/2001/XMLSchema"
BANK = "urn:cardshop:bankgw"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_DIGEST = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest"  # noqa: S105 (a token type URI)
CREATED_WINDOW = 300  # seconds either side of our clock
NOTIFY_TIMEOUT = 5.0
EXPONENTS = {"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "JPY": 0}
PAID_STATUSES = ("PAID", "SETTLED")
OPEN_STATUSES = ("PENDING", "REVIEW")
# DECLINED is the last attempt's outcome, not the payment's: the buyer may still pay it with another card.
PAYABLE_STATUSES = (*OPEN_STATUSES, "DECLINED")
TRANSFER_OPEN = ("ACCEPTED", "PROCESSING")
REJECT_REASONS = ("INSUFFICIENT_FUNDS", "ACCOUNT_CLOSED", "NAME_MISMATCH")
HOLD = "HOLD"  # scripted_transfer word: accept the transfer and keep it open until settle_transfer
# Ways to spoil a signed answer (forge_answers), to prove the adapter refuses them.
FORGERIES = ("tampered", "bad_key", "unsigned")
DEFAULT_BALANCE_MINOR = 1_000_000
DEFAULT_FEE_BPS = 60  # 0.6 % of each payment, rounded half up to the minor unit
BANK_DAY = ZoneInfo("Asia/Shanghai")
STATEMENT_FORGERIES = ("tampered", "bad_key", "unsigned", "miscounted")
ENTRY_FIELDS = (
    "entryType",
    "bankRef",
    "merchantRef",
    "originalBankRef",
    "amountMinor",
    "feeMinor",
    "currency",
    "status",
    "bookedAt",
)
# Sign of (amountMinor, feeMinor) on the merchant's statement, per entryType (bank.wsdl).
ENTRY_SIGNS = {"PAYMENT": (1, 1), "REFUND": (-1, -1), "TRANSFER": (-1, 1), "FEE": (-1, 1)}

TRANSFER_FIELDS = (
    "resultCode",
    "resultMessage",
    "transferRef",
    "bankTransferId",
    "status",
    "amountMinor",
    "currency",
    "rejectReason",
    "signature",
)
# Response element order, as the WSDL's sequences require.
RESPONSE_FIELDS = {
    "CreatePayment": ("resultCode", "resultMessage", "bankRef", "cashierUrl"),
    "QueryPayment": (
        "resultCode",
        "resultMessage",
        "orderId",
        "status",
        "bankRef",
        "amountMinor",
        "currency",
        "declineReason",
    ),
    "ClosePayment": ("resultCode", "resultMessage", "status"),
    "Refund": ("resultCode", "resultMessage", "refundId", "refundRef", "refundStatus", "amountMinor", "currency"),
    "QueryRefund": ("resultCode", "resultMessage", "refundId", "refundRef", "refundStatus", "amountMinor", "currency"),
    "Transfer": TRANSFER_FIELDS,
    "TransferQuery": TRANSFER_FIELDS,
    "Statement": (
        "resultCode",
        "resultMessage",
        "statementDate",
        "page",
        "pageCount",
        "entries",
        "entryCount",
        "netAmountMinor",
        "feeTotalMinor",
        "signature",
    ),
    "Balance": ("resultCode", "resultMessage", "currency", "availableMinor", "pendingMinor", "asOf", "signature"),
}
# Operations whose request and answer carry the body signature.
SIGNED = frozenset({"Transfer", "TransferQuery", "Balance"})

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)


class SoapFault(Exception):
    """Answered as a SOAP 1.1 Fault with HTTP 500; `code` is the faultcode's local part (Client.X / Server)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass
class Merchant:
    merchant_id: str
    username: str
    password: str
    notify_key: str
    currency: str = "CNY"
    balance_minor: int = DEFAULT_BALANCE_MINOR  # what transfers may pay out; changed under the simulator's lock
    fee_bps: int = DEFAULT_FEE_BPS  # the bank's fee on each payment
    transfer_fee_minor: int = 0  # the bank's fee on each transfer, taken from the balance with it


def _load_wsdl() -> etree._ElementTree:
    return etree.parse(str(WSDL_FILE), _PARSER)


def _schema(wsdl: etree._ElementTree) -> etree.XMLSchema:
    node = wsdl.find(f"{{{WSDL_NS}}}types/{{{XSD}}}schema")
    # Re-declare every prefix in scope on the copy: `type="tns:..."` values are resolved through them.
    schema = etree.Element(node.tag, attrib=dict(node.attrib), nsmap=node.nsmap)
    schema.extend(copy.deepcopy(child) for child in node)
    return etree.XMLSchema(schema)


def _major(amount_minor: int, currency: str) -> str:
    exp = EXPONENTS.get(currency, 2)
    whole, frac = divmod(amount_minor, 10**exp)
    return f"{whole}.{frac:0{exp}d}" if exp else str(whole)


def sign(params: dict[str, str], key: str) -> str:
    """The bank's callback signature, written independently of our adapter's signing module."""
    pairs = sorted((k, v) for k, v in params.items() if k != "signature" and v != "")
    message = "&".join(f"{k}={v}" for k, v in pairs)
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def password_digest(nonce: bytes, created: str, password: str) -> str:
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()


class BankGatewaySimulator(LoopbackServer):
    code = "bankgw"
    notify_variants = frozenset(
        {VALID, BAD_SIGNATURE, WRONG_AMOUNT, WRONG_CURRENCY, WRONG_MERCHANT, UNKNOWN_ORDER, STALE_TIMESTAMP, CLOSED}
    )

    def __init__(self, host: str = "127.0.0.1", port: int = 0, currency: str = "CNY") -> None:
        self.faults = Faults()
        self.currency = currency
        self._address = (host, port)
        self._lock = threading.Lock()
        self._merchants: dict[str, Merchant] = {}
        self._by_username: dict[str, str] = {}
        self._default: Merchant | None = None
        self._trades: dict[str, dict[str, Any]] = {}  # bankRef -> trade
        self._by_order: dict[tuple[str, str], str] = {}  # (merchantId, orderId) -> bankRef
        self._refunds: dict[tuple[str, str], dict[str, Any]] = {}  # (merchantId, refundId) -> refund
        self._transfers: dict[tuple[str, str], dict[str, Any]] = {}  # (merchantId, transferRef) -> transfer
        # Transfer outcomes to force next: HOLD or a reject reason (ACCOUNT_CLOSED, NAME_MISMATCH, ...).
        self.scripted_transfer: deque[str] = deque()
        # Payee accounts the bank knows: closed ones, and the holder name of others (checked when listed).
        self.closed_accounts: set[str] = set()
        self.payee_names: dict[str, str] = {}
        # Forgeries (FORGERIES) applied to the next signed answers, one each.
        self.forge_answers: deque[str] = deque()
        self._nonces: set[str] = set()
        self._nonce_expiry: deque[tuple[float, str]] = deque()
        # CreatePayment result codes to answer next (REVIEW, DECLINED, SYSTEM_ERROR), for tests and the demo.
        self.scripted_create: deque[str] = deque()
        self._wsdl = _load_wsdl()
        self._schema = _schema(self._wsdl)
        self._schema_lock = threading.Lock()  # one validator, and its error_log, per use
        self._counter = secrets.randbelow(9 * 10**8) + 10**8  # distinct refs across restarts
        # When the bank books what happens (payments, refunds, transfers, fees), and so which days are closed.
        self.clock: Callable[[], float] = time.time
        self._fees: list[dict[str, Any]] = []  # fees billed apart (book_fee)
        self._synthetic: dict[tuple[str, date], tuple[int, int, int]] = {}  # -> (entries, net, fees)
        self.statement_omit: set[str] = set()
        self.statement_override: dict[str, dict[str, Any]] = {}
        self.statement_duplicate: set[str] = set()
        self.statement_extra: list[dict[str, Any]] = []
        self.statement_forgery = ""
        self.statement_forgery_page = 0

    # ---- lifecycle ---------------------------------------------------------
    def _make_server(self) -> WSGIServer:
        return make_server(*self._address, self._wsgi, server_class=_ThreadingWSGIServer, handler_class=_Quiet)

    # ---- merchants ---------------------------------------------------------
    def add_merchant(self, merchant: Merchant) -> Merchant:
        with self._lock:
            self._merchants[merchant.merchant_id] = merchant
            self._by_username[merchant.username] = merchant.merchant_id
        return merchant

    def new_merchant(self, balance_minor: int = DEFAULT_BALANCE_MINOR) -> Merchant:
        return self.add_merchant(
            Merchant(
                merchant_id=f"BG{secrets.randbelow(9 * 10**9) + 10**9}",
                username=f"cardshop-{secrets.token_hex(4)}",
                password=secrets.token_urlsafe(24),
                notify_key=secrets.token_hex(32),
                currency=self.currency,
                balance_minor=balance_minor,
            )
        )

    def account(self, *, webhook_url: str = "") -> SimAccount:
        # Callbacks go to each payment's notifyUrl; webhook_url has no place in this protocol.
        if self._default is None:
            self._default = self.new_merchant()
        return self._sim_account(self._default)

    def load_account(self, data: dict[str, Any]) -> SimAccount:
        creds = data["credentials"]
        self._default = self.add_merchant(
            Merchant(data["merchant_no"], creds["username"], creds["password"], creds["notify_key"], data["currency"])
        )
        return self._sim_account(self._default)

    def account_for(self, merchant: Merchant) -> SimAccount:
        """The account form values of `merchant` (tests give each payout test its own balance)."""
        return self._sim_account(merchant)

    def _sim_account(self, m: Merchant) -> SimAccount:
        creds = {"username": m.username, "password": m.password, "notify_key": m.notify_key}
        return SimAccount(merchant_no=m.merchant_id, base_url=self.base_url, currency=m.currency, credentials=creds)

    # ---- trades ------------------------------------------------------------
    def _trade_by_order(self, order_id: str) -> dict[str, Any] | None:
        with self._lock:
            ref = next((r for (_, o), r in self._by_order.items() if o == order_id), None)
            trade = self._trades.get(ref or "")
            if trade is not None:
                _lapse(trade)
            return trade

    def trade_for(self, out_trade_no: str) -> dict | None:
        trade = self._trade_by_order(out_trade_no)
        if trade is None:
            return None
        with self._lock:
            found = copy.deepcopy(trade)
        if found["bank_status"] in PAID_STATUSES:
            status = "refunded" if found["refunded_minor"] >= found["amount_minor"] else "paid"
        else:
            status = "pending" if found["bank_status"] in PAYABLE_STATUSES else "closed"
        found.update(status=status, provider_trade_no=found["bank_ref"], out_trade_no=found["order_id"])
        return found

    def refund_for(self, refund_no: str) -> dict | None:
        with self._lock:
            found = next((r for (_, rid), r in self._refunds.items() if rid == refund_no), None)
            return copy.deepcopy(found) if found else None

    # ---- transfers ---------------------------------------------------------
    def balance(self, merchant_id: str) -> int:
        with self._lock:
            return self._merchants[merchant_id].balance_minor

    def transfer_for(self, transfer_ref: str) -> dict | None:
        with self._lock:
            found = next((t for (_, ref), t in self._transfers.items() if ref == transfer_ref), None)
            return copy.deepcopy(found) if found else None

    def executed_transfers(self, merchant_id: str | None = None) -> dict[str, dict]:
        """transferRef -> transfer, for every transfer that took money from a balance (not REJECTED)."""
        with self._lock:
            return {
                ref: copy.deepcopy(t)
                for (mid, ref), t in self._transfers.items()
                if t["status"] != "REJECTED" and merchant_id in (None, mid)
            }

    def settle_transfer(self, transfer_ref: str, status: str = "SETTLED", reason: str = "") -> None:
        """The bank moves a held transfer on: PROCESSING, SETTLED, or REJECTED for `reason` (money given back)."""
        if status not in ("PROCESSING", "SETTLED", "REJECTED") or (status == "REJECTED") != bool(reason):
            raise ValueError(f"cannot settle to {status!r} with reason {reason!r}")
        with self._lock:
            key = next((k for k in self._transfers if k[1] == transfer_ref), None)
            if key is None:
                raise KeyError(transfer_ref)
            transfer = self._transfers[key]
            if transfer["status"] not in TRANSFER_OPEN:
                raise ValueError(f"transfer {transfer_ref} is {transfer['status']}: it is final")
            transfer["status"], transfer["reject_reason"] = status, reason
            if status == "REJECTED":
                self._merchants[key[0]].balance_minor += transfer["amount_minor"] + transfer["fee_minor"]

    def pay(self, out_trade_no: str) -> None:
        trade = self._trade_by_order(out_trade_no)
        if trade is None:
            raise KeyError(out_trade_no)
        with self._lock:
            _lapse(trade)
            if trade["bank_status"] in ("CLOSED", "EXPIRED"):
                raise ValueError(f"trade {out_trade_no} is {trade['bank_status']}: it cannot be paid")
            if trade["bank_status"] in PAYABLE_STATUSES:  # paying a held payment is the bank approving it
                trade["bank_status"], trade["paid_at"] = "PAID", int(self.clock())
                bps = self._merchants[trade["merchant_id"]].fee_bps
                trade["fee_minor"] = (trade["amount_minor"] * bps + 5_000) // 10_000
        self._dispatch(trade, self._payment_params(trade, "PAID"))

    def decline(self, out_trade_no: str, reason: str = "do_not_honor") -> None:
        """The buyer's card is refused for the issuer's `reason` ("" for none): status DECLINED, signed callback
        sent with its declineReason; the payment stays payable, so a retry with another card (`pay`) succeeds."""
        trade = self._trade_by_order(out_trade_no)
        if trade is None:
            raise KeyError(out_trade_no)
        with self._lock:
            if trade["bank_status"] not in PAYABLE_STATUSES:
                raise ValueError(f"trade {out_trade_no} is {trade['bank_status']}: nothing to decline")
            trade["bank_status"], trade["decline_reason"] = "DECLINED", reason
        self._dispatch(trade, self._payment_params(trade, "DECLINED"))

    # ---- callbacks ---------------------------------------------------------
    def _merchant(self, merchant_id: str) -> Merchant:
        with self._lock:
            return self._merchants[merchant_id]

    def _signed(self, merchant_id: str, params: dict[str, str], variant: str = VALID) -> dict[str, str]:
        if variant == STALE_TIMESTAMP:
            params["timestamp"] = str(int(time.time()) - 600)
        if variant == WRONG_MERCHANT:
            params["merchantId"] = merchant_id + "X"
        params["signature"] = sign(params, self._merchant(merchant_id).notify_key)
        if variant == BAD_SIGNATURE:
            last = params["signature"][-1]
            params["signature"] = params["signature"][:-1] + ("0" if last != "0" else "1")
        return params

    def _payment_params(
        self, trade: dict[str, Any], status: str, variant: str = VALID, amount: str | None = None
    ) -> dict[str, str]:
        params = {
            "merchantId": trade["merchant_id"],
            "orderId": trade["order_id"],
            "bankRef": trade["bank_ref"],
            "amountMinor": str(trade["amount_minor"]),
            "currency": trade["currency"],
            "status": status,
            "timestamp": str(int(time.time())),
            "nonce": secrets.token_hex(16),
        }
        if status == "DECLINED" and trade.get("decline_reason"):
            params["declineReason"] = trade["decline_reason"]
        if variant == WRONG_AMOUNT:
            params["amountMinor"] = str(trade["amount_minor"] + 1)
        elif variant == WRONG_CURRENCY:
            params["currency"] = "USD" if trade["currency"] != "USD" else "EUR"
        elif variant == UNKNOWN_ORDER:
            params["orderId"] = "UNKNOWN-" + trade["order_id"]
        if amount is not None:
            params["amountMinor"] = amount
        return self._signed(trade["merchant_id"], params, variant)

    def _refund_params(self, refund: dict[str, Any]) -> dict[str, str]:
        params = {
            "merchantId": refund["merchant_id"],
            "orderId": refund["order_id"],
            "refundId": refund["refund_id"],
            "refundRef": refund["refund_ref"],
            "amountMinor": str(refund["amount_minor"]),
            "currency": refund["currency"],
            "refundStatus": refund["refund_status"],
            "timestamp": str(int(time.time())),
            "nonce": secrets.token_hex(16),
        }
        return self._signed(refund["merchant_id"], params)

    def notify_request(self, out_trade_no: str, *, variant: str = VALID, amount: str | None = None) -> NotifyRequest:
        """A PAID (CLOSED) callback, forged as `variant` says; `amount` replaces amountMinor as written, signed."""
        if variant not in self.notify_variants:
            raise ValueError(f"bankgw has no {variant!r} callback")
        trade = self._trade_by_order(out_trade_no)
        if trade is None:
            raise KeyError(out_trade_no)
        params = self._payment_params(trade, "CLOSED" if variant == CLOSED else "PAID", variant, amount)
        return _form_request(params)

    def refund_notify_request(self, refund_no: str) -> NotifyRequest:
        refund = self.refund_for(refund_no)
        if refund is None:
            raise KeyError(refund_no)
        return _form_request(self._refund_params(refund))

    def _dispatch(self, record: dict[str, Any], params: dict[str, str]) -> None:
        """Send one callback as the faults say; never raises (a dead endpoint does not undo a payment)."""
        if self.faults.take("drop_notify"):
            logger.info("bankgw: dropped callback for %s", params.get("orderId"))
            return
        times = 2 if self.faults.take("duplicate_notify") else 1
        if self.faults.notify_delay > 0:
            delay = self.faults.notify_delay
            threading.Thread(target=self._send, args=(record, params, times, delay), daemon=True).start()
        else:
            self._send(record, params, times)

    def _send(self, record: dict[str, Any], params: dict[str, str], times: int, delay: float = 0.0) -> None:
        if delay:
            time.sleep(delay)
        for _ in range(times):
            attempt: dict[str, Any] = {"at": int(time.time()), "params": dict(params), "status_code": None}
            try:
                resp = requests.post(record["notify_url"], data=params, timeout=NOTIFY_TIMEOUT)
                attempt.update(status_code=resp.status_code, acknowledged=resp.ok and resp.text.strip() == "OK")
            except requests.RequestException as exc:
                logger.warning("bankgw: callback to %s failed: %s", record["notify_url"], type(exc).__name__)
                attempt.update(error=type(exc).__name__, acknowledged=False)
            with self._lock:
                record["notify_attempts"].append(attempt)

    # ---- SOAP operations ---------------------------------------------------
    def _op_create(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        amount, currency = int(req["amountMinor"]), req["currency"]
        fields = {k: req.get(k, "") for k in ("amountMinor", "currency", "subject", "notifyUrl", "returnUrl")}
        scripted = self.scripted_create.popleft() if self.scripted_create else ""
        if scripted == "DECLINED" or amount <= 0 or currency != m.currency:
            return {"resultCode": "DECLINED", "resultMessage": "amount or currency not accepted"}
        expires_text = req.get("expiresAt", "")
        try:
            deadline = datetime.fromisoformat(expires_text).timestamp() if expires_text else None
        except ValueError:  # the schema checked the lexical form; this is a 25th hour or a 31 February
            raise SoapFault("Client.Schema", "expiresAt is not a valid dateTime") from None
        with self._lock:
            if ref := self._by_order.get((m.merchant_id, req["orderId"])):
                trade = self._trades[ref]
                if trade["request"] != fields:
                    return {"resultCode": "DECLINED", "resultMessage": "orderId already used with other values"}
            else:
                self._counter += 1
                ref = f"BG{time.strftime('%Y%m%d')}{self._counter}"
                trade = {
                    "bank_ref": ref,
                    "merchant_id": m.merchant_id,
                    "order_id": req["orderId"],
                    "amount_minor": amount,
                    "currency": currency,
                    "subject": req["subject"],
                    "notify_url": req["notifyUrl"],
                    "return_url": req.get("returnUrl", ""),
                    "bank_status": "REVIEW" if scripted == "REVIEW" else "PENDING",
                    "created_result": "REVIEW" if scripted == "REVIEW" else "ACCEPTED",
                    "created_at": int(time.time()),
                    "expires_at": expires_text,  # as received, for tests of the wire format
                    "deadline": deadline,
                    "paid_at": None,
                    "fee_minor": 0,
                    "refunded_minor": 0,
                    "fee_refunded_minor": 0,
                    "request": fields,
                    "notify_attempts": [],
                }
                self._trades[ref] = trade
                self._by_order[(m.merchant_id, req["orderId"])] = ref
        if scripted == "SYSTEM_ERROR":  # recorded, but the answer says nothing useful
            return {"resultCode": "SYSTEM_ERROR", "resultMessage": "core banking unavailable"}
        return {
            "resultCode": trade["created_result"],
            "resultMessage": "held for review" if trade["created_result"] == "REVIEW" else "accepted",
            "bankRef": ref,
            "cashierUrl": f"{host_url}/cashier/{ref}",
        }

    def _find(self, m: Merchant, order_id: str) -> dict[str, Any] | None:
        ref = self._by_order.get((m.merchant_id, order_id))
        trade = self._trades.get(ref or "")
        if trade is not None:
            _lapse(trade)
        return trade

    def _op_query(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        with self._lock:
            trade = self._find(m, req["orderId"])
            if trade is None:
                return {"resultCode": "NOT_FOUND", "resultMessage": "no such order"}
            return {
                "resultCode": "ACCEPTED",
                "orderId": trade["order_id"],
                "status": trade["bank_status"],
                "bankRef": trade["bank_ref"],
                "amountMinor": trade["amount_minor"],
                "currency": trade["currency"],
                "declineReason": trade.get("decline_reason", "") if trade["bank_status"] == "DECLINED" else "",
            }

    def _op_close(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        with self._lock:
            trade = self._find(m, req["orderId"])
            if trade is None:
                return {"resultCode": "NOT_FOUND", "resultMessage": "no such order"}
            if trade["bank_status"] in PAID_STATUSES:
                return {"resultCode": "DECLINED", "resultMessage": "already paid", "status": trade["bank_status"]}
            if trade["bank_status"] in PAYABLE_STATUSES:
                trade["bank_status"] = "CLOSED"
            return {"resultCode": "ACCEPTED", "status": trade["bank_status"]}

    def _op_refund(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        amount, key = int(req["amountMinor"]), (m.merchant_id, req["refundId"])
        fields = {k: req.get(k, "") for k in ("orderId", "amountMinor", "currency")}
        with self._lock:
            if refund := self._refunds.get(key):  # idempotent on refundId
                if refund["request"] != fields:
                    return {"resultCode": "DECLINED", "resultMessage": "refundId already used with other values"}
                return _refund_answer(refund)
            trade = self._find(m, req["orderId"])
            if trade is None:
                return {"resultCode": "NOT_FOUND", "resultMessage": "no such order"}
            if trade["bank_status"] not in PAID_STATUSES:
                return {"resultCode": "DECLINED", "resultMessage": f"payment is {trade['bank_status']}"}
            if (
                req["currency"] != trade["currency"]
                or not 0 < amount <= trade["amount_minor"] - trade["refunded_minor"]
            ):
                return {"resultCode": "DECLINED", "resultMessage": "refund exceeds the refundable amount"}
            self._counter += 1
            # The refunded share of the payment's fee comes back; the last refund takes what is left of it.
            if trade["refunded_minor"] + amount == trade["amount_minor"]:
                fee_back = trade["fee_minor"] - trade["fee_refunded_minor"]
            else:
                fee_back = trade["fee_minor"] * amount // trade["amount_minor"]
            refund = {
                "refund_ref": f"RF{time.strftime('%Y%m%d')}{self._counter}",
                "refund_id": req["refundId"],
                "merchant_id": m.merchant_id,
                "order_id": trade["order_id"],
                "trade_ref": trade["bank_ref"],
                "amount_minor": amount,
                "fee_minor": fee_back,
                "created_at": int(self.clock()),
                "currency": trade["currency"],
                "refund_status": "SUCCESS",
                "notify_url": req.get("notifyUrl", ""),
                "request": fields,
                "notify_attempts": [],
            }
            self._refunds[key] = refund
            trade["refunded_minor"] += amount
            trade["fee_refunded_minor"] += fee_back
        if refund["notify_url"]:
            # After the answer, as a bank's batch would: our side must know the refundRef first.
            timer = threading.Timer(0.2, self._dispatch, args=(refund, self._refund_params(refund)))
            timer.daemon = True
            timer.start()
        return _refund_answer(refund)

    def _op_query_refund(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        with self._lock:
            refund = self._refunds.get((m.merchant_id, req["refundId"]))
            return _refund_answer(refund) if refund else {"resultCode": "NOT_FOUND", "resultMessage": "no refund"}

    def _check_signature(self, m: Merchant, req: dict[str, str]) -> None:
        given = req.get("signature", "")
        if not hmac.compare_digest(sign(req, m.notify_key).encode(), given.encode()):
            raise SoapFault("Client.Signature", "signature does not verify")

    def _op_transfer(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        self._check_signature(m, req)
        amount = int(req["amountMinor"])
        if amount <= 0:
            raise SoapFault("Client.Parameter", "amountMinor must be positive")
        if req["currency"] != m.currency:
            raise SoapFault("Client.Parameter", f"the account holds {m.currency}, not {req['currency']}")
        key = (m.merchant_id, req["transferRef"])
        with self._lock:
            if transfer := self._transfers.get(key):  # idempotent on transferRef: the first transfer, as it is now
                return _transfer_answer(transfer)
            scripted = self.scripted_transfer.popleft() if self.scripted_transfer else ""
            account = req["payeeAccount"]
            holder = self.payee_names.get(account)
            if scripted in REJECT_REASONS:
                reason = scripted
            elif account in self.closed_accounts:
                reason = "ACCOUNT_CLOSED"
            elif holder is not None and holder != req["payeeName"]:
                reason = "NAME_MISMATCH"
            elif amount + m.transfer_fee_minor > m.balance_minor:
                reason = "INSUFFICIENT_FUNDS"
            else:
                reason = ""
            self._counter += 1
            transfer = {
                "bank_transfer_id": f"TR{time.strftime('%Y%m%d')}{self._counter}",
                "transfer_ref": req["transferRef"],
                "merchant_id": m.merchant_id,
                "amount_minor": amount,
                "currency": req["currency"],
                "payee_account": account,
                "payee_name": req["payeeName"],
                "remark": req.get("remark", ""),
                "status": "REJECTED" if reason else ("ACCEPTED" if scripted == HOLD else "SETTLED"),
                "reject_reason": reason,
                "fee_minor": 0 if reason else m.transfer_fee_minor,
                "created_at": int(self.clock()),
            }
            if not reason:
                m.balance_minor -= amount + transfer["fee_minor"]
            self._transfers[key] = transfer
            return _transfer_answer(transfer)

    def _op_transfer_query(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        self._check_signature(m, req)
        with self._lock:
            transfer = self._transfers.get((m.merchant_id, req["transferRef"]))
            if transfer is None:
                return {"resultCode": "NOT_FOUND", "resultMessage": "no such transfer"}
            return _transfer_answer(transfer)

    # ---- balance -------------------------------------------------------------
    def account_balance(self, merchant_id: str) -> dict[str, int]:
        """What Balance answers, in minor units: `available` is the transfer balance (what the merchant started
        with, less transfers with their fee and fees billed apart) plus every paid payment net of its fee, less
        every refund net of the fee it gave back; `pending` the transfers accepted and not final (reserved)."""
        with self._lock:
            m = self._merchants[merchant_id]
            available = m.balance_minor
            available += sum(
                t["amount_minor"] - t["fee_minor"]
                for t in self._trades.values()
                if t["merchant_id"] == merchant_id and t["bank_status"] in PAID_STATUSES
            )
            available -= sum(
                r["amount_minor"] - r["fee_minor"]
                for r in self._refunds.values()
                if r["merchant_id"] == merchant_id and r["refund_status"] == "SUCCESS"
            )
            pending = sum(
                t["amount_minor"] + t["fee_minor"]
                for (mid, _), t in self._transfers.items()
                if mid == merchant_id and t["status"] in TRANSFER_OPEN
            )
        # The transfer balance already went down when a transfer was accepted: the reserve is apart from it.
        return {"available": available, "pending": pending}

    def _op_balance(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        self._check_signature(m, req)
        if req["currency"] != m.currency:
            raise SoapFault("Client.Parameter", f"the account holds {m.currency}, not {req['currency']}")
        money = self.account_balance(m.merchant_id)
        return {
            "resultCode": "ACCEPTED",
            "currency": m.currency,
            "availableMinor": money["available"],
            "pendingMinor": money["pending"],
            "asOf": datetime.fromtimestamp(self.clock(), BANK_DAY).isoformat(timespec="seconds"),
        }

    # ---- statement -----------------------------------------------------------
    def book_fee(self, merchant_id: str, amount_minor: int, booked_at: datetime | None = None) -> str:
        """The bank bills `merchant_id` a fee apart from any trade (a FEE entry); returns its bankRef."""
        with self._lock:
            self._counter += 1
            ref = f"FE{time.strftime('%Y%m%d')}{self._counter}"
            at = booked_at.timestamp() if booked_at else self.clock()
            self._fees.append({"merchant_id": merchant_id, "bank_ref": ref, "amount_minor": amount_minor, "at": at})
            self._merchants[merchant_id].balance_minor -= amount_minor
        return ref

    def statement_synthetic(self, day: date, n: int, merchant_id: str | None = None) -> tuple[int, int, int]:
        """Make `day`'s statement of `merchant_id` (the default merchant's) N generated PAYMENT entries;
        returns the control totals (entryCount, netAmountMinor, feeTotalMinor). Entries are made page by page."""
        if merchant_id is None:
            merchant_id = self.account().merchant_no
        bps = self._merchant(merchant_id).fee_bps
        net = fees = 0
        for i in range(n):
            amount = _synthetic_amount(i)
            net += amount
            fees += (amount * bps + 5_000) // 10_000
        with self._lock:
            self._synthetic[(merchant_id, day)] = (n, net, fees)
        return n, net, fees

    def _day_closed(self, day: date) -> bool:
        return datetime.fromtimestamp(self.clock(), BANK_DAY).date() > day

    def _op_statement(self, m: Merchant, req: dict[str, str], host_url: str) -> dict[str, Any]:
        self._check_signature(m, req)
        try:
            day = date.fromisoformat(req["statementDate"])
        except ValueError:  # the schema checked the shape; this is a 13th month or a 30 February
            raise SoapFault("Client.Parameter", "statementDate is not a date") from None
        page, size = int(req["page"]), int(req["pageSize"])
        if not self._day_closed(day):
            return {"resultCode": "NOT_READY", "resultMessage": f"{day} is not closed yet", "statementDate": day}
        synthetic = self._synthetic.get((m.merchant_id, day))
        if synthetic is not None:
            count, net, fees = synthetic
            first, last = (page - 1) * size, min(page * size, count)
            entries = [self._synthetic_entry(m, day, i, count) for i in range(first, last)]
        else:
            listed = [_wire_entry(e, m.currency) for e in self._day_entries(m, day)]
            count, net = len(listed), sum(int(e["amountMinor"]) for e in listed)
            fees = sum(int(e["feeMinor"]) for e in listed)
            entries = listed[(page - 1) * size : page * size]
        page_count = max(1, -(-count // size))
        if page > page_count:
            return {"resultCode": "NOT_FOUND", "resultMessage": f"the statement has {page_count} pages"}
        return {
            "resultCode": "ACCEPTED",
            "statementDate": day.isoformat(),
            "page": page,
            "pageCount": page_count,
            "entries": entries,
            "entryCount": count,
            "netAmountMinor": net,
            "feeTotalMinor": fees,
        }

    def _day_entries(self, m: Merchant, day: date) -> list[dict[str, Any]]:
        """What the bank booked for `m` on `day`, positive amounts, injections applied, in booking order."""
        start = datetime(day.year, day.month, day.day, tzinfo=BANK_DAY).timestamp()
        end = start + 86_400

        def on_day(at: float | None) -> bool:
            return at is not None and start <= at < end

        with self._lock:
            booked = [
                _entry(
                    "PAYMENT",
                    t["bank_ref"],
                    t["order_id"],
                    t["amount_minor"],
                    t["fee_minor"],
                    t["bank_status"],
                    t["paid_at"],
                )
                for t in self._trades.values()
                if t["merchant_id"] == m.merchant_id and t["bank_status"] in PAID_STATUSES and on_day(t["paid_at"])
            ]
            booked += [
                _entry(
                    "REFUND",
                    r["refund_ref"],
                    r["refund_id"],
                    r["amount_minor"],
                    r["fee_minor"],
                    r["refund_status"],
                    r["created_at"],
                    r["trade_ref"],
                )
                for r in self._refunds.values()
                if r["merchant_id"] == m.merchant_id and r["refund_status"] == "SUCCESS" and on_day(r["created_at"])
            ]
            booked += [
                _entry(
                    "TRANSFER",
                    t["bank_transfer_id"],
                    t["transfer_ref"],
                    t["amount_minor"],
                    t["fee_minor"],
                    t["status"],
                    t["created_at"],
                )
                for t in self._transfers.values()
                if t["merchant_id"] == m.merchant_id and t["status"] != "REJECTED" and on_day(t["created_at"])
            ]
            booked += [
                _entry("FEE", f["bank_ref"], "", f["amount_minor"], 0, "BOOKED", f["at"])
                for f in self._fees
                if f["merchant_id"] == m.merchant_id and on_day(f["at"])
            ]
        for extra in self.statement_extra:
            at = extra["booked_at"].timestamp() if extra.get("booked_at") else start + 12 * 3_600
            if on_day(at):
                booked.append(
                    _entry(
                        extra.get("entry_type", "PAYMENT"),
                        extra["provider_ref"],
                        extra["our_ref"],
                        extra["amount_minor"],
                        extra["fee_minor"],
                        extra["status"],
                        at,
                        extra.get("original_ref", ""),
                    )
                )
        booked.sort(key=lambda e: (e["at"], e["bank_ref"]))
        listed: list[dict[str, Any]] = []
        for entry in booked:
            ref = entry["our_ref"]
            if ref and ref in self.statement_omit:
                continue
            entry.update(self.statement_override.get(ref, {}) if ref else {})
            listed.append(entry)
            if ref and ref in self.statement_duplicate:
                listed.append(dict(entry))
        return listed

    def _synthetic_entry(self, m: Merchant, day: date, i: int, count: int) -> dict[str, str]:
        start = datetime(day.year, day.month, day.day, tzinfo=BANK_DAY).timestamp()
        amount = _synthetic_amount(i)
        fee = (amount * m.fee_bps + 5_000) // 10_000
        ref = f"{day:%Y%m%d}{i:08d}"
        entry = _entry("PAYMENT", f"SY{ref}", f"SYN{ref}", amount, fee, "PAID", start + i * 86_400 // count)
        return _wire_entry(entry, m.currency)

    def _sign_statement(self, m: Merchant, answer: dict[str, Any], page: int) -> dict[str, Any]:
        """Sign a Statement answer (entries as one digest field); then spoil it if a forgery is set for the page."""
        forgery = self.statement_forgery if self.statement_forgery_page in (0, page) else ""
        written = {k: str(v) for k, v in answer.items() if k != "entries" and v not in (None, "")}
        entries = [dict(e) for e in answer.get("entries") or []]
        if forgery == "miscounted":
            written["entryCount"] = str(int(written.get("entryCount", "0")) + 1)
        signed = dict(written)
        if entries:
            signed["entries"] = _entries_digest(entries)
        written["signature"] = sign(signed, m.notify_key)
        if forgery == "tampered":  # edited after signing: an entry (or the totals, on an empty page) changed
            if entries:
                entries[0]["amountMinor"] = str(int(entries[0]["amountMinor"]) + 1)
            else:
                written["netAmountMinor"] = str(int(written.get("netAmountMinor", "0")) + 1)
        elif forgery == "bad_key":
            written["signature"] = sign(signed, secrets.token_hex(32))
        elif forgery == "unsigned":
            del written["signature"]
        return {**written, "entries": entries}

    OPERATIONS = {
        "CreatePaymentRequest": ("CreatePayment", _op_create),
        "QueryPaymentRequest": ("QueryPayment", _op_query),
        "ClosePaymentRequest": ("ClosePayment", _op_close),
        "RefundRequest": ("Refund", _op_refund),
        "QueryRefundRequest": ("QueryRefund", _op_query_refund),
        "TransferRequest": ("Transfer", _op_transfer),
        "TransferQueryRequest": ("TransferQuery", _op_transfer_query),
        "StatementRequest": ("Statement", _op_statement),
        "BalanceRequest": ("Balance", _op_balance),
    }

    # ---- SOAP plumbing -----------------------------------------------------
    def _authenticate(self, envelope: etree._Element) -> Merchant:
        token = envelope.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None:
            raise SoapFault("Client.Authentication", "WS-Security UsernameToken required")
        username = token.findtext(f"{{{WSSE}}}Username") or ""
        password_el = token.find(f"{{{WSSE}}}Password")
        nonce_b64 = (token.findtext(f"{{{WSSE}}}Nonce") or "").strip()
        created = (token.findtext(f"{{{WSU}}}Created") or "").strip()
        if password_el is None or password_el.get("Type") != PASSWORD_DIGEST or not nonce_b64 or not created:
            raise SoapFault("Client.Authentication", "PasswordDigest with Nonce and Created required")
        try:
            nonce = base64.b64decode(nonce_b64, validate=True)
            created_at = datetime.fromisoformat(created)
        except ValueError as exc:
            raise SoapFault("Client.Authentication", "Nonce or Created malformed") from exc
        if created_at.tzinfo is None:
            raise SoapFault("Client.Authentication", "Created must carry a time zone")
        if abs(time.time() - created_at.timestamp()) > CREATED_WINDOW:
            raise SoapFault("Client.MessageExpired", "Created is outside the 5 minute window")
        with self._lock:
            merchant = self._merchants.get(self._by_username.get(username, ""))
        # Compare against a dummy when the user is unknown, so timing does not reveal usernames.
        expected = password_digest(nonce, created, merchant.password if merchant else secrets.token_hex(16))
        if not hmac.compare_digest(expected.encode(), (password_el.text or "").strip().encode()) or not merchant:
            raise SoapFault("Client.Authentication", "The security token could not be authenticated")
        self._remember_nonce(nonce_b64)
        return merchant

    def _remember_nonce(self, nonce: str) -> None:
        now = time.time()
        with self._lock:
            while self._nonce_expiry and self._nonce_expiry[0][0] < now:
                self._nonces.discard(self._nonce_expiry.popleft()[1])
            if nonce in self._nonces:
                raise SoapFault("Client.Replay", "Nonce already used")
            self._nonces.add(nonce)
            # Kept for two windows: a Created up to 5 min in the future stays acceptable that long.
            self._nonce_expiry.append((now + 2 * CREATED_WINDOW, nonce))

    def handle_soap(self, body: bytes, host_url: str) -> tuple[int, bytes]:
        """One SOAP request -> (HTTP status, envelope). Faults: fail_5xx before anything, timeout after acting."""
        self.faults.before_answer()
        if self.faults.take("fail_5xx"):
            return 500, _fault("Server", "bank temporarily unavailable")
        try:
            envelope = etree.fromstring(body, _PARSER)
        except etree.XMLSyntaxError:
            return 500, _fault("Client", "request is not well-formed XML")
        if envelope.tag != f"{{{SOAP_ENV}}}Envelope":
            return 500, _fault("VersionMismatch", "a SOAP 1.1 Envelope is required")
        body_el = envelope.find(f"{{{SOAP_ENV}}}Body")
        payload = body_el[0] if body_el is not None and len(body_el) else None
        try:
            merchant = self._authenticate(envelope)
            if payload is None or etree.QName(payload).localname not in self.OPERATIONS:
                raise SoapFault("Client", "unknown operation")
            with self._schema_lock:
                valid = self._schema.validate(etree.ElementTree(copy.deepcopy(payload)))
                error = str(self._schema.error_log.last_error)[:200]
            if not valid:
                raise SoapFault("Client.Schema", error)
            request = {etree.QName(el).localname: el.text or "" for el in payload}
            if request["merchantId"] != merchant.merchant_id:
                raise SoapFault("Client.Authentication", "merchantId does not belong to this user")
            name, operation = self.OPERATIONS[etree.QName(payload).localname]
            answer = operation(self, merchant, request, host_url)
        except SoapFault as fault:
            return 500, _fault(fault.code, fault.message)
        if self.faults.take("timeout"):
            time.sleep(self.faults.hang_seconds)  # acted already: the caller cannot know the outcome
        if name in SIGNED:
            answer = self._sign_answer(merchant, answer)
        elif name == "Statement":
            answer = self._sign_statement(merchant, answer, int(request["page"]))
        return 200, self._response(name, answer)

    def _sign_answer(self, m: Merchant, answer: dict[str, Any]) -> dict[str, Any]:
        """Sign the answer's fields as written; then spoil it if a forgery is queued."""
        written = {k: str(v) for k, v in answer.items() if v not in (None, "")}
        written["signature"] = sign(written, m.notify_key)
        forgery = self.forge_answers.popleft() if self.forge_answers else ""
        if forgery == "tampered" and "availableMinor" in written:  # a balance made larger after signing
            written["availableMinor"] = str(int(written["availableMinor"]) + 100_000)
        elif forgery == "tampered":  # edited after signing: a rejected transfer reported as settled
            if written.get("status") == "SETTLED":
                written.update(status="REJECTED", rejectReason="ACCOUNT_CLOSED")
            else:
                written.pop("rejectReason", None)
                written["status"] = "SETTLED"
        elif forgery == "bad_key":
            written["signature"] = sign(written, secrets.token_hex(32))
        elif forgery == "unsigned":
            del written["signature"]
        return written

    def _response(self, name: str, answer: dict[str, Any]) -> bytes:
        env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "b": BANK})
        body = etree.SubElement(env, f"{{{SOAP_ENV}}}Body")
        resp = etree.SubElement(body, f"{{{BANK}}}{name}Response")
        for field in RESPONSE_FIELDS[name]:
            if field == "entries":
                if not answer.get(field):
                    continue
                wrapper = etree.SubElement(resp, f"{{{BANK}}}entries")
                for entry in answer[field]:
                    el = etree.SubElement(wrapper, f"{{{BANK}}}entry")
                    for key in ENTRY_FIELDS:
                        if entry.get(key, "") != "":
                            etree.SubElement(el, f"{{{BANK}}}{key}").text = entry[key]
            elif answer.get(field) not in (None, ""):
                etree.SubElement(resp, f"{{{BANK}}}{field}").text = str(answer[field])
        with self._schema_lock:  # the bank keeps its own contract
            self._schema.assertValid(etree.ElementTree(copy.deepcopy(resp)))
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    def wsdl_document(self, host_url: str) -> bytes:
        doc = copy.deepcopy(self._wsdl)
        for address in doc.iter(f"{{{WSDL_SOAP}}}address"):
            address.set("location", f"{host_url}/soap")
        return etree.tostring(doc, xml_declaration=True, encoding="utf-8")

    # ---- WSGI --------------------------------------------------------------
    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        host_url = f"http://{environ['HTTP_HOST']}" if environ.get("HTTP_HOST") else self.base_url
        parts = [p for p in path.split("/") if p]
        if path == "/soap" and method == "GET" and query.lower() == "wsdl":
            status, body, ctype = 200, self.wsdl_document(host_url), "text/xml; charset=utf-8"
        elif path == "/soap" and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            code, body = self.handle_soap(environ["wsgi.input"].read(length), host_url)
            status, ctype = code, "text/xml; charset=utf-8"
        elif len(parts) == 2 and parts[0] == "cashier" and method == "GET":
            status, body, ctype = self._cashier(parts[1])
        elif len(parts) == 3 and parts[0] == "cashier" and parts[2] == "pay" and method == "POST":
            return self._cashier_pay(parts[1], start_response)
        else:
            status, body, ctype = 404, b"Not Found", "text/plain; charset=utf-8"
        reason = {200: "OK", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}[status]
        start_response(f"{status} {reason}", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def _cashier(self, bank_ref: str) -> tuple[int, bytes, str]:
        with self._lock:
            if bank_ref in self._trades:
                _lapse(self._trades[bank_ref])
            trade = copy.deepcopy(self._trades.get(bank_ref))
        if trade is None:
            return 404, b"Unknown payment", "text/plain; charset=utf-8"
        page = CASHIER_HTML.format(
            subject=html.escape(trade["subject"]),
            amount=_major(trade["amount_minor"], trade["currency"]),
            currency=trade["currency"],
            order_id=html.escape(trade["order_id"]),
            bank_ref=html.escape(bank_ref),
            status=trade["bank_status"],
            disabled="" if trade["bank_status"] in PAYABLE_STATUSES else " disabled",
        )
        return 200, page.encode(), "text/html; charset=utf-8"

    def _cashier_pay(self, bank_ref: str, start_response: Any) -> list[bytes]:
        with self._lock:
            trade = self._trades.get(bank_ref)
            order_id, return_url = (trade["order_id"], trade["return_url"]) if trade else ("", "")
        if not trade:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Unknown payment"]
        try:
            self.pay(order_id)
        except ValueError as exc:
            body = html.escape(str(exc)).encode()
            start_response("409 Conflict", [("Content-Type", "text/plain; charset=utf-8")])
            return [body]
        if return_url:
            sep = "&" if urlsplit(return_url).query else "?"
            location = f"{return_url}{sep}{urlencode({'orderId': order_id, 'bankRef': bank_ref})}"
            start_response("303 See Other", [("Location", location), ("Content-Length", "0")])
            return [b""]
        body = PAID_HTML.format(order_id=html.escape(order_id)).encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]


def _lapse(trade: dict[str, Any]) -> None:
    """A payment still open at its expiresAt can no longer be paid: EXPIRED. Applied whenever the trade is
    looked at (callers hold the lock)."""
    if trade["bank_status"] in PAYABLE_STATUSES and trade["deadline"] is not None and time.time() >= trade["deadline"]:
        trade["bank_status"] = "EXPIRED"


def _refund_answer(refund: dict[str, Any]) -> dict[str, Any]:
    return {
        "resultCode": "ACCEPTED",
        "refundId": refund["refund_id"],
        "refundRef": refund["refund_ref"],
        "refundStatus": refund["refund_status"],
        "amountMinor": refund["amount_minor"],
        "currency": refund["currency"],
    }


def _transfer_answer(transfer: dict[str, Any]) -> dict[str, Any]:
    return {
        "resultCode": "ACCEPTED",
        "transferRef": transfer["transfer_ref"],
        "bankTransferId": transfer["bank_transfer_id"],
        "status": transfer["status"],
        "amountMinor": transfer["amount_minor"],
        "currency": transfer["currency"],
        "rejectReason": transfer["reject_reason"],
    }


def _entry(
    entry_type: str, bank_ref: str, our_ref: str, amount: int, fee: int, status: str, at: float, original: str = ""
) -> dict[str, Any]:
    return {
        "entry_type": entry_type,
        "bank_ref": bank_ref,
        "our_ref": our_ref,
        "original_ref": original,
        "amount_minor": amount,
        "fee_minor": fee,
        "status": status,
        "at": at,
    }


def _wire_entry(entry: dict[str, Any], currency: str) -> dict[str, str]:
    """An entry as the bank writes it: amounts signed as they move the balance (ENTRY_SIGNS), Beijing time."""
    amount_sign, fee_sign = ENTRY_SIGNS[entry["entry_type"]]
    return {
        "entryType": entry["entry_type"],
        "bankRef": entry["bank_ref"],
        "merchantRef": entry["our_ref"],
        "originalBankRef": entry["original_ref"],
        "amountMinor": str(entry["amount_minor"] * amount_sign),
        "feeMinor": str(entry["fee_minor"] * fee_sign),
        "currency": currency,
        "status": entry["status"],
        "bookedAt": datetime.fromtimestamp(entry["at"], BANK_DAY).isoformat(timespec="seconds"),
    }


def _entries_digest(entries: list[dict[str, str]]) -> str:
    """bank.wsdl: SHA-256 over each entry's sorted non-empty name=value pairs joined by &, each line-fed."""
    lines = ("&".join(f"{k}={v}" for k, v in sorted(e.items()) if v != "") + "\n" for e in entries)
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
    return digest.hexdigest()


def _synthetic_amount(i: int) -> int:
    return 100 + (i * 7_919) % 99_901  # 1.00 to 999.99, spread without a random generator


def _fault(code: str, message: str) -> bytes:
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    fault = etree.SubElement(etree.SubElement(env, f"{{{SOAP_ENV}}}Body"), f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = message
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def _form_request(params: dict[str, str]) -> NotifyRequest:
    return NotifyRequest(
        method="POST",
        body=urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("%s - " + fmt, self.address_string(), *args)


CASHIER_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Bank cashier</title></head>
<body><h1>Bank cashier</h1>
<p>Item: <span id="subject">{subject}</span></p>
<p>Amount: <span id="amount">{amount}</span> <span id="currency">{currency}</span></p>
<p>Order: <span id="order">{order_id}</span> &middot; Ref: <span id="bank-ref">{bank_ref}</span></p>
<p>Status: <span id="status">{status}</span></p>
<form method="post" action="/cashier/{bank_ref}/pay"><button id="pay" type="submit"{disabled}>Pay {amount} {currency}</button>
</form></body></html>"""

PAID_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Paid</title></head>
<body><h1>Paid</h1><p>Order <span id="order">{order_id}</span> is paid.</p></body></html>"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bank gateway (SOAP) simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--account-file", required=True, help="SimAccount JSON: read if present, else written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sim = BankGatewaySimulator(args.host, args.port).start()
    path = Path(args.account_file)
    if path.exists():
        account = sim.load_account(json.loads(path.read_text(encoding="utf-8")))
    else:
        account = sim.account()
    # Written on every start so base_url follows the port this run listens on.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(account), indent=2), encoding="utf-8")
    print(sim.base_url, flush=True)
    try:
        threading.Event().wait()  # serve until killed
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
