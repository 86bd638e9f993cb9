"""What a risk assessment costs, and what it adds to a checkout (issue 13, proof 5).

1. One full assessment, as the checkout makes it (`risk.facade.risk_assess`): the counters read from real Redis
   in one round trip, the lists, 50 live rules, the learned score when a model is live (this bench trains a small
   one first, unless --no-model), and the assessment row written in the checkout's transaction (it commits with
   the order: that commit is the checkout's, timed in 2). p50 / p99 over --count calls (10,000), printed next to
   the same run's Redis round-trip p99 (a PING: the floor no assessment can go below). Target: p99 under 3 ms.
   Also printed, not a target: the assessment committing its own row, as at payment start (--count / 5 calls).
2. The checkout (`order_create`, the function the product page calls) with risk on and off (settings.RISK_ENABLED),
   interleaved one by one so that a passing disturbance hits both sides alike: p50 / p99 per side, for a product
   of reusable delivery (nothing reserved: risk's share shows most) and one of unique codes (--stock keys: risk
   also counts the codes held unpaid). Target: p99 with risk at most 3 ms above p99 without it, for both.

Every bench buyer has its own email and IP (no rule matches them: the cost is that of a clean checkout, the
common case). Needs PostgreSQL and Redis (DATABASE_URL's server, REDIS_URL); a scratch database is recreated.

    .venv/bin/python bench/risk.py                    # 10,000 assessments, 1,000 checkouts per side
    .venv/bin/python bench/risk.py --count 2000 --checkouts 300

Writes ``bench/results/risk.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "risk.json"
sys.path.insert(0, str(ROOT))
from common import bench_env, percentile, recreate_database, with_dbname  # noqa: E402

MAX_ASSESS_P99_MS = 3.0
MAX_CHECKOUT_P99_ADDED_MS = 3.0
RULES = 50


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="assessments timed")
    parser.add_argument("--checkouts", type=int, default=1000, help="checkouts per side (risk on, risk off)")
    parser.add_argument("--stock", type=int, default=20_000, help="codes of the unique-code product")
    parser.add_argument("--no-model", action="store_true", help="rules only: no learned score")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/test"))
    parser.add_argument("--admin-db", default="postgres")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"))
    return parser.parse_args()


def django_setup(args: argparse.Namespace) -> None:
    recreate_database(args, "bench_risk")
    url = with_dbname(args.database_url, "bench_risk")
    os.environ.update(bench_env(url, REDIS_URL=args.redis_url, LOG_LEVEL="ERROR"))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def rules_publish() -> int:
    """The default rules plus variants up to RULES, none of which a clean bench buyer matches."""
    from risk.backtest import ruleset_backtest
    from risk.defaults import DEFAULT_RULES
    from risk.models import Rule
    from risk.versions import ruleset_draft, ruleset_publish

    draft = ruleset_draft(actor="bench")
    rules = list(DEFAULT_RULES)
    for i in range(RULES - len(rules)):
        expression = (
            f"(ip_orders_1h >= {20 + i} and amount_minor >= {1000 * (i + 1)}) "
            f"or (email_orders_1d >= {10 + i} and not buyer_paid_before) "
            f"or (device_orders_1d >= {30 + i} and hour_of_day in [1, 2, 3, 4])"
        )
        rules.append((f"variant {i}", expression, "review", f"variant_{i}", 100 + i))
    for name, expression, action, reason, priority in rules:
        rule = Rule(
            version=draft, name=name, expression=expression, action=action, reason_code=reason, priority=priority
        )
        rule.full_clean()
        rule.save()
    ruleset_backtest(number=draft.number, rows=[])
    ruleset_publish(number=draft.number, actor="bench")
    return len(rules)


def model_install() -> str:
    from django.core.management import call_command

    call_command("risk_train", "--rows", "20000", "--promote", verbosity=0, stdout=io.StringIO())
    from risk import scoring

    return scoring.model_version()


def shop(stock: int):
    """Two products on one CNY channel: reusable delivery (nothing to reserve: risk's share of a checkout shows
    most) and unique codes with `stock` keys (the common card shop: risk also counts the codes held unpaid)."""
    from django.db import connection

    from cardshop.models import DeliveryKind, Product
    from cardshop.services.stock import card_secrets_import
    from core.models import Merchant
    from payments.models import ChannelAccount

    # A channel that takes CNY, or checkout refuses the product (no payment is made here).
    ChannelAccount.objects.create(code="epay", name="bench epay", merchant_no="1000", base_url="http://127.0.0.1:9/")
    merchant = Merchant.objects.create(name="Bench", slug="bench")
    common = dict(merchant=merchant, price_minor=990, currency="CNY", max_quantity=5)
    reusable = Product.objects.create(
        slug="bench-key",
        name="Bench key",
        delivery_kind=DeliveryKind.REUSABLE,
        reusable_secret="https://example.com/download",
        **common,
    )
    unique = Product.objects.create(slug="bench-code", name="Bench code", delivery_kind=DeliveryKind.UNIQUE, **common)
    card_secrets_import(product_id=unique.pk, text="\n".join(f"BENCH-{i:08d}" for i in range(stock)))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum soon would after an import: plans for a shop with this stock
    return {"reusable": reusable, "unique": unique}


def assess_times(count: int, product, *, own_commit: bool = False) -> list[float]:
    """As the checkout makes it: inside the checkout's transaction, whose commit is the order's (timed in part 2).
    With `own_commit`, as the payment start makes it: the assessment's row is committed on its own."""
    from django.db import transaction

    from core.money import Money
    from risk.contracts import RiskRequest
    from risk.facade import checkout_record, risk_assess

    times = []
    for i in range(count):
        request = RiskRequest(
            stage="checkout",
            amount=Money(990, "CNY"),
            quantity=1,
            email=f"buyer{i}@example.com",
            ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            device=f"dev{i:019d}",
            product_ref=product.slug,
            merchant_id=product.merchant_id,
            product_stock=100,
            product_pending=3,
            usual_amount_minor=990,
            order_no=f"B{i:012d}",
        )
        if own_commit:
            started = time.perf_counter()
            risk_assess(request=request)
            times.append((time.perf_counter() - started) * 1000)
        else:
            with transaction.atomic():
                started = time.perf_counter()
                risk_assess(request=request)
                times.append((time.perf_counter() - started) * 1000)
        if i % 10 == 0:
            checkout_record(request=request)  # some counters are non-zero, as in a live shop
    return times


def redis_ping_times(url: str, count: int) -> list[float]:
    import redis

    client = redis.Redis.from_url(url)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        client.ping()
        times.append((time.perf_counter() - started) * 1000)
    return times


def checkout_times(count: int, product, tag: str) -> dict[str, list[float]]:
    from django.conf import settings

    from cardshop.services.checkout import order_create

    sides: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(2 * count):
        if i % 20 == 19:
            _buyers_pay(product)
        side = ("on", "off", "off", "on")[i % 4]
        settings.RISK_ENABLED = side == "on"
        started = time.perf_counter()
        order_create(
            product_id=product.pk,
            quantity=1,
            email=f"{tag}{i}@example.com",
            query_password="secret1",
            buyer_ip=f"10.{200 + len(tag) % 50}.{(i >> 8) & 255}.{i & 255}",
        )
        sides[side].append((time.perf_counter() - started) * 1000)
    settings.RISK_ENABLED = True
    return sides


def _buyers_pay(product) -> None:
    """Untimed: the bench's buyers pay, as most do, so the codes held unpaid stay those of a healthy shop rather
    than grow by every checkout (a hoard of unpaid orders is what risk challenges; it also slows the reservation
    itself, issue 15). Both sides alike."""
    from cardshop.models import CardSecret, Order, OrderState, SecretStatus

    CardSecret.objects.filter(product=product, status=SecretStatus.RESERVED).update(status=SecretStatus.SOLD)
    Order.objects.filter(product=product, state=OrderState.PENDING).update(state=OrderState.PAID)


def machine_speed_ms() -> float:
    """This machine's speed right now, as a yardstick: the checkout's own query-password hash (12,000 PBKDF2
    rounds), p50 over 100. Here it has read 2.7 ms on a quiet host and 4.7 ms on a busy one, and every figure of
    this bench moves with it."""
    import hashlib

    times = []
    for _ in range(100):
        started = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", b"secret1", b"bench-salt", 12_000)
        times.append((time.perf_counter() - started) * 1000)
    return round(percentile(times, 50), 2)


def summary(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(times, 50), 3), "p99_ms": round(percentile(times, 99), 3), "n": len(times)}


def main() -> int:
    args = parse_args()
    django_setup(args)
    from cardshop.models import Order, OrderState
    from risk import features

    rules = rules_publish()
    version = "" if args.no_model else model_install()
    products = shop(args.stock)
    speed_before = machine_speed_ms()
    assess_times(200, products["reusable"])  # warm-up: the first calls load the rules and the model
    assess = summary(assess_times(args.count, products["reusable"]))
    assess_commit = summary(assess_times(args.count // 5, products["reusable"], own_commit=True))
    ping = summary(redis_ping_times(args.redis_url, args.count))
    checkouts, added = {}, {}
    for kind, product in products.items():
        checkout_times(20, product, f"w{kind}")  # warm-up: each side's first statements are prepared
        sides = checkout_times(args.checkouts, product, kind)
        checkouts[kind] = {side: summary(times) for side, times in sides.items()}
        added[kind] = round(checkouts[kind]["on"]["p99_ms"] - checkouts[kind]["off"]["p99_ms"], 3)
    reviewed = Order.objects.filter(state=OrderState.REVIEW).count()
    speed = (speed_before, machine_speed_ms())
    result = {
        "machine": platform.platform(),
        "rules": rules,
        "model": version or None,
        "counters": type(features.counters()).__name__,
        "unique_stock": args.stock,
        "assessment": assess,
        "assessment_own_commit": assess_commit,
        "redis_ping": ping,
        "checkout": checkouts,
        "checkout_p99_added_ms": added,
        "orders_held_for_review": reviewed,
        "machine_speed_pbkdf2_ms": speed,
        "targets": {"assessment_p99_ms": MAX_ASSESS_P99_MS, "checkout_p99_added_ms": MAX_CHECKOUT_P99_ADDED_MS},
        "ok": assess["p99_ms"] < MAX_ASSESS_P99_MS and max(added.values()) <= MAX_CHECKOUT_P99_ADDED_MS,
    }
    print(f"rules {rules}, model {version or 'none'}, counters in {result['counters']}")
    print(f"machine speed (12,000 PBKDF2 rounds, p50) before {speed[0]} ms, after {speed[1]} ms")
    print(f"assessment   p50 {assess['p50_ms']:.3f} ms  p99 {assess['p99_ms']:.3f} ms  (n={assess['n']})")
    print(
        f"  with its own commit (payment start)  p50 {assess_commit['p50_ms']:.3f} ms  p99 {assess_commit['p99_ms']:.3f}"
        f" ms  (n={assess_commit['n']})"
    )
    print(f"redis PING   p50 {ping['p50_ms']:.3f} ms  p99 {ping['p99_ms']:.3f} ms  (the floor)")
    for kind in products:
        label = f"{kind} ({args.stock} codes)" if kind == "unique" else kind
        for side in ("off", "on"):
            c = checkouts[kind][side]
            print(f"checkout {label}, risk {side:3}  p50 {c['p50_ms']:.3f} ms  p99 {c['p99_ms']:.3f} ms  (n={c['n']})")
        print(f"checkout {label}: p99 added by risk {added[kind]:+.3f} ms (target <= {MAX_CHECKOUT_P99_ADDED_MS} ms)")
    print(f"orders risk held for review: {reviewed} (none blocked or challenged: either would have stopped the run)")
    print("targets met" if result["ok"] else "TARGETS MISSED")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
