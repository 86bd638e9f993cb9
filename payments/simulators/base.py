"""What every provider simulator offers the conformance suite, the benchmarks and the demo.

A simulator is the provider's side of one protocol on loopback: it keeps trades, verifies our requests with
the provider's rules, signs its answers and callbacks with its own keys, and can be told to misbehave.
Simulators never import adapter code: the two sides are written separately so they check each other.
"""

from __future__ import annotations

import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol, Self

# Forged-callback variants the conformance suite can ask for. A simulator lists the ones its protocol has.
VALID = "valid"
BAD_SIGNATURE = "bad_signature"
WRONG_AMOUNT = "wrong_amount"
WRONG_CURRENCY = "wrong_currency"
WRONG_MERCHANT = "wrong_merchant"  # another merchant / app id, correctly signed by the provider
UNKNOWN_ORDER = "unknown_order"
STALE_TIMESTAMP = "stale_timestamp"  # only protocols that sign a timestamp (WeChat v3, Stripe)
TAMPERED_CIPHERTEXT = "tampered_ciphertext"  # only WeChat v3 (encrypted resource)
CLOSED = "closed"  # a correctly signed "trade closed / failed" callback (out-of-order tests)


class LoopbackServer:
    """Serves a simulator on 127.0.0.1 from a daemon thread: `start()`, `stop()`, `base_url`.

    HTTP simulators name their request handler in `handler_class` (it finds the simulator as
    `self.server.simulator`); others (the SOAP bank's WSGI app) override `_make_server`.
    """

    handler_class: type[BaseHTTPRequestHandler]
    _address: tuple[str, int]
    _server: socketserver.BaseServer | None = None
    _thread: threading.Thread | None = None

    def _make_server(self) -> socketserver.BaseServer:
        server = ThreadingHTTPServer(self._address, self.handler_class)
        server.daemon_threads = True
        server.simulator = self  # type: ignore[attr-defined]
        return server

    def start(self) -> Self:
        server = self._make_server()
        # Short poll interval so stop() returns quickly in test teardown.
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def base_url(self) -> str:
        if not self._server:
            raise RuntimeError(f"{type(self).__name__} not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


@dataclass
class Faults:
    """Misbehaviour switches, read on every request; counters count down as they fire.

    - delay: seconds added before every API answer.
    - fail_5xx: the next N API calls answer HTTP 500 (after recording nothing).
    - timeout: the next N API calls act (create/refund are recorded) and then hang `hang_seconds` before
      answering, longer than the client's read timeout: the caller cannot know the outcome.
    - drop_notify: the next N callbacks are not sent.
    - duplicate_notify: the next N callbacks are sent twice.
    - notify_delay: seconds before a callback is sent (sent from a background thread when > 0).
    """

    delay: float = 0.0
    fail_5xx: int = 0
    timeout: int = 0
    hang_seconds: float = 3.0
    drop_notify: int = 0
    duplicate_notify: int = 0
    notify_delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str) -> bool:
        """Consume one firing of a counted fault; True when it fires."""
        with self._lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False

    def before_answer(self) -> None:
        if self.delay:
            time.sleep(self.delay)

    def reset(self) -> None:
        with self._lock:
            self.delay = self.notify_delay = 0.0
            self.fail_5xx = self.timeout = self.drop_notify = self.duplicate_notify = 0


@dataclass(frozen=True)
class SimAccount:
    """What an operator would type into the channel account form for this simulator's merchant."""

    merchant_no: str
    base_url: str
    currency: str
    credentials: dict[str, str]


@dataclass(frozen=True)
class NotifyRequest:
    """A callback as the provider would send it, built but not sent (tests post it themselves)."""

    method: str
    body: bytes
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/x-www-form-urlencoded"


class ProviderSimulator(Protocol):
    code: str
    faults: Faults
    notify_variants: frozenset[str]

    def start(self) -> ProviderSimulator: ...

    def stop(self) -> None: ...

    @property
    def base_url(self) -> str: ...

    def account(self, *, webhook_url: str = "") -> SimAccount:
        """The demo merchant's account (created on first call). `webhook_url` is where protocols with a
        fixed per-account endpoint (Stripe) send events; per-payment notify URLs come with each create."""
        ...

    def trade_for(self, out_trade_no: str) -> dict | None:
        """The provider's record: at least amount_minor, currency, status ('pending', 'paid', 'closed',
        'refunded'), provider_trade_no, notify_url."""
        ...

    def pay(self, out_trade_no: str) -> None:
        """The buyer pays (QR scanned, card confirmed): mark paid, then send the callback (faults apply)."""
        ...

    def decline(self, out_trade_no: str) -> None:
        """The buyer's attempt is declined (card refused, bank said no): the provider reports the decline
        (Stripe `payment_intent.payment_failed`, WeChat `PAYERROR`, the bank's `DECLINED`) and the trade stays
        payable, so the buyer can try again. Only simulators whose protocol has a decline implement it."""
        ...

    def notify_request(self, out_trade_no: str, *, variant: str = VALID) -> NotifyRequest:
        """A paid (or, for CLOSED, closed) callback for the trade, forged as `variant` says."""
        ...
