"""Synthetic, labelled checkout traffic of a card shop: what the learned risk score is trained and tested on.

No fraud data set may be downloaded at run time (research A5), and none describes a shop selling codes anyway,
so the score learns from traffic simulated here. `generate(mix, seed=...)` returns one dict per checkout with
every `risk.schema.FEATURES` name, plus `label` (0 good, 1 fraud), `pattern` (who made it, below) and `at`
(seconds since the traffic's start, shop time; day 0 starts at midnight). Same mix and seed, same rows.

How it is made: actors (buyers and attackers) emit timed events: checkouts, failed payment attempts, payments
that free a reservation, reservations that expire unpaid, failed order lookups. One pass in time order keeps the
sliding-window counters the live engine keeps in Redis, and reads each checkout's vector at its moment. So the
features agree with each other (`ip_orders_1m <= ip_orders_1h <= ip_orders_1d`; a product's pending stock rises
while a hoarder holds it and falls as his reservations expire) and a pattern's signal is only what its behaviour
leaves in them. Network keys are already what the engine counts: an IPv4 address, or an IPv6 /64.

Conventions the live features are expected to share:
- checkout counts (`*_orders_*`, `ip_amount_1d`) include the checkout being assessed (a Redis INCR's result);
- failed payments and failed lookups are earlier events; `product_pending(_share)` excludes this order;
- an unpaid reservation holds its codes for `pending_minutes`; stock is the product's total codes.

Good traffic (label 0, `TrafficMix.good_shares`; the rest is `good`):
- `good`: sessions of 1 order (85 %), 2 or 3-4, at daytime/evening hours; 65 % of orders by returning buyers
  (a paid order before; most order a few times a week, a heavy few several times a day), the rest new; 15 % of
  buyers behind a carrier NAT address shared with other buyers; 9 % abandon, 6 % fail a payment and retry;
  3 % mistype an order lookup once or twice.
- `good_promo` 6 %: a shop promotion, 40-250 buyers on one product within 15-60 minutes, discounted, many
  reservations pending at once (a fifth abandon).
- `good_office` 3 %: an office buying licence keys, 4-15 colleagues behind one address, one company domain.
- `good_bulk` 2 %: resellers and gift buyers, 5-10 codes an order (amounts far above usual, like stolen money).

Attacks (label 1, `TrafficMix.attack_shares` of the fraud rows); a `mimic_share` of each pattern's actors imitate
good buyers (slower, rotating residential proxies, fewer codes, a taken-over account with a paid history):
- `hoarding` 30 %: scripts reserving a limited product's stock without paying: one IPv6 /64 or data-centre
  address (a third rotate two or three), an order every few seconds, a new email each, up to the maximum
  quantity; the pending share climbs to 1.
- `card_testing` 30 %: many small orders of the cheapest products, each followed by payment attempts that
  mostly fail (stolen card numbers checked), from one address and device, one or many emails.
- `device_burst` 15 %: bots buying many codes in minutes from one device cookie across addresses, or one
  network across fresh cookies.
- `lookup_bruteforce` 5 %: order-number enumeration on the lookup page (hundreds of failures an hour), with a
  few small checkouts on the way; one in ten runs from a carrier NAT address good buyers share.
- `stolen_account` 20 %: a stolen payment account cashed out on resellable gift codes: a new (often
  disposable) email, several codes of an expensive product, mostly at night; mimics use a taken-over
  returning buyer's email at normal hours.

Defaults (`TrafficMix()`): 100,000 rows, 15 % fraud, 6,000 good orders a day (so about 14 days), 30 merchants,
240 products, mimic share 25 %, block-listed attackers 4 %, allow-listed returning buyers 3 %, block-listed
good buyers 0.2 % (a shared address listed for someone else), reservations pending 15 minutes.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import defaultdict, deque
from dataclasses import dataclass, field
from itertools import accumulate, count

import numpy as np

from risk.schema import FEATURE_NAMES

DAY = 86_400.0
HOUR = 3_600.0

GOOD_PATTERNS: tuple[str, ...] = ("good", "good_promo", "good_office", "good_bulk")
ATTACK_PATTERNS: tuple[str, ...] = ("hoarding", "card_testing", "device_burst", "lookup_bruteforce", "stolen_account")

# Relative checkout volume per shop hour, 0..23: quiet 2-7, lunch and evening peaks.
GOOD_HOURS = (3, 2, 1.2, 0.8, 0.6, 0.6, 0.9, 1.5, 2.5, 3.5, 4, 4.5, 5, 4.5, 4, 4, 4.2, 4.5, 5, 5.5, 6.5, 7, 6.5, 5)
# Stolen accounts are cashed out while their owners sleep (or from another time zone).
NIGHT_HOURS = (6, 7, 7, 7, 6, 5, 4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2.5, 3, 3.5, 4, 5)
# Scripts run around the clock, a little more when nobody watches.
SCRIPT_HOURS = (1.4, 1.5, 1.5, 1.5, 1.4, 1.3, 1.1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.1, 1.2, 1.3)

COMMON_DOMAINS = {
    "qq.com": 0.35, "163.com": 0.15, "gmail.com": 0.12, "126.com": 0.06, "outlook.com": 0.06,
    "icloud.com": 0.05, "foxmail.com": 0.05, "hotmail.com": 0.04, "sina.com": 0.03, "yahoo.com": 0.02,
}  # fmt: skip
ATTACKER_DOMAINS = {"gmail.com": 0.35, "outlook.com": 0.25, "qq.com": 0.15, "163.com": 0.1, "hotmail.com": 0.15}
DISPOSABLE_DOMAINS = (
    "mailinator.com", "guerrillamail.com", "10minutemail.com", "yopmail.com", "temp-mail.org", "sharklasers.com",
    "trashmail.com", "maildrop.cc",
)  # fmt: skip
COMPANY_DOMAINS = tuple(f"{name}.com.cn" for name in ("huaxin", "dingtai", "longrui", "zhongke", "xinyu", "anheng"))

# Product kinds: share of the catalogue, price range (minor units), resellable (what stolen money buys).
PRODUCT_KINDS = {
    "gift": (0.45, (1_000, 50_000), True),
    "licence": (0.25, (2_000, 30_000), False),
    "membership": (0.20, (500, 3_000), False),
    "cheap": (0.10, (100, 500), False),
}
QUANTITY_CAP = 10  # the shop's per-order limit


@dataclass(frozen=True)
class TrafficMix:
    """How much traffic and of what kind; every figure is documented in the module docstring."""

    rows: int = 100_000
    fraud_share: float = 0.15
    attack_shares: dict[str, float] = field(
        default_factory=lambda: {
            "hoarding": 0.30,
            "card_testing": 0.30,
            "device_burst": 0.15,
            "lookup_bruteforce": 0.05,
            "stolen_account": 0.20,
        }
    )
    good_shares: dict[str, float] = field(
        default_factory=lambda: {"good_promo": 0.06, "good_office": 0.03, "good_bulk": 0.02}
    )
    mimic_share: float = 0.25
    returning_share: float = 0.65
    cgnat_share: float = 0.15
    good_orders_per_day: int = 6_000
    merchants: int = 30
    products: int = 240
    listed_block_attacker: float = 0.04
    listed_block_good: float = 0.002
    listed_allow_returning: float = 0.03
    pending_minutes: int = 15

    def __post_init__(self) -> None:
        if self.rows < 100:
            raise ValueError("rows must be at least 100")
        if not 0.0 < self.fraud_share < 1.0:
            raise ValueError("fraud_share must be between 0 and 1")
        if set(self.attack_shares) - set(ATTACK_PATTERNS) or set(self.good_shares) - set(GOOD_PATTERNS[1:]):
            raise ValueError("unknown pattern in attack_shares or good_shares")
        if sum(self.good_shares.values()) >= 1.0 or sum(self.attack_shares.values()) <= 0.0:
            raise ValueError("good_shares must leave room for regular buyers; attack_shares must not be empty")


@dataclass(slots=True)
class _Buyer:
    email: int
    domain: str
    device: int
    ip: int
    allow: bool = False
    block: bool = False


@dataclass(slots=True)
class _Order:
    at: float
    ip: int
    email: int
    domain: str
    device: int
    product: int
    qty: int
    amount: int
    pattern: str
    label: int
    paid_at: float | None
    released_at: float
    failed_at: tuple[float, ...]
    block: bool
    allow: bool


@dataclass(slots=True)
class _Product:
    merchant: int
    kind: str
    price: int
    usual: float  # the shop's usual order amount for it (from its history: about one code)
    stock: int


class _Window:
    """Events per key in the last `seconds` (optionally their summed value), like one Redis sliding counter."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.events: dict[object, deque] = defaultdict(deque)
        self.sums: dict[object, int] = defaultdict(int)

    def add(self, key: object, at: float, value: int = 1) -> None:
        self.events[key].append((at, value))
        self.sums[key] += value

    def read(self, key: object, at: float) -> tuple[int, int]:
        """(count, sum) of the events for key in (at - seconds, at]."""
        events = self.events.get(key)
        if not events:
            return 0, 0
        horizon = at - self.seconds
        while events and events[0][0] <= horizon:
            self.sums[key] -= events.popleft()[1]
        return len(events), self.sums[key]


def _cum(weights) -> list[float]:
    return list(accumulate(weights))


class _Traffic:
    def __init__(self, mix: TrafficMix, seed: int):
        self.mix = mix
        self.r = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.ids = count(1)
        self.n_fraud = round(mix.rows * mix.fraud_share)
        self.n_good = mix.rows - self.n_fraud
        self.days = max(1.0, self.n_good / mix.good_orders_per_day)
        self.horizon = self.days * DAY
        self.pending_s = mix.pending_minutes * 60.0
        self.orders: list[_Order] = []
        self.lookups: list[tuple[float, int]] = []  # single failed lookups: (at, ip)
        self.lookup_runs: dict[int, list[tuple[float, float, float]]] = defaultdict(list)  # ip: (start, end, /s)
        self.hours = {"good": _cum(GOOD_HOURS), "night": _cum(NIGHT_HOURS), "script": _cum(SCRIPT_HOURS)}
        self._catalogue()
        self._buyers()

    # --- the shop ---------------------------------------------------------------------------------------------

    def _catalogue(self) -> None:
        r = self.r
        merchant_cum = _cum(1 / (m + 1) ** 0.8 for m in range(self.mix.merchants))
        kinds = list(PRODUCT_KINDS)
        kind_cum = _cum(PRODUCT_KINDS[k][0] for k in kinds)
        self.products: list[_Product] = []
        for _ in range(self.mix.products):
            kind = r.choices(kinds, cum_weights=kind_cum)[0]
            low, high = PRODUCT_KINDS[kind][1]
            price = int(round(math.exp(r.uniform(math.log(low), math.log(high))), -1 if low >= 1000 else 0))
            self.products.append(
                _Product(
                    merchant=r.choices(range(self.mix.merchants), cum_weights=merchant_cum)[0],
                    kind=kind,
                    price=price,
                    usual=price * r.lognormvariate(0.05, 0.08),
                    stock=min(2000, max(10, int(r.lognormvariate(math.log(80), 0.8)))),
                )
            )
        popularity = [1 / (i + 1) ** 0.8 for i in range(len(self.products))]
        self.popular = _cum(popularity)

        def subset(pred) -> tuple[list[int], list[float]]:
            picked = [i for i, p in enumerate(self.products) if pred(p)] or list(range(len(self.products)))
            return picked, _cum(popularity[i] for i in picked)

        self.resellable = subset(lambda p: PRODUCT_KINDS[p.kind][2])
        self.expensive = subset(lambda p: PRODUCT_KINDS[p.kind][2] and p.price >= 10_000)
        self.licences = subset(lambda p: p.kind == "licence")
        self.cheapest = subset(lambda p: p.price <= 1000)
        self.limited = subset(lambda p: p.stock <= 200)
        self.scarce = subset(lambda p: p.stock <= 50)
        self.promotable = subset(lambda p: p.stock >= 30)

    def _buyers(self) -> None:
        mix, r = self.mix, self.r
        self.cgnat = [next(self.ids) for _ in range(max(5, int(mix.good_orders_per_day * mix.cgnat_share / 12)))]
        returning_orders = self.n_good * mix.returning_share
        size = max(30, int(returning_orders / (0.35 * self.days)))
        self.returning = [self._new_buyer(returning=True) for _ in range(size)]
        self.returning_cum = _cum(r.lognormvariate(0, 0.9) for _ in range(size))
        self.paid_before = {b.email for b in self.returning}

    def _new_buyer(self, *, returning: bool = False) -> _Buyer:
        r = self.r
        domain = self._domain(COMMON_DOMAINS, company=0.05, disposable=0.02)
        return _Buyer(
            email=next(self.ids),
            domain=domain,
            device=next(self.ids),
            ip=self._home_ip(),
            allow=returning and r.random() < self.mix.listed_allow_returning,
            block=r.random() < self.mix.listed_block_good,
        )

    def _home_ip(self) -> int:
        return self.r.choice(self.cgnat) if self.r.random() < self.mix.cgnat_share else next(self.ids)

    def _domain(self, domains: dict[str, float], *, company: float = 0.0, disposable: float = 0.0) -> str:
        u = self.r.random()
        if u < disposable:
            return self.r.choice(DISPOSABLE_DOMAINS)
        if u < disposable + company:
            return self.r.choice(COMPANY_DOMAINS)
        return self.r.choices(list(domains), weights=list(domains.values()))[0]

    def _pick(self, subset: tuple[list[int], list[float]]) -> int:
        ids, cum = subset
        return ids[bisect_right(cum, self.r.random() * cum[-1])]

    def _time(self, hours: str) -> float:
        cum = self.hours[hours]
        while True:
            day = self.r.randrange(math.ceil(self.days))
            hour = bisect_right(cum, self.r.random() * cum[-1])
            at = day * DAY + hour * HOUR + self.r.random() * HOUR
            if at < self.horizon:
                return at

    # --- orders -----------------------------------------------------------------------------------------------

    def _order(
        self,
        at: float,
        buyer: _Buyer,
        product: int,
        qty: int,
        pattern: str,
        *,
        paid: float,
        retry: float = 0.0,
        failures: tuple[int, int] = (1, 1),
        discount: float = 1.0,
        fail_gap: tuple[float, float] = (20.0, 120.0),
        abandon_tries: float = 0.3,
    ) -> _Order:
        """One checkout: paid at once with probability `paid`, paid after 1..n failed attempts (`failures`) with
        probability `retry`, otherwise abandoned (after failed attempts with probability `abandon_tries`)."""
        r = self.r
        u = r.random()
        pays = u < paid + retry
        tries = u >= paid and (pays or r.random() < abandon_tries)
        failed: list[float] = []
        t = at
        for _ in range(r.randint(*failures) if tries else 0):
            t += r.uniform(*fail_gap)
            failed.append(t)
        paid_at = t + r.uniform(20.0, 60.0) + r.expovariate(1 / 60.0) if pays else None
        price = self.products[product].price
        return _Order(
            at=at,
            ip=buyer.ip,
            email=buyer.email,
            domain=buyer.domain,
            device=buyer.device,
            product=product,
            qty=qty,
            amount=max(1, round(price * qty * discount)),
            pattern=pattern,
            label=0 if pattern in GOOD_PATTERNS else 1,
            paid_at=paid_at,
            released_at=paid_at if paid_at is not None and paid_at < at + self.pending_s else at + self.pending_s,
            failed_at=tuple(f for f in failed if f < at + self.pending_s),
            block=buyer.block,
            allow=buyer.allow,
        )

    def _good_qty(self) -> int:
        u = self.r.random()
        return 1 if u < 0.82 else 2 if u < 0.92 else self.r.randint(3, 5) if u < 0.99 else self.r.randint(6, 10)

    def _returning_buyer(self) -> _Buyer:
        b = self.returning[bisect_right(self.returning_cum, self.r.random() * self.returning_cum[-1])]
        if self.r.random() < 0.15:  # roaming, a new lease, another device: the same person, other keys
            b = _Buyer(b.email, b.domain, b.device, next(self.ids), b.allow, b.block)
        if self.r.random() < 0.2:
            b = _Buyer(b.email, b.domain, next(self.ids), b.ip, b.allow, b.block)
        return b

    def _maybe_mistyped_lookup(self, at: float, ip: int) -> None:
        if self.r.random() < 0.03:
            for _ in range(self.r.randint(1, 2)):
                self.lookups.append((at - self.r.uniform(30.0, 1800.0), ip))

    def good(self) -> list[_Order]:
        r = self.r
        buyer = self._returning_buyer() if r.random() < self.mix.returning_share else self._new_buyer()
        u = r.random()
        n = 1 if u < 0.85 else 2 if u < 0.96 else r.randint(3, 4)
        t = self._time("good")
        orders = []
        for _ in range(n):
            self._maybe_mistyped_lookup(t, buyer.ip)
            orders.append(
                self._order(
                    t,
                    buyer,
                    self._pick((range(len(self.products)), self.popular)),
                    self._good_qty(),
                    "good",
                    paid=0.85,
                    retry=0.06,
                )
            )
            t += r.uniform(30.0, 600.0)
        return orders

    def good_promo(self) -> list[_Order]:
        r = self.r
        product = self._pick(self.promotable)
        start, length = self._time("good"), r.uniform(900.0, 3600.0)
        discount = r.uniform(0.7, 0.9)
        orders = []
        for _ in range(r.randint(40, 250)):
            buyer = self._returning_buyer() if r.random() < 0.5 else self._new_buyer()
            at = start + r.random() * length
            qty = 1 if r.random() < 0.85 else 2
            orders.append(self._order(at, buyer, product, qty, "good_promo", paid=0.75, retry=0.05, discount=discount))
        return sorted(orders, key=lambda o: o.at)

    def good_office(self) -> list[_Order]:
        r = self.r
        ip, domain = next(self.ids), r.choice(COMPANY_DOMAINS)
        product = self._pick(self.licences)
        start, length = self._time("good"), r.uniform(1800.0, 3 * HOUR)
        orders = []
        for _ in range(r.randint(4, 15)):
            buyer = _Buyer(next(self.ids), domain, next(self.ids), ip, block=r.random() < self.mix.listed_block_good)
            if r.random() < 0.5:  # a colleague who bought here before
                self.paid_before.add(buyer.email)
            qty = r.choice((1, 1, 1, 2, 3))
            orders.append(
                self._order(start + r.random() * length, buyer, product, qty, "good_office", paid=0.88, retry=0.1)
            )
        return sorted(orders, key=lambda o: o.at)

    def good_bulk(self) -> list[_Order]:
        r = self.r
        buyer = self._returning_buyer() if r.random() < 0.7 else self._new_buyer()
        t = self._time("good")
        orders = []
        for _ in range(r.choice((1, 1, 2, 3))):
            orders.append(
                self._order(
                    t,
                    buyer,
                    self._pick(self.resellable),
                    r.randint(5, QUANTITY_CAP),
                    "good_bulk",
                    paid=0.92,
                    retry=0.05,
                )
            )
            t += r.uniform(60.0, 900.0)
        return orders

    # --- attacks ------------------------------------------------------------------------------------------------

    def _attacker(self, *, disposable: float, ip: int | None = None, device: int | None = None) -> _Buyer:
        return _Buyer(
            email=next(self.ids),
            domain=self._domain(ATTACKER_DOMAINS, disposable=disposable),
            device=device if device is not None else next(self.ids),
            ip=ip if ip is not None else next(self.ids),
            block=self.r.random() < self.mix.listed_block_attacker,
        )

    def _proxy_ip(self) -> int:
        """A residential proxy exit: sometimes a carrier NAT address real buyers share."""
        return self.r.choice(self.cgnat) if self.r.random() < 0.3 else next(self.ids)

    def _length(self, median: float, sigma: float, low: int, high: int) -> int:
        return min(high, max(low, int(self.r.lognormvariate(math.log(median), sigma))))

    def hoarding(self) -> list[_Order]:
        r = self.r
        mimic = r.random() < self.mix.mimic_share
        # A slow hoarder only hurts where stock is scarce: he picks such a product and keeps most of it held.
        product = self._pick(self.scarce if mimic else self.limited)
        disposable = 0.35 if r.random() < 0.5 else 0.0
        keys = [next(self.ids) for _ in range(r.choice((1, 1, 1, 1, 2, 3)))]
        fixed_device = next(self.ids) if r.random() < 0.4 else None
        block = r.random() < self.mix.listed_block_attacker
        if mimic:
            n, gap, qty_range = r.randint(8, 30), (20.0, 120.0), (1, 3)
        else:
            n, gap = self._length(40, 0.6, 8, 200), (2.0, 30.0)
            qty_range = (QUANTITY_CAP, QUANTITY_CAP) if r.random() < 0.5 else (3, QUANTITY_CAP)
        t, orders = self._time("script"), []
        for i in range(n):
            ip = self._proxy_ip() if mimic else keys[i % len(keys)]
            buyer = self._attacker(disposable=disposable, ip=ip, device=None if mimic else fixed_device)
            buyer.block = block
            orders.append(
                self._order(t, buyer, product, r.randint(*qty_range), "hoarding", paid=0.0, abandon_tries=0.0)
            )
            t += r.uniform(*gap)
        return orders

    def card_testing(self) -> list[_Order]:
        r = self.r
        mimic = r.random() < self.mix.mimic_share
        product_pool = self.cheapest
        ip, device = next(self.ids), next(self.ids)
        rotate_device = r.random() < 0.3
        shared = self._attacker(disposable=0.3 if r.random() < 0.5 else 0.0, ip=ip, device=device)
        one_email = r.random() < 0.4
        if mimic:
            n, mean_gap = r.randint(5, 30), 200.0
        else:
            n, mean_gap = self._length(50, 0.7, 5, 300), 20.0
        t, orders = self._time("script"), []
        for _ in range(n):
            buyer = _Buyer(
                email=shared.email if one_email else next(self.ids),
                domain=shared.domain,
                device=next(self.ids) if rotate_device else device,
                ip=self._proxy_ip() if mimic else ip,
                block=shared.block,
            )
            orders.append(
                self._order(
                    t, buyer, self._pick(product_pool), 1, "card_testing",
                    paid=0.1, retry=0.15, failures=(1, 3), fail_gap=(5.0, 40.0), abandon_tries=1.0,
                )
            )  # fmt: skip
            t += r.uniform(2.0, 10.0) + r.expovariate(1 / mean_gap)
        return orders

    def device_burst(self) -> list[_Order]:
        r = self.r
        mimic = r.random() < self.mix.mimic_share
        by_device = r.random() < 0.5
        ip, device = next(self.ids), next(self.ids)
        emails = [self._attacker(disposable=0.25) for _ in range(r.choice((1, 2, 3, 30)))]
        block = r.random() < self.mix.listed_block_attacker
        n, gap = (r.randint(4, 12), (120.0, 600.0)) if mimic else (r.randint(10, 60), (10.0, 120.0))
        t, orders = self._time("script"), []
        for i in range(n):
            who = emails[i % len(emails)] if len(emails) < 30 else self._attacker(disposable=0.25)
            buyer = _Buyer(
                email=who.email,
                domain=who.domain,
                device=device if by_device else next(self.ids),
                ip=self._proxy_ip() if by_device else ip,
                block=block,
            )
            product = self._pick((range(len(self.products)), self.popular))
            orders.append(self._order(t, buyer, product, r.randint(1, 3), "device_burst", paid=0.4, retry=0.1))
            t += r.uniform(*gap)
        return orders

    def lookup_bruteforce(self) -> list[_Order]:
        r = self.r
        mimic = r.random() < self.mix.mimic_share
        u = r.random()
        ip = r.choice(self.cgnat) if u < 0.1 else next(self.ids)
        start, length = self._time("script"), r.uniform(1.0, 6.0) * HOUR
        rate = r.uniform(8.0, 40.0) if mimic else math.exp(r.uniform(math.log(150.0), math.log(2000.0)))
        self.lookup_runs[ip].append((start, start + length, rate / HOUR))
        buyer = self._attacker(disposable=0.4, ip=ip)
        orders = []
        for _ in range(r.randint(1, 5)):
            at = start + r.uniform(min(600.0, length / 2), length)
            orders.append(
                self._order(at, buyer, self._pick(self.cheapest), 1, "lookup_bruteforce", paid=0.5, abandon_tries=0.0)
            )
        return sorted(orders, key=lambda o: o.at)

    def stolen_account(self) -> list[_Order]:
        r = self.r
        mimic = r.random() < self.mix.mimic_share
        if mimic:  # a taken-over returning buyer: his email and paid history, the thief's device and address
            owner = self.returning[r.randrange(len(self.returning))]
            buyer = _Buyer(owner.email, owner.domain, next(self.ids), next(self.ids), owner.allow, owner.block)
            t, n, qty_range = self._time("good"), r.randint(1, 2), (1, 4)
        else:
            buyer = self._attacker(disposable=0.5)
            t, n, qty_range = self._time("night"), r.randint(1, 4), (2, QUANTITY_CAP)
        orders = []
        for _ in range(n):
            orders.append(
                self._order(
                    t,
                    buyer,
                    self._pick(self.expensive),
                    r.randint(*qty_range),
                    "stolen_account",
                    paid=0.75,
                    retry=0.15,
                    failures=(1, 2),
                )
            )
            t += r.uniform(60.0, 900.0)
        return orders

    # --- the pass in time order ---------------------------------------------------------------------------------

    def fill(self) -> None:
        mix = self.mix
        attack_total = sum(mix.attack_shares.values())
        quotas: dict[str, int] = {}
        for name, share in mix.attack_shares.items():
            quotas[name] = round(self.n_fraud * share / attack_total)
        quotas[max(mix.attack_shares, key=mix.attack_shares.get)] += self.n_fraud - sum(quotas.values())
        for name, share in mix.good_shares.items():
            quotas[name] = round(self.n_good * share)
        quotas["good"] = self.n_good - sum(quotas[name] for name in mix.good_shares)
        for name, quota in quotas.items():
            make = getattr(self, name)
            made = 0
            while made < quota:
                orders = make()[: quota - made]
                self.orders.extend(orders)
                made += len(orders)

    def rows(self) -> list[dict[str, object]]:
        events: list[tuple[float, int, int]] = []
        for i, o in enumerate(self.orders):
            events.append((o.released_at, 0, i))
            if o.paid_at is not None:
                events.append((o.paid_at, 1, i))
            events.extend((f, 2, i) for f in o.failed_at)
            events.append((o.at, 4, i))
        events.extend((at, 3, ip) for at, ip in self.lookups)
        events.sort()

        minute, hour, day = 60.0, HOUR, DAY
        ip_1m, ip_1h, ip_1d = _Window(minute), _Window(hour), _Window(day)
        email_1h, email_1d, domain_1h = _Window(hour), _Window(day), _Window(hour)
        device_1h, device_1d = _Window(hour), _Window(day)
        product_1h, merchant_1h = _Window(hour), _Window(hour)
        ip_failed, device_failed, lookups = _Window(hour), _Window(hour), _Window(hour)
        pending: dict[int, int] = defaultdict(int)
        paid_before = set(self.paid_before)
        rows: list[dict[str, object]] = []
        for at, kind, i in events:
            if kind == 3:
                lookups.add(i, at)
                continue
            o = self.orders[i]
            if kind == 0:
                pending[o.product] -= o.qty
                continue
            if kind == 1:
                paid_before.add(o.email)
                continue
            if kind == 2:
                ip_failed.add(o.ip, at)
                device_failed.add(o.device, at)
                continue
            product = self.products[o.product]
            for window, key in (
                (ip_1m, o.ip), (ip_1h, o.ip), (email_1h, o.email), (email_1d, o.email), (domain_1h, o.domain),
                (device_1h, o.device), (device_1d, o.device), (product_1h, o.product), (merchant_1h, product.merchant),
            ):  # fmt: skip
                window.add(key, at)
            ip_1d.add(o.ip, at, o.amount)
            ip_day_count, ip_day_amount = ip_1d.read(o.ip, at)
            held = pending[o.product]
            pending[o.product] += o.qty
            row: dict[str, object] = {
                "amount_minor": o.amount,
                "quantity": o.qty,
                "ip_orders_1m": ip_1m.read(o.ip, at)[0],
                "ip_orders_1h": ip_1h.read(o.ip, at)[0],
                "ip_orders_1d": ip_day_count,
                "ip_amount_1d": ip_day_amount,
                "email_orders_1h": email_1h.read(o.email, at)[0],
                "email_orders_1d": email_1d.read(o.email, at)[0],
                "domain_orders_1h": domain_1h.read(o.domain, at)[0],
                "device_orders_1h": device_1h.read(o.device, at)[0],
                "device_orders_1d": device_1d.read(o.device, at)[0],
                "product_orders_1h": product_1h.read(o.product, at)[0],
                "merchant_orders_1h": merchant_1h.read(product.merchant, at)[0],
                "ip_failed_payments_1h": ip_failed.read(o.ip, at)[0],
                "device_failed_payments_1h": device_failed.read(o.device, at)[0],
                "lookup_failures_ip_1h": lookups.read(o.ip, at)[0] + self._lookup_run_count(o.ip, at),
                "product_pending": held,
                "product_pending_share": round(min(1.0, held / product.stock), 4),
                "hour_of_day": int(at // HOUR) % 24,
                "amount_vs_usual": round(o.amount / product.usual, 3),
                "email_disposable": o.domain in DISPOSABLE_DOMAINS,
                "buyer_paid_before": o.email in paid_before,
                "email_domain": o.domain,
                "listed_block": o.block,
                "listed_allow": o.allow,
                "label": o.label,
                "pattern": o.pattern,
                "at": round(at, 1),
            }
            rows.append(row)
        return rows

    def _lookup_run_count(self, ip: int, at: float) -> int:
        runs = self.lookup_runs.get(ip)
        if not runs:
            return 0
        expected = sum(rate * max(0.0, min(end, at) - max(start, at - HOUR)) for start, end, rate in runs)
        return int(self.np.poisson(expected)) if expected > 0 else 0


def generate(mix: TrafficMix | None = None, *, seed: int = 13) -> list[dict[str, object]]:
    """Labelled checkouts in time order: every FEATURES name, plus `label`, `pattern` and `at` (module docstring)."""
    traffic = _Traffic(mix or TrafficMix(), seed)
    traffic.fill()
    rows = traffic.rows()
    assert all(name in rows[0] for name in FEATURE_NAMES)
    return rows


def holdout_split(rows: list[dict[str, object]], share: float = 0.2) -> tuple[list[dict], list[dict]]:
    """Train on the past, test on the future: the last `share` of the traffic's time span is held out, as a
    model trained today is judged on tomorrow's traffic (a random split would leak one burst into both)."""
    ordered = sorted(rows, key=lambda row: row["at"])
    cut = len(ordered) - max(1, int(len(ordered) * share))
    return ordered[:cut], ordered[cut:]
