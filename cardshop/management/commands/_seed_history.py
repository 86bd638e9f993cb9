"""The demo shop's past: orders placed, paid, delivered, cancelled, expired and refunded through the real
services, then moved back over the last two weeks so the operators' dashboard has something to show.

Every order goes the road a real one goes: `order_create`, `order_payment_start` (the adapter creates the trade at
the running simulator over HTTP), the buyer pays at the simulator's own cashier page over HTTP as a browser would
(GET the pay link, POST its form), and, because the shop's web server is not up yet to receive the notify,
`payment_sync` applies the result through the query path (which delivers the codes). Refunds, cancellations,
manual fulfilment and expiry go through their services too. The only direct writes are the timestamp shifts in
`_history_backdate`.

Used by `seed_demo` only; nothing else may import it.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import requests
from django.conf import settings
from django.utils import timezone

from cardshop.models import CardSecret, DeliveryKind, Order, OrderEvent, OrderState, Product
from cardshop.services.checkout import order_create, order_payment_start
from cardshop.services.orders import order_cancel, order_fulfil_manual, orders_expire_due, payment_sync
from cardshop.services.pricing import unit_price_for
from cardshop.services.refunds import order_refund_request, refund_sync
from cardshop.services.stock import card_secrets_import
from payments import facade as payments
from payments.contracts import RefundStatus

HISTORY_DAYS = 14
DEFAULT_ORDERS = 60
# What the buyer chose (channel, method) and how often. The aggregator takes Alipay and WeChat Pay too.
PAY_CHOICES = (
    (("alipay", "alipay"), 5),
    (("wechatpay", "wxpay"), 4),
    (("epay", "alipay"), 2),
    (("epay", "wxpay"), 2),
    (("stripe", "card"), 2),
    (("bankgw", "bank"), 2),
)
# The products buyers pick for codes (the manual top-up has its own two orders), and how often.
PRODUCT_WEIGHTS = {"steam-10": 8, "office-key": 4, "photo-kit": 3, "vpn-30d": 2}
# Stripe's documented test card (printed by scripts/demo.sh too): not a secret.
TEST_CARD = {"cardNumber": "4242 4242 4242 4242", "cardExpiry": "12 / 34", "cardCvc": "123"}
BROWSER_TIMEOUT = 10
FORM_ACTION = re.compile(r'<form[^>]*method="post"[^>]*action="([^"]+)"', re.IGNORECASE)


class HistoryError(Exception):
    """The history could not be made as planned (a simulator answered something unexpected)."""


@dataclass(frozen=True)
class Planned:
    """One order of the past: what was bought, by whom, how it was paid, what became of it, and when."""

    slug: str
    quantity: int
    buyer: int
    channel: str
    method: str
    fate: str  # delivered | refunded | cancelled | expired | manual_waiting | manual_fulfilled
    created: datetime
    paid: datetime | None
    done: datetime | None  # refunded, cancelled, expired or manually fulfilled at


def simulators_listening(base_urls: dict[str, str]) -> dict[str, str]:
    """The channels whose simulator accepts a connection now (seed_demo also runs with none started)."""
    up = {}
    for code, base_url in base_urls.items():
        parts = urlsplit(base_url)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=0.5):
                up[code] = base_url
        except OSError:
            continue
    return up


def _fates(count: int, rng: random.Random) -> list[str]:
    fixed = ["manual_waiting", "manual_fulfilled", "refunded"]
    if count >= 20:
        fixed.append("refunded")
    fixed += ["expired"] * max(1, count // 12) + ["cancelled"] * max(1, count // 20)
    fates = (fixed + ["delivered"] * max(0, count - len(fixed)))[:count]
    rng.shuffle(fates)
    return fates


def _when(rng: random.Random, *, now: datetime, today: datetime, days_ago: int) -> datetime:
    """A creation time in shop time: today (before now, leaving the payment time to land) or on a past day."""
    if days_ago == 0:
        window = max(60, int((now - today).total_seconds()) - 15 * 60)
        return min(today + timedelta(seconds=rng.randrange(window)), now - timedelta(minutes=10))
    day = today - timedelta(days=days_ago)
    # Shoppers buy from morning to late evening, shop time.
    return day + timedelta(hours=rng.randint(8, 23), minutes=rng.randrange(60), seconds=rng.randrange(60))


def plan(*, count: int, seed: int, channels: dict[str, dict[str, int]], now: datetime) -> list[Planned]:
    """The orders to make, oldest first. Deterministic for a seed, a set of channels and a day.

    `channels`: the channels to pay through, each with the amount limits its account was given."""
    rng = random.Random(seed)
    tz = ZoneInfo(settings.TIME_ZONE)
    local_now = now.astimezone(tz)
    today = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    choices = [(c, w) for c, w in PAY_CHOICES if c[0] in channels]
    if not choices:
        return []
    pairs, pair_weights = zip(*choices, strict=True)
    slugs, slug_weights = zip(*PRODUCT_WEIGHTS.items(), strict=True)
    products = {p.slug: p for p in Product.objects.filter(slug__in=[*slugs, "game-topup"])}
    today_left = max(4, count // 7)  # so the hourly chart has bars
    recent_refund = True  # and one refund lands in this week's figures
    buyers = max(8, count // 3)
    planned = []
    for fate in _fates(count, rng):
        slug = "game-topup" if fate.startswith("manual") else rng.choices(slugs, slug_weights)[0]
        quantity = 1 if slug == "game-topup" else rng.choices((1, 2, 3), (7, 2, 1))[0]
        # Only orders settled at once may be today's: the others' later steps must lie in the past.
        if today_left > 0 and fate in ("delivered", "manual_waiting"):
            today_left, days_ago = today_left - 1, 0
        elif recent_refund and fate == "refunded":
            recent_refund, days_ago = False, rng.randint(1, 2)
        else:
            days_ago = rng.randint(1, HISTORY_DAYS - 1)
        created = _when(rng, now=local_now, today=today, days_ago=days_ago)
        amount = unit_price_for(products[slug], quantity) * quantity if slug in products else 0  # tiers too
        # E.g. the bank takes 10.00 and up, the aggregator up to 500.00 (seed_demo's CHANNELS).
        allowed = [(p, w) for p, w in zip(pairs, pair_weights, strict=True) if _takes(channels[p[0]], amount)]
        allowed = allowed or choices
        channel, method = rng.choices([p for p, _ in allowed], [w for _, w in allowed])[0]
        paid = done = None
        if fate in ("delivered", "refunded", "manual_waiting", "manual_fulfilled"):
            paid = created + timedelta(seconds=rng.randint(25, 300))
        if fate == "refunded":
            done = paid + timedelta(hours=rng.randint(1, 20))
        elif fate == "manual_fulfilled":
            done = paid + timedelta(minutes=rng.randint(20, 180))
        elif fate == "cancelled":
            done = created + timedelta(minutes=rng.randint(1, 10))
        elif fate == "expired":
            done = created + timedelta(seconds=settings.CARDSHOP_ORDER_TTL_SECONDS + rng.randint(10, 120))
        # Checkout's cap on unpaid orders per email never bites: each order is moved back (and so past its
        # expiry) as soon as it is placed.
        buyer = rng.randint(1, buyers)
        planned.append(
            Planned(
                slug=slug,
                quantity=quantity,
                buyer=buyer,
                channel=channel,
                method=method,
                fate=fate,
                created=created.astimezone(UTC),
                paid=paid and paid.astimezone(UTC),
                done=done and min(done, local_now).astimezone(UTC),
            )
        )
    planned.sort(key=lambda p: p.created)
    return planned


def _takes(limits: dict[str, int], amount_minor: int) -> bool:
    return limits.get("min_amount_minor", 0) <= amount_minor <= limits.get("max_amount_minor", amount_minor)


def stock_for(planned: list[Planned]) -> Counter[str]:
    """Units of unique codes the history sells (cancelled and expired orders give theirs back)."""
    sold: Counter[str] = Counter()
    kinds = dict(Product.objects.values_list("slug", "delivery_kind"))
    for p in planned:
        if kinds.get(p.slug) == DeliveryKind.UNIQUE and p.fate in ("delivered", "refunded"):
            sold[p.slug] += p.quantity
    return sold


def _pay_as_browser(pay_link: str, channel: str) -> None:
    """What the buyer's browser does: open the pay link (following the provider's redirects to its cashier),
    then submit the cashier's form. The shop's return page is not followed (the web server is not up yet)."""
    browser = requests.Session()
    page = browser.get(pay_link, timeout=BROWSER_TIMEOUT)
    form = FORM_ACTION.search(page.text) if page.ok else None
    if form is None:
        raise HistoryError(f"the {channel} cashier showed no pay form ({page.status_code})")
    answer = browser.post(
        urljoin(page.url, form.group(1)),
        data=TEST_CARD if channel == "stripe" else {},
        timeout=BROWSER_TIMEOUT,
        allow_redirects=False,
    )
    if answer.status_code not in (200, 302, 303):
        raise HistoryError(f"the {channel} cashier refused the payment ({answer.status_code})")


def _place(p: Planned, index: int) -> Order:
    product = Product.objects.get(slug=p.slug)
    custom = {"account": f"player-{p.buyer:03d}"} if product.delivery_kind == DeliveryKind.MANUAL else {}
    order = order_create(
        product_id=product.pk,
        quantity=p.quantity,
        email=f"buyer{p.buyer}@example.com",
        query_password=secrets.token_urlsafe(9),  # nobody looks these orders up: never printed
        buyer_ip=f"198.51.100.{p.buyer % 250 + 1}",  # a documentation network
        custom_input=custom,
        language=("zh-hans", "en")[index % 2],
    )
    view = order_payment_start(
        order_no=order.order_no, client_ip=order.buyer_ip or "", method=p.method, channel_code=p.channel
    )
    if p.paid is None:
        if p.fate == "cancelled":
            order_cancel(order_no=order.order_no, actor="buyer")
        return order
    _pay_as_browser(view.pay_url or view.qr_content, p.channel)
    if not payment_sync(out_trade_no=view.out_trade_no):
        raise HistoryError(f"order {order.order_no}: the {p.channel} payment did not come through")
    if p.fate == "manual_fulfilled":
        order_fulfil_manual(order_no=order.order_no, note=f"Topped up {custom['account']}.", actor="operator")
    elif p.fate == "refunded":
        refund = order_refund_request(order_no=order.order_no, actor="operator", reason="buyer changed their mind")
        # The worker would run this after commit; the seed does it now, as the tests do.
        for _ in range(5):
            if refund_sync(refund_no=refund.refund_no, source="seed") == RefundStatus.SUCCEEDED:
                break
        else:
            raise HistoryError(f"order {order.order_no}: the refund did not complete")
    return order


def _history_backdate(order: Order, p: Planned) -> None:
    """Move one demo order, made just now through the real services, back to the time its plan says.

    This is the only direct write of the demo history, and it is never used outside seed_demo: demo data
    moved back in time after going through the real services. It shifts timestamps only (queryset .update(),
    no state, amount or stock changes): the order's own times, its timeline events, the sold codes' sale time,
    and its payments' and refunds' times (through payments.facade.demo_payments_backdate, demo-only too). The audit
    trail (core.AuditEvent) is never changed: it keeps saying when the seed ran.
    """
    created, paid, done = p.created, p.paid, p.done
    expires = created + timedelta(seconds=settings.CARDSHOP_ORDER_TTL_SECONDS)
    delivered = done if p.fate == "manual_fulfilled" else paid
    orders = Order.objects.filter(pk=order.pk)
    orders.update(created_at=created, expires_at=expires)
    orders.filter(paid_at__isnull=False).update(paid_at=paid)
    orders.filter(delivered_at__isnull=False).update(delivered_at=delivered)
    orders.filter(notified_at__isnull=False).update(notified_at=delivered)
    orders.filter(refunded_at__isnull=False).update(refunded_at=done)
    asked = done - timedelta(minutes=2) if p.fate == "refunded" and done else None
    events = OrderEvent.objects.filter(order_id=order.pk)
    for kinds, at in (
        (("created",), created),
        (("paid", "awaiting_manual_delivery"), paid),
        (("delivered",), delivered),
        (("refund_requested",), asked),
        (("cancelled", "expired", "refunded"), done),
    ):
        if at is not None:
            events.filter(kind__in=kinds).update(created_at=at)
    CardSecret.objects.filter(order_id=order.pk, sold_at__isnull=False).update(sold_at=paid)
    payments.demo_payments_backdate(
        reference=order.order_no,
        created=created + timedelta(seconds=4),
        succeeded=paid,
        last=done or paid or expires,
        refund_asked=asked,
        refund_done=done,
    )


def history_make(
    *, count: int, seed: int, channels: dict[str, dict[str, int]], say: Callable[[str], None] = lambda _s: None
) -> list[Order]:
    """Place `count` orders through the services, then spread them over the last two weeks."""
    now = timezone.now()
    planned = plan(count=count, seed=seed, channels=channels, now=now)
    if not planned:
        return []
    # The Stripe SDK logs every request at INFO: the seed's output stays what the operator needs to read.
    stripe_log = logging.getLogger("stripe")
    level = stripe_log.level
    stripe_log.setLevel(logging.WARNING)
    try:
        return _history_make(planned, say=say)
    finally:
        stripe_log.setLevel(level)


def _history_make(planned: list[Planned], *, say: Callable[[str], None]) -> list[Order]:
    # Top up first, by exactly what the history sells, so the storefront's stock afterwards is what it was.
    for slug, units in stock_for(planned).items():
        product = Product.objects.get(slug=slug)
        codes = "\n".join(f"DEMO-{slug.upper()}-{secrets.token_hex(6).upper()}" for _ in range(units))
        card_secrets_import(product_id=product.pk, text=codes)
    made = []
    for index, p in enumerate(planned):
        order = _place(p, index)
        _history_backdate(order, p)
        made.append((order, p))
    # The lapsed ones expire by the sweeper's own service, now that their time is up; then their expiry
    # event moves back too.
    expired = orders_expire_due()
    for order, p in made:
        if p.fate == "expired":
            _history_backdate(order, p)
    say(f"history: {len(made)} orders over the last {HISTORY_DAYS} days ({expired} expired)")
    orders = [order for order, _p in made]
    for order in orders:
        order.refresh_from_db()
    if any(o.state == OrderState.PENDING for o in orders):
        raise HistoryError("an order meant to expire is still pending")
    return orders
