"""Loopback simulator of the *provider side* of Stripe's v1 API: Checkout Sessions with their hosted payment
page, PaymentIntents, Refunds and webhook events.

It plays api.stripe.com and checkout.stripe.com for one merchant account (acct_...): form-encoded requests with
bracket keys authenticated by ``Authorization: Bearer sk_...``, Idempotency-Key replay on every POST, Checkout
Sessions (create with ``expires_at`` 30 min..24 h ahead, retrieve, list by PaymentIntent, expire), a metadata
search over PaymentIntents, and events POSTed as JSON to the account's webhook endpoint, signed
``Stripe-Signature: t=<unix>,v1=<hex>`` (HMAC-SHA256 of "<t>.<body>" with the endpoint secret; one v1 per
active secret during a rotation). Like a real endpoint, it only receives the event types it subscribes to
(`enabled_events`).

``/c/pay/<cs_id>`` is the hosted payment page: the only place a card number is typed. As on Stripe (API
2022-08-01 and later), the session's PaymentIntent is made at the first attempt; a declined card sends
``payment_intent.payment_failed`` and leaves the session open for another card; a good one completes it
(``checkout.session.completed``) and sends the buyer to the session's success_url. An expired session
(``/expire`` or past ``expires_at``) takes no payment.

Payouts are Connect transfers: the platform account keeps an available balance per currency (``fund()``), a
``POST /v1/transfers`` to a connected account (``connected_account()``) debits it at once and the transfer is
final (Stripe transfers have no pending state); a transfer the balance cannot cover is refused with
``balance_insufficient``, an unknown destination with resource_missing on ``destination``, one without the
transfers capability with ``insufficient_capabilities_for_transfer``. ``GET /v1/transfers`` lists by
``transfer_group``; ``POST /v1/transfers/{id}/reversals`` (or ``reverse()``) gives money back, ``reversed`` once in
full. Every executed transfer is kept under its payout_no (metadata, else transfer_group) in ``transfers``.
Stripe's API answers are not signed (TLS is the proof); ``tamper_transfers`` rewrites transfer answers on the way
out, as a broken proxy or a man in the middle would, and ``tamper_balance`` the balance object.

Balance: ``GET /v1/balance`` lists per currency ``available`` (the transfer balance plus charges, net of their fee,
whose available_on has passed, less refunds) and ``pending`` (charges, net, not available yet).

Statement: every charge, refund, transfer and transfer reversal books a balance transaction (txn_...) on the platform
balance, as on Stripe: a charge +amount with Stripe's processing fee (``fee_schedule``: basis points + a fixed
part per currency, as Stripe's standard card pricing is "2.9% + 30 cents"), pending until ``available_on`` (two
days later, at UTC midnight); a refund -amount with no fee (Stripe keeps the original payment's fee); a transfer
-amount with no fee, available at once. ``GET /v1/balance_transactions`` lists them newest first, filtered by
``created[gte|gt|lt|lte]``, ``limit`` 1..100 and cursor-paged by ``starting_after`` (``has_more``);
``expand[]=data.source`` expands each source (charge with the PaymentIntent's metadata copied onto it, refund,
transfer, reversal). ``GET /v1/balance_transactions/{id}`` and ``GET /v1/charges/{id}`` read one.

Statement discrepancies, plain attributes a test sets (our_ref is the out_trade_no of a charge, the refund_no of a
refund, the payout_no of a transfer):

- ``statement_omit``: set of our_refs whose balance transactions are left out of the list;
- ``statement_override``: our_ref -> {"amount": minor, "fee": minor, "status": str} (any of them; amounts as
  positive magnitudes, signed as the transaction is; net follows, so the transaction still adds up);
- ``statement_duplicate``: set of our_refs listed twice (a second txn_ id on the same source);
- ``statement_extra``: list of {"our_ref", "provider_ref" (ch_...), "amount", "fee", "status", optional "created"}:
  a charge we never made, listed in the day it was created (default: noon of the day asked for);
- ``statement_corrupt``: "truncate" cuts every list page in half (not JSON), "net" makes the first transaction of
  every page not add up (net != amount - fee).

``statement_synthetic(day, n)`` makes the list of that UTC day ``n`` generated charges (nothing else), built page by
page as they are asked for, without creating trades; it returns their count and sums.

Signing is implemented here with hmac/hashlib on purpose: this module imports neither our adapter nor the
Stripe SDK, so tests exercise the adapter against a second implementation.
Runnable as ``python -m payments.simulators.stripe --port 8002 --account-file var/stripe-account.json``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import string
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

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

API_VERSION = "2024-06-20"
NOTIFY_TIMEOUT = 5.0
STALE_SECONDS = 600
OPEN_STATES = ("requires_payment_method", "requires_confirmation", "requires_action", "processing")
CANCELABLE = (*OPEN_STATES, "requires_capture")
CONFIRMABLE = ("requires_payment_method", "requires_confirmation")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Stripe's test cards: one that pays, and declines as Stripe's docs list them (docs.stripe.com/testing#declined-
# payments): the error `code`, and the issuer's `decline_code` for a card_declined.
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_INSUFFICIENT_FUNDS = "4000000000009995"
CARD_EXPIRED = "4000000000000069"
CARD_INCORRECT_CVC = "4000000000000127"
DECLINING_CARDS: dict[str, tuple[str, str, str]] = {
    CARD_DECLINED: ("card_declined", "generic_decline", "Your card was declined."),
    CARD_INSUFFICIENT_FUNDS: ("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    CARD_EXPIRED: ("expired_card", "", "Your card has expired."),
    CARD_INCORRECT_CVC: ("incorrect_cvc", "", "Your card's security code is incorrect."),
}
TEST_PAYMENT_METHODS = {"pm_card_visa": CARD_OK, "pm_card_chargeDeclined": CARD_DECLINED}
# Checkout's bounds for expires_at, counted from the session's creation.
SESSION_MIN_SECONDS = 30 * 60
SESSION_MAX_SECONDS = 24 * 60 * 60
# What the demo shop's endpoint subscribes to: Checkout's own events for the outcome, the intent's failure for
# declines (Checkout has no session event for them) and refunds. payment_intent.succeeded says the same as
# checkout.session.completed; a shop that subscribes to both receives two events per payment.
DEFAULT_ENABLED_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.expired",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "payment_intent.payment_failed",
        "refund.created",
        "refund.updated",
        "charge.refunded",
    }
)

# Stripe's processing fee per (lower-case) currency: (basis points, fixed minor units); "*" for any other currency.
# Refunds and transfers book no fee.
DEFAULT_FEE_SCHEDULE: dict[str, tuple[int, int]] = {
    "*": (290, 30),
    "usd": (290, 30),
    "eur": (150, 25),
    "gbp": (150, 20),
}
AVAILABLE_AFTER_DAYS = 2
DAY_SECONDS = 86_400
BALANCE_TXN_PARAMS = {"created", "limit", "starting_after", "expand"}

_ALNUM = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_QUOTED = r"'((?:[^'\\]|\\.)*)'"
_CLAUSE_RE = re.compile(rf"(?:metadata\[{_QUOTED}\]|(status|currency)):{_QUOTED}")


def _id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALNUM) for _ in range(length))}"


def _mask(key: str) -> str:
    return f"{key[:8]}{'*' * max(len(key) - 12, 0)}{key[-4:]}" if len(key) > 12 else "****"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# Stripe's zero-decimal currencies (amounts are whole units); the hosted page shows major units like Stripe's.
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)


def _major(amount: int, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL:
        return str(amount)
    return f"{amount // 100}.{amount % 100:02d}"


class ApiError(Exception):
    """A Stripe error answer. `replayable`: raised after the endpoint began acting, so an idempotent
    request saves it (validation and auth failures save nothing, as on Stripe)."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.replayable = bool(extra.pop("replayable", False))
        self.body = {"error": {"type": type_, "message": message, **{k: v for k, v in extra.items() if v}}}


def _missing(kind: str, obj_id: str, param: str) -> ApiError:
    return ApiError(404, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)


def _unknown_params(params: dict[str, Any], allowed: set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise ApiError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def _int_param(params: dict[str, Any], name: str, *, required: bool) -> int | None:
    raw = params.get(name)
    if raw is None:
        if required:
            raise ApiError(400, f"Missing required param: {name}.", code="parameter_missing", param=name)
        return None
    if not isinstance(raw, str) or not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"Invalid positive integer: {name}", code="parameter_invalid_integer", param=name)
    return int(raw)


def _metadata(params: dict[str, Any]) -> dict[str, str]:
    meta = params.get("metadata", {})
    if meta == "":
        return {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) and len(v) <= 500 for v in meta.values()):
        raise ApiError(400, "Invalid metadata: values must be strings of at most 500 characters", param="metadata")
    return dict(meta)


def decode_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding: `a[b][c]=v` nests, `a[0]=v` / `a[]=v` make lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        m = _KEY_RE.match(key)
        if not m:
            raise ApiError(400, f"Invalid parameter name: {key[:64]}", code="parameter_invalid")
        parts = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
        node = root
        for i, part in enumerate(parts):
            part = part or str(len(node))
            if i == len(parts) - 1:
                node[part] = value
                break
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ApiError(400, f"Invalid parameter: {key[:64]} mixes a value and a hash", param=parts[0])
            node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = {k: _listify(v) for k, v in node.items()}
    if node and all(k.isdigit() for k in node):
        return [node[k] for k in sorted(node, key=int)]
    return node


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def _card_problem(card: Any) -> tuple[str, str] | None:
    """(code, message) when the card cannot pay; None for the test card that pays. The issuer's decline_code
    of a card_declined is _card_error's."""
    if not isinstance(card, dict):
        return "incorrect_number", "Your card number is incorrect."
    number = str(card.get("number", "")).replace(" ", "")
    if not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn_ok(number):
        return "incorrect_number", "Your card number is incorrect."
    month, year, cvc = (str(card.get(k, "")) for k in ("exp_month", "exp_year", "cvc"))
    if not month.isdigit() or not 1 <= int(month) <= 12:
        return "invalid_expiry_month", "Your card's expiration month is invalid."
    if not year.isdigit():
        return "invalid_expiry_year", "Your card's expiration year is invalid."
    full_year = int(year) + (2000 if len(year) == 2 else 0)
    now = time.gmtime()
    if (full_year, int(month)) < (now.tm_year, now.tm_mon):
        return "expired_card", "Your card has expired."
    if not (cvc.isdigit() and len(cvc) in (3, 4)):
        return "invalid_cvc", "Your card's security code is invalid."
    if number == CARD_OK:
        return None
    if number in DECLINING_CARDS:
        code, _, message = DECLINING_CARDS[number]
        return code, message
    return "card_declined", "Your card was declined. Your request was in test mode, but used a non test card."


@dataclass
class _Account:
    id: str
    secret_key: str
    publishable_key: str
    webhook_secrets: list[str]
    webhook_url: str = ""


@dataclass
class _Saved:
    """One Idempotency-Key's first request and, once it finished, its answer."""

    fingerprint: str
    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class StripeSimulator(LoopbackServer):
    code = "stripe"
    notify_variants = frozenset(
        {VALID, BAD_SIGNATURE, WRONG_AMOUNT, WRONG_CURRENCY, WRONG_MERCHANT, UNKNOWN_ORDER, STALE_TIMESTAMP, CLOSED}
    )

    def __init__(self, host: str = "127.0.0.1", port: int = 0, currency: str = "CNY") -> None:
        self.faults = Faults()
        self.currency = currency
        self._address = (host, port)
        self.handler_class = _Handler
        self._lock = threading.RLock()
        self._account: _Account | None = None
        self._intents: dict[str, dict[str, Any]] = {}
        self._sessions: dict[str, dict[str, Any]] = {}
        # The endpoint's subscription; {"*"} takes every event type.
        self.enabled_events: set[str] = set(DEFAULT_ENABLED_EVENTS)
        self._refunds: dict[str, dict[str, Any]] = {}
        # Payouts: the platform's available balance per (lower-case) currency, its connected accounts (id ->
        # {"transfers": capability active}), transfers by id, and every executed transfer under its payout_no.
        self._balance: dict[str, int] = {}
        self._connected: dict[str, dict[str, Any]] = {}
        self._transfers: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, list[dict[str, Any]]] = {}
        # Fields overwritten in every transfer the API answers with (the stored transfer stays as it is).
        self.tamper_transfers: dict[str, Any] = {}
        # Fields overwritten in the balance object GET /v1/balance answers with.
        self.tamper_balance: dict[str, Any] = {}
        # Cleared, a transfer create waits here once its Idempotency-Key is taken: the request is in flight at
        # Stripe (a retry under the key is answered 409, the list does not show it yet) until the test sets it.
        self.transfer_gate = threading.Event()
        self.transfer_gate.set()
        self._events: dict[str, dict[str, Any]] = {}
        # The one succeeded / canceled event of an intent: a replay re-sends it with the same id.
        self._final_events: dict[tuple[str, str], str] = {}
        self._idempotency: dict[tuple[str, str], _Saved] = {}
        # Every webhook attempt: event id, type, url, HTTP status or error. Tests read it.
        self.deliveries: list[dict[str, Any]] = []
        # The platform balance's ledger (balance transactions, oldest first) and the charges they come from.
        self.fee_schedule: dict[str, tuple[int, int]] = dict(DEFAULT_FEE_SCHEDULE)
        self._balance_txns: list[dict[str, Any]] = []
        self._balance_txn_index: dict[str, dict[str, Any]] = {}
        self._charges: dict[str, dict[str, Any]] = {}
        self._synthetic: dict[int, int] = {}  # UTC day start -> number of generated charges
        # Statement discrepancies (see the module docstring).
        self.statement_omit: set[str] = set()
        self.statement_override: dict[str, dict[str, Any]] = {}
        self.statement_duplicate: set[str] = set()
        self.statement_extra: list[dict[str, Any]] = []
        self.statement_corrupt = ""

    # ---- the merchant account -------------------------------------------
    def account(self, *, webhook_url: str = "") -> SimAccount:
        with self._lock:
            if self._account is None:
                self._account = _Account(
                    id=_id("acct", 16),
                    secret_key=_id("sk_test", 48),
                    publishable_key=_id("pk_test", 48),
                    webhook_secrets=[_id("whsec", 32)],
                )
            if webhook_url:
                self._account.webhook_url = webhook_url
            return self._sim_account(self._account)

    def _sim_account(self, acct: _Account) -> SimAccount:
        credentials = {
            "secret_key": acct.secret_key,
            "publishable_key": acct.publishable_key,
            "webhook_secret": ",".join(acct.webhook_secrets),
        }
        return SimAccount(merchant_no=acct.id, base_url=self.base_url, currency=self.currency, credentials=credentials)

    def load_account(self, data: dict[str, Any], *, webhook_url: str = "") -> SimAccount:
        """Adopt an account written by a previous run (the CLI's --account-file)."""
        creds = data["credentials"]
        secrets_ = [s.strip() for s in creds["webhook_secret"].split(",") if s.strip()]
        with self._lock:
            self._account = _Account(data["merchant_no"], creds["secret_key"], creds["publishable_key"], secrets_)
            self.currency = data.get("currency", self.currency)
        return self.account(webhook_url=webhook_url)

    def rotate_webhook_secret(self, *, expire_old: bool = False) -> str:
        """Roll the endpoint secret: events are signed with every active secret until the old ones expire."""
        self.account()
        assert self._account is not None
        with self._lock:
            new = _id("whsec", 32)
            self._account.webhook_secrets = [new] if expire_old else [*self._account.webhook_secrets, new]
            return new

    def _require_account(self) -> _Account:
        if self._account is None:
            raise ApiError(401, "You did not provide an API key.")
        return self._account

    def _authenticate(self, headers: Any) -> _Account:
        acct = self._require_account()
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:]:
            raise ApiError(401, "You did not provide an API key. Provide it in the Authorization header (Bearer).")
        if not _same(auth[7:], acct.secret_key):
            raise ApiError(401, f"Invalid API Key provided: {_mask(auth[7:])}")
        return acct

    # ---- signing ---------------------------------------------------------
    def signature_header(self, body: bytes, timestamp: int | None = None) -> str:
        acct = self._require_account()
        ts = int(time.time()) if timestamp is None else timestamp
        sigs = [
            hmac.new(s.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest() for s in acct.webhook_secrets
        ]
        return ",".join([f"t={ts}", *(f"v1={sig}" for sig in sigs)])

    # ---- trades ----------------------------------------------------------
    def _intents_for(self, out_trade_no: str) -> list[dict[str, Any]]:
        with self._lock:
            found = [pi for pi in self._intents.values() if pi["metadata"].get("out_trade_no") == out_trade_no]
        return sorted(found, key=lambda pi: pi["_seq"], reverse=True)

    def _intent_id_for(self, out_trade_no: str) -> str:
        found = self._intents_for(out_trade_no)
        if not found:
            raise KeyError(out_trade_no)
        return found[0]["id"]

    def intent(self, intent_id: str) -> dict[str, Any] | None:
        with self._lock:
            pi = self._intents.get(intent_id)
            return _public(pi) if pi else None

    def session(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            cs = self._sessions.get(session_id)
            return _public(cs) if cs else None

    def _sessions_for(self, out_trade_no: str) -> list[dict[str, Any]]:
        with self._lock:
            found = [cs for cs in self._sessions.values() if cs["client_reference_id"] == out_trade_no]
        return sorted(found, key=lambda cs: cs["_seq"], reverse=True)

    def _session_for(self, out_trade_no: str) -> dict[str, Any]:
        found = self._sessions_for(out_trade_no)
        if not found:
            raise KeyError(out_trade_no)
        self._lapse(found[0])
        return found[0]

    def trade_for(self, out_trade_no: str) -> dict | None:
        """The newest Checkout Session for our out_trade_no, as the conformance suite reads a trade."""
        found = self._sessions_for(out_trade_no)
        if not found:
            return None
        cs = found[0]
        self._lapse(cs)
        with self._lock:
            pi = self._intents.get(cs["payment_intent"] or "")
            status = {"complete": "paid", "expired": "closed"}.get(cs["status"], "pending")
            if cs["payment_status"] != "paid" and status == "paid":
                status = "pending"  # completed with a delayed method: not paid yet
            refunded = self._refunded(pi["id"]) if pi else 0
            if status == "paid" and pi and refunded >= pi["amount_received"]:
                status = "refunded"
            return {
                "out_trade_no": out_trade_no,
                "provider_trade_no": cs["id"],
                "amount_minor": cs["amount_total"],
                "currency": cs["currency"].upper(),
                "status": status,
                "refunded_minor": refunded,
                "notify_url": self._account.webhook_url if self._account else "",
                "session": _public(cs),
                "intent": _public(pi) if pi else None,
            }

    def _refunded(self, intent_id: str) -> int:
        return sum(r["amount"] for r in self._refunds.values() if r["payment_intent"] == intent_id)

    def pay(self, out_trade_no: str) -> None:
        """The buyer pays the newest session with the test card that works (as on the hosted page). Paying a
        completed session again re-sends its checkout.session.completed (a provider retry, same event id)."""
        cs = self._session_for(out_trade_no)
        if cs["status"] == "complete":
            with self._lock:
                event = self._final_event(cs, "checkout.session.completed")
            self._deliver(event)
            return
        self._attempt(cs["id"], _test_card(CARD_OK))

    def decline(self, out_trade_no: str, card: str = CARD_DECLINED) -> None:
        """The buyer's card (one of DECLINING_CARDS) is declined on the hosted page: payment_intent.payment_failed
        with the card's last_payment_error; the session stays open."""
        cs = self._session_for(out_trade_no)
        problem = self._attempt(cs["id"], _test_card(card))
        assert problem is not None

    def _attempt(self, session_id: str, card: Any) -> tuple[str, str] | None:
        """One card submitted on the hosted page; returns the card's (code, message) problem, None when paid.

        Raises ValueError when the session takes no payment (expired or complete), as the page says then.
        """
        problem = _card_problem(card)
        events: list[dict[str, Any]] = []
        with self._lock:
            cs = self._sessions.get(session_id)
            if cs is None:
                raise KeyError(session_id)
            events += self._lapse_locked(cs)
            if cs["status"] != "open":
                self._deliver_all(events)
                raise ValueError(f"{session_id} is {cs['status']} and takes no payment")
            pi = self._session_intent(cs)
            if problem is None:
                self._succeed(pi)
                cs.update(status="complete", payment_status="paid")
                events.append(self._final_event(pi, "payment_intent.succeeded"))
                events.append(self._final_event(cs, "checkout.session.completed"))
            else:
                error = _card_error(card, problem)
                pi.update(status="requires_payment_method", last_payment_error=error)
                events.append(self._new_event("payment_intent.payment_failed", pi))
        self._deliver_all(events)
        return problem

    def _session_intent(self, cs: dict[str, Any]) -> dict[str, Any]:
        """The session's PaymentIntent, made at the first attempt (with payment_intent_data's metadata)."""
        if cs["payment_intent"]:
            return self._intents[cs["payment_intent"]]
        data = cs["_payment_intent_data"]
        pi = self._new_intent(
            amount=cs["amount_total"],
            currency=cs["currency"],
            description=data.get("description"),
            metadata=dict(data.get("metadata") or {}),
        )
        cs["payment_intent"] = pi["id"]
        return pi

    def _lapse(self, cs: dict[str, Any]) -> None:
        with self._lock:
            events = self._lapse_locked(cs)
        self._deliver_all(events, background=True)

    def _lapse_locked(self, cs: dict[str, Any]) -> list[dict[str, Any]]:
        """An open session past its expires_at expires (Stripe does it within minutes; here on next touch)."""
        if cs["status"] == "open" and time.time() >= cs["expires_at"]:
            return self._expire_locked(cs)
        return []

    def _expire_locked(self, cs: dict[str, Any]) -> list[dict[str, Any]]:
        cs.update(status="expired")
        events = []
        pi = self._intents.get(cs["payment_intent"] or "")
        if pi is not None and pi["status"] in CANCELABLE:
            pi.update(status="canceled", canceled_at=int(time.time()), cancellation_reason="abandoned")
            events.append(self._final_event(pi, "payment_intent.canceled"))
        events.append(self._final_event(cs, "checkout.session.expired"))
        return events

    def _succeed(self, pi: dict[str, Any]) -> None:
        pi.update(
            status="succeeded",
            amount_received=pi["amount"],
            latest_charge=_id("ch"),
            payment_method=_id("pm"),
            last_payment_error=None,
        )
        # The charge the intent made; Stripe copies the intent's metadata and description onto it once.
        now = int(time.time())
        fee = self.fee_for(pi["amount"], pi["currency"])
        txn = self._book("charge", "charge", pi["amount"], pi["currency"], pi["latest_charge"], now,
                         pi["description"], pi["metadata"].get("out_trade_no", ""), fee=fee,
                         available_on=(now // DAY_SECONDS + AVAILABLE_AFTER_DAYS) * DAY_SECONDS)  # fmt: skip
        self._charges[pi["latest_charge"]] = {
            "id": pi["latest_charge"],
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount"],
            "balance_transaction": txn["id"],
            "captured": True,
            "created": now,
            "currency": pi["currency"],
            "description": pi["description"],
            "livemode": False,
            "metadata": dict(pi["metadata"]),
            "paid": True,
            "payment_intent": pi["id"],
            "status": "succeeded",
        }

    # ---- the balance ledger (the statement) ---------------------------------------
    def fee_for(self, amount: int, currency: str | None = None) -> int:
        """Stripe's processing fee on a charge of `amount` minor units: basis points rounded half up, plus the fixed
        part, never more than the charge (exact integer arithmetic)."""
        code = (currency or self.currency).lower()
        bp, fixed = self.fee_schedule.get(code, self.fee_schedule["*"])
        return min(amount, (amount * bp + 5_000) // 10_000 + fixed)

    def _book(
        self,
        type_: str,
        category: str,
        amount: int,
        currency: str,
        source: str,
        created: int,
        description: Any,
        our_ref: str,
        *,
        fee: int = 0,
        available_on: int | None = None,
    ) -> dict[str, Any]:
        """One balance transaction on the platform balance (caller holds the lock)."""
        txn = {
            "id": _id("txn"),
            "type": type_,
            "reporting_category": category,
            "amount": amount,
            "fee": fee,
            "currency": currency.lower(),
            "created": created,
            "available_on": created if available_on is None else available_on,
            "description": description if isinstance(description, str) else None,
            "source": source,
            "_our_ref": our_ref,
            "_seq": len(self._balance_txns),
        }
        self._balance_txns.append(txn)
        self._balance_txn_index[txn["id"]] = txn
        return txn

    def balance_transactions(self) -> list[dict[str, Any]]:
        """Every balance transaction booked, oldest first, as the API shows it (source not expanded)."""
        with self._lock:
            return [self._render_txn(t, expand=False) for t in self._balance_txns]

    def statement_synthetic(self, day: date, n: int) -> dict[str, int]:
        """The list of UTC `day` becomes `n` generated charges (generated per page, no trades are made); returns
        their count, amount and fee sums."""
        start = _day_start(day)
        with self._lock:
            self._synthetic[start] = n
        amount = sum(_synthetic_amount(i) for i in range(n))
        fee = sum(self.fee_for(_synthetic_amount(i)) for i in range(n))
        return {"count": n, "amount": amount, "fee": fee}

    def _source_object(self, source: str) -> Any:
        if source.startswith("ch_") and source in self._charges:
            charge = dict(self._charges[source])
            pi = self._intents.get(charge["payment_intent"])
            refunded = self._refunded(pi["id"]) if pi else 0
            return _public({**charge, "amount_refunded": refunded, "refunded": refunded >= charge["amount"]})
        if source in self._refunds:
            return _public(self._refunds[source])
        if source in self._transfers:
            return _public(self._transfers[source])
        for transfer in self._transfers.values():
            for reversal in transfer["reversals"]["data"]:
                if reversal["id"] == source:
                    return copy.deepcopy(reversal)
        return source

    def _render_txn(
        self, txn: dict[str, Any], *, expand: bool, override: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        sign = -1 if txn["amount"] < 0 else 1
        amount, fee, status = txn["amount"], txn["fee"], None
        if override:
            amount = sign * int(override.get("amount", abs(amount)))
            fee = int(override.get("fee", fee))
            status = override.get("status")
        fee_details = []
        if fee:
            fee_details = [{"amount": fee, "application": None, "currency": txn["currency"],
                            "description": "Stripe processing fees", "type": "stripe_fee"}]  # fmt: skip
        source = txn["source"]
        return {
            "id": txn["id"],
            "object": "balance_transaction",
            "amount": amount,
            "available_on": txn["available_on"],
            "created": txn["created"],
            "currency": txn["currency"],
            "description": txn["description"],
            "exchange_rate": None,
            "fee": fee,
            "fee_details": fee_details,
            "net": amount - fee,
            "reporting_category": txn["reporting_category"],
            "source": self._source_object(source) if expand else source,
            "status": status or ("available" if time.time() >= txn["available_on"] else "pending"),
            "type": txn["type"],
        }

    def _day_listing(self, gte: int, lt: int, expand: bool) -> list[dict[str, Any]]:
        """The recorded transactions created in [gte, lt), newest first, with the discrepancies applied."""
        listed: list[dict[str, Any]] = []
        for txn in self._balance_txns:
            if not gte <= txn["created"] < lt or txn["_our_ref"] in self.statement_omit and txn["_our_ref"]:
                continue
            override = self.statement_override.get(txn["_our_ref"]) if txn["_our_ref"] else None
            listed.append(self._render_txn(txn, expand=expand, override=override))
            if txn["_our_ref"] and txn["_our_ref"] in self.statement_duplicate:
                twin = txn.setdefault("_twin", _id("txn"))
                listed.append({**self._render_txn(txn, expand=expand, override=override), "id": twin})
        for extra in self.statement_extra:
            created = int(extra.get("created") or gte + DAY_SECONDS // 2)
            if not gte <= created < lt:
                continue
            digest = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode()).hexdigest()[:24]
            charge = {"id": extra["provider_ref"], "object": "charge", "amount": extra["amount"],
                      "currency": self.currency.lower(), "metadata": {"out_trade_no": extra["our_ref"]},
                      "paid": True, "status": "succeeded", "created": created}  # fmt: skip
            fake = {"id": f"txn_{digest}", "type": "charge", "reporting_category": "charge", "amount": extra["amount"],
                    "fee": extra["fee"], "currency": self.currency.lower(), "created": created,
                    "available_on": created, "description": None, "source": extra["provider_ref"]}  # fmt: skip
            line = self._render_txn(fake, expand=False, override={"status": extra.get("status", "available")})
            listed.append({**line, "source": charge if expand else extra["provider_ref"]})
        listed.sort(key=lambda t: t["created"], reverse=True)  # a stable sort: same-second lines keep their order
        return listed

    def _synthetic_page(self, start: int, n: int, after: str, limit: int, expand: bool) -> tuple[list[Any], bool]:
        top = n - 1  # newest first
        if after:
            m = re.fullmatch(rf"txn_syn{start}x(\d{{8}})", after)
            if not m or int(m[1]) >= n:
                raise _missing("balance transaction", after, "starting_after")
            top = int(m[1]) - 1
        day = datetime.fromtimestamp(start, UTC).strftime("%Y%m%d")
        page = []
        for i in range(top, max(top - limit, -1), -1):
            amount, created, charge_id = _synthetic_amount(i), start + i * DAY_SECONDS // n, f"ch_syn{start}x{i:08d}"
            fee = self.fee_for(amount)
            txn = {"id": f"txn_syn{start}x{i:08d}", "type": "charge", "reporting_category": "charge", "amount": amount,
                   "fee": fee, "currency": self.currency.lower(), "created": created,
                   "available_on": (created // DAY_SECONDS + AVAILABLE_AFTER_DAYS) * DAY_SECONDS,
                   "description": None, "source": charge_id}  # fmt: skip
            line = self._render_txn(txn, expand=False)
            if expand:
                line["source"] = {"id": charge_id, "object": "charge", "amount": amount, "created": created,
                                  "currency": self.currency.lower(), "balance_transaction": txn["id"],
                                  "metadata": {"out_trade_no": f"SYN{day}{i:07d}"}, "paid": True,
                                  "status": "succeeded"}  # fmt: skip
            page.append(line)
        return page, top - limit >= 0

    def _list_balance_transactions(self, params: dict[str, Any]) -> Any:
        _unknown_params(params, BALANCE_TXN_PARAMS)
        limit = min(_int_param(params, "limit", required=False) or 10, 100)
        expand = params.get("expand") or []
        if not isinstance(expand, list) or any(e != "data.source" for e in expand):
            raise ApiError(400, "This property cannot be expanded (only data.source here).", param="expand")
        gte, lt = _created_range(params.get("created"))
        after = params.get("starting_after") or ""
        if not isinstance(after, str):
            raise ApiError(400, "Invalid starting_after: must be a string.", param="starting_after")
        with self._lock:
            synthetic = self._synthetic.get(gte) if lt - gte == DAY_SECONDS else None
            if synthetic is not None:
                data, more = self._synthetic_page(gte, synthetic, after, limit, bool(expand))
            else:
                listed = self._day_listing(gte, lt, bool(expand))
                pos = 0
                if after:
                    pos = next((i + 1 for i, t in enumerate(listed) if t["id"] == after), -1)
                    if pos < 0:
                        raise _missing("balance transaction", after, "starting_after")
                data, more = listed[pos : pos + limit], pos + limit < len(listed)
        if self.statement_corrupt == "net" and data:
            data[0]["net"] += 1
        answer = {"object": "list", "data": data, "has_more": more, "url": "/v1/balance_transactions"}
        if self.statement_corrupt == "truncate":
            raw = json.dumps(answer, indent=2).encode()
            return raw[: len(raw) // 2]
        return answer

    # ---- events ----------------------------------------------------------
    def _new_event(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        acct = self._require_account()
        event = {
            "id": _id("evt"),
            "object": "event",
            "account": acct.id,
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": _public(obj)},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        with self._lock:
            self._events[event["id"]] = event
        return copy.deepcopy(event)

    def _final_event(self, pi: dict[str, Any], event_type: str) -> dict[str, Any]:
        with self._lock:
            known = self._final_events.get((pi["id"], event_type))
            if known:
                return copy.deepcopy(self._events[known])
            event = self._new_event(event_type, pi)
            self._final_events[(pi["id"], event_type)] = event["id"]
            return event

    def _deliver(self, event: dict[str, Any], *, background: bool = False) -> None:
        """Send an event to the webhook endpoint, obeying drop/duplicate/delay faults; never raises."""
        if "*" not in self.enabled_events and event["type"] not in self.enabled_events:
            return  # the endpoint does not subscribe to this type: Stripe sends it nowhere
        if self.faults.take("drop_notify"):
            self._record(event, url="", dropped=True)
            return
        times = 2 if self.faults.take("duplicate_notify") else 1
        delay = self.faults.notify_delay
        if background or delay > 0:
            threading.Thread(target=self._send, args=(event, times, delay), daemon=True).start()
        else:
            self._send(event, times, 0.0)

    def _deliver_all(self, events: list[dict[str, Any]], *, background: bool = False) -> None:
        for event in events:
            self._deliver(event, background=background)

    def _send(self, event: dict[str, Any], times: int, delay: float) -> None:
        if delay:
            time.sleep(delay)
        url = self._account.webhook_url if self._account else ""
        if not url:
            self._record(event, url="", error="no webhook endpoint configured")
            logger.info("stripe sim: %s %s not sent, no webhook endpoint", event["type"], event["id"])
            return
        body = json.dumps(event, indent=2).encode()
        for _ in range(times):
            # Every delivery is signed afresh (a new t), as Stripe does on its retries.
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": self.signature_header(body),
            }
            try:
                resp = requests.post(url, data=body, headers=headers, timeout=NOTIFY_TIMEOUT)
                self._record(event, url=url, status=resp.status_code)
            except requests.RequestException as exc:
                # Stripe would retry for days; the payment stays made whatever the endpoint does.
                self._record(event, url=url, error=type(exc).__name__)
                logger.warning("stripe sim: webhook %s to %s failed: %s", event["id"], url, type(exc).__name__)

    def _record(self, event: dict[str, Any], *, url: str, **outcome: Any) -> None:
        with self._lock:
            self.deliveries.append({"event_id": event["id"], "type": event["type"], "url": url, **outcome})

    def notify_request(self, out_trade_no: str, *, variant: str = VALID) -> NotifyRequest:
        """checkout.session.completed for the newest session (checkout.session.expired for CLOSED), forged as
        `variant` says. For an unpaid session the event is a paid snapshot; the session stays as it is."""
        if variant not in self.notify_variants:
            raise ValueError(f"stripe has no {variant!r} variant")
        with self._lock:
            cs = copy.deepcopy(self._session_for(out_trade_no))
            if variant == CLOSED:
                cs.update(status="expired")
                event = self._final_event(cs, "checkout.session.expired")
            else:
                if cs["status"] != "complete":
                    cs.update(
                        status="complete", payment_status="paid", payment_intent=cs["payment_intent"] or _id("pi")
                    )
                event = self._final_event(cs, "checkout.session.completed")
        obj = event["data"]["object"]
        timestamp = int(time.time())
        if variant in (WRONG_AMOUNT, WRONG_CURRENCY, WRONG_MERCHANT, UNKNOWN_ORDER):
            event["id"] = _id("evt")  # a different event, really signed by the provider
        if variant == WRONG_AMOUNT:
            obj["amount_total"] = obj["amount_subtotal"] = obj["amount_total"] + 1
        elif variant == WRONG_CURRENCY:
            obj["currency"] = "eur" if obj["currency"] == "usd" else "usd"
        elif variant == WRONG_MERCHANT:
            event["account"] = _id("acct", 16)
        elif variant == UNKNOWN_ORDER:
            obj["id"] = _id("cs_test", 58)
            obj["client_reference_id"] = obj["metadata"]["out_trade_no"] = f"{out_trade_no}-unknown"
        elif variant == STALE_TIMESTAMP:
            timestamp -= STALE_SECONDS
        return self._signed_request(event, timestamp, broken=variant == BAD_SIGNATURE)

    def event_request(self, event_type: str, object_id: str) -> NotifyRequest:
        """A signed event of any type about one of our objects (session, intent or refund) as it is now."""
        with self._lock:
            obj = self._sessions.get(object_id) or self._intents.get(object_id) or self._refunds[object_id]
            event = self._new_event(event_type, obj)
        return self._signed_request(event, int(time.time()))

    def refund_notify_request(self, refund_no: str, *, event_type: str = "refund.created") -> NotifyRequest:
        """A signed refund.created / refund.updated (a Refund) or charge.refunded (a Charge with its refunds)."""
        with self._lock:
            refund = next(r for r in self._refunds.values() if r["metadata"].get("refund_no") == refund_no)
            if event_type == "charge.refunded":
                pi = self._intents[refund["payment_intent"]]
                refunds = sorted(
                    (r for r in self._refunds.values() if r["payment_intent"] == pi["id"]),
                    key=lambda r: r["_seq"],
                    reverse=True,
                )
                obj = self._charge(pi, refunds)
            else:
                obj = refund
            event = self._new_event(event_type, obj)
        return self._signed_request(event, int(time.time()))

    def _charge(self, pi: dict[str, Any], refunds: list[dict[str, Any]]) -> dict[str, Any]:
        refunded = sum(r["amount"] for r in refunds)
        return {
            "id": pi["latest_charge"],
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": pi["amount_received"],
            "amount_refunded": refunded,
            "currency": pi["currency"],
            "metadata": dict(pi["metadata"]),
            "payment_intent": pi["id"],
            "refunded": refunded >= pi["amount_received"],
            "status": "succeeded",
            "refunds": {"object": "list", "data": [_public(r) for r in refunds], "has_more": False},
        }

    def _signed_request(self, event: dict[str, Any], timestamp: int, *, broken: bool = False) -> NotifyRequest:
        body = json.dumps(event, indent=2).encode()
        header = self.signature_header(body, timestamp)
        if broken:
            # Flip the last hex digit of every v1: still well-formed, never valid.
            header = re.sub(r"(v1=[0-9a-f]*)([0-9a-f])", lambda m: m[1] + ("0" if m[2] != "0" else "1"), header)
        headers = {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header}
        return NotifyRequest(method="POST", body=body, headers=headers, content_type="application/json")

    # ---- the API -----------------------------------------------------------
    def handle_api(
        self, method: str, path: str, headers: Any, params: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        """One /v1 request -> (status, JSON body or None, extra headers). Idempotent POSTs replay."""
        parts = [p for p in path.split("/") if p][1:]  # without "v1"
        confirm = method == "POST" and len(parts) == 3 and parts[0] == "payment_intents" and parts[2] == "confirm"
        if confirm and "key" in params:
            # A card form (Stripe.js) confirms with the publishable key and the intent's client secret.
            scope = self._authenticate_confirm(parts[1], params)
        else:
            scope = self._authenticate(headers).secret_key
        key = headers.get("Idempotency-Key", "") if method == "POST" else ""
        if not key:
            return self._route(method, parts, params)
        fingerprint = json.dumps([path, params], sort_keys=True)
        with self._lock:
            saved = self._idempotency.get((scope, key))
            if saved is None:
                self._idempotency[(scope, key)] = _Saved(fingerprint)
        if saved is not None:
            if saved.fingerprint != fingerprint:
                raise ApiError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key[:64]}' if you meant to execute a different request.",
                    type_="idempotency_error",
                )
            if not saved.status:
                raise ApiError(409, "There is currently another in-progress request using this Idempotent Key.",
                               type_="idempotency_error", code="idempotency_key_in_use")  # fmt: skip
            return saved.status, copy.deepcopy(saved.body), {**saved.headers, "Idempotent-Replayed": "true"}
        try:
            status, body, extra = self._route(method, parts, params)
        except ApiError as exc:
            with self._lock:
                if exc.replayable:
                    self._idempotency[(scope, key)] = _Saved(fingerprint, exc.status, exc.body)
                else:
                    del self._idempotency[(scope, key)]  # failed validation: nothing saved, safe to retry
            raise
        with self._lock:
            self._idempotency[(scope, key)] = _Saved(fingerprint, status, copy.deepcopy(body), extra)
        return status, body, extra

    def _authenticate_confirm(self, intent_id: str, params: dict[str, Any]) -> str:
        acct = self._require_account()
        key = params.get("key", "")
        if not isinstance(key, str) or not _same(key, acct.publishable_key):
            raise ApiError(401, f"Invalid API Key provided: {_mask(str(key))}")
        with self._lock:
            pi = self._intents.get(intent_id)
        if pi is None:
            raise _missing("payment_intent", intent_id, "intent")
        given = params.get("client_secret", "")
        if not isinstance(given, str) or not _same(given, pi["client_secret"]):
            raise ApiError(
                400,
                "The client_secret provided does not match the client_secret associated with the PaymentIntent.",
                code="payment_intent_invalid_parameter",
                param="client_secret",
            )
        return acct.publishable_key

    def _route(self, method: str, parts: list[str], params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        match method, parts:
            case "POST", ["checkout", "sessions"]:
                return 200, self._create_session(params), {}
            case "GET", ["checkout", "sessions"]:
                return 200, self._list_sessions(params), {}
            case "GET", ["checkout", "sessions", session_id]:
                return 200, self._public_session(session_id), {}
            case "POST", ["checkout", "sessions", session_id, "expire"]:
                return 200, self._expire(session_id, params), {}
            case "POST", ["payment_intents"]:
                return 200, self._create_intent(params), {}
            case "GET", ["payment_intents", "search"]:
                return 200, self._search(params), {}
            case "GET", ["payment_intents", intent_id]:
                return 200, self._public_intent(intent_id), {}
            case "POST", ["payment_intents", intent_id, "cancel"]:
                return 200, self._cancel(intent_id, params), {}
            case "POST", ["payment_intents", intent_id, "confirm"]:
                return self._confirm(intent_id, params)
            case "POST", ["refunds"]:
                return 200, self._create_refund(params), {}
            case "GET", ["refunds"]:
                return 200, self._list_refunds(params), {}
            case "POST", ["transfers"]:
                return 200, self._create_transfer(params), {}
            case "GET", ["transfers"]:
                return 200, self._list_transfers(params), {}
            case "GET", ["transfers", transfer_id]:
                with self._lock:
                    return 200, _public(self._transfer(transfer_id)), {}
            case "POST", ["transfers", transfer_id, "reversals"]:
                return 200, self._create_reversal(transfer_id, params), {}
            case "GET", ["balance"]:
                return 200, self._balance_object(), {}
            case "GET", ["balance_transactions"]:
                return 200, self._list_balance_transactions(params), {}
            case "GET", ["balance_transactions", txn_id]:
                with self._lock:
                    txn = self._balance_txn_index.get(txn_id)
                    if txn is None:
                        raise _missing("balance transaction", txn_id, "id")
                    return 200, self._render_txn(txn, expand="data.source" in (params.get("expand") or [])), {}
            case "GET", ["charges", charge_id]:
                with self._lock:
                    if charge_id not in self._charges:
                        raise _missing("charge", charge_id, "id")
                    return 200, self._source_object(charge_id), {}
            case "GET", ["refunds", refund_id]:
                with self._lock:
                    refund = self._refunds.get(refund_id)
                    if refund is None:
                        raise _missing("refund", refund_id, "id")
                    return 200, _public(refund), {}
        raise ApiError(404, f"Unrecognized request URL ({method}: /v1/{'/'.join(parts)}).")

    # ---- Checkout Sessions ---------------------------------------------------
    def _create_session(self, params: dict[str, Any]) -> dict[str, Any]:
        allowed = {"mode", "line_items", "success_url", "cancel_url", "client_reference_id", "metadata"}
        allowed |= {"payment_intent_data", "payment_method_types", "expires_at", "customer_email", "locale", "expand"}
        _unknown_params(params, allowed)
        if params.get("mode") != "payment":
            raise ApiError(400, "This account takes one-time payments only: mode must be payment.", param="mode")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "Missing required param: line_items.", code="parameter_missing", param="line_items")
        total, currency, names = 0, None, []
        for i, item in enumerate(items):
            price = item.get("price_data") if isinstance(item, dict) else None
            if not isinstance(price, dict):
                raise ApiError(400, "Each line item needs price_data.", param=f"line_items[{i}][price_data]")
            unit = _int_param(price, "unit_amount", required=True)
            quantity = _int_param(item, "quantity", required=True)
            item_currency = price.get("currency")
            if not isinstance(item_currency, str) or not re.fullmatch(r"[a-z]{3}", item_currency):
                raise ApiError(400, "Invalid currency: must be a lowercase ISO code.",
                               param=f"line_items[{i}][price_data][currency]")  # fmt: skip
            if currency not in (None, item_currency):
                raise ApiError(400, "All line items must have the same currency.", param="line_items")
            name = _dig_str(price, "product_data", "name")
            if not name:
                raise ApiError(400, "Missing product_data[name].", code="parameter_missing",
                               param=f"line_items[{i}][price_data][product_data][name]")  # fmt: skip
            total, currency = total + unit * quantity, item_currency
            names.append(name)
        urls = {}
        for name in ("success_url", "cancel_url"):
            url = params.get(name)
            if url is not None and (not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https")):
                raise ApiError(400, f"Not a valid URL: {name}", code="url_invalid", param=name)
            urls[name] = url
        if not urls["success_url"]:
            raise ApiError(400, "Missing required param: success_url.", code="parameter_missing", param="success_url")
        now = int(time.time())
        expires_at = _int_param(params, "expires_at", required=False) or now + SESSION_MAX_SECONDS
        if expires_at < now + SESSION_MIN_SECONDS:
            raise ApiError(400, "The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
                           "creation.", param="expires_at")  # fmt: skip
        if expires_at > now + SESSION_MAX_SECONDS:
            raise ApiError(400, "The `expires_at` timestamp must be less than 24 hours from Checkout Session "
                           "creation.", param="expires_at")  # fmt: skip
        pi_data = params.get("payment_intent_data", {})
        if not isinstance(pi_data, dict):
            raise ApiError(400, "Invalid payment_intent_data.", param="payment_intent_data")
        pi_data = {"description": pi_data.get("description"), "metadata": _metadata(pi_data)}
        reference = params.get("client_reference_id")
        if reference is not None and (not isinstance(reference, str) or not 0 < len(reference) <= 200):
            raise ApiError(400, "Invalid client_reference_id.", param="client_reference_id")
        with self._lock:
            session_id = _id("cs_test", 58)
            cs = {
                "id": session_id,
                "object": "checkout.session",
                "amount_subtotal": total,
                "amount_total": total,
                "cancel_url": urls["cancel_url"],
                "client_reference_id": reference,
                "created": now,
                "currency": currency,
                "expires_at": expires_at,
                "livemode": False,
                "metadata": _metadata(params),
                "mode": "payment",
                "payment_intent": None,
                "payment_method_types": ["card"],
                "payment_status": "unpaid",
                "status": "open",
                "success_url": urls["success_url"],
                "url": f"{self.base_url}/c/pay/{session_id}",
                "_names": names,
                "_payment_intent_data": pi_data,
                "_seq": len(self._sessions),
            }
            self._sessions[session_id] = cs
            return _public(cs)

    def _session(self, session_id: str) -> dict[str, Any]:
        cs = self._sessions.get(session_id)
        if cs is None:
            raise _missing("checkout.session", session_id, "session")
        return cs

    def _public_session(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            cs = self._session(session_id)
            events = self._lapse_locked(cs)
            answer = _public(cs)
        self._deliver_all(events, background=True)
        return answer

    def _list_sessions(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, {"payment_intent", "status", "limit", "expand"})
        limit = min(_int_param(params, "limit", required=False) or 10, 100)
        events: list[dict[str, Any]] = []
        with self._lock:
            found = []
            for cs in sorted(self._sessions.values(), key=lambda cs: cs["_seq"], reverse=True):
                events += self._lapse_locked(cs)
                if params.get("payment_intent") not in (None, cs["payment_intent"]):
                    continue
                if params.get("status") not in (None, cs["status"]):
                    continue
                found.append(cs)
            data = [_public(cs) for cs in found[:limit]]
        self._deliver_all(events, background=True)
        return {"object": "list", "data": data, "has_more": len(found) > limit, "url": "/v1/checkout/sessions"}

    def _expire(self, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, {"expand"})
        with self._lock:
            cs = self._session(session_id)
            events = self._lapse_locked(cs)
            if cs["status"] != "open":
                raise ApiError(400, f"Only Checkout Sessions with a status in [open] can be expired. This Checkout "
                               f"Session has a status of {cs['status']}.", replayable=True)  # fmt: skip
            events = self._expire_locked(cs)
            answer = _public(cs)
        self._deliver_all(events, background=True)
        return answer

    # ---- PaymentIntents --------------------------------------------------------
    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        allowed = {"amount", "currency", "description", "metadata", "payment_method_types", "expand"}
        _unknown_params(params, allowed | {"receipt_email", "statement_descriptor_suffix"})
        amount = _int_param(params, "amount", required=True)
        currency = params.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z]{3}", currency):
            raise ApiError(400, "Missing or invalid currency.", code="parameter_missing", param="currency")
        methods = params.get("payment_method_types", ["card"])
        if methods != ["card"]:
            raise ApiError(400, "Only card payments are enabled for this account.", param="payment_method_types")
        description = params.get("description")
        with self._lock:
            pi = self._new_intent(amount=amount, currency=currency, description=description, metadata=_metadata(params))
            return _public(pi)

    def _new_intent(self, *, amount: int, currency: str, description: Any, metadata: dict[str, str]) -> dict[str, Any]:
        intent_id = _id("pi")
        pi = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{intent_id}_secret_{_id('s', 25)[2:]}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": currency.lower(),
            "description": description if isinstance(description, str) else None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": metadata,
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
            "_seq": len(self._intents),
        }
        self._intents[intent_id] = pi
        return pi

    def _intent(self, intent_id: str) -> dict[str, Any]:
        pi = self._intents.get(intent_id)
        if pi is None:
            raise _missing("payment_intent", intent_id, "intent")
        return pi

    def _public_intent(self, intent_id: str) -> dict[str, Any]:
        with self._lock:
            return _public(self._intent(intent_id))

    def _search(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, {"query", "limit", "page", "expand"})
        query = params.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ApiError(400, "Missing required param: query.", code="parameter_missing", param="query")
        clauses = _parse_search(query)
        limit = _int_param(params, "limit", required=False) or 10
        with self._lock:
            found = [
                pi
                for pi in sorted(self._intents.values(), key=lambda pi: pi["_seq"], reverse=True)
                if all(_matches(pi, field_, value) for field_, value in clauses)
            ]
            data = [_public(pi) for pi in found[:limit]]
        return {
            "object": "search_result",
            "data": data,
            "has_more": len(found) > limit,
            "next_page": None,
            "url": "/v1/payment_intents/search",
        }

    def _cancel(self, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, {"cancellation_reason", "expand"})
        reason = params.get("cancellation_reason") or "requested_by_customer"
        with self._lock:
            pi = self._intent(intent_id)
            if pi["status"] not in CANCELABLE:
                raise _unexpected_state(pi, "cancel")
            pi.update(status="canceled", canceled_at=int(time.time()), cancellation_reason=reason)
            event = self._final_event(pi, "payment_intent.canceled")
            answer = _public(pi)
        # Events travel apart from the API answer, as on Stripe: the merchant may still be inside this call.
        self._deliver(event, background=True)
        return answer

    def _confirm(self, intent_id: str, params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        _unknown_params(params, {"key", "client_secret", "payment_method", "payment_method_data", "return_url"})
        return_url = params.get("return_url", "")
        if return_url and (not isinstance(return_url, str) or urlsplit(return_url).scheme not in ("http", "https")):
            raise ApiError(400, "return_url must be an http(s) URL.", code="url_invalid", param="return_url")
        card = _card_of(params)
        problem = _card_problem(card)
        with self._lock:
            pi = self._intent(intent_id)
            if pi["status"] not in CONFIRMABLE:
                raise _unexpected_state(pi, "confirm")
            if problem is None:
                self._succeed(pi)
                event = self._final_event(pi, "payment_intent.succeeded")
            else:
                error = _card_error(card, problem)
                pi.update(status="requires_payment_method", last_payment_error=error)
                event = self._new_event("payment_intent.payment_failed", pi)
            answer = _public(pi)
        self._deliver(event)
        if return_url:
            back = {
                "payment_intent": intent_id,
                "payment_intent_client_secret": answer["client_secret"],
                "redirect_status": "succeeded" if problem is None else "failed",
            }
            sep = "&" if urlsplit(return_url).query else "?"
            return 303, None, {"Location": f"{return_url}{sep}{urlencode(back)}"}
        if problem is None:
            return 200, answer, {}
        error = {**answer["last_payment_error"], "payment_intent": answer}
        return 402, {"error": error}, {}

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, {"payment_intent", "amount", "metadata", "reason", "expand"})
        intent_id = params.get("payment_intent")
        if not isinstance(intent_id, str) or not intent_id:
            raise ApiError(400, "Missing required param: payment_intent.", code="parameter_missing",
                           param="payment_intent")  # fmt: skip
        amount = _int_param(params, "amount", required=False)
        reason = params.get("reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise ApiError(400, f"Invalid reason: must be one of {', '.join(REFUND_REASONS)}", param="reason")
        metadata = _metadata(params)
        with self._lock:
            pi = self._intent(intent_id)
            if pi["status"] != "succeeded":
                raise ApiError(400, f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                               code="charge_not_refundable", replayable=True)  # fmt: skip
            left = pi["amount_received"] - self._refunded(intent_id)
            if left <= 0:
                raise ApiError(400, f"Charge {pi['latest_charge']} has already been refunded.",
                               code="charge_already_refunded", replayable=True)  # fmt: skip
            if amount is not None and amount > left:
                raise ApiError(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                               code="amount_too_large", param="amount", replayable=True)  # fmt: skip
            refund = {
                "id": _id("re"),
                "object": "refund",
                "amount": amount or left,
                "charge": pi["latest_charge"],
                "created": int(time.time()),
                "currency": pi["currency"],
                "metadata": metadata,
                "payment_intent": intent_id,
                "reason": reason,
                "status": "succeeded",
                "_seq": len(self._refunds),
            }
            txn = self._book("refund", "refund", -refund["amount"], refund["currency"], refund["id"],
                             refund["created"], f"REFUND FOR CHARGE ({pi['description'] or pi['id']})",
                             metadata.get("refund_no", ""))  # fmt: skip
            refund["balance_transaction"] = txn["id"]
            self._refunds[refund["id"]] = refund
            event = self._new_event("refund.created", refund)
            answer = _public(refund)
        self._deliver(event, background=True)
        return answer

    def _list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, {"payment_intent", "limit", "expand"})
        limit = min(_int_param(params, "limit", required=False) or 10, 100)
        intent_id = params.get("payment_intent")
        with self._lock:
            if intent_id is not None:
                self._intent(str(intent_id))
            found = [
                r
                for r in sorted(self._refunds.values(), key=lambda r: r["_seq"], reverse=True)
                if intent_id is None or r["payment_intent"] == intent_id
            ]
            data = [_public(r) for r in found[:limit]]
        return {"object": "list", "data": data, "has_more": len(found) > limit, "url": "/v1/refunds"}

    # ---- payouts: Connect transfers -------------------------------------------
    def fund(self, amount_minor: int, currency: str | None = None) -> int:
        """Add to the platform's available balance (as charges with Stripe's 4000000000000077 test card do);
        returns the new balance."""
        code = (currency or self.currency).lower()
        with self._lock:
            self._balance[code] = self._balance.get(code, 0) + amount_minor
            return self._balance[code]

    def available(self, currency: str | None = None) -> int:
        with self._lock:
            return self._balance.get((currency or self.currency).lower(), 0)

    def connected_account(self, account_id: str = "", *, transfers: bool = True) -> str:
        """A connected account of the platform (the payee); `transfers=False` leaves its transfers capability
        inactive (onboarding unfinished), so transfers to it are refused."""
        with self._lock:
            account_id = account_id or _id("acct", 16)
            self._connected[account_id] = {"id": account_id, "transfers": transfers}
            return account_id

    def transfers_for(self, payout_no: str) -> list[dict[str, Any]]:
        """The transfers executed for our payout_no, oldest first, as they are now."""
        with self._lock:
            return [_public(t) for t in self.transfers.get(payout_no, [])]

    def reverse(self, payout_no: str, amount_minor: int | None = None) -> dict[str, Any]:
        """The platform takes (part of) the newest transfer of payout_no back, as POST .../reversals does."""
        with self._lock:
            transfer = self.transfers[payout_no][-1]
        params = {} if amount_minor is None else {"amount": str(amount_minor)}
        return self._create_reversal(transfer["id"], params)

    def _transfer(self, transfer_id: str) -> dict[str, Any]:
        transfer = self._transfers.get(transfer_id)
        if transfer is None:
            raise _missing("transfer", transfer_id, "id")
        return transfer

    def tampered(self, payload: Any) -> Any:
        """An API answer as it leaves: the transfers in it rewritten by `tamper_transfers` (saved idempotent
        answers stay faithful, as a man in the middle changes only what travels)."""
        if isinstance(payload, dict) and payload.get("object") == "balance" and self.tamper_balance:
            return {**payload, **copy.deepcopy(self.tamper_balance)}
        if not self.tamper_transfers or not isinstance(payload, dict):
            return payload
        if payload.get("object") == "transfer":
            return {**payload, **copy.deepcopy(self.tamper_transfers)}
        if payload.get("object") == "list" and isinstance(payload.get("data"), list):
            return {**payload, "data": [self.tampered(item) for item in payload["data"]]}
        return payload

    def _create_transfer(self, params: dict[str, Any]) -> dict[str, Any]:
        allowed = {"amount", "currency", "destination", "description", "metadata", "transfer_group"}
        _unknown_params(params, allowed | {"source_transaction", "source_type", "expand"})
        amount = _int_param(params, "amount", required=True)
        assert amount is not None
        currency = params.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[a-z]{3}", currency):
            raise ApiError(400, "Invalid currency: must be a lowercase ISO code.", param="currency")
        destination = params.get("destination")
        if not isinstance(destination, str) or not destination:
            raise ApiError(400, "Missing required param: destination.", code="parameter_missing",
                           param="destination")  # fmt: skip
        description, group = params.get("description"), params.get("transfer_group")
        for name, value in (("description", description), ("transfer_group", group)):
            if value is not None and not isinstance(value, str):
                raise ApiError(400, f"Invalid {name}: must be a string.", param=name)
        metadata = _metadata(params)
        self.transfer_gate.wait(timeout=30)
        with self._lock:
            account = self._connected.get(destination)
            if account is None:
                raise ApiError(400, f"No such destination: '{destination[:64]}'", code="resource_missing",
                               param="destination")  # fmt: skip
            if not account["transfers"]:
                raise ApiError(400, "Your destination account needs to have at least one of the following "
                               "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                               code="insufficient_capabilities_for_transfer", replayable=True)  # fmt: skip
            if self._balance.get(currency, 0) < amount:
                # The endpoint ran and refused: an idempotent retry replays this refusal.
                raise ApiError(400, "You have insufficient available funds in your Stripe account. Try adding "
                               "funds directly to your available balance by creating Charges using the "
                               "4000000000000077 test card.", code="balance_insufficient",
                               replayable=True)  # fmt: skip
            self._balance[currency] -= amount
            transfer_id = _id("tr")
            transfer = {
                "id": transfer_id,
                "object": "transfer",
                "amount": amount,
                "amount_reversed": 0,
                "balance_transaction": _id("txn"),
                "created": int(time.time()),
                "currency": currency,
                "description": description or None,
                "destination": destination,
                "destination_payment": _id("py"),
                "livemode": False,
                "metadata": metadata,
                "reversals": {
                    "object": "list",
                    "data": [],
                    "has_more": False,
                    "total_count": 0,
                    "url": f"/v1/transfers/{transfer_id}/reversals",
                },
                "reversed": False,
                "source_transaction": None,
                "source_type": "card",
                "transfer_group": group or None,
                "_seq": len(self._transfers),
            }
            self._transfers[transfer_id] = transfer
            txn = self._book("transfer", "transfer", -amount, currency, transfer_id, transfer["created"],
                             description, metadata.get("payout_no") or group or "")  # fmt: skip
            transfer["balance_transaction"] = txn["id"]
            self.transfers.setdefault(metadata.get("payout_no") or group or "", []).append(transfer)
            return _public(transfer)

    def _list_transfers(self, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, {"destination", "transfer_group", "limit", "created", "expand"})
        limit = min(_int_param(params, "limit", required=False) or 10, 100)
        with self._lock:
            found = [
                t
                for t in sorted(self._transfers.values(), key=lambda t: t["_seq"], reverse=True)
                if params.get("destination") in (None, t["destination"])
                and params.get("transfer_group") in (None, t["transfer_group"])
            ]
            data = [_public(t) for t in found[:limit]]
        return {"object": "list", "data": data, "has_more": len(found) > limit, "url": "/v1/transfers"}

    def _create_reversal(self, transfer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        _unknown_params(params, {"amount", "description", "metadata", "refund_application_fee", "expand"})
        amount = _int_param(params, "amount", required=False)
        metadata = _metadata(params)
        with self._lock:
            transfer = self._transfer(transfer_id)
            left = transfer["amount"] - transfer["amount_reversed"]
            if left <= 0:
                raise ApiError(400, f"Transfer {transfer_id} has already been reversed.",
                               code="transfer_already_reversed", replayable=True)  # fmt: skip
            if amount is not None and amount > left:
                raise ApiError(400, f"Reversal amount ({amount}) is greater than the amount left on the transfer "
                               f"({left}).", param="amount", replayable=True)  # fmt: skip
            amount = amount or left
            reversal = {
                "id": _id("trr"),
                "object": "transfer_reversal",
                "amount": amount,
                "balance_transaction": _id("txn"),
                "created": int(time.time()),
                "currency": transfer["currency"],
                "metadata": metadata,
                "transfer": transfer_id,
            }
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
            listing = transfer["reversals"]
            listing["data"].insert(0, reversal)
            listing["total_count"] += 1
            txn = self._book("transfer_refund", "transfer_reversal", amount, transfer["currency"], reversal["id"],
                             reversal["created"], None, "")  # fmt: skip
            reversal["balance_transaction"] = txn["id"]
            self._balance[transfer["currency"]] = self._balance.get(transfer["currency"], 0) + amount
            return copy.deepcopy(reversal)

    def _balance_object(self) -> dict[str, Any]:
        """GET /v1/balance: per currency, `available` is what transfers draw on (``fund()``, less transfers, plus
        reversals) plus every charge net of its fee once its available_on has passed, less refunds; `pending` the
        charges (net) not available yet."""
        now = time.time()
        with self._lock:
            available, pending = dict(self._balance), {}
            for txn in self._balance_txns:
                if txn["type"] not in ("charge", "refund"):
                    continue  # transfers and their reversals already moved the transfer balance
                into = available if txn["available_on"] <= now else pending
                into[txn["currency"]] = into.get(txn["currency"], 0) + txn["amount"] - txn["fee"]
                available.setdefault(txn["currency"], 0)

        def listed(amounts: dict[str, int]) -> list[dict[str, Any]]:
            return [
                {"amount": amount, "currency": currency, "source_types": {"card": amount}}
                for currency, amount in sorted(amounts.items())
            ]

        return {
            "object": "balance",
            "available": listed(available),
            "pending": listed({c: pending.get(c, 0) for c in available}),
            "livemode": False,
        }


def _day_start(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _synthetic_amount(i: int) -> int:
    return 100 + (i * 7_919) % 99_900


def _created_range(created: Any) -> tuple[int, int]:
    """created[gte|gt|lt|lte] (or one exact created) as a half-open [gte, lt) range of Unix seconds."""
    if created is None:
        return 0, 2**62
    if isinstance(created, str):
        if not created.isdigit():
            raise ApiError(400, "Invalid integer: created", param="created")
        return int(created), int(created) + 1
    if not isinstance(created, dict) or not created or any(k not in ("gt", "gte", "lt", "lte") for k in created):
        raise ApiError(400, "Invalid created: use gt, gte, lt or lte.", param="created")
    bounds = {}
    for key, raw in created.items():
        if not isinstance(raw, str) or not raw.isdigit():
            raise ApiError(400, f"Invalid integer: created[{key}]", param=f"created[{key}]")
        bounds[key] = int(raw)
    gte = max(bounds.get("gte", 0), bounds.get("gt", -1) + 1)
    lt = min(bounds.get("lt", 2**62), bounds.get("lte", 2**62 - 1) + 1)
    return gte, lt


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in obj.items() if not k.startswith("_")})


def _unexpected_state(pi: dict[str, Any], action: str) -> ApiError:
    return ApiError(
        400,
        f"You cannot {action} this PaymentIntent because it has a status of {pi['status']}.",
        code="payment_intent_unexpected_state",
        payment_intent=_public(pi),
        replayable=True,
    )


def _card_error(card: Any, problem: tuple[str, str]) -> dict[str, Any]:
    """A PaymentIntent's last_payment_error as Stripe writes it: type, code, message and doc_url; a card_declined
    also names the issuer's reason (decline_code)."""
    code, message = problem
    error: dict[str, Any] = {
        "type": "card_error",
        "code": code,
        "message": message,
        "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
    }
    if code == "card_declined":
        number = str(card.get("number", "")).replace(" ", "") if isinstance(card, dict) else ""
        # A real card number in test mode is refused with its own decline code, as on Stripe.
        error["decline_code"] = DECLINING_CARDS[number][1] if number in DECLINING_CARDS else "test_mode_live_card"
    return error


def _test_card(number: str) -> dict[str, str]:
    return {"number": number, "exp_month": "12", "exp_year": "2099", "cvc": "123"}


def _dig_str(obj: Any, *keys: str) -> str:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if isinstance(obj, str) else ""


def _hosted_card(form: dict[str, str]) -> dict[str, str]:
    """The hosted page's fields (as Checkout names them) in the card shape _card_problem reads."""
    expiry = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", form.get("cardExpiry", ""))
    month, year = expiry.groups() if expiry else ("", "")
    return {"number": form.get("cardNumber", ""), "exp_month": month, "exp_year": year, "cvc": form.get("cardCvc", "")}


def _card_of(params: dict[str, Any]) -> Any:
    pm = params.get("payment_method")
    if isinstance(pm, str) and pm in TEST_PAYMENT_METHODS:
        return {"number": TEST_PAYMENT_METHODS[pm], "exp_month": "12", "exp_year": "2099", "cvc": "123"}
    data = params.get("payment_method_data")
    if not isinstance(data, dict) or data.get("type") != "card":
        raise ApiError(400, "Missing payment_method_data[type]=card.", code="parameter_missing",
                       param="payment_method_data[type]")  # fmt: skip
    return data.get("card")


def _parse_search(query: str) -> list[tuple[str, str]]:
    """`metadata['k']:'v'`, `status:'x'`, `currency:'x'` clauses joined by AND; anything else is a 400."""
    clauses, pos = [], 0
    text = query.strip()
    while True:
        m = _CLAUSE_RE.match(text, pos)
        if not m:
            raise ApiError(400, f"Invalid search query: {query[:100]}", code="search_query_invalid", param="query")
        field_ = f"metadata.{_unescape(m[1])}" if m[1] is not None else m[2]
        clauses.append((field_, _unescape(m[3])))
        pos = m.end()
        if pos == len(text):
            return clauses
        sep = re.compile(r"\s+AND\s+").match(text, pos)
        if not sep:
            raise ApiError(400, f"Invalid search query: {query[:100]}", code="search_query_invalid", param="query")
        pos = sep.end()


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _matches(pi: dict[str, Any], field_: str, value: str) -> bool:
    if field_.startswith("metadata."):
        return pi["metadata"].get(field_[len("metadata.") :]) == value
    return str(pi.get(field_)) == value


CHECKOUT_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Checkout (Stripe simulator)</title>
</head><body><h1>Pay <span id="amount">{amount}</span> <span id="currency">{currency}</span></h1>
<p id="product">{names}</p><p id="session-status">{status}</p><p id="error" role="alert">{error}</p>
<form method="post" action="/c/pay/{session_id}" id="payment-form" autocomplete="off">
<label>Card number <input name="cardNumber" id="cardNumber" autocomplete="cc-number" inputmode="numeric"></label>
<label>Expiry <input name="cardExpiry" id="cardExpiry" autocomplete="cc-exp" placeholder="MM / YY"></label>
<label>CVC <input name="cardCvc" id="cardCvc" autocomplete="cc-csc" size="4"></label>
<button id="submit" type="submit">Pay</button></form>
<p><a id="cancel" href="{cancel_url}">Back to the shop</a></p>
<p>{ok} pays, {declined} is declined, {insufficient} has insufficient funds, {expired} has expired.</p></body></html>"""

CHECKOUT_CLOSED_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Checkout (Stripe simulator)</title>
</head><body><h1 id="session-closed">This Checkout Session is no longer available</h1>
<p id="session-status">{status}</p><p><a id="cancel" href="{cancel_url}">Back to the shop</a></p></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server_version = "StripeSimulator/1.0"

    @property
    def sim(self) -> StripeSimulator:
        return self.server.simulator  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args: Any) -> None:
        logger.debug("%s - " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        if url.path.startswith("/c/pay/"):
            return self._checkout_page(url.path.removeprefix("/c/pay/"), dict(parse_qsl(body)))
        if not url.path.startswith("/v1/"):
            return self._send(404, b"Not Found", "text/plain")
        faults = self.sim.faults
        faults.before_answer()
        if faults.take("fail_5xx"):
            error = {"error": {"type": "api_error", "message": "An unknown error occurred (simulated)."}}
            return self._send_json(500, error, {})
        hang = faults.take("timeout")
        try:
            params = decode_form(url.query if self.command == "GET" else body)
            status, payload, extra = self.sim.handle_api(self.command, url.path, self.headers, params)
        except ApiError as exc:
            status, payload, extra = exc.status, exc.body, {}
        if hang:
            time.sleep(faults.hang_seconds)  # acted already; the client gave up before this answer
        if payload is None:
            return self._send(status, b"", "text/plain", extra)
        if isinstance(payload, bytes):  # an answer broken on purpose (statement_corrupt)
            return self._send(status, payload, "application/json", {"Request-Id": _id("req", 14), **extra})
        self._send_json(status, self.sim.tampered(payload), extra)

    def _send_json(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        data = json.dumps(payload, indent=2).encode()
        self._send(status, data, "application/json", {"Request-Id": _id("req", 14), **extra})

    def _send(self, status: int, data: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("stripe sim: client left before the answer")

    def _checkout_page(self, session_id: str, form: dict[str, str]) -> None:
        """The hosted payment page: GET shows it, POST submits one card (a decline shows the page again)."""
        error, status = "", 200
        if self.command == "POST":
            try:
                problem = self.sim._attempt(session_id, _hosted_card(form))
            except KeyError:
                return self._send(404, b"No such checkout.session", "text/plain")
            except ValueError:
                status = 409  # expired or already paid: the page says so below
            else:
                cs = self.sim.session(session_id)
                if problem is None and cs is not None:
                    back = cs["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
                    return self._send(303, b"", "text/plain", {"Location": back})
                error = problem[1] if problem else ""
        cs = self.sim.session(session_id)
        if cs is None:
            return self._send(404, b"No such checkout.session", "text/plain")
        if cs["status"] == "open" and time.time() >= cs["expires_at"]:
            self.sim._lapse(self.sim._sessions[session_id])
            cs = self.sim.session(session_id) or cs
        fields = {
            "session_id": cs["id"],
            "amount": _major(cs["amount_total"], cs["currency"]),
            "currency": cs["currency"].upper(),
            "names": ", ".join(self.sim._sessions[session_id]["_names"]),
            "status": cs["status"],
            "error": error,
            "cancel_url": cs["cancel_url"] or "",
            "ok": CARD_OK,
            "declined": CARD_DECLINED,
            "insufficient": CARD_INSUFFICIENT_FUNDS,
            "expired": CARD_EXPIRED,
        }
        template = CHECKOUT_HTML if cs["status"] == "open" else CHECKOUT_CLOSED_HTML
        page = template.format(**{k: html.escape(str(v)) for k, v in fields.items()})
        self._send(status, page.encode(), "text/html")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-file", required=True, help="SimAccount JSON: read if present, else written")
    parser.add_argument("--webhook-url", default="", help="the merchant's webhook endpoint, e.g. .../notify/stripe/")
    parser.add_argument("--currency", default="CNY")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sim = StripeSimulator(args.host, args.port, args.currency).start()
    path = Path(args.account_file)
    if path.exists():
        account = sim.load_account(json.loads(path.read_text(encoding="utf-8")), webhook_url=args.webhook_url)
    else:
        account = sim.account(webhook_url=args.webhook_url)
    # Written again when it exists too: the base_url follows the port of this run.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(account), indent=2), encoding="utf-8")
    print(sim.base_url, flush=True)
    try:
        threading.Event().wait()  # serve until killed
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
