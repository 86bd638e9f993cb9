"""Bank gateway adapter: SOAP 1.1 document/literal through zeep, WS-Security UsernameToken (PasswordDigest) on
every call, HMAC-SHA256-signed form callbacks.

Payouts (Transfer / TransferQuery) also carry a body `signature` both ways: HMAC-SHA256 with the notify key over
the message's other fields (bank.wsdl's header comment, the same string as the callbacks, signing.py). An answer
whose signature does not verify is Unknown, never a state: a forged REJECTED would let the shop pay again.
zeep.helpers.serialize_object (zeep 4.3.3, zeep/helpers.py) turns the parsed answer into the field dict we verify.

Statement downloads a bank day (Asia/Shanghai) page by page, each page signed like the transfers (its entries
as one digest field). Only one page is held at a time: `statement()` fetches page 1 (so "not closed yet" is
raised at once, as Retryable) and the lines iterator fetches the next page when the previous one is used up. Each
page is taken raw (zeep's `raw_response` setting, then `SoapBinding.process_reply`, zeep/wsdl/bindings/soap.py)
so that `source_hash` is the sha256 of the bytes as the bank sent them, pages in order. The day's control totals
come on every page; they must be the same on every page and match the lines, else the statement is Unknown.

Balance (capability BALANCE) is the WSDL's Balance operation: availableMinor and pendingMinor (reserved for
transfers not final) in the account's currency, with the bank's asOf, signed both ways like the transfers.

The WSDL ships with this package and is parsed once per process; each account gets its own ServiceProxy bound
to `account.base_url + "/soap"`, so nothing is ever fetched from the bank to describe the service.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

import requests
import zeep
import zeep.exceptions
import zeep.helpers
from lxml import etree
from urllib3.exceptions import ConnectTimeoutError
from zeep.wsdl import Document
from zeep.wsse.username import UsernameToken

from core.crypto import constant_time_equals
from core.money import Money, MoneyError
from payments.channels.bankgw import signing, wire
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
    Statement,
    StatementKind,
    StatementLine,
    StatementTotals,
    Terminal,
    Unknown,
    decline_code_or_empty,
)

# One pool for every account: zeep's Transport only forwards our timeouts to it.
_session = requests.Session()


@functools.cache
def _wsdl() -> Document:
    # A local file: zeep opens it directly, the transport here is never used for the network.
    return Document(str(wire.WSDL_PATH), zeep.Transport(session=_session, timeout=5), settings=zeep.Settings())


def _nothing_sent(exc: requests.ConnectionError) -> bool:
    """Refused / unresolvable / connect timeout: the request never left. A reset after sending is not this."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError and NameResolutionError subclass it


class BankGatewayAdapter:
    code: ClassVar[str] = "bankgw"
    # The buyer-facing payment methods this channel can take (routing matches the buyer's choice).
    methods: ClassVar[frozenset[str]] = frozenset({"bank"})
    # The bank posts its signed form callbacks.
    notify_methods: ClassVar[frozenset[str]] = frozenset({"POST"})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.QUERY,
            Capability.CLOSE,
            Capability.REFUND,
            Capability.PARTIAL_REFUND,
            Capability.PAYOUT,
            Capability.STATEMENT,
            Capability.BALANCE,
        }
    )

    def __init__(self, account: AccountConfig) -> None:
        self.account = account
        creds = account.credentials
        self._username = creds.get("username", "")
        self._password = creds.get("password", "")
        self._notify_key = creds.get("notify_key", "")
        # zeep's operation_timeout defaults to None (wait forever); `timeout` covers document loads.
        transport = zeep.Transport(session=_session, timeout=account.timeouts, operation_timeout=account.timeouts)
        # A fresh nonce and Created are generated on every call, so one token object serves them all.
        wsse = UsernameToken(self._username, self._password, use_digest=True, zulu_timestamp=True)
        self._client = zeep.Client(_wsdl(), wsse=wsse, transport=transport)
        self._service = self._client.create_service(wire.BINDING, account.base_url.rstrip("/") + wire.SOAP_PATH)

    @staticmethod
    def notification_reference(inbound: Inbound) -> str:
        return inbound.params.get("orderId", "")

    @staticmethod
    def ack(ok: bool) -> Ack:
        # The bank stops retrying only on a 200 whose body is exactly OK.
        return Ack(200, "OK") if ok else Ack(400, "REJECTED")

    # ---- calls -------------------------------------------------------------
    def _call(self, operation: str, **params: Any) -> Any:
        return self._guarded(operation, lambda: self._service[operation](merchantId=self.account.merchant_no, **params))

    def _call_raw(self, operation: str, **params: Any) -> tuple[Any, bytes]:
        """`_call` that also returns the answer's bytes as received (what a statement's source_hash covers)."""

        def send() -> tuple[Any, bytes]:
            with self._client.settings(raw_response=True):  # a thread-local override in zeep's Settings
                response = self._service[operation](merchantId=self.account.merchant_no, **params)
            binding = self._client.wsdl.bindings[wire.BINDING]
            return binding.process_reply(self._client, binding.get(operation), response), response.content

        return self._guarded(operation, send)

    def _guarded(self, operation: str, send: Callable[[], Any]) -> Any:
        """Run one SOAP exchange, every failure mapped to Retryable / Terminal / Unknown."""
        if not (self._username and self._password):
            raise Terminal("bank gateway account has no username/password", code="no_credentials")
        try:
            return send()
        except requests.ConnectionError as exc:
            if _nothing_sent(exc):
                raise Retryable(f"bank gateway unreachable: {type(exc).__name__}", code="connect") from exc
            raise Unknown(f"bank gateway connection lost: {type(exc).__name__}", code="connection_lost") from exc
        except requests.Timeout as exc:
            raise Unknown(f"bank gateway {operation} timed out", code="timeout") from exc
        except (
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidURL,
        ) as exc:
            raise Terminal(f"bank gateway base_url is not usable: {type(exc).__name__}", code="bad_base_url") from exc
        except requests.RequestException as exc:
            raise Unknown(f"bank gateway {operation} failed: {type(exc).__name__}", code="http_error") from exc
        except zeep.exceptions.Fault as exc:
            if exc.code is None:  # zeep's name for a non-200 answer whose XML holds no Fault (a proxy's page)
                message = f"bank gateway {operation} answered an error without a SOAP Fault"
                raise Unknown(message, code="bad_response") from exc
            error = wire.fault_error(exc.code)
            code = "soap_fault_client" if error is Terminal else "soap_fault"
            raise error(f"bank gateway fault {exc.code}: {exc.message or ''}"[:200], code=code) from exc
        except zeep.exceptions.TransportError as exc:
            raise self._http_error(operation, exc.status_code) from exc
        except zeep.exceptions.ValidationError as exc:  # raised while building our request: nothing sent
            raise Terminal(f"bank gateway {operation} request invalid: {exc.message}"[:200], code="invalid") from exc
        except (zeep.exceptions.Error, etree.LxmlError) as exc:
            raise Unknown(f"bank gateway {operation} answer not understood", code="bad_response") from exc

    @staticmethod
    def _http_error(operation: str, status: int) -> Exception:
        if status >= 500:
            return Unknown(f"bank gateway {operation} answered HTTP {status}", code="http_5xx")
        if status == 429:
            return Retryable(f"bank gateway {operation} throttled", code="throttled")
        if 400 <= status < 500:
            return Terminal(f"bank gateway {operation} answered HTTP {status}", code="http_4xx")
        return Unknown(f"bank gateway {operation} answered HTTP {status} without SOAP", code="bad_response")

    @staticmethod
    def _result_code(answer: Any) -> str:
        return str(getattr(answer, "resultCode", "") or "")

    @staticmethod
    def _refused(operation: str, answer: Any) -> Exception:
        """An answer other than ACCEPTED / NOT_FOUND: DECLINED is final, everything else unknown."""
        code = str(getattr(answer, "resultCode", "") or "")
        message = f"bank gateway {operation} {code or 'without resultCode'}: {getattr(answer, 'resultMessage', '')}"
        if code == wire.DECLINED:
            return Terminal(message[:200], code="declined")
        return Unknown(message[:200], code="system_error" if code == wire.SYSTEM_ERROR else "bad_response")

    @staticmethod
    def _money(amount_minor: Any, currency: Any, operation: str) -> Money:
        if not isinstance(amount_minor, int) or isinstance(amount_minor, bool):
            raise Unknown(f"bank gateway {operation} answered without an amount", code="bad_response")
        try:
            return Money(amount_minor, str(currency or ""))
        except MoneyError as exc:
            raise Unknown(f"bank gateway {operation} amount not understood", code="bad_response") from exc

    # ---- payments ----------------------------------------------------------
    def create(self, order: CreateOrder) -> Created:
        answer = self._call(
            "CreatePayment",
            orderId=order.out_trade_no,
            amountMinor=order.amount.amount_minor,
            currency=order.amount.currency,
            subject=order.subject[:120],
            notifyUrl=order.notify_url,
            returnUrl=order.return_url or None,
            expiresAt=wire.expires_at(order.expires_at) if order.expires_at else None,
        )
        code = self._result_code(answer)
        outcome = wire.CREATE_RESULT.get(code, wire.CreateOutcome.UNKNOWN)
        if outcome is wire.CreateOutcome.TERMINAL:
            raise self._refused("CreatePayment", answer)
        if outcome is wire.CreateOutcome.UNKNOWN:
            raise Unknown(f"bank gateway CreatePayment answered {code or 'no resultCode'}", code="system_error")
        bank_ref = str(answer.bankRef or "")
        cashier_url = str(answer.cashierUrl or "")
        # REVIEW may come without a cashier (the bank decides first); ACCEPTED must carry one.
        if not bank_ref or (code == wire.ACCEPTED and not cashier_url):
            raise Unknown("bank gateway CreatePayment accepted without bankRef/cashierUrl", code="bad_response")
        return Created(provider_trade_no=bank_ref, pay_url=cashier_url, qr_content=cashier_url)

    def query(self, out_trade_no: str, provider_trade_no: str = "") -> Observation | None:
        answer = self._call("QueryPayment", orderId=out_trade_no)
        code = self._result_code(answer)
        if code == wire.NOT_FOUND:
            return None
        if code != wire.ACCEPTED:
            raise self._refused("QueryPayment", answer)
        if str(answer.orderId or "") != out_trade_no:
            raise Unknown("bank gateway QueryPayment answered for another order", code="bad_response")
        bank_status = str(answer.status or "")
        status = wire.PAYMENT_STATUS.get(bank_status)
        if status is None:
            raise Unknown(f"bank gateway status {bank_status[:32]!r} not understood", code="bad_response")
        bank_ref = str(answer.bankRef or "")
        return Observation(
            out_trade_no=out_trade_no,
            provider_trade_no=bank_ref,
            status=status,
            amount=self._money(answer.amountMinor, answer.currency, "QueryPayment"),
            event_key=f"{bank_ref}:query:{bank_status}",
            provider_status=bank_status,
            decline_code=_decline_code(status, bank_status, answer.declineReason),
        )

    def close(self, out_trade_no: str, provider_trade_no: str = "") -> None:
        answer = self._call("ClosePayment", orderId=out_trade_no)
        code = self._result_code(answer)
        # NOT_FOUND: the create never reached the bank, so there is nothing that could still be paid.
        if code in (wire.ACCEPTED, wire.NOT_FOUND):
            return
        if code == wire.DECLINED:
            raise Terminal(f"bank gateway refused to close: status {answer.status}", code="not_closable")
        raise self._refused("ClosePayment", answer)

    # ---- refunds -----------------------------------------------------------
    def refund(self, request: RefundRequest) -> RefundObservation:
        answer = self._call(
            "Refund",
            orderId=request.out_trade_no,
            refundId=request.refund_no,
            amountMinor=request.amount.amount_minor,
            currency=request.amount.currency,
            reason=request.reason[:120] or None,
            notifyUrl=request.notify_url or None,
        )
        code = self._result_code(answer)
        if code == wire.NOT_FOUND:
            raise Terminal("bank gateway does not know the payment to refund", code="not_found")
        if code != wire.ACCEPTED:
            raise self._refused("Refund", answer)
        return self._refund_observation(answer, request.refund_no, "Refund")

    def refund_query(self, request: RefundRequest) -> RefundObservation | None:
        answer = self._call("QueryRefund", refundId=request.refund_no)
        code = self._result_code(answer)
        if code == wire.NOT_FOUND:
            return None
        if code != wire.ACCEPTED:
            raise self._refused("QueryRefund", answer)
        return self._refund_observation(answer, request.refund_no, "QueryRefund")

    def _refund_observation(self, answer: Any, refund_no: str, operation: str) -> RefundObservation:
        if str(answer.refundId or "") != refund_no:
            raise Unknown(f"bank gateway {operation} answered for another refund", code="bad_response")
        bank_status = str(answer.refundStatus or "")
        state = wire.REFUND_STATUS.get(bank_status)
        if state is None:
            raise Unknown(f"bank gateway refundStatus {bank_status[:32]!r} not understood", code="bad_response")
        refund_ref = str(answer.refundRef or "")
        return RefundObservation(
            refund_no=refund_no,
            provider_refund_no=refund_ref,
            status=state,
            amount=self._money(answer.amountMinor, answer.currency, operation),
            provider_status=bank_status,
            event_key=f"{refund_ref}:{bank_status}",
        )

    # ---- payouts -----------------------------------------------------------
    def payout(self, request: PayoutRequest) -> PayoutObservation:
        answer = self._signed_call(
            "Transfer",
            transferRef=request.payout_no,
            amountMinor=request.amount.amount_minor,
            currency=request.amount.currency,
            payeeAccount=request.payee,
            payeeName=request.payee_name,
            remark=request.remark[: wire.TRANSFER_REMARK_MAX] or None,
        )
        code = self._result_code(answer)
        if code != wire.ACCEPTED:  # NOT_FOUND has no meaning here: _refused makes it Unknown
            raise self._refused("Transfer", answer)
        return self._payout_observation(answer, request, "Transfer")

    def payout_query(self, request: PayoutRequest) -> PayoutObservation | None:
        answer = self._signed_call("TransferQuery", transferRef=request.payout_no)
        code = self._result_code(answer)
        if code == wire.NOT_FOUND:
            return None
        if code != wire.ACCEPTED:
            raise self._refused("TransferQuery", answer)
        return self._payout_observation(answer, request, "TransferQuery")

    def _signed_call(self, operation: str, **params: Any) -> Any:
        """`_call` with the body signature added to the request and checked on the answer."""
        answer = self._call(operation, **self._signed_params(params))
        self._verify_answer(operation, zeep.helpers.serialize_object(answer, dict))
        return answer

    def _signed_params(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self._notify_key:
            raise Terminal("bank gateway account has no notify_key to sign requests", code="no_credentials")
        fields = {"merchantId": self.account.merchant_no, **params}
        signature = signing.sign({k: str(v) for k, v in fields.items() if v is not None}, self._notify_key)
        return {**params, "signature": signature}

    def _verify_answer(self, operation: str, values: Any) -> None:
        """The answer's body signature, over its scalar fields as written (and a Statement page's entries digest)."""
        if not isinstance(values, dict):
            raise Unknown(f"bank gateway {operation} answer not understood", code="bad_response")
        signed = {k: str(v) for k, v in values.items() if v is not None and k != "entries"}
        if (entries := _statement_entries(values)) is not None:
            signed["entries"] = signing.entries_digest(_written(entry) for entry in entries)
        if not signing.verify(signed, self._notify_key):
            raise Unknown(f"bank gateway {operation} answer signature does not verify", code="bad_signature")

    def _payout_observation(self, answer: Any, request: PayoutRequest, operation: str) -> PayoutObservation:
        if str(answer.transferRef or "") != request.payout_no:
            raise Unknown(f"bank gateway {operation} answered for another transfer", code="bad_response")
        bank_status = str(answer.status or "")
        state = wire.TRANSFER_STATUS.get(bank_status)
        if state is None:
            raise Unknown(f"bank gateway transfer status {bank_status[:32]!r} not understood", code="bad_response")
        amount = self._money(answer.amountMinor, answer.currency, operation)
        # Another amount means transferRef was first used for another transfer: what it paid is not this payout.
        if amount != request.amount:
            raise Unknown(f"bank gateway {operation} answered for another amount", code="amount_mismatch")
        reason = ""
        if state is PayoutState.FAILED:
            reason = decline_code_or_empty(answer.rejectReason) or wire.TRANSFER_REJECTED
        return PayoutObservation(
            payout_no=request.payout_no,
            provider_payout_no=str(answer.bankTransferId or ""),
            status=state,
            amount=amount,
            provider_status=bank_status,
            failure_reason=reason,
        )

    # ---- balance -----------------------------------------------------------
    def balance(self) -> ChannelBalance:
        """Balance: available and pending (reserved for transfers not final) in the account's currency, signed
        both ways like the transfers. A timeout or a failing bank is Retryable (a read moved nothing)."""
        operation = "Balance"
        try:
            answer = self._signed_call(operation, currency=self.account.currency)
        except Unknown as exc:
            if exc.code in wire.STATEMENT_RETRY_CODES:
                raise Retryable(str(exc), code=exc.code) from exc
            raise
        if self._result_code(answer) != wire.ACCEPTED:
            error = self._refused(operation, answer)
            if isinstance(error, Unknown) and error.code == "system_error":
                raise Retryable(str(error), code=error.code)
            raise error
        available = self._money(answer.availableMinor, answer.currency, operation)
        pending = self._money(answer.pendingMinor, answer.currency, operation)
        if available.currency != self.account.currency:
            raise Unknown("bank gateway balance answered another currency", code="bad_response")
        try:
            as_of = wire.statement_booked_at(answer.asOf) if answer.asOf else None
        except ValueError as exc:
            raise Unknown("bank gateway balance asOf not understood", code="bad_response") from exc
        return ChannelBalance(available=available, pending=pending, as_of=as_of, provider_status=operation)

    # ---- statement ---------------------------------------------------------
    def statement(self, day: date) -> Statement:
        digest = hashlib.sha256()
        first = self._statement_page(day, 1, digest)
        currency = self.account.currency
        totals = StatementTotals(
            count=first.entry_count, amount=Money(first.net_minor, currency), fee=Money(first.fee_minor, currency)
        )
        statement = Statement(day=day, lines=iter(()), totals=totals)
        statement.lines = self._statement_lines(statement, first, digest)
        return statement

    def _statement_lines(self, statement: Statement, first: _Page, digest: Any) -> Iterator[StatementLine]:
        """Yields every entry, page after page; at the end checks the totals and fills source_hash."""
        expected = (first.page_count, first.entry_count, first.net_minor, first.fee_minor)
        page: _Page | None = first
        del first  # only the page being read is held
        count = net = fee = 0
        while page is not None:
            for entry in page.entries:
                count += 1
                line = self._statement_line(statement.day, entry, count)  # checks the entry first
                net += entry["amountMinor"]
                fee += entry["feeMinor"]
                yield line
            number = page.number
            page = None  # let it go before the next one arrives
            if number < expected[0]:
                page = self._statement_page(statement.day, number + 1, digest)
                if (page.page_count, page.entry_count, page.net_minor, page.fee_minor) != expected:
                    raise Unknown("bank gateway statement changed between pages", code="statement_changed")
        if (count, net, fee) != expected[1:]:
            message = (
                f"bank gateway statement of {statement.day} lists {count} entries, net {net}, fees {fee}; its "
                f"totals say {expected[1]}, {expected[2]}, {expected[3]}"
            )
            raise Unknown(message, code="totals_mismatch")
        statement.source_hash = digest.hexdigest()

    def _statement_page(self, day: date, number: int, digest: Any) -> _Page:
        try:
            return self._statement_page_once(day, number, digest)
        except Unknown as exc:
            if exc.code in wire.STATEMENT_RETRY_CODES:  # a download moved nothing: ask again later
                raise Retryable(str(exc), code=exc.code) from exc
            raise

    def _statement_page_once(self, day: date, number: int, digest: Any) -> _Page:
        operation = "Statement"
        params = {"statementDate": day.isoformat(), "page": number, "pageSize": wire.STATEMENT_PAGE_SIZE}
        answer, raw = self._call_raw(operation, **self._signed_params(params))
        digest.update(raw)
        values = zeep.helpers.serialize_object(answer, dict)
        self._verify_answer(operation, values)  # before anything is believed, NOT_READY included
        code = self._result_code(answer)
        if code == wire.NOT_READY:
            raise Retryable(f"bank gateway statement of {day} is not ready yet", code="not_ready")
        if code != wire.ACCEPTED:
            raise self._refused(operation, answer)
        if values.get("statementDate") != day.isoformat() or values.get("page") != number:
            raise Unknown(
                f"bank gateway statement answered for another day or page than {day} p{number}", code="bad_response"
            )
        counts = [values.get(k) for k in ("pageCount", "entryCount", "netAmountMinor", "feeTotalMinor")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts) or counts[0] < number:
            raise Unknown("bank gateway statement page without its counts", code="bad_response")
        return _Page(number, *counts, entries=_statement_entries(values) or [])

    def _statement_line(self, day: date, entry: dict[str, Any], line_no: int) -> StatementLine:
        entry_type = entry.get("entryType")
        kind = wire.STATEMENT_KIND.get(entry_type)  # type: ignore[arg-type]
        where = f"bank gateway statement of {day} line {line_no}"
        if kind is None:
            raise Unknown(f"{where}: entryType {str(entry_type)[:16]!r} not understood", code="bad_response")
        amount_sign, fee_sign = wire.STATEMENT_SIGNS[entry_type]
        signed = entry.get("amountMinor"), entry.get("feeMinor")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in signed):
            raise Unknown(f"{where}: amountMinor or feeMinor missing", code="bad_response")
        amount, fee = signed[0] * amount_sign, signed[1] * fee_sign
        if amount < 0 or fee < 0:
            raise Unknown(f"{where}: {entry_type} booked in the wrong direction", code="bad_response")
        if entry.get("currency") != self.account.currency:
            raise Unknown(f"{where}: currency is not the account's", code="bad_response")
        try:
            occurred_at = wire.statement_booked_at(entry.get("bookedAt"))
        except ValueError as exc:
            raise Unknown(f"{where}: bookedAt not understood", code="bad_response") from exc
        if occurred_at.astimezone(wire.STATEMENT_ZONE).date() != day:
            raise Unknown(f"{where}: booked on another bank day", code="bad_response")
        bank_ref, status = entry.get("bankRef") or "", entry.get("status") or ""
        trade_ref = entry.get("originalBankRef") or ""
        if not bank_ref or not status or (kind is StatementKind.REFUND and not trade_ref):
            raise Unknown(f"{where}: bankRef, status or originalBankRef missing", code="bad_response")
        return StatementLine(
            kind=kind,
            provider_ref=bank_ref,
            our_ref=entry.get("merchantRef") or "",
            amount=self._money(amount, self.account.currency, "Statement"),
            fee=self._money(fee, self.account.currency, "Statement"),
            status=status,
            occurred_at=occurred_at,
            trade_ref=trade_ref,
            line_no=line_no,
        )

    # ---- callbacks ---------------------------------------------------------
    def verify_notification(self, inbound: Inbound) -> Observation | RefundObservation:
        """Signature, timestamp window, merchant, then the status table. The nonce is signed but not
        remembered: a replay inside the window carries the same event_key and is applied once."""
        params = inbound.params
        if not self._notify_key:
            raise NotificationInvalid("no_credentials", "channel account has no notify_key; notify refused")
        is_refund = "refundId" in params
        required = wire.REFUND_NOTIFY_REQUIRED if is_refund else wire.NOTIFY_REQUIRED
        missing = [k for k in required if not params.get(k)]
        if missing:
            raise NotificationInvalid("missing_fields", f"missing fields: {', '.join(missing)}")
        if not signing.verify(params, self._notify_key):
            raise NotificationInvalid("bad_signature", "signature does not verify")
        self._check_fresh(params["timestamp"])
        if not constant_time_equals(params["merchantId"], self.account.merchant_no):
            raise NotificationInvalid("wrong_merchant", "merchantId is not this channel account's")
        amount = self._notify_money(params)
        if is_refund:
            return self._refund_notification(params, amount)
        bank_status = params["status"]
        status = wire.PAYMENT_STATUS.get(bank_status)
        if status is None:
            raise NotificationInvalid("unknown_status", f"status {bank_status[:32]!r} not understood")
        return Observation(
            out_trade_no=params["orderId"],
            provider_trade_no=params["bankRef"],
            status=status,
            amount=amount,
            event_key=f"{params['bankRef']}:{bank_status}",
            provider_status=bank_status,
            decline_code=_decline_code(status, bank_status, params.get("declineReason")),
        )

    @staticmethod
    def _refund_notification(params: Mapping[str, str], amount: Money) -> RefundObservation:
        bank_status = params["refundStatus"]
        state = wire.REFUND_NOTIFY_STATUS.get(bank_status)
        if state is None:
            raise NotificationInvalid("status_not_final", f"refundStatus {bank_status[:32]!r} is not final")
        return RefundObservation(
            refund_no=params["refundId"],  # we send our refund_no as refundId
            provider_refund_no=params["refundRef"],
            status=state,
            amount=amount,
            provider_status=bank_status,
            event_key=f"{params['refundRef']}:{bank_status}",
        )

    @staticmethod
    def _check_fresh(timestamp: str) -> None:
        try:
            sent_at = wire.parse_timestamp(timestamp)
        except ValueError as exc:
            raise NotificationInvalid("bad_timestamp", "timestamp is not unix seconds") from exc
        if abs(time.time() - sent_at) > wire.NOTIFY_WINDOW_SECONDS:
            raise NotificationInvalid("stale_timestamp", "timestamp outside the 300 s window")

    @staticmethod
    def _notify_money(params: Mapping[str, str]) -> Money:
        try:
            return Money(wire.parse_minor(params["amountMinor"]), params["currency"])
        except (ValueError, MoneyError) as exc:  # MoneyError is a ValueError; named for the reader
            raise NotificationInvalid("bad_amount", "amountMinor/currency not understood") from exc


@dataclass(frozen=True)
class _Page:
    """One verified Statement page: its number, the day's counts (the same on every page) and its entries."""

    number: int
    page_count: int
    entry_count: int
    net_minor: int
    fee_minor: int
    entries: list[dict[str, Any]]


def _statement_entries(values: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """A Statement answer's entries as zeep serialised them ({"entry": [...]}), None when it has none."""
    wrapper = values.get("entries")
    entries = wrapper.get("entry") if isinstance(wrapper, dict) else None
    if wrapper is not None and not (isinstance(entries, list) and all(isinstance(e, dict) for e in entries)):
        raise Unknown("bank gateway Statement entries not understood", code="bad_response")
    return entries or None


def _written(entry: Mapping[str, Any]) -> dict[str, str]:
    """An entry's fields as the bank wrote them (longs as plain digits), for its signing string."""
    return {k: str(v) for k, v in entry.items() if v is not None}


def _decline_code(status: ObservedStatus, bank_status: str, reason: object) -> str:
    """A DECLINED's reason: the issuer's declineReason when the bank gives a code, else its word DECLINED."""
    if status != ObservedStatus.FAILED:
        return ""
    return decline_code_or_empty(reason) or bank_status
