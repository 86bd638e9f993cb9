"""The operators' dashboard: median and p95 ms of one `dashboard_figures()` call over the demo shop's data.

Set-up: a scratch SQLite database under var/bench (or `--database-url`, which is emptied first), the demo
shop as `make run` seeds it (`seed_demo`, its channel accounts from each simulator's account file), then an
order history on the demo products, loaded in bulk: `--orders` orders (default 20,000) over the last 30 days,
most delivered, some pending, refunded, refunding, undeliverable or waiting for manual delivery, each with its
payment (a fifth with a failed try first) and, for the refunds, the refund. Then `--calls` calls (default 50)
after one warm-up; the figure is the whole call: its 14 queries and the breaker reads.

    .venv/bin/python bench/dashboard.py
    .venv/bin/python bench/dashboard.py --database-url postgres://root@127.0.0.1:5432/<scratch db> --orders 50000

Writes bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "dashboard.json"
sys.path.insert(0, str(ROOT))
from common import VAR_DIR, bench_env, percentile  # noqa: E402

METHODS = {"alipay": "alipay", "wechatpay": "wxpay", "stripe": "card", "epay": "alipay", "bankgw": "bank"}


def setup(database_url: str) -> None:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    if not database_url:
        db = VAR_DIR / "dashboard.sqlite3"
        db.unlink(missing_ok=True)
        database_url = f"sqlite:///{db}"
    os.environ.update(bench_env(database_url, LOG_LEVEL="ERROR", CARDSHOP_ALLOW_LOOPBACK_GATEWAYS="1"))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)


def seed_demo() -> None:
    """The demo as `make run` seeds it: each simulator's account file, then the command."""
    from django.core.management import call_command

    from payments.simulators.catalog import SIMULATORS, simulator_class

    folder = VAR_DIR / "dashboard-sim"
    folder.mkdir(parents=True, exist_ok=True)
    for code in SIMULATORS:
        sim = simulator_class(code)().start()
        try:
            acct = sim.account(webhook_url=f"http://127.0.0.1:8000/notify/{code}/")
            (folder / f"{code}.json").write_text(json.dumps(acct.__dict__))
        finally:
            sim.stop()
    call_command("seed_demo", sim_accounts=str(folder), stdout=io.StringIO())


def load_history(count: int, rng: random.Random) -> None:
    from django.utils import timezone

    from cardshop.models import DeliveryKind, Order, OrderState, Product
    from core import ids
    from payments.contracts import PaymentStatus, RefundStatus
    from payments.models import ChannelAccount, Payment, Refund

    S, P = OrderState, PaymentStatus
    now = timezone.now()
    products = list(Product.objects.filter(is_active=True))
    accounts = list(ChannelAccount.objects.all())
    orders, created_at = [], []
    for i in range(count):
        product = rng.choice(products)
        created = now - timedelta(seconds=rng.randrange(30 * 86400))
        paid = created + timedelta(seconds=rng.randrange(30, 900))
        if paid > now or rng.random() < 0.1:
            state, paid = S.PENDING if paid > now else S.EXPIRED, None
        elif product.delivery_kind == DeliveryKind.MANUAL:
            state = S.PAID if rng.random() < 0.05 else S.DELIVERED
        else:
            state = rng.choices([S.DELIVERED, S.REFUNDED, S.REFUNDING, S.UNDELIVERABLE], [95, 3, 1, 1])[0]
        qty = rng.randint(1, 3)
        orders.append(
            Order(
                order_no=f"B{i:020d}",
                merchant_id=product.merchant_id,
                product=product,
                quantity=qty,
                list_price_minor=product.price_minor,
                unit_price_minor=product.price_minor,
                amount_minor=product.price_minor * qty,
                currency=product.currency,
                email=f"buyer{i % 997}@example.com",
                query_password_hash="!",
                state=state,
                expires_at=created + timedelta(minutes=15),
                paid_at=paid,
                refunded_at=paid + timedelta(hours=1) if state == S.REFUNDED else None,
            )
        )
        created_at.append(created)
    Order.objects.bulk_create(orders, batch_size=2000)
    made = list(Order.objects.order_by("order_no"))
    for o, c in zip(made, created_at, strict=True):  # auto_now_add stamped the load time: put the history back
        o.created_at = c
    Order.objects.bulk_update(made, ["created_at"], batch_size=2000)

    payments, stamps, refunds = [], [], []
    for o in made:
        account = rng.choice(accounts)
        common = dict(
            reference=o.order_no,
            account=account,
            channel_code=account.code,
            method=METHODS.get(account.code, "alipay"),
            amount_minor=o.amount_minor,
            currency=o.currency,
        )
        if rng.random() < 0.2:
            payments.append(Payment(out_trade_no=ids.out_trade_no(), status=P.FAILED, **common))
            stamps.append(o.created_at)
        status = {S.PENDING: P.PENDING, S.EXPIRED: P.CLOSED, S.REFUNDING: P.REFUNDING, S.REFUNDED: P.REFUNDED}
        p = Payment(
            out_trade_no=ids.out_trade_no(),
            status=status.get(o.state, P.SUCCEEDED),
            succeeded_at=o.paid_at,
            **common,
        )
        payments.append(p)
        stamps.append(o.created_at + timedelta(seconds=20))
        if o.state in (S.REFUNDING, S.REFUNDED):
            refunds.append((p, RefundStatus.SUCCEEDED if o.state == S.REFUNDED else RefundStatus.PENDING))
    Payment.objects.bulk_create(payments, batch_size=2000)
    by_no = {p.out_trade_no: p for p in Payment.objects.all()}
    for p, t in zip(payments, stamps, strict=True):
        by_no[p.out_trade_no].created_at = t
    Payment.objects.bulk_update(list(by_no.values()), ["created_at"], batch_size=2000)
    Refund.objects.bulk_create(
        [
            Refund(
                refund_no=ids.out_trade_no("R"),
                payment=by_no[p.out_trade_no],
                amount_minor=p.amount_minor,
                currency=p.currency,
                status=status,
            )
            for p, status in refunds
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", ""), help="emptied first")
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--calls", type=int, default=50)
    args = p.parse_args()
    setup(args.database_url)
    seed_demo()
    t0 = time.perf_counter()
    load_history(args.orders, random.Random(10))
    load_s = time.perf_counter() - t0

    from django.db import connection

    from cardshop.dashboard import dashboard_figures

    d = dashboard_figures()  # warm-up: the routing knobs' cache, the connection
    timings = []
    for _ in range(args.calls):
        t = time.perf_counter()
        dashboard_figures()
        timings.append((time.perf_counter() - t) * 1000)
    result = {
        "database": connection.vendor,
        "orders": args.orders,
        "calls": args.calls,
        "median_ms": round(statistics.median(timings), 2),
        "p95_ms": round(percentile(timings, 95), 2),
        "load_seconds": round(load_s, 1),
        "today_lines": [(x.currency, x.paid_orders, x.paid_label) for x in d.today.lines],
        "week_paid_orders": d.week.paid_orders,
    }
    print(
        f"dashboard_figures over {args.orders} demo orders on {connection.vendor}: "
        f"median {result['median_ms']} ms, p95 {result['p95_ms']} ms ({args.calls} calls)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
