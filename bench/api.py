"""What the merchant API costs (issue 14, proof 5).

1. Order create through the API: `POST /api/v1/orders/` with a real key and an Idempotency-Key, through the whole
   Django stack (middleware, DRF, the key's lookup, the rate per key in the cache, the idempotency claim and answer,
   risk, the order and its reservation), in process through Django's test client (no network, no server).
   p50 / p99 over --orders calls.
2. Listing: page 1 and page 1,000 (100 per page) of the merchant's --history orders (100,000), each fetched
   --reads times. Cursor pagination reads an index range after the cursor, never an OFFSET: page 1,000 must cost
   what page 1 does ("flat": p50 within 1.5x).

Needs PostgreSQL (DATABASE_URL's server; a scratch database is recreated) and uses REDIS_URL's Redis as the cache
when given.

    .venv/bin/python bench/api.py                      # 1,000 creates, 100,000 orders listed
    .venv/bin/python bench/api.py --orders 300 --history 20000

Writes ``bench/results/api.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.json"
sys.path.insert(0, str(ROOT))
from common import bench_env, percentile, recreate_database, with_dbname  # noqa: E402

PAGE = 100
FAR_PAGE = 1000
FLAT_RATIO = 1.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000, help="orders created through the API")
    parser.add_argument("--history", type=int, default=100_000, help="orders of the merchant to list")
    parser.add_argument("--reads", type=int, default=200, help="fetches of each page timed")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/test"))
    parser.add_argument("--admin-db", default="postgres")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    return parser.parse_args()


def django_setup(args: argparse.Namespace) -> None:
    recreate_database(args, "bench_api")
    url = with_dbname(args.database_url, "bench_api")
    extra = {"REDIS_URL": args.redis_url} if args.redis_url else {}
    os.environ.update(bench_env(url, LOG_LEVEL="ERROR", CARDSHOP_API_RATE="1000000/s", **extra))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def shop():
    """A merchant with a reusable-delivery product on a CNY channel (nothing to reserve: the API's own cost shows)
    and a key with every scope."""
    from cardshop.models import DeliveryKind, Product
    from cardshop.models.merchant_api import ApiScope
    from cardshop.services.merchant_api import api_key_create
    from core.models import Merchant
    from payments.models import ChannelAccount

    ChannelAccount.objects.create(code="epay", name="bench epay", merchant_no="1000", base_url="http://127.0.0.1:9/")
    merchant = Merchant.objects.create(name="Bench", slug="bench")
    product = Product.objects.create(
        merchant=merchant,
        slug="bench-key",
        name="Bench key",
        price_minor=990,
        currency="CNY",
        delivery_kind=DeliveryKind.REUSABLE,
        reusable_secret="https://example.com/download",
    )
    token = api_key_create(merchant_id=merchant.pk, name="bench", scopes=ApiScope.values, actor="bench").token
    return merchant, product, token


def client_for(token: str):
    from django.test import Client

    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def create_times(client, product, count: int) -> list[float]:
    times = []
    for i in range(count):
        body = {
            "product": product.pk,
            "email": f"api{i}@bench.example",
            "buyer_ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        }
        started = time.perf_counter()
        answer = client.post(
            "/api/v1/orders/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex
        )
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 201:
            raise SystemExit(f"order create answered {answer.status_code}: {answer.content[:300]!r}")
    return times


def history(merchant, product, count: int) -> None:
    """`count` delivered orders of the merchant, written in bulk (what is timed is reading them)."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from cardshop.models import Order, OrderState

    now = timezone.now()
    batch = []
    for i in range(count):
        batch.append(
            Order(
                order_no=f"H{i:020d}",  # bulk: ids.order_no() is made for one order at a time
                merchant=merchant,
                product=product,
                quantity=1,
                list_price_minor=990,
                unit_price_minor=990,
                amount_minor=990,
                currency="CNY",
                email=f"h{i}@bench.example",
                query_password_hash="!",
                expires_at=now,
                state=OrderState.DELIVERED,
                paid_at=now - timedelta(seconds=count - i),
                delivered_at=now - timedelta(seconds=count - i),
            )
        )
        if len(batch) == 5000:
            Order.objects.bulk_create(batch)
            batch = []
    Order.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def page_url(client, number: int) -> str:
    """The URL of page `number`, reached the way a client does: following `next` from page 1."""
    url = f"/api/v1/orders/?limit={PAGE}"
    for _ in range(number - 1):
        url = client.get(url).json()["next"]
    return url


def read_times(client, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200 or len(answer.json()["data"]) != PAGE:
            raise SystemExit(f"listing answered {answer.status_code}")
    return times


def summary(times: list[float]) -> dict:
    return {"p50_ms": round(percentile(times, 50), 3), "p99_ms": round(percentile(times, 99), 3), "n": len(times)}


def main() -> None:
    args = parse_args()
    django_setup(args)
    from django.conf import settings

    merchant, product, token = shop()
    client = client_for(token)
    create_times(client, product, 20)  # warm: first statements prepared, caches filled
    created = summary(create_times(client, product, args.orders))
    print(
        f"cache {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}, risk {'on' if settings.RISK_ENABLED else 'off'}"
    )
    print(f"order create  p50 {created['p50_ms']:.3f} ms  p99 {created['p99_ms']:.3f} ms  (n={created['n']})")

    history(merchant, product, args.history)
    total = args.history + args.orders + 20
    far = min(FAR_PAGE, total // PAGE)
    first_url, far_url = page_url(client, 1), page_url(client, far)
    read_times(client, first_url, 20)
    first, last = summary(read_times(client, first_url, args.reads)), summary(read_times(client, far_url, args.reads))
    ratio = last["p50_ms"] / first["p50_ms"]
    print(f"list page 1      p50 {first['p50_ms']:.3f} ms  p99 {first['p99_ms']:.3f} ms  ({PAGE} of {total:,} orders)")
    print(f"list page {far:<5}  p50 {last['p50_ms']:.3f} ms  p99 {last['p99_ms']:.3f} ms")
    verdict = "FLAT" if ratio <= FLAT_RATIO else "NOT FLAT"
    print(f"page {far} / page 1 at p50: {ratio:.2f}x ({verdict}: target at most {FLAT_RATIO}x)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "order_create": created,
                "orders_listed": total,
                "page_size": PAGE,
                "list_page_1": first,
                f"list_page_{far}": last,
                "far_over_first_p50": round(ratio, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
