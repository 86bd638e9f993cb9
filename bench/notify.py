"""Notify handling per channel on PostgreSQL: verify (signatures, RSA included) + apply, p50/p99.

For each channel: start its loopback simulator, register its demo merchant as a channel account, create
``--count`` orders and payments through the real adapters (HTTP to the simulator), have the simulator mark
each trade paid with its callback held back, and build the callback exactly as the provider would send it
(headers, raw body, query). Then, one after another, each callback goes through
``payment_notification_handle`` — the function the notify view calls: one durable transaction that locks
the payment, verifies the callback with the channel account's keys, writes the inbox row, moves the
payment and the order, marks the card secret sold and writes the events. Timed per callback.
Also times the adapter's ``verify_notification`` alone, to show what the cryptography costs.

Every order must end DELIVERED with one secret; the run fails otherwise. Target: p99 < 15 ms per channel.

    .venv/bin/python bench/notify.py                          # all channels, 300 callbacks each
    .venv/bin/python bench/notify.py --count 100 --channels alipay stripe
    .venv/bin/python bench/notify.py --with-without [...]     # with and without the ledger: bench/notify_ledger.py

Writes ``bench/results/notify.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "notify.json"
sys.path.insert(0, str(ROOT))
from common import bench_env, percentile, pgbench_one_client, recreate_database  # noqa: E402

TARGET_P99_MS = 15.0
TARGET_PGBENCH_RATIO = 5.0  # issue 15: callback handling p50 at most 5x one pgbench transaction (1 client)


def parse_args() -> argparse.Namespace:
    from payments.simulators.catalog import SIMULATORS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/cardshop_bench_notify"),
    )
    p.add_argument("--admin-db", default="postgres", help="database to connect to for DROP/CREATE DATABASE")
    p.add_argument("--count", type=int, default=300, help="callbacks per channel")
    p.add_argument("--channels", nargs="+", default=list(SIMULATORS), choices=list(SIMULATORS))
    p.add_argument("--pgbench-seconds", type=int, default=10, help="the pgbench reference's length (0: none)")
    return p.parse_args()


def django_setup(database_url: str) -> None:
    # Callbacks from the simulator are held back; the notify URL only has to be well formed.
    os.environ.update(bench_env(database_url, LOG_LEVEL="ERROR", CARDSHOP_PUBLIC_URL="http://127.0.0.1:9"))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def inbound_parts(notify) -> tuple[dict[str, list[str]], bytes, dict[str, str]]:
    """What the notify view hands the service: single-valued-or-not params, raw body, headers."""
    if notify.method == "GET":
        params = {k: [v] for k, v in notify.query.items()}
    elif notify.content_type.startswith("application/x-www-form-urlencoded"):
        params = parse_qs(notify.body.decode(), keep_blank_values=True)
    else:
        params = {}
    headers = {"Content-Type": notify.content_type, **notify.headers}
    return params, notify.body, headers


def run_channel(code: str, count: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cardshop.models import CardSecret, DeliveryKind, Order, OrderState, Product, SecretStatus
    from cardshop.services.checkout import order_create, order_payment_start
    from cardshop.services.orders import payment_notification_handle
    from cardshop.services.stock import card_secrets_import
    from core.models import Merchant
    from payments.models import ChannelAccount
    from payments.services import channel_choice
    from payments.services.adapters import adapter_for
    from payments.simulators.catalog import simulator_class

    sim = simulator_class(code)().start()
    try:
        acct = sim.account(webhook_url=f"http://127.0.0.1:9/notify/{code}/")
        account = ChannelAccount.objects.create(
            code=code,
            name=code,
            merchant_no=acct.merchant_no,
            base_url=acct.base_url,
            currency=acct.currency,
            credentials=json.dumps(acct.credentials),
        )
        channel_choice.cache_clear()  # routing caches the accounts for a few seconds; this one is new
        merchant = Merchant.objects.first()
        product = Product.objects.create(
            merchant=merchant,
            name=f"Gift code ({code})",
            slug=f"bench-{code}",
            price_minor=990,
            currency=acct.currency,
            max_quantity=5,
            delivery_kind=DeliveryKind.UNIQUE,
        )
        card_secrets_import(product_id=product.pk, text="\n".join(f"{code}-{i:06d}" for i in range(count)))
        sim.faults.drop_notify = count + 1  # hold every callback back: we send them ourselves, timed
        prepared = []
        t0 = time.perf_counter()
        for _ in range(count):
            order = order_create(
                product_id=product.pk, quantity=1, email="b@example.com", query_password="bench-pass", buyer_ip=None
            )
            payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code=code)
            sim.pay(payment.out_trade_no)
            prepared.append((order.pk, sim.notify_request(payment.out_trade_no)))
        setup_s = time.perf_counter() - t0

        adapter = adapter_for(account)
        from payments.channels.base import Inbound

        verify_ms = []
        for _pk, notify in prepared[: min(count, 200)]:
            params, body, headers = inbound_parts(notify)
            inbound = Inbound(
                params={k: v[0] for k, v in params.items()},
                body=body,
                headers={k.lower(): v for k, v in headers.items()},
            )
            t = time.perf_counter()
            adapter.verify_notification(inbound)
            verify_ms.append((time.perf_counter() - t) * 1000)

        handle_ms = []
        for i, (_pk, notify) in enumerate(prepared):
            params, body, headers = inbound_parts(notify)
            if i == 0:  # count the statements once, outside the timed runs
                with CaptureQueriesContext(connection) as queries:
                    outcome = payment_notification_handle(channel_code=code, params=params, body=body, headers=headers)
                statements = len(queries.captured_queries)
            else:
                t = time.perf_counter()
                outcome = payment_notification_handle(channel_code=code, params=params, body=body, headers=headers)
                handle_ms.append((time.perf_counter() - t) * 1000)
            assert outcome.newly_succeeded, f"{code}: callback did not pay its order"
        ids = [pk for pk, _ in prepared]
        delivered = Order.objects.filter(pk__in=ids, state=OrderState.DELIVERED).count()
        sold = CardSecret.objects.filter(order_id__in=ids, status=SecretStatus.SOLD).count()
        assert delivered == count and sold == count, f"{code}: {delivered} delivered, {sold} sold of {count}"
        return {
            "channel": code,
            "callbacks": count,
            "setup_seconds": round(setup_s, 1),
            "verify_p50_ms": round(statistics.median(verify_ms), 2),
            "verify_p99_ms": round(percentile(verify_ms, 99), 2),
            "handle_p50_ms": round(statistics.median(handle_ms), 2),
            "handle_p99_ms": round(percentile(handle_ms, 99), 2),
            "statements": statements,
            "target_met": percentile(handle_ms, 99) < TARGET_P99_MS,
        }
    finally:
        sim.stop()


def main() -> None:
    args = parse_args()
    recreate_database(args, urlsplit(args.database_url).path.lstrip("/"))
    django_setup(args.database_url)
    from core.models import Merchant

    Merchant.objects.create(name="Bench merchant", slug="bench")
    rows = []
    for code in args.channels:
        print(f"{code}: preparing {args.count} paid trades ...", flush=True)
        rows.append(run_channel(code, args.count))
    pg = None
    if args.pgbench_seconds:
        print(f"pgbench, 1 client, {args.pgbench_seconds} s ...", flush=True)
        pg = pgbench_one_client(args, seconds=args.pgbench_seconds)
        for r in rows:
            r["pgbench_ratio_p50"] = round(r["handle_p50_ms"] / pg["latency_ms"], 2)
            r["pgbench_target_met"] = r["pgbench_ratio_p50"] <= TARGET_PGBENCH_RATIO
    print()
    print(f"notify verify + apply on PostgreSQL ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    print(
        f"{'channel':<10} {'verify p50':>10} {'verify p99':>10} {'handle p50':>10} {'handle p99':>10} {'SQL':>4}"
        f"  target p99<15ms{'  p50 / pgbench (<= 5x)' if pg else ''}"
    )
    for r in rows:
        ratio = ""
        if pg:
            ratio = f"  {r['pgbench_ratio_p50']:>6.2f}x {'met' if r['pgbench_target_met'] else 'NOT met'}"
        print(
            f"{r['channel']:<10} {r['verify_p50_ms']:>8.2f}ms {r['verify_p99_ms']:>8.2f}ms "
            f"{r['handle_p50_ms']:>8.2f}ms {r['handle_p99_ms']:>8.2f}ms {r['statements']:>4}  "
            f"{'met' if r['target_met'] else 'NOT met':<15}{ratio}"
        )
    if pg:
        print(f"pgbench (TPC-B-like, 1 client, -s {pg['scale']}): latency {pg['latency_ms']} ms, {pg['tps']} tps")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"count": args.count, "channels": rows, "pgbench": pg}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    if "--with-without" in sys.argv:  # issue 11's comparison lives in its own module; the same run, by this name
        sys.argv.remove("--with-without")
        import notify_ledger

        notify_ledger.main()
    else:
        main()
