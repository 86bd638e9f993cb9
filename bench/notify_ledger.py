"""What booking the sale in the paid transaction costs the notify path: with vs without the ledger, one run.

The paid path books the sale (or suspense) in the notify's own transaction: ``order_paid_apply`` calls
``cardshop.services.orders._ledger_book_payment`` (fee facts from payments, then ``settlement.facade.sale_post``
/ ``suspense_post``). "Without" is a BENCH-ONLY PATCH: inside this process only, that module attribute is
replaced by a no-op for the "without" rounds, so the same code, database and simulators are measured both
ways in the same minutes. The application is not changed; a real deployment always books the ledger.

The bench merchant has the issue's worked-example plan (platform 500 bp + 0.10, agents at two levels 200 / 100
bp, reserve 1000 bp for 7 days, T+1) and every channel account a 60 bp fee, so each sale posts seven lines.

Serial: per channel, ``--count`` callbacks with the ledger and ``--count`` without, through
``payment_notification_handle`` (the function the notify view calls), interleaved one by one (with, without,
without, with, ...), so a passing disturbance on this shared machine (a checkpoint, autovacuum, another
process) hits both sides alike; notify p50 / p99 per channel and side. 1000 per side by default, so p99 is the
10th worst of each side: with 200 it was the 2nd worst and moved by +-0.2x between runs.
Target: p99 with the ledger at most 1.2x p99 without it, per channel.

Concurrent: ``--threads`` threads (16) pay different orders of one merchant through one channel account
(``--concurrent-channel``, epay by default), each thread handling the callbacks of its own orders on its own
database connection; rounds alternate with / without again. Throughput = callbacks / wall time of the round,
summed per side. Target: throughput with the ledger at least 80 % of throughput without it. The threads share
one interpreter (and its GIL), so this measures contention in PostgreSQL plus the Python work per callback,
not the parallelism of several server processes.

Every order must end DELIVERED with one secret sold; with the ledger every payment must have its sale posted,
without it none may (so the patch really was in place). Absolute times move 2-3x day to day: the targets are
ratios from one run.

    .venv/bin/python bench/notify_ledger.py                 # 1000 callbacks per channel and side, about 8 minutes
    .venv/bin/python bench/notify_ledger.py --count 100 --channels epay alipay --per-thread 20

Writes ``bench/results/notify_ledger.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "notify_ledger.json"
sys.path.insert(0, str(ROOT))
from common import percentile, recreate_database  # noqa: E402
from notify import django_setup, inbound_parts  # noqa: E402

MAX_P99_RATIO = 1.2
MIN_THROUGHPUT_RATIO = 0.8
SIDES = ("with", "without")


def parse_args() -> argparse.Namespace:
    from payments.simulators.catalog import SIMULATORS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/cardshop_bench_ledger"),
    )
    p.add_argument("--admin-db", default="postgres", help="database to connect to for DROP/CREATE DATABASE")
    p.add_argument("--count", type=int, default=1000, help="callbacks per channel and side (serial)")
    p.add_argument("--channels", nargs="+", default=list(SIMULATORS), choices=list(SIMULATORS))
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--per-thread", type=int, default=25, help="callbacks per thread per concurrent round")
    p.add_argument("--concurrent-rounds", type=int, default=4, help="alternating concurrent rounds (even)")
    p.add_argument("--concurrent-channel", default="epay", choices=list(SIMULATORS))
    return p.parse_args()


class LedgerSwitch:
    """The bench-only patch: `orders._ledger_book_payment` is the real function (timed) or a no-op."""

    def __init__(self) -> None:
        from cardshop.services import orders

        self._orders = orders
        self._real = orders._ledger_book_payment
        self.ledger_ms: list[float] = []  # time inside the real function, "with" side

    def set(self, side: str) -> None:
        real, spent = self._real, self.ledger_ms

        def timed_ledger(order, *, out_trade_no: str, second: bool = False, facts=None) -> None:
            t = time.perf_counter()
            real(order, out_trade_no=out_trade_no, second=second, facts=facts)
            spent.append((time.perf_counter() - t) * 1000)

        def no_ledger(order, *, out_trade_no: str, second: bool = False, facts=None) -> None:
            return None

        self._orders._ledger_book_payment = timed_ledger if side == "with" else no_ledger


class Channel:
    """One channel's simulator, channel account and product; prepares paid trades with callbacks held back."""

    def __init__(self, code: str, stock: int) -> None:
        from cardshop.models import DeliveryKind, Product
        from core.models import Merchant
        from payments.models import ChannelAccount
        from payments.services import channel_choice
        from payments.simulators.catalog import simulator_class

        self.code = code
        self.sim = simulator_class(code)().start()
        acct = self.sim.account(webhook_url=f"http://127.0.0.1:9/notify/{code}/")
        ChannelAccount.objects.create(
            code=code,
            name=code,
            merchant_no=acct.merchant_no,
            base_url=acct.base_url,
            currency=acct.currency,
            credentials=json.dumps(acct.credentials),
            fee_rate_bp=60,
        )
        channel_choice.cache_clear()  # routing caches the accounts for a few seconds; this one is new
        self.product = Product.objects.create(
            merchant=Merchant.objects.get(slug="bench"),
            name=f"Gift code ({code})",
            slug=f"bench-ledger-{code}",
            price_minor=990,
            currency=acct.currency,
            max_quantity=5,
            delivery_kind=DeliveryKind.UNIQUE,
        )
        self.stocked = 0
        if stock:
            self.stock(stock)

    def stock(self, n: int) -> None:
        """`n` more card secrets, and as many more callbacks held back (we send them ourselves, timed)."""
        from cardshop.services.stock import card_secrets_import

        lines = (f"{self.code}-{i:06d}" for i in range(self.stocked, self.stocked + n))
        card_secrets_import(product_id=self.product.pk, text="\n".join(lines))
        self.stocked += n
        self.sim.faults.drop_notify = self.stocked + 1

    def prepare(self, n: int) -> list[tuple[int, str, tuple]]:
        """`n` orders paid at the simulator: (order pk, out_trade_no, inbound parts of its callback)."""
        from cardshop.services.checkout import order_create, order_payment_start

        out = []
        for _ in range(n):
            order = order_create(
                product_id=self.product.pk,
                quantity=1,
                email="b@example.com",
                query_password="bench-pass",
                buyer_ip=None,
            )
            payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code=self.code)
            self.sim.pay(payment.out_trade_no)
            out.append((order.pk, payment.out_trade_no, inbound_parts(self.sim.notify_request(payment.out_trade_no))))
        return out

    def handle(self, parts: tuple) -> None:
        from cardshop.services.orders import payment_notification_handle

        params, body, headers = parts
        outcome = payment_notification_handle(channel_code=self.code, params=params, body=body, headers=headers)
        assert outcome.newly_succeeded, f"{self.code}: callback did not pay its order"

    def stop(self) -> None:
        self.sim.stop()


def check_paid(code: str, trades: list[tuple[int, str, tuple]], *, booked: bool) -> None:
    """Every order delivered with its secret; the sale posted with the ledger, not posted without it."""
    from cardshop.models import CardSecret, Order, OrderState, SecretStatus
    from settlement.models import LedgerTransaction

    ids = [pk for pk, _, _ in trades]
    keys = [f"sale:{out_trade_no}" for _, out_trade_no, _ in trades]
    delivered = Order.objects.filter(pk__in=ids, state=OrderState.DELIVERED).count()
    sold = CardSecret.objects.filter(order_id__in=ids, status=SecretStatus.SOLD).count()
    posted = LedgerTransaction.objects.filter(idempotency_key__in=keys).count()
    n = len(trades)
    assert delivered == n and sold == n, f"{code}: {delivered} delivered, {sold} sold of {n}"
    assert posted == (n if booked else 0), f"{code}: {posted} sales posted of {n} (ledger {booked})"


def run_serial(channel: Channel, count: int, switch: LedgerSwitch) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    code = channel.code
    channel.stock(2 * count + 4)
    print(f"{code}: preparing {2 * count} paid trades ...", flush=True)
    warm = channel.prepare(4)
    trades = {side: channel.prepare(count) for side in SIDES}
    for side, (_pk, _otn, parts) in zip(SIDES, warm[:2], strict=True):  # first callbacks open ledger accounts
        switch.set(side)
        channel.handle(parts)
    statements = {}
    for side, (_pk, _otn, parts) in zip(SIDES, warm[2:], strict=True):  # then one each counted, not timed
        switch.set(side)
        with CaptureQueriesContext(connection) as queries:
            channel.handle(parts)
        statements[side] = len(queries.captured_queries)
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    switch.ledger_ms.clear()
    for i, pair in enumerate(zip(*(trades[side] for side in SIDES), strict=True)):
        order = SIDES if i % 2 == 0 else SIDES[::-1]  # with, without | without, with | ...
        for side in order:
            _pk, _otn, parts = pair[SIDES.index(side)]
            switch.set(side)
            t = time.perf_counter()
            channel.handle(parts)
            times[side].append((time.perf_counter() - t) * 1000)
    switch.set("with")
    for side in SIDES:
        check_paid(code, trades[side], booked=side == "with")
    row: dict = {"channel": code, "callbacks_per_side": count}
    for side in SIDES:
        row[f"{side}_p50_ms"] = round(statistics.median(times[side]), 2)
        row[f"{side}_p99_ms"] = round(percentile(times[side], 99), 2)
        row[f"{side}_statements"] = statements[side]
    row["ledger_call_p50_ms"] = round(statistics.median(switch.ledger_ms), 2)
    row["ledger_call_p99_ms"] = round(percentile(switch.ledger_ms, 99), 2)
    row["p99_ratio"] = round(percentile(times["with"], 99) / percentile(times["without"], 99), 3)
    row["target_met"] = row["p99_ratio"] <= MAX_P99_RATIO
    return row


def run_concurrent(channel: Channel, threads: int, per_thread: int, rounds: int, switch: LedgerSwitch) -> dict:
    from django.db import connection

    code = channel.code
    half = max(rounds // 2, 1)
    per_round = threads * per_thread
    channel.stock(2 * half * per_round + 1)
    print(f"{code} concurrent: preparing {2 * half * per_round} paid trades ...", flush=True)
    warm = channel.prepare(1)
    plan = [(side, channel.prepare(per_round)) for _ in range(half) for side in SIDES]
    switch.set("with")
    channel.handle(warm[0][2])
    totals = {side: {"callbacks": 0, "seconds": 0.0} for side in SIDES}
    per_round_rows = []
    for side, trades in plan:
        switch.set(side)
        lanes = [trades[i::threads] for i in range(threads)]  # each thread its own orders
        barrier = threading.Barrier(threads + 1)
        errors: list[BaseException] = []

        def work(lane: list, barrier: threading.Barrier = barrier, errors: list = errors) -> None:
            try:
                barrier.wait()
                for _pk, _otn, parts in lane:
                    channel.handle(parts)
            except BaseException as exc:  # reported after the round, the run fails
                errors.append(exc)
            finally:
                connection.close()

        workers = [threading.Thread(target=work, args=(lane,)) for lane in lanes]
        for w in workers:
            w.start()
        barrier.wait()
        t = time.perf_counter()
        for w in workers:
            w.join()
        wall = time.perf_counter() - t
        if errors:
            raise SystemExit(f"{code} concurrent ({side}): {len(errors)} threads failed: {errors[0]!r}")
        totals[side]["callbacks"] += len(trades)
        totals[side]["seconds"] += wall
        per_round_rows.append({"side": side, "callbacks": len(trades), "seconds": round(wall, 3)})
        print(f"  round {side:<7}: {len(trades)} callbacks in {wall:.2f}s = {len(trades) / wall:.0f}/s", flush=True)
    switch.set("with")
    for side, trades in plan:
        check_paid(code, trades, booked=side == "with")
    row: dict = {"channel": code, "threads": threads, "per_thread": per_thread, "rounds": per_round_rows}
    for side in SIDES:
        row[f"{side}_per_s"] = round(totals[side]["callbacks"] / totals[side]["seconds"], 1)
    row["throughput_ratio"] = round(row["with_per_s"] / row["without_per_s"], 3)
    row["target_met"] = row["throughput_ratio"] >= MIN_THROUGHPUT_RATIO
    return row


def main() -> None:
    args = parse_args()
    recreate_database(args, urlsplit(args.database_url).path.lstrip("/"))
    django_setup(args.database_url)
    from core.models import Merchant
    from core.parties import agent_create
    from settlement.facade import fee_plan_set

    # The merchant of the worked example: two agent levels, a reserve, a fixed fee (seven ledger lines).
    top = agent_create(name="Bench top agent")
    agent = agent_create(name="Bench agent", parent_id=top.pk)
    merchant = Merchant.objects.create(name="Bench merchant", slug="bench", agent=agent)
    for currency in ("CNY", "USD"):
        fee_plan_set(
            merchant_id=merchant.pk,
            currency=currency,
            platform_rate_bp=500,
            platform_fixed_minor=10,
            cycle="T+1",
            reserve_bp=1000,
            reserve_days=7,
            agent_commission_bp=[200, 100],
        )
    switch = LedgerSwitch()
    channels: dict[str, Channel] = {}
    try:
        for code in {*args.channels, args.concurrent_channel}:
            channels[code] = Channel(code, 0)
        serial = [run_serial(channels[code], args.count, switch) for code in args.channels]
        concurrent = run_concurrent(
            channels[args.concurrent_channel], args.threads, args.per_thread, args.concurrent_rounds, switch
        )
    finally:
        for channel in channels.values():
            channel.stop()

    print()
    print(
        f"notify with / without the sale posting, PostgreSQL ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores)"
    )
    print('"without" = bench-only patch: cardshop.services.orders._ledger_book_payment replaced by a no-op')
    print(f"callbacks interleaved one by one, with / without; {args.count} per channel and side;")
    print("SQL = statements of one callback; ledger p50 = time inside the real _ledger_book_payment")
    print(
        f"{'channel':<10} {'with p50':>9} {'with p99':>9} {'w/o p50':>9} {'w/o p99':>9} {'p99 ratio':>9}"
        f" {'SQL w/ w/o':>10} {'ledger p50':>10}  target <= {MAX_P99_RATIO}x"
    )
    for r in serial:
        print(
            f"{r['channel']:<10} {r['with_p50_ms']:>7.2f}ms {r['with_p99_ms']:>7.2f}ms "
            f"{r['without_p50_ms']:>7.2f}ms {r['without_p99_ms']:>7.2f}ms {r['p99_ratio']:>8.2f}x "
            f"{r['with_statements']:>6} {r['without_statements']:>3} {r['ledger_call_p50_ms']:>8.2f}ms  {'met' if r['target_met'] else 'NOT met'}"
        )
    c = concurrent
    print()
    print(
        f"concurrent: {c['threads']} threads, one merchant, one {c['channel']} account, "
        f"{c['threads'] * c['per_thread']} callbacks per round, {len(c['rounds'])} rounds alternating"
    )
    print(
        f"throughput with {c['with_per_s']:.0f}/s, without {c['without_per_s']:.0f}/s, "
        f"ratio {c['throughput_ratio']:.2f}  target >= {MIN_THROUGHPUT_RATIO:.0%}: "
        f"{'met' if c['target_met'] else 'NOT met'}"
    )
    worst = max(r["p99_ratio"] for r in serial)
    print()
    print(
        f"p99 ratio (worst channel) {worst:.2f}x <= {MAX_P99_RATIO}x: {'met' if worst <= MAX_P99_RATIO else 'NOT met'}"
    )
    print(
        f"throughput ratio {c['throughput_ratio']:.2f} >= {MIN_THROUGHPUT_RATIO}: "
        f"{'met' if c['target_met'] else 'NOT met'}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "without_is": "bench-only patch: cardshop.services.orders._ledger_book_payment -> no-op",
                "count": args.count,
                "interleaved": "one by one",
                "serial": serial,
                "worst_p99_ratio": worst,
                "p99_target_met": worst <= MAX_P99_RATIO,
                "concurrent": concurrent,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
