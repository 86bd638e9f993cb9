"""Stripe adapter through the `stripe` SDK: Checkout Sessions (the provider-hosted payment page), Refunds, Connect
transfers (payouts) and signed webhook events.

Card data never reaches the shop: create() makes a Checkout Session and the buyer is sent to its `url`, on
Stripe's own origin, where the card is typed; Stripe sends them back to our order page.

Identity: a payment's provider_trade_no is the Checkout Session id (cs_...). It is the only id the create
answer has (since API 2022-08-01 the session's PaymentIntent is made when the buyer first submits a card), it
is what the buyer pays on and what close() expires, and Stripe gives a session at most one PaymentIntent
(retries after a decline reuse it). Session events carry it as their object's id; a payment_intent.succeeded
event names only the intent, so the adapter asks Stripe which session holds that intent (list sessions by
payment_intent) and reports that session's id. A decline (payment_intent.payment_failed) only leaves a note on
the payment its signed metadata names, so it needs no identity and no lookup: verification runs while the
payment row is locked, and must not wait on Stripe. An intent that belongs to no session of ours (made outside
Checkout, still carrying our out_trade_no in its metadata) is reported with its own pi_ id, so the caller sees
it as the separate collection it is; it is never mapped onto the stored session.

The webhook endpoint subscribes to checkout.session.completed / .expired / .async_payment_succeeded /
.async_payment_failed, payment_intent.payment_failed (Checkout has no session event for a decline) and the
refund events. payment_intent.succeeded repeats checkout.session.completed and costs a session lookup: it is
understood, but need not be subscribed.

Payouts are Connect transfers from the platform balance to the payee's connected account (acct_...): POST
/v1/transfers with amount, currency, destination, transfer_group = metadata[payout_no] = our payout_no and
`Idempotency-Key: payout-<payout_no>`; queried by GET /v1/transfers?transfer_group= (or /v1/transfers/{tr_id}).
A transfer has no pending state: it exists (paid) or the create was refused; `reversed` is true only once it was
reversed in full. Relied on: stripe-python 16 `TransferService.create/list/retrieve` and its Transfer params
(transfer_group, destination filters), the API reference "Create a transfer" (returns the transfer unless an
initial error such as insufficient funds) and "Idempotent requests" (same key + same parameters replays the
first answer, other parameters are an idempotency_error; keys are kept 24 hours). Refusal codes:
`balance_insufficient` (Stripe's error code list), `insufficient_capabilities_for_transfer` (as Stripe answers a
destination without the transfers capability, arlyon/async-stripe#636), `account_invalid`, and
resource_missing on param=destination ("No such destination").

The day's statement (capability STATEMENT) is the list of balance transactions created in that UTC day (Stripe's
day is UTC: `created` is a Unix time and the list filters on it): GET /v1/balance_transactions with created[gte] /
created[lt], limit=100 and expand[]=data.source, paged by starting_after=<last id> while has_more, one page in
memory at a time. Balance transactions carry no metadata (Stripe support, "How metadata works with related
objects": a balance transaction does not inherit its payment's metadata; a confirmed PaymentIntent's metadata is
copied onto its Charge), so our number comes from the expanded source: the charge's metadata out_trade_no (copied
from payment_intent_data.metadata), the refund's refund_no, the transfer's payout_no. Stripe publishes no control
totals for this list (totals stay None) and no hash: source_hash is the sha256 of the pages' bodies as received
(set once the last page was read), and each transaction is checked for itself (net = amount - fee, fee = the sum
of fee_details, created in the day, amount signed as its type says); one that does not add up is Unknown. A day
that has not ended yet is Retryable.
Relied on: stripe-python 16 `BalanceTransactionService.list` and its BalanceTransactionListParams (created
gte/lt, limit 1..100, starting_after, expand), the API reference "The Balance Transaction object" (amount signed
by direction, fee, fee_details, net, type, reporting_category, source expandable, status available/pending) and
"Pagination" (has_more, starting_after); pages are read with StripeClient.raw_request (same request, the JSON
left as sent). A refusal or an unreachable Stripe is raised by statement() itself (the first page is read there);
a later page that is corrupt raises Unknown from the line iterator, a later timeout or 5xx Retryable.

`import stripe` below is the SDK, not this package: imports are absolute, and payments/channels/stripe/ never
runs as a script, so its directory is never put on sys.path where it would shadow the SDK.

The balance (capability BALANCE) is GET /v1/balance (stripe-python 16 `BalanceService.retrieve`; the API reference
"The Balance object": `available` and `pending`, lists of {amount, currency, source_types}, amounts signed): both
read for the account's currency. Stripe's answers are not signed (TLS is the proof), so what is checked is the shape:
an entry that is not an integer amount in a currency code is Unknown. A timeout or 5xx is Retryable (a read).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import requests
import stripe
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from core.crypto import constant_time_equals
from core.money import Money, MoneyError
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
    Retryable,
    Statement,
    StatementKind,
    StatementLine,
    Terminal,
    Unknown,
    decline_code_or_empty,
)
from payments.channels.stripe import wire

logger = logging.getLogger(__name__)

# With telemetry on, the SDK writes an id file under ~/.config/stripe and reports request timings to the
# provider in headers; neither belongs in a shop server.
stripe.enable_telemetry = False


class StripeAdapter:
    code: ClassVar[str] = "stripe"
    # The buyer-facing payment methods this channel can take (routing matches the buyer's choice).
    methods: ClassVar[frozenset[str]] = frozenset({"card"})
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
    # Stripe delivers every webhook event as a POST with a JSON body.
    notify_methods: ClassVar[frozenset[str]] = frozenset({"POST"})

    def __init__(self, account: AccountConfig) -> None:
        self.account = account
        creds = account.credentials
        self._secret_key = creds.get("secret_key", "")
        # During a rotation the endpoint has several secrets: any one verifying is enough.
        self._webhook_secrets = tuple(s.strip() for s in creds.get("webhook_secret", "").split(",") if s.strip())
        self._base_url = account.base_url.rstrip("/")
        connect, read = account.timeouts
        self._client = stripe.StripeClient(
            self._secret_key,
            base_addresses={"api": self._base_url},
            # Retries are the caller's decision: a retried POST after a read timeout must not be invisible.
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=(connect, read)),
        )

    @staticmethod
    def notification_reference(inbound: Inbound) -> str:
        try:
            event = json.loads(inbound.body)
        except (ValueError, UnicodeDecodeError):
            return ""
        obj = _dig(event, "data", "object")
        if isinstance(obj, dict) and obj.get("object") == "checkout.session":
            reference = obj.get("client_reference_id")
            return reference if isinstance(reference, str) else _meta(obj, wire.META_OUT_TRADE_NO)
        return _meta(obj, wire.META_OUT_TRADE_NO) or _meta(_charge_refund(obj), wire.META_OUT_TRADE_NO)

    @staticmethod
    def ack(ok: bool) -> Ack:
        # Stripe only looks at the status: any 2xx stops the retries.
        if ok:
            return Ack(200, '{"received": true}', "application/json")
        return Ack(400, '{"received": false}', "application/json")

    # ---- API calls ---------------------------------------------------------
    def _call(
        self, what: str, request: Callable[[], Any], *, missing_ok: bool = False, raw: bool = False
    ) -> dict[str, Any] | None:
        """Run one SDK call and map every SDK failure to our typed errors; returns the answer as a plain dict.

        `raw`: the call is a `raw_request`, whose answer is the parsed JSON as sent (no StripeObject is built)."""
        if not self._secret_key:
            raise Terminal("stripe account has no secret_key", code="no_credentials")
        try:
            answer = request()
        except stripe.APIConnectionError as exc:
            if _nothing_sent(exc):
                raise Retryable(f"stripe unreachable during {what}", code="connect") from exc
            raise Unknown(f"stripe {what}: no answer ({type(exc.__cause__).__name__})", code="timeout") from exc
        except stripe.RateLimitError as exc:
            raise Retryable(f"stripe rate-limited {what}", code="rate_limited") from exc
        except stripe.InvalidRequestError as exc:
            if missing_ok and exc.http_status == 404:
                return None
            raise Terminal(f"stripe refused {what}: {_reason(exc)}", code=exc.code or "invalid_request") from exc
        except (stripe.AuthenticationError, stripe.PermissionError, stripe.CardError, stripe.IdempotencyError) as exc:
            raise Terminal(f"stripe refused {what}: {_reason(exc)}", code=exc.code or type(exc).__name__) from exc
        except stripe.StripeError as exc:
            # APIError: 5xx, 409 (a concurrent request on the same key) or an unreadable answer after sending.
            status = exc.http_status or 0
            code = "http_5xx" if status >= 500 else "conflict" if status == 409 else "bad_response"
            raise Unknown(f"stripe {what} answered {status}: {_reason(exc)}", code=code) from exc
        if raw and isinstance(answer, stripe.StripeResponse) and isinstance(answer.data, dict):
            return answer.data
        if raw or not isinstance(answer, stripe.StripeObject):
            raise Unknown(f"stripe {what} answered an unexpected shape", code="bad_response")
        return answer.to_dict()

    def create(self, order: CreateOrder) -> Created:
        out_trade_no = order.out_trade_no
        amount_minor, currency = order.amount.amount_minor, wire.currency_out(order.amount.currency)
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount_minor,
                        "product_data": {"name": order.subject[:250] or out_trade_no},
                    },
                }
            ],
            "payment_method_types": ["card"],
            "client_reference_id": out_trade_no,
            "metadata": {wire.META_OUT_TRADE_NO: out_trade_no},
            # Copied onto the PaymentIntent Checkout makes, so payment_intent.* events name our order too.
            "payment_intent_data": {
                "description": order.subject[:1000],
                "metadata": {wire.META_OUT_TRADE_NO: out_trade_no},
            },
            # The buyer comes back to our order page either way; the webhook, not this redirect, decides.
            "success_url": order.return_url,
            "cancel_url": order.return_url,
        }
        expires_at = wire.session_expires_at(order.expires_at, now=time.time())
        if expires_at is not None:
            params["expires_at"] = expires_at
        options = {"idempotency_key": wire.create_idempotency_key(out_trade_no)}
        session = (
            self._call("create", lambda: self._client.v1.checkout.sessions.create(params=params, options=options)) or {}
        )
        session_id, url = str(session.get("id") or ""), session.get("url")
        if not session_id.startswith("cs_") or not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise Unknown("stripe create answered without a session id or url", code="bad_response")
        if session.get("client_reference_id") != out_trade_no or _session_amount(session) != order.amount:
            raise Unknown("stripe create answered for another order", code="bad_response")
        return Created(provider_trade_no=session_id, pay_url=url)

    def _retrieve_session(self, session_id: str, out_trade_no: str) -> dict[str, Any] | None:
        session = self._call(
            "retrieve", lambda: self._client.v1.checkout.sessions.retrieve(session_id), missing_ok=True
        )
        if session is not None and _session_reference(session) != out_trade_no:
            raise Unknown("stripe answered a session of another order", code="bad_response")
        return session

    def _session_of_intent(self, intent_id: str) -> dict[str, Any] | None:
        """The Checkout Session that made this PaymentIntent; None for an intent made outside Checkout."""
        params = {"payment_intent": intent_id, "limit": 1}
        found = self._call("session list", lambda: self._client.v1.checkout.sessions.list(params=params))
        data = (found or {}).get("data") or []
        return data[0] if data and isinstance(data[0], dict) else None

    def _find_intent(self, out_trade_no: str, intent_id: str = "") -> dict[str, Any] | None:
        if intent_id:
            intent = self._call(
                "retrieve", lambda: self._client.v1.payment_intents.retrieve(intent_id), missing_ok=True
            )
            if intent is not None and _meta(intent, wire.META_OUT_TRADE_NO) != out_trade_no:
                raise Unknown("stripe answered an intent of another order", code="bad_response")
            return intent
        # Our number travels in the intent's metadata (payment_intent_data.metadata): search by it.
        query = {"query": wire.search_query(out_trade_no), "limit": 10}
        found = self._call("search", lambda: self._client.v1.payment_intents.search(params=query))
        matches = [
            pi
            for pi in (found or {}).get("data") or []
            if isinstance(pi, dict) and _meta(pi, wire.META_OUT_TRADE_NO) == out_trade_no
        ]
        # create is idempotent per out_trade_no, so one is expected; should there be more, a paid one wins.
        return next((pi for pi in matches if pi.get("status") == "succeeded"), matches[0] if matches else None)

    def _find_session(self, out_trade_no: str, session_id: str) -> dict[str, Any] | None:
        if session_id:
            return self._retrieve_session(session_id, out_trade_no)
        # The create answer never came (UNKNOWN), so nobody was shown the session's URL. Checkout Sessions
        # cannot be searched; a session that took a card has an intent carrying our number, which can be.
        intent = self._find_intent(out_trade_no)
        if intent is None:
            return None
        session = self._session_of_intent(str(intent["id"]))
        if session is not None and _session_reference(session) != out_trade_no:
            raise Unknown("stripe answered a session of another order", code="bad_response")
        return session

    def query(self, out_trade_no: str, provider_trade_no: str = "") -> Observation | None:
        if provider_trade_no.startswith("pi_"):  # a collection made outside Checkout
            intent = self._find_intent(out_trade_no, provider_trade_no)
            return None if intent is None else _intent_observation(intent, out_trade_no)
        session = self._find_session(out_trade_no, provider_trade_no)
        if session is None:
            return None
        key = (str(session.get("status")), str(session.get("payment_status")))
        status = wire.SESSION_STATUS.get(key)
        if status is None:
            raise Unknown(f"stripe session status {'/'.join(key)[:48]!r} not understood", code="bad_response")
        amount = _session_amount(session)
        if amount is None:
            raise Unknown("stripe session amount not understood", code="bad_response")
        return Observation(
            out_trade_no=out_trade_no,
            provider_trade_no=str(session["id"]),
            status=status,
            amount=amount,
            event_key=f"{session['id']}:query:{key[0]}:{key[1]}",
            provider_status=f"{key[0]}/{key[1]}",
        )

    def close(self, out_trade_no: str, provider_trade_no: str = "") -> None:
        if provider_trade_no.startswith("pi_"):
            return self._cancel_intent(out_trade_no, provider_trade_no)
        session_id = provider_trade_no
        if not session_id:
            session = self._find_session(out_trade_no, "")
            if session is None:
                return  # no card was ever tried on it; its URL never reached a buyer and it lapses at expires_at
            session_id = str(session["id"])
        try:
            self._call("expire", lambda: self._client.v1.checkout.sessions.expire(session_id), missing_ok=True)
        except Terminal as exc:
            # Only an open session can be expired: find out which other state it is in.
            current = self._retrieve_session(session_id, out_trade_no) or {}
            if current.get("status") == "expired":
                return  # closing twice is fine
            if current.get("status") == "complete":
                raise Terminal("stripe session is already paid", code="already_paid") from exc
            raise

    def _cancel_intent(self, out_trade_no: str, intent_id: str) -> None:
        try:
            self._call("cancel", lambda: self._client.v1.payment_intents.cancel(intent_id), missing_ok=True)
        except Terminal as exc:
            if exc.code != wire.UNEXPECTED_STATE:
                raise
            state = (self._find_intent(out_trade_no, intent_id) or {}).get("status")
            if state == "canceled":
                return
            if state == "succeeded":
                raise Terminal("stripe intent is already paid", code="already_paid") from exc
            raise

    def _intent_id(self, out_trade_no: str, provider_trade_no: str) -> str:
        """The PaymentIntent that holds the money of this payment ("" when no card was ever tried)."""
        if provider_trade_no.startswith("pi_"):
            return provider_trade_no
        session = self._find_session(out_trade_no, provider_trade_no)
        intent = (session or {}).get("payment_intent")
        if isinstance(intent, dict):  # expanded
            intent = intent.get("id")
        return intent if isinstance(intent, str) else ""

    def refund(self, request: RefundRequest) -> RefundObservation:
        intent_id = self._intent_id(request.out_trade_no, request.provider_trade_no)
        if not intent_id:
            raise Terminal("stripe knows no paid intent for this order", code="unknown_trade")
        metadata = {wire.META_REFUND_NO: request.refund_no, wire.META_OUT_TRADE_NO: request.out_trade_no}
        if request.reason:
            metadata[wire.META_REASON] = request.reason[:500]  # Stripe's metadata value limit
        params = {"payment_intent": intent_id, "amount": request.amount.amount_minor, "metadata": metadata}
        # Same refund_no -> same key -> Stripe replays the first answer instead of refunding twice.
        options = {"idempotency_key": wire.refund_idempotency_key(request.refund_no)}
        refund = self._call("refund", lambda: self._client.v1.refunds.create(params=params, options=options)) or {}
        return _refund_observation(refund, request.refund_no)

    def refund_query(self, request: RefundRequest) -> RefundObservation | None:
        if request.provider_refund_no:
            refund = self._call(
                "refund query",
                lambda: self._client.v1.refunds.retrieve(request.provider_refund_no),
                missing_ok=True,
            )
            return None if refund is None else _refund_observation(refund, request.refund_no)
        intent_id = self._intent_id(request.out_trade_no, request.provider_trade_no)
        if not intent_id:
            return None
        params = {"payment_intent": intent_id, "limit": 100}
        listed = self._call("refund list", lambda: self._client.v1.refunds.list(params=params), missing_ok=True)
        for refund in (listed or {}).get("data") or []:
            if isinstance(refund, dict) and _meta(refund, wire.META_REFUND_NO) == request.refund_no:
                return _refund_observation(refund, request.refund_no)
        return None

    # ---- payouts (Connect transfers) ------------------------------------------
    def payout(self, request: PayoutRequest) -> PayoutObservation:
        payout_no = request.payout_no
        params: dict[str, Any] = {
            "amount": request.amount.amount_minor,
            "currency": wire.currency_out(request.amount.currency),
            "destination": request.payee,
            # Both carry our number: transfer_group is what the transfer list filters on, metadata is for people.
            "transfer_group": payout_no,
            "metadata": {wire.META_PAYOUT_NO: payout_no},
        }
        if request.remark:
            params["description"] = request.remark[: wire.DESCRIPTION_MAX]
        # Same payout_no -> same key -> Stripe replays the first answer instead of transferring twice.
        options = {"idempotency_key": wire.payout_idempotency_key(payout_no)}
        try:
            transfer = self._call("payout", lambda: self._client.v1.transfers.create(params=params, options=options))
        except Terminal as exc:
            refusal = _payout_refusal(exc)
            if refusal is None:
                raise
            code, reason = refusal
            return PayoutObservation(
                payout_no=payout_no,
                provider_payout_no="",
                status=PayoutState.FAILED,
                amount=request.amount,
                provider_status=code,
                failure_reason=reason,
            )
        return _payout_observation(transfer or {}, request)

    def payout_query(self, request: PayoutRequest) -> PayoutObservation | None:
        if request.provider_payout_no:
            transfer_id = request.provider_payout_no
            transfer = self._call(
                "payout query", lambda: self._client.v1.transfers.retrieve(transfer_id), missing_ok=True
            )
            return None if transfer is None else _payout_observation(transfer, request)
        params = {"transfer_group": request.payout_no, "limit": 10}
        listed = self._call("payout list", lambda: self._client.v1.transfers.list(params=params)) or {}
        found = [t for t in listed.get("data") or [] if isinstance(t, dict)]
        if not found:
            return None  # never received: the same payout_no may be sent again
        if len(found) > 1:
            # The Idempotency-Key only protects 24 hours: a resend after that made a second transfer. Nobody may
            # read that as one payout.
            raise Unknown(f"stripe holds {len(found)} transfers for one payout_no", code="several_transfers")
        return _payout_observation(found[0], request)

    # ---- statement: the day's balance transactions ----------------------------------------
    def statement(self, day: date) -> Statement:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        if end.timestamp() > time.time():
            # Stripe's list grows until the UTC day is over: read before then, it would be incomplete.
            raise Retryable(f"stripe statement of {day.isoformat()} is incomplete until the day ends", code="not_ready")
        created = {"gte": int(start.timestamp()), "lt": int(end.timestamp())}
        params = {"created": created, "limit": wire.STATEMENT_PAGE_LIMIT, "expand": wire.STATEMENT_EXPAND}
        digest = hashlib.sha256()
        # The first page is read here, so that a refusal or an unreachable Stripe is raised by this call.
        first = self._statement_page(params, digest)
        statement = Statement(day=day, lines=iter(()), totals=None)

        def lines() -> Iterator[StatementLine]:
            page, line_no = first, 0
            while True:
                data = page.get("data")
                if page.get("object") != "list" or not isinstance(data, list) or type(page.get("has_more")) is not bool:
                    raise Unknown("stripe balance transaction list not understood", code="bad_response")
                for txn in data:
                    line_no += 1
                    yield _statement_line(txn, created["gte"], created["lt"], line_no)
                if not page["has_more"]:
                    break
                last = data[-1].get("id") if data and isinstance(data[-1], dict) else None
                if not isinstance(last, str) or last == params.get("starting_after"):
                    # has_more with nothing to continue from would page forever.
                    raise Unknown("stripe balance transaction list has more but no cursor", code="bad_response")
                params["starting_after"] = last
                page = self._statement_page(params, digest)
            statement.source_hash = digest.hexdigest()  # complete once the last page was read

        statement.lines = lines()
        return statement

    def _statement_page(self, params: dict[str, Any], digest: Any) -> dict[str, Any]:
        def request() -> Any:
            # What BalanceTransactionService.list sends, read as plain JSON: building a StripeObject for every
            # transaction of a large day costs more than the rest of the parse.
            response = self._client.raw_request("get", "/v1/balance_transactions", **params)
            digest.update(response.body.encode("utf-8"))
            return response

        try:
            return self._call("statement", request, raw=True) or {}
        except Unknown as exc:
            # A read changes nothing at Stripe: a timeout or 5xx may simply be asked again. An answer that cannot be
            # read (bad_response) stays Unknown.
            if exc.code in ("timeout", "http_5xx", "conflict"):
                raise Retryable(f"stripe statement page not read: {exc}", code=exc.code) from exc
            raise

    # ---- balance -----------------------------------------------------------
    def balance(self) -> ChannelBalance:
        """GET /v1/balance (BalanceService.retrieve): the platform balance's `available` and `pending` lists,
        each {amount, currency, source_types}, read for the account's currency (absent: nothing in it)."""
        try:
            answer = self._call("balance", lambda: self._client.v1.balance.retrieve()) or {}
        except Unknown as exc:
            if exc.code in ("timeout", "http_5xx", "conflict"):  # a read: ask again later
                raise Retryable(f"stripe balance not read: {exc}", code=exc.code) from exc
            raise
        if answer.get("object") != "balance":
            raise Unknown("stripe balance answer is not a balance", code="bad_response")
        currency = wire.currency_out(self.account.currency)
        return ChannelBalance(
            available=Money(_balance_amount(answer.get("available"), currency), self.account.currency),
            pending=Money(_balance_amount(answer.get("pending"), currency), self.account.currency),
            provider_status="balance",
        )

    # ---- webhooks ----------------------------------------------------------
    def verify_notification(self, inbound: Inbound) -> Observation | RefundObservation:
        if not self._webhook_secrets:
            raise NotificationInvalid("no_credentials", "channel account has no webhook_secret; event refused")
        header = inbound.headers.get("stripe-signature", "")
        if not header:
            raise NotificationInvalid("missing_signature", "no Stripe-Signature header")
        try:
            payload = inbound.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotificationInvalid("bad_body", "body is not UTF-8") from exc
        secret = self._verifying_secret(payload, header)
        if secret is None:
            raise NotificationInvalid("bad_signature", "no v1 signature verifies with the endpoint secrets")
        try:
            # The signature verified; this pass adds the SDK's timestamp window and parses the event.
            event = self._client.construct_event(payload, header, secret, wire.SIGNATURE_TOLERANCE_SECONDS).to_dict()
        except stripe.SignatureVerificationError as exc:
            raise NotificationInvalid("stale_timestamp", "signature timestamp is outside the tolerance") from exc
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not an object, a v2 thin event
            raise NotificationInvalid("bad_body", "body is not a Stripe event") from exc
        event_id, event_type = event.get("id"), event.get("type")
        if not isinstance(event_id, str) or not event_id.startswith("evt_") or not isinstance(event_type, str):
            raise NotificationInvalid("missing_fields", "event without id or type")
        # The secret binds the event to one endpoint. Connect events also name an account: it must be ours.
        # Events of a plain (non-Connect) account carry none, and the endpoint secret is the whole proof.
        account = event.get("account")
        if account is not None and (
            not isinstance(account, str) or not constant_time_equals(account, self.account.merchant_no)
        ):
            raise NotificationInvalid("wrong_merchant", "event account is not this channel account's")
        obj = _dig(event, "data", "object")
        if event_type in wire.SESSION_EVENT_STATUS:
            return _session_event(event_id, event_type, obj)
        if event_type in wire.PAYMENT_EVENT_STATUS:
            return self._intent_event(event_id, event_type, obj)
        if event_type in wire.REFUND_EVENT_TYPES:
            return _refund_event(event_id, event_type, obj)
        raise NotificationInvalid("unsupported_event", f"event type {event_type[:64]!r} is not handled")

    def _intent_event(self, event_id: str, event_type: str, obj: Any) -> Observation:
        """A payment_intent.* event: a success is reported under the session that made the intent (see the module
        docstring); a decline names no trade."""
        if not isinstance(obj, dict) or obj.get("object") != "payment_intent" or not str(obj.get("id", "")):
            raise NotificationInvalid("bad_body", f"{event_type} without a payment intent")
        out_trade_no = _meta(obj, wire.META_OUT_TRADE_NO)
        if not out_trade_no:
            raise NotificationInvalid("missing_fields", "payment intent without metadata out_trade_no")
        status = wire.PAYMENT_EVENT_STATUS[event_type]
        amount = _intent_amount(obj, status)
        if amount is None:
            raise NotificationInvalid("bad_amount", "payment intent amount or currency not understood")
        intent_id = str(obj["id"])
        return Observation(
            out_trade_no=out_trade_no,
            provider_trade_no=self._intent_trade_no(intent_id, out_trade_no)
            if status == ObservedStatus.SUCCEEDED
            else "",
            status=status,
            amount=amount,
            event_key=event_id,
            provider_status=event_type,
            decline_code=_decline_code(obj) if status == ObservedStatus.FAILED else "",
        )

    def _intent_trade_no(self, intent_id: str, out_trade_no: str) -> str:
        """The collection a succeeded intent paid: its session's id, or its own for an intent outside Checkout.
        A decline needs none (it only notes the payment its signed metadata names), so it costs no lookup: this
        runs while the payment row is locked."""
        try:
            session = self._session_of_intent(intent_id)
        except ChannelError as exc:  # not applied: Stripe retries the event
            message = f"stripe could not say which session made the intent: {exc}"
            raise NotificationInvalid("lookup_failed", message) from exc
        if session is not None and _session_reference(session) != out_trade_no:
            raise NotificationInvalid("wrong_order", "the intent's session belongs to another order")
        return str(session["id"]) if session is not None else intent_id

    def _verifying_secret(self, payload: str, header: str) -> str | None:
        for secret in self._webhook_secrets:
            try:
                stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
            except stripe.SignatureVerificationError:
                continue
            return secret
        return None


def _session_event(event_id: str, event_type: str, obj: Any) -> Observation:
    if not isinstance(obj, dict) or obj.get("object") != "checkout.session" or not str(obj.get("id", "")):
        raise NotificationInvalid("bad_body", f"{event_type} without a checkout session")
    out_trade_no = _session_reference(obj)
    if not out_trade_no:
        raise NotificationInvalid("missing_fields", "checkout session without our client_reference_id")
    status = wire.SESSION_EVENT_STATUS[event_type]
    payment_status = obj.get("payment_status")
    if event_type == "checkout.session.completed" and payment_status != "paid":
        if payment_status != "unpaid":
            raise NotificationInvalid("unknown_status", f"payment_status {str(payment_status)[:32]!r} not understood")
        status = ObservedStatus.PENDING  # a delayed method: async_payment_succeeded or _failed follows
    amount = _session_amount(obj)
    if amount is None:
        raise NotificationInvalid("bad_amount", "session amount_total or currency not understood")
    return Observation(
        out_trade_no=out_trade_no,
        provider_trade_no=str(obj["id"]),
        status=status,
        amount=amount,
        event_key=event_id,
        provider_status=event_type,
    )


def _decline_code(intent: dict[str, Any]) -> str:
    """Why the card was refused, from the intent's last_payment_error: the issuer's decline_code (insufficient_funds,
    generic_decline, ...) when there is one, else the error's code (expired_card, incorrect_cvc, card_declined);
    card_declined when Stripe said neither in a form we can read: a payment_failed event is a decline either way."""
    error = intent.get("last_payment_error")
    if not isinstance(error, dict):
        return "card_declined"
    return (
        decline_code_or_empty(error.get("decline_code")) or decline_code_or_empty(error.get("code")) or "card_declined"
    )


def _session_reference(session: dict[str, Any]) -> str:
    """Our out_trade_no on a session: client_reference_id, which metadata must not contradict."""
    reference = session.get("client_reference_id")
    if not isinstance(reference, str) or not reference:
        return ""
    meta = _meta(session, wire.META_OUT_TRADE_NO)
    return reference if meta in ("", reference) else ""


def _session_amount(session: dict[str, Any]) -> Money | None:
    return _money(session.get("amount_total"), session.get("currency"))


def _intent_observation(intent: dict[str, Any], out_trade_no: str) -> Observation:
    provider_status = str(intent.get("status"))
    status = wire.INTENT_STATUS.get(provider_status)
    if status is None:
        raise Unknown(f"stripe intent status {provider_status[:32]!r} not understood", code="bad_response")
    amount = _intent_amount(intent, status)
    if amount is None:
        raise Unknown("stripe intent amount not understood", code="bad_response")
    return Observation(
        out_trade_no=out_trade_no,
        provider_trade_no=str(intent["id"]),
        status=status,
        amount=amount,
        event_key=f"{intent['id']}:query:{provider_status}",
        provider_status=provider_status,
    )


def _refund_event(event_id: str, event_type: str, obj: Any) -> RefundObservation:
    refund = _charge_refund(obj) if event_type == "charge.refunded" else obj
    if not isinstance(refund, dict) or refund.get("object") != "refund":
        # Charges lost their embedded refunds in API 2022-11-15: subscribe the endpoint to refund.* instead.
        raise NotificationInvalid("unsupported_event", f"{event_type} without a refund of ours")
    refund_no = _meta(refund, wire.META_REFUND_NO)
    provider_status = str(refund.get("status"))
    status = wire.REFUND_STATUS.get(provider_status)
    amount = _money(refund.get("amount"), refund.get("currency"))
    if not refund_no or not refund.get("id"):
        raise NotificationInvalid("missing_fields", "refund without id or metadata refund_no")
    if status is None:
        raise NotificationInvalid("unknown_status", f"refund status {provider_status[:32]!r} not understood")
    if amount is None:
        raise NotificationInvalid("bad_amount", "refund amount or currency not understood")
    return RefundObservation(
        refund_no=refund_no,
        provider_refund_no=str(refund["id"]),
        status=status,
        amount=amount,
        provider_status=provider_status,
        event_key=event_id,
    )


def _refund_observation(refund: dict[str, Any], refund_no: str) -> RefundObservation:
    """An API answer about a refund; anything we cannot read is Unknown (the refund may exist)."""
    if _meta(refund, wire.META_REFUND_NO) != refund_no or not refund.get("id"):
        raise Unknown("stripe answered about another refund", code="bad_response")
    provider_status = str(refund.get("status"))
    status = wire.REFUND_STATUS.get(provider_status)
    if status is None:
        raise Unknown(f"stripe refund status {provider_status[:32]!r} not understood", code="bad_response")
    amount = _money(refund.get("amount"), refund.get("currency"))
    if amount is None:
        raise Unknown("stripe refund amount not understood", code="bad_response")
    return RefundObservation(
        refund_no=refund_no,
        provider_refund_no=str(refund["id"]),
        status=status,
        amount=amount,
        provider_status=provider_status,
        event_key=f"{refund['id']}:{provider_status}",
    )


def _payout_refusal(exc: Terminal) -> tuple[str, str] | None:
    """(code, reason) when Stripe refused the transfer for a business reason (nothing moved), else None."""
    cause = exc.__cause__
    if not isinstance(cause, stripe.InvalidRequestError):
        return None
    code = str(cause.code or "")
    if code in wire.PAYOUT_FAILED_CODES or (code == wire.RESOURCE_MISSING and cause.param == wire.PAYOUT_MISSING_PARAM):
        return code, _reason(cause)
    return None


def _payout_observation(transfer: dict[str, Any], request: PayoutRequest) -> PayoutObservation:
    """An API answer about a transfer; anything that is not the transfer we asked for is Unknown (an answer we
    cannot trust says nothing about what moved)."""
    transfer_id = transfer.get("id")
    if transfer.get("object") != "transfer" or not isinstance(transfer_id, str) or not transfer_id.startswith("tr_"):
        raise Unknown("stripe answered without a transfer", code="bad_response")
    payout_no = request.payout_no
    if transfer.get("transfer_group") != payout_no or _meta(transfer, wire.META_PAYOUT_NO) != payout_no:
        raise Unknown("stripe answered about another payout", code="bad_response")
    destination = transfer.get("destination")
    if isinstance(destination, dict):  # expanded
        destination = destination.get("id")
    if destination != request.payee:
        raise Unknown("stripe answered a transfer to another payee", code="bad_response")
    amount = _money(transfer.get("amount"), transfer.get("currency"))
    if amount != request.amount:
        raise Unknown("stripe answered a transfer of another amount", code="bad_response")
    reversed_minor = transfer.get("amount_reversed", 0)
    if type(reversed_minor) is not int or not 0 <= reversed_minor <= amount.amount_minor:
        raise Unknown("stripe transfer amount_reversed not understood", code="bad_response")
    if transfer.get("reversed") is True:
        return PayoutObservation(
            payout_no=payout_no,
            provider_payout_no=transfer_id,
            status=PayoutState.FAILED,
            amount=amount,
            provider_status=wire.TRANSFER_REVERSED_STATUS,
            failure_reason="transfer reversed in full: the money came back to the platform balance",
        )
    if transfer.get("reversed") is not False:
        raise Unknown("stripe transfer reversed flag not understood", code="bad_response")
    # A partial reversal leaves the transfer standing (reversed stays false): it paid, and some came back later.
    return PayoutObservation(
        payout_no=payout_no,
        provider_payout_no=transfer_id,
        status=PayoutState.SUCCEEDED,
        amount=amount,
        provider_status=wire.TRANSFER_PROVIDER_STATUS if not reversed_minor else "partially_reversed",
    )


def _statement_line(txn: Any, start: int, end: int, line_no: int) -> StatementLine:
    """One balance transaction as a normalised line; one that does not add up is Unknown (a corrupt answer)."""
    where = f"stripe statement line {line_no}"
    if not isinstance(txn, dict) or txn.get("object") != "balance_transaction":
        raise Unknown(f"{where} is not a balance transaction", code="bad_statement")
    txn_id, amount, fee, net = txn.get("id"), txn.get("amount"), txn.get("fee"), txn.get("net")
    created, status, currency = txn.get("created"), txn.get("status"), wire.currency_in(txn.get("currency"))
    if not isinstance(txn_id, str) or not txn_id.startswith("txn_") or not isinstance(status, str) or not currency:
        raise Unknown(f"{where}: id, status or currency not understood", code="bad_statement")
    if any(type(v) is not int for v in (amount, fee, net, created)) or net != amount - fee:
        raise Unknown(f"{where} ({txn_id}): net is not amount minus fee", code="bad_statement")
    details = txn.get("fee_details")
    if not isinstance(details, list) or sum(_fee_detail(d, where) for d in details) != fee:
        raise Unknown(f"{where} ({txn_id}): fee is not the sum of its fee_details", code="bad_statement")
    if not start <= created < end:
        raise Unknown(f"{where} ({txn_id}) was created outside the day asked for", code="bad_statement")
    kind = wire.STATEMENT_TYPE_KIND.get(str(txn.get("type"))) or wire.STATEMENT_CATEGORY_KIND.get(
        str(txn.get("reporting_category")), StatementKind.OTHER
    )
    sign = wire.STATEMENT_SIGN.get(kind)
    if sign is not None and amount * sign < 0:
        raise Unknown(f"{where} ({txn_id}): a {kind} in the wrong direction", code="bad_statement")
    source = txn.get("source")
    source_id = source.get("id") if isinstance(source, dict) else source
    key = wire.STATEMENT_OUR_REF_KEY.get(kind, "")
    our_ref = _meta(source, key) if key else ""
    if kind is StatementKind.PAYOUT and not our_ref and isinstance(source, dict):
        group = source.get("transfer_group")  # our payouts set both; transfer_group is what the list filters on
        our_ref = group if isinstance(group, str) else ""
    trade_ref = _dig(source, "charge") if kind is StatementKind.REFUND else ""
    if isinstance(trade_ref, dict):  # expanded
        trade_ref = trade_ref.get("id")
    try:
        return StatementLine(
            kind=kind,
            provider_ref=source_id if isinstance(source_id, str) else txn_id,
            our_ref=our_ref,
            amount=Money(abs(amount), currency),
            fee=Money(abs(fee), currency),  # a refund that gives fees back books a negative fee
            status=status,
            occurred_at=datetime.fromtimestamp(created, UTC),
            trade_ref=trade_ref if isinstance(trade_ref, str) else "",
            line_no=line_no,
        )
    except MoneyError as exc:
        raise Unknown(f"{where} ({txn_id}): amount not understood", code="bad_statement") from exc


def _fee_detail(detail: Any, where: str) -> int:
    amount = detail.get("amount") if isinstance(detail, dict) else None
    if type(amount) is not int:
        raise Unknown(f"{where}: a fee_details amount not understood", code="bad_statement")
    return amount


def _intent_amount(intent: dict[str, Any], status: ObservedStatus) -> Money | None:
    # What was collected once paid; what was asked for before that.
    field = "amount_received" if status is ObservedStatus.SUCCEEDED else "amount"
    return _money(intent.get(field), intent.get("currency"))


def _money(amount: Any, currency: Any) -> Money | None:
    """Stripe's JSON amounts are integers in minor units: a float, string or bool is refused, as is a currency
    that is not three lower-case letters."""
    if type(amount) is not int or amount < 0:
        return None
    code = wire.currency_in(currency)
    if code is None:
        return None
    try:
        return Money(amount, code)
    except MoneyError:
        return None


def _charge_refund(charge: Any) -> dict[str, Any] | None:
    """The refund a charge.refunded event is about: the newest of ours in the charge's refund list."""
    refunds = _dig(charge, "refunds", "data")
    if not isinstance(refunds, list):
        return None
    return next((r for r in refunds if _meta(r, wire.META_REFUND_NO)), None)


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _meta(obj: Any, key: str) -> str:
    value = _dig(obj, "metadata", key)
    return value if isinstance(value, str) else ""


def _balance_amount(funds: object, currency: str) -> int:
    """The sum of a balance list's amounts in `currency` (Stripe lists one entry per currency; an amount may be
    negative). A list or an entry that is not what Stripe writes is Unknown, never read as zero."""
    if not isinstance(funds, list):
        raise Unknown("stripe balance answer lacks its available / pending list", code="bad_response")
    total = 0
    for fund in funds:
        amount = fund.get("amount") if isinstance(fund, dict) else None
        if not isinstance(amount, int) or isinstance(amount, bool) or wire.currency_in(fund.get("currency")) is None:
            raise Unknown("stripe balance entry not understood", code="bad_response")
        if fund["currency"] == currency:
            total += amount
    return total


def _reason(exc: stripe.StripeError) -> str:
    return str(exc.user_message or type(exc).__name__)[:200]


def _nothing_sent(exc: stripe.APIConnectionError) -> bool:
    """True when the request never left (refused, unreachable, connect timeout, unusable URL).

    The SDK wraps every transport failure in APIConnectionError (should_retry is True for read timeouts too),
    so the distinction comes from the requests exception it chains. A connection dropped after sending
    (ProtocolError) or a read timeout is not "nothing sent".
    """
    cause = exc.__cause__
    if isinstance(
        cause,
        requests.ConnectTimeout
        | requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    ):
        return True
    if isinstance(cause, requests.ConnectionError) and cause.args:
        inner = cause.args[0]
        # urllib3's NewConnectionError (refused, DNS) is a ConnectTimeoutError.
        return isinstance(inner, MaxRetryError) and isinstance(inner.reason, ConnectTimeoutError)
    return False
