"""Checkout -> pay -> notify -> delivery throughput on PostgreSQL, next to a pgbench reference.

What it measures, in one run:

1. Setup: (re)creates its own database (default ``cardshop_bench``), migrates, creates a merchant,
   one unique-secret product and an epay channel account, starts the loopback ``EpaySimulator``,
   and loads order history with COPY (default 50,000 delivered orders of that product over the
   past year, each with its sold card secret encrypted by the model field, a succeeded payment,
   the provider notification and the three timeline events). Then imports the free stock for the
   run through ``card_secrets_import``.
2. Service level, in this process, one order after another: ``order_create`` ->
   ``order_payment_start`` (an HTTP call to the simulator's mapi.php) -> the simulator's signed
   notify params -> ``payment_notification_handle``. Prints orders/s and p50/p99 of checkout and
   of notify handling; asserts every order ended DELIVERED with its own secret.
3. Over HTTP: a live gunicorn serving ``cardshop.wsgi`` with the same environment (default
   ``gthread:2x4``, pooled PostgreSQL connections as the app now defaults to). Client threads, one
   ``requests.Session`` (= one browser with its signed session cookie) each, run two paths one after
   the other against the same server, each for ``--http-seconds`` after one untimed warm-up order
   per thread:

   a. **order path** (the headline): the product page once per session for the CSRF cookie and
      token, then per order POST checkout (redirect not followed) -> GET the pay page (creates the
      payment at the simulator; the cashier trade no is read from it) -> ``sim.pay_trade(trade_no)`` (the
      simulator sends the signed notify to /notify/epay/, timed as the notify round trip) -> GET
      ``/orders/<no>/status/`` (the JSON the order page polls), which must say ``delivered``. Every
      20th order of a thread also GETs the order page, which must show the delivered secret.
   b. **full buyer journey**: per order the product page -> POST checkout -> pay page -> the QR image
      it references (``<img id="qr">``, loaded by any browser) -> notify -> order page with the
      secret.

   Afterwards every order a client counted is checked in the database: DELIVERED, with exactly its
   quantity of distinct SOLD secrets, and every secret an order page showed is the one sold.
   The clients and the simulator run in this process on the same machine as gunicorn and
   PostgreSQL, so they compete for the same CPUs.
4. pgbench (TPC-B-like default script) against the same PostgreSQL in a scratch database
   ``pgbench_ref``; prints its tps and the ratio orders/s / pgbench tps for both paths.

Targets printed next to the figures: notify handling p99 < 15 ms; order path orders/s >= 10 % of
pgbench tps. The order path is the headline because the target speaks of paid + delivered orders:
it is the write path every order must take (reserve, start the payment, take the notify, deliver).
Browsing the product page and viewing the order page are reads that scale separately (caching,
more web workers) and are not per-order work in general: a buyer may browse many
times or not at all, and the order page is polled by the status JSON, not reloaded. The full
journey is printed beside it as what one scripted browser costs end to end.
The summary is printed as text and written to ``bench/results/checkout_pay.json``.

``--vs <checkout>`` runs this benchmark on two checkouts back to back, in alternating rounds (``--rounds``,
default 3): the other checkout (e.g. ``git worktree add /tmp/before <commit>``) and this one, each in a child
process with ``--app <checkout>``, so the same clients, history and checks drive both shops, each served by its
own code. It prints the medians side by side with the ratios, and the targets of issue 15 (order path orders/s
at least 3x, CPU ms per order at most a third), and writes ``bench/results/checkout_pay_vs.json``:

    .venv/bin/python bench/checkout_pay.py --vs /tmp/before --rounds 3 --orders 300 --history 5000 --http-seconds 15

Reading the figures: sessions are signed cookies, so no session rows are written. Celery is not
eager and publishes to an in-process memory broker, so notify handling includes publishing the
buyer-mail task after commit (as with a real broker) but not sending the mail, which a worker
does. The "without the eager task" line only differs when CELERY_TASK_ALWAYS_EAGER=1. Over HTTP the
machine is saturated, so latencies there are queueing, not service time; the CPU ms per order lines
say where the CPU went (gunicorn, this process, the rest ~ PostgreSQL).

Run (PostgreSQL at 127.0.0.1:5432, user root, trust auth):

    .venv/bin/python bench/checkout_pay.py                      # defaults, about 2 minutes on 2 cores
    .venv/bin/python bench/checkout_pay.py --orders 500 --history 5000 --http-seconds 8 --pgbench-seconds 5
    .venv/bin/python bench/checkout_pay.py --gunicorn sync:2 --gunicorn gthread:2x4   # compare servers

``--gunicorn`` takes ``<worker class>:<workers>[x<threads>][+nopool]`` (``+nopool`` sets
DATABASE_POOL=0, so every request opens a new PostgreSQL connection; pooled is the default);
given several times, each config runs both paths for --http-seconds and the one with the fastest
order path is the headline. Re-measured after the pool / cookie session / QR URL changes, on
the 2-core machine (50k history, 8 clients, 10 s per path, one run each; orders/s of order path /
full journey, order path notify p99 ms in brackets): sync:2 47.9 / 31.7 (62), sync:4 48.4 / 31.4
(67), gthread:2x4 45.5 / 29.4 (100), gthread:2x8 44.2 / 29.7 (100), gthread:4x2 42.9 / 30.1 (89),
gthread:2x4+nopool 25.1 / 18.0 (144). The connection pool is what matters (without it both paths
lose ~45 %); the worker model is within ~10 % on throughput, sync workers had the shorter notify
tail. Default: gthread:2x4, pooled.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import VAR_DIR, bench_env, percentile, pgbench_figure, pgbench_scratch, recreate_database  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "checkout_pay.json"


def _app_root(argv: list[str]) -> Path:
    """The checkout whose shop is measured (--app, default this one); this file's bench code drives it."""
    for i, arg in enumerate(argv):
        if arg == "--app" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if arg.startswith("--app="):
            return Path(arg.split("=", 1)[1]).resolve()
    return ROOT


APP = _app_root(sys.argv)
sys.path.insert(0, str(APP))

PRODUCT_SLUG = "bench-card"
PRICE_MINOR = 990
PRODUCT_NAME = "Steam Wallet ¥10 code"
QUERY_PASSWORD = "bench-pass-1"
TARGET_NOTIFY_P99_MS = 15.0
TARGET_HTTP_SHARE = 0.10

ORDER_PAGE_EVERY = 20  # the order path checks the order page on every 20th order of a client thread

CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
CASHIER_RE = re.compile(r'id="cashier-link" href="[^"]*/cashier/([^"/]+)"')
CODE_RE = re.compile(r'<code class="code" id="code-\d+">(.*?)</code>')  # the order page's delivered secrets
IMG_RE = re.compile(r"<img\b[^>]*>")
SRC_RE = re.compile(r'\bsrc="([^"]*)"')

# The two HTTP paths, in the order they run: key -> label.
PATHS = {"order_path": "order path", "journey": "full buyer journey"}
HEADLINE_PATH = "order_path"


# ---------------------------------------------------------------- parameters and small helpers


@dataclass(frozen=True)
class ServerConfig:
    """One gunicorn setup: ``sync:2``, ``gthread:2x4`` (pooled connections), ``gthread:2x4+nopool``."""

    worker_class: str
    workers: int
    threads: int
    pool: bool

    @classmethod
    def parse(cls, text: str) -> ServerConfig:
        m = re.fullmatch(r"(sync|gthread):(\d+)(?:x(\d+))?(\+pool|\+nopool)?", text)
        if not m:
            raise argparse.ArgumentTypeError(f"bad --gunicorn {text!r}; e.g. sync:2, gthread:2x4, gthread:2x4+nopool")
        kind, workers, threads, pool = m.groups()
        return cls(kind, int(workers), int(threads or 1), pool != "+nopool")

    def __str__(self) -> str:
        threads = f"x{self.threads}" if self.worker_class == "gthread" else ""
        return f"{self.worker_class}:{self.workers}{threads}{'' if self.pool else '+nopool'}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=2000, help="service-level orders (default 2000)")
    p.add_argument("--history", type=int, default=50_000, help="delivered orders loaded as history (default 50000)")
    p.add_argument(
        "--http-seconds", type=float, default=20.0, help="timed HTTP load per path and server config (default 20)"
    )
    p.add_argument("--clients", type=int, default=8, help="HTTP client threads (default 8)")
    p.add_argument(
        "--gunicorn",
        type=ServerConfig.parse,
        action="append",
        help="server config, repeatable (default gthread:2x4, pooled)",
    )
    p.add_argument(
        "--http-stock", type=int, default=3000, help="free secrets per HTTP path and server config (default 3000)"
    )
    p.add_argument("--pgbench-scale", type=int, default=10)
    p.add_argument("--pgbench-clients", type=int, default=8)
    p.add_argument("--pgbench-threads", type=int, default=2)
    p.add_argument("--pgbench-seconds", type=int, default=15)
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/cardshop_bench"),
    )
    p.add_argument("--admin-db", default="test", help="existing database used to drop/create the bench databases")
    p.add_argument("--app", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    p.add_argument(
        "--vs",
        type=Path,
        help="another checkout (e.g. a git worktree of main before a change): run this benchmark on both, "
        "alternating rounds, and print both side by side",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds per side with --vs (default 3)")
    p.add_argument("--json-out", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.orders < 1 or args.history < 0 or args.clients < 1 or args.http_seconds <= 0:
        p.error("--orders and --clients must be >= 1, --history >= 0, --http-seconds > 0")
    if "bench" not in urlsplit(args.database_url).path:
        p.error("the bench drops and recreates its database: its name must contain 'bench'")
    args.gunicorn = args.gunicorn or [ServerConfig("gthread", 2, 4, True)]
    return args


def latency_ms(values: list[float]) -> dict[str, float]:
    """p50/p99/max in milliseconds of a non-empty list of durations in seconds."""
    ms = [v * 1000 for v in values]
    return {
        "p50": round(percentile(ms, 50), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
        "n": len(ms),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@contextmanager
def timed(label: str, into: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into[label] = round(time.perf_counter() - start, 2)
    log(f"{label}: {into[label]:.1f} s")


# ---------------------------------------------------------------- environment and database


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")


def table_sizes() -> dict[str, dict[str, int]]:
    from django.db import connection

    tables = [
        "cardshop_order",
        "cardshop_orderevent",
        "cardshop_cardsecret",
        "payments_payment",
        "payments_providernotification",
    ]
    sizes: dict[str, dict[str, int]] = {}
    with connection.cursor() as cur:
        for t in tables:
            cur.execute(f"SELECT count(*), pg_total_relation_size('{t}') FROM {t}")
            rows, size = cur.fetchone()
            sizes[t] = {"rows": rows, "mb": round(size / 2**20)}
    return sizes


def machine_info() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        pg_version = cur.fetchone()[0]
        cur.execute("SELECT current_setting('synchronous_commit'), current_setting('shared_buffers')")
        sync_commit, shared_buffers = cur.fetchone()
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "pg_synchronous_commit": sync_commit,
        "pg_shared_buffers": shared_buffers,
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------- shop fixture and history


@dataclass
class Shop:
    sim: Any  # EpaySimulator
    pid: str  # our merchant id at the simulator
    product_id: int
    merchant_id: int
    account_id: int
    slug: str = PRODUCT_SLUG


def shop_create(sim: Any) -> Shop:
    from cardshop.models import DeliveryKind, Product
    from core.models import Merchant
    from payments.models import ChannelAccount

    pid, key = str(10000 + secrets.randbelow(89999)), secrets.token_hex(16)
    sim.add_merchant(pid, key)
    account = ChannelAccount.objects.create(
        code="epay",
        name="epay bench",
        merchant_no=pid,
        base_url=sim.base_url,
        credentials=json.dumps({"key": key}),
    )
    merchant = Merchant.objects.create(name="Bench Merchant", slug="bench")
    product = Product.objects.create(
        merchant=merchant,
        slug=PRODUCT_SLUG,
        name=PRODUCT_NAME,
        price_minor=PRICE_MINOR,
        currency="CNY",
        delivery_kind=DeliveryKind.UNIQUE,
        max_quantity=5,
    )
    return Shop(sim=sim, pid=pid, product_id=product.pk, merchant_id=merchant.pk, account_id=account.pk)


def copy_rows(table: str, columns: list[str], rows: Iterator[tuple]) -> None:
    """COPY rows into `table` on Django's connection (inside the caller's transaction)."""
    from django.db import connection

    with connection.cursor() as cur, cur.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def sequences_sync(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        for t in tables:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT COALESCE(max(id), 1) FROM {t}))")


@dataclass(frozen=True)
class History:
    """The identifiers and times of `len(stamps)` past orders of the bench product (ids 1..n)."""

    shop: Shop
    stamps: list[datetime]  # created_at, spread over the past year
    order_nos: list[str]
    trade_nos: list[str]
    out_trade_nos: list[str]

    @classmethod
    def plan(cls, shop: Shop, total: int) -> History:
        from django.utils import timezone

        year_ago = timezone.now() - timedelta(days=365)
        stamps = [year_ago + i * timedelta(days=364) / max(total, 1) for i in range(total)]
        return cls(
            shop=shop,
            stamps=stamps,
            order_nos=[f"{t:%Y%m%d%H%M%S}{i:08d}" for i, t in enumerate(stamps)],
            trade_nos=[f"{t:%Y%m%d}{i + 1:09d}" for i, t in enumerate(stamps)],
            out_trade_nos=[f"P{t:%Y%m%d%H%M%S}{i + 1:010d}" for i, t in enumerate(stamps)],
        )

    def paid_at(self, i: int) -> datetime:
        return self.stamps[i] + timedelta(seconds=40)


def history_orders(h: History) -> Iterator[tuple]:
    from django.contrib.auth.hashers import make_password

    from cardshop.models import OrderState

    try:
        from core.hashers import QUERY_PASSWORD_HASHER
    except ImportError:  # a checkout from before the keyed hasher (the --vs baseline)
        QUERY_PASSWORD_HASHER = "pbkdf2_sha256_query"  # noqa: N806

    # One real query-password hash reused, as checkout makes them.
    password_hash = make_password("history-pass", hasher=QUERY_PASSWORD_HASHER)
    shop = h.shop
    for i, t in enumerate(h.stamps):
        paid = h.paid_at(i)
        yield (
            *(i + 1, h.order_nos[i], shop.merchant_id, shop.product_id, 1, PRICE_MINOR, PRICE_MINOR, PRICE_MINOR),
            "CNY",
            *(f"buyer{i % 20000}@history.example", password_hash, f"100.{i % 250}.{i // 250 % 250}.{i % 199 + 1}"),
            *(
                "{}",
                "zh-hans" if i % 2 else "en",
                "",
                OrderState.DELIVERED.value,
                t + timedelta(minutes=15),
                paid,
                paid,
            ),
            *(paid + timedelta(seconds=1), t, "", h.out_trade_nos[i], ""),
        )


def history_secrets(h: History) -> Iterator[tuple]:
    """Sold secrets, encrypted by the model field itself, with the keyed hash the unique constraint uses."""
    from cardshop.models import CardSecret, SecretStatus
    from cardshop.services.stock import card_secret_hash

    encrypt = CardSecret._meta.get_field("secret").get_prep_value
    product_id = h.shop.product_id
    for i, t in enumerate(h.stamps):
        plain = f"HIST-{i + 1:07d}-{secrets.token_hex(6).upper()}"
        yield (
            *(i + 1, product_id, encrypt(plain), card_secret_hash(product_id, plain), SecretStatus.SOLD.value),
            *(i + 1, None, h.paid_at(i), t - timedelta(days=3)),
        )


def history_payments(h: History) -> Iterator[tuple]:
    from payments.models import PaymentStatus

    cashier = h.shop.sim.base_url + "/cashier/"
    for i, t in enumerate(h.stamps):
        trade_no, paid = h.trade_nos[i], h.paid_at(i)
        yield (
            *(i + 1, h.out_trade_nos[i], h.order_nos[i], h.shop.account_id, "epay", PRICE_MINOR, "CNY"),
            *(PaymentStatus.SUCCEEDED.value, trade_no, cashier + trade_no, cashier + trade_no, ""),
            *(t + timedelta(seconds=1), paid, paid),
            *(0, json.dumps({"approach": "only_one", "ranked": [h.shop.account_id]}), 1, "alipay", ""),
        )


def history_notifications(h: History) -> Iterator[tuple]:
    """The inbox row of each payment's notify: what the service keeps (signature removed)."""
    for i in range(len(h.stamps)):
        params = {
            "pid": h.shop.pid,
            "trade_no": h.trade_nos[i],
            "out_trade_no": h.out_trade_nos[i],
            "type": "alipay",
            "name": PRODUCT_NAME,
            "money": f"{PRICE_MINOR / 100:.2f}",
            "trade_status": "TRADE_SUCCESS",
        }
        yield (i + 1, "epay", f"{h.trade_nos[i]}:TRADE_SUCCESS", i + 1, json.dumps(params), "succeeded", h.paid_at(i))


def history_events(h: History) -> Iterator[tuple]:
    """created, paid and delivered, with the details the services record."""
    for i, t in enumerate(h.stamps):
        paid = h.paid_at(i)
        events = (
            ("created", {"quantity": 1, "amount": PRICE_MINOR}, t),
            ("paid", {"source": "notify", "out_trade_no": h.out_trade_nos[i], "late": False}, paid),
            ("delivered", {"secrets": 1}, paid),
        )
        for k, (kind, detail, at) in enumerate(events):
            yield (3 * i + k + 1, i + 1, kind, json.dumps(detail), "system", at, False)


HISTORY_TABLES: list[tuple[str, str, Callable[[History], Iterator[tuple]]]] = [
    (
        "cardshop_order",
        "id order_no merchant_id product_id quantity list_price_minor unit_price_minor amount_minor currency email "
        "query_password_hash buyer_ip custom_input language delivery_note state expires_at paid_at delivered_at "
        "notified_at created_at refund_from paid_by buyer_device",
        history_orders,
    ),
    (
        "cardshop_cardsecret",
        "id product_id secret secret_hash status order_id reserved_until sold_at created_at",
        history_secrets,
    ),
    (
        "payments_payment",
        "id out_trade_no reference account_id channel_code amount_minor currency status provider_trade_no "
        "pay_url qr_content error_code created_at updated_at succeeded_at query_attempts routing attempt "
        "method decline_code",
        history_payments,
    ),
    (
        "payments_providernotification",
        "id channel_code event_key payment_id params outcome received_at",
        history_notifications,
    ),
    ("cardshop_orderevent", "id order_id kind detail actor created_at webhook_pending", history_events),
]


def history_load(shop: Shop, total: int) -> None:
    """`total` delivered orders of the bench product, as the real flow leaves them, written with COPY.

    Ids are assigned here (1..n), so the tables must be empty; the sequences are moved past them.
    """
    from django.db import transaction

    from cardshop.models import CardSecret, Order
    from payments.models import Payment

    if Order.objects.exists() or CardSecret.objects.exists() or Payment.objects.exists():
        raise RuntimeError("history needs empty order, secret and payment tables")
    history = History.plan(shop, total)
    with transaction.atomic():
        for table, columns, rows in HISTORY_TABLES:
            copy_rows(table, columns.split(), rows(history))
        sequences_sync(*(table for table, _, _ in HISTORY_TABLES))


def stock_import(shop: Shop, count: int) -> int:
    from cardshop.services.stock import card_secrets_import

    text = "\n".join(f"BENCH-{i:07d}-{secrets.token_hex(6).upper()}" for i in range(count))
    return card_secrets_import(product_id=shop.product_id, text=text).imported


# ---------------------------------------------------------------- service level


def trade_no_of(sim: Any, pay_url: str, out_trade_no: str) -> str:
    m = re.search(r"/cashier/([^/?#]+)$", pay_url)
    return m.group(1) if m else sim.trade_for(out_trade_no)["trade_no"]


class TaskClock:
    """Time spent in Celery tasks run eagerly (the buyer email after the notify commit)."""

    def __init__(self) -> None:
        from celery.signals import task_postrun, task_prerun

        self.spent = 0.0
        self._started = 0.0
        task_prerun.connect(self._pre, weak=False)
        task_postrun.connect(self._post, weak=False)

    def _pre(self, **_: Any) -> None:
        self._started = time.perf_counter()

    def _post(self, **_: Any) -> None:
        self.spent += time.perf_counter() - self._started

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent


def service_level(shop: Shop, n: int) -> dict[str, Any]:
    """n sequential orders through the services; checkout and notify handling timed separately."""
    from cardshop.services.checkout import order_create, order_payment_start
    from cardshop.services.orders import payment_notification_handle

    tasks = TaskClock()
    notify_core_s: list[float] = []

    create_s: list[float] = []
    start_s: list[float] = []
    checkout_s: list[float] = []
    notify_s: list[float] = []
    order_nos: list[str] = []
    began = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        order = order_create(
            product_id=shop.product_id,
            quantity=1,
            email=f"svc{i}@bench.example",
            query_password=QUERY_PASSWORD,
            buyer_ip=f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
        )
        t1 = time.perf_counter()
        view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
        t2 = time.perf_counter()
        params = shop.sim.notify_params(trade_no_of(shop.sim, view.pay_url, view.out_trade_no))
        tasks.take()
        t3 = time.perf_counter()
        outcome = payment_notification_handle(channel_code="epay", params={k: [v] for k, v in params.items()}, body=b"")
        t4 = time.perf_counter()
        notify_core_s.append(t4 - t3 - tasks.take())
        if not outcome.newly_succeeded:
            raise AssertionError(f"notify for {order.order_no} did not pay it: {outcome}")
        create_s.append(t1 - t0)
        start_s.append(t2 - t1)
        checkout_s.append(t2 - t0)
        notify_s.append(t4 - t3)
        order_nos.append(order.order_no)
    elapsed = time.perf_counter() - began
    verify_delivered(order_nos)
    return {
        "orders": n,
        "seconds": round(elapsed, 2),
        "orders_per_s": round(n / elapsed, 1),
        "checkout_ms": latency_ms(checkout_s),
        "order_create_ms": latency_ms(create_s),
        "payment_start_ms": latency_ms(start_s),
        "notify_ms": latency_ms(notify_s),
        "notify_without_email_task_ms": latency_ms(notify_core_s),
    }


def verify_delivered(order_nos: list[str]) -> dict[str, list[str]]:
    """Every order counted once, DELIVERED, with exactly its quantity of SOLD secrets, no secret in two orders.

    Returns order_no -> its secrets (decrypted by the model field), for comparing with what pages showed.
    """
    from cardshop.models import CardSecret, Order, OrderState, SecretStatus

    if len(set(order_nos)) != len(order_nos):
        raise AssertionError(f"{len(order_nos) - len(set(order_nos))} orders were counted twice")
    chunks = [order_nos[i : i + 1000] for i in range(0, len(order_nos), 1000)]
    quantity: dict[str, int] = {}
    states: Counter = Counter()
    for chunk in chunks:
        for order_no, state, qty in Order.objects.filter(order_no__in=chunk).values_list(
            "order_no", "state", "quantity"
        ):
            quantity[order_no] = qty
            states[state] += 1
    if len(quantity) != len(order_nos) or states != Counter({OrderState.DELIVERED: len(order_nos)}):
        raise AssertionError(f"{len(order_nos)} orders counted, in the database: {dict(states)}")
    by_order: dict[str, list[str]] = defaultdict(list)
    hashes: set[str] = set()
    sold = other = 0
    for chunk in chunks:
        linked = CardSecret.objects.filter(order__order_no__in=chunk)
        rows = linked.filter(status=SecretStatus.SOLD).values_list("order__order_no", "secret", "secret_hash")
        for order_no, secret, secret_hash in rows:
            by_order[order_no].append(secret)
            hashes.add(secret_hash)
            sold += 1
        other += linked.exclude(status=SecretStatus.SOLD).count()
    wrong = [o for o in order_nos if len(by_order.get(o, ())) != quantity[o]]
    if wrong:
        raise AssertionError(f"{len(wrong)} orders without exactly their quantity of sold secrets, e.g. {wrong[:3]}")
    if len(hashes) != sold or other:
        raise AssertionError(f"{sold} sold secrets, {len(hashes)} distinct; {other} unsold secrets tied to the orders")
    return dict(by_order)


# ---------------------------------------------------------------- gunicorn and the HTTP buyers


@contextmanager
def gunicorn_server(config: ServerConfig, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A live gunicorn on a free port; yields (base URL, process group id) and stops it on exit."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {**os.environ, **env, "CARDSHOP_PUBLIC_URL": base, "DATABASE_POOL": "1" if config.pool else "0"}
    cmd = [sys.executable, "-m", "gunicorn", "cardshop.wsgi:application", "-b", f"127.0.0.1:{port}"]
    cmd += ["-w", str(config.workers), "-k", config.worker_class, "--threads", str(config.threads)]
    cmd += ["--log-level", "warning", "--graceful-timeout", "5"]
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    log_path = VAR_DIR / "gunicorn.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=APP, env=server_env, stdout=log_file, stderr=log_file, start_new_session=True)
    try:
        wait_ready(base, proc, log_path)
        yield base, proc.pid
    finally:
        stop_process(proc)


def wait_ready(base: str, proc: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log_path}")
        try:
            if requests.get(base + "/healthz", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn not ready after {timeout:.0f} s; see {log_path}")


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started (gunicorn master and its workers), then SIGKILL if needed."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far: the gunicorn process group, this process, and the whole machine."""

    at: float
    gunicorn: float
    bench: float
    machine_busy: float

    @classmethod
    def take(cls, server_pgid: int) -> CpuSnapshot:
        tick = os.sysconf("SC_CLK_TCK")
        gunicorn = bench = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            used = int(fields[11]) + int(fields[12])  # utime + stime
            if int(fields[2]) == server_pgid:
                gunicorn += used
            elif int(entry.name) == os.getpid():
                bench += used
        cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        busy = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
        return cls(time.perf_counter(), gunicorn / tick, bench / tick, busy / tick)

    def per_order_ms(self, later: CpuSnapshot, orders: int) -> dict[str, float]:
        """CPU ms per completed order by component; `other` is mostly PostgreSQL (its backends come and go)."""
        gunicorn, bench = later.gunicorn - self.gunicorn, later.bench - self.bench
        busy = later.machine_busy - self.machine_busy
        capacity = (later.at - self.at) * (os.cpu_count() or 1)
        return {
            "gunicorn": round(gunicorn * 1000 / orders, 1),
            "bench_clients_and_simulator": round(bench * 1000 / orders, 1),
            "other_mostly_postgres": round((busy - gunicorn - bench) * 1000 / orders, 1),
            "machine_busy_pct": round(100 * busy / capacity, 1),
        }


@dataclass
class BuyerStats:
    """What one client thread saw in one path; merged after the run."""

    done: list[tuple[str, float, float]] = field(default_factory=list)  # (order_no, start, end) of counted orders
    steps: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # step -> seconds
    shown: dict[str, list[str]] = field(default_factory=dict)  # order_no -> secrets shown on its order page
    requests: int = 0  # requests gunicorn answered for this client, the simulator's notifies included
    errors: Counter = field(default_factory=Counter)

    def record(self, order_no: str, start: float, end: float, steps: dict[str, float], shown: list[str] | None) -> None:
        self.done.append((order_no, start, end))
        for step, seconds in steps.items():
            self.steps[step].append(seconds)
        if shown is not None:
            self.shown[order_no] = shown

    def merge(self, other: BuyerStats) -> None:
        self.done += other.done
        for step, values in other.steps.items():
            self.steps[step] += values
        self.shown.update(other.shown)
        self.requests += other.requests
        self.errors.update(other.errors)


def qr_src(page: str) -> str | None:
    """The src of the pay page's ``<img id="qr">``."""
    for tag in IMG_RE.findall(page):
        if re.search(r'\bid="qr"', tag):
            m = SRC_RE.search(tag)
            return html.unescape(m.group(1)) if m else None
    return None


class Buyer:
    """One browser (a ``requests.Session`` with its cookies) buying along one of the two paths."""

    def __init__(self, base: str, shop: Shop, index: int, path: str) -> None:
        import requests

        self.base, self.shop, self.index, self.path = base, shop, index, path
        self.session = requests.Session()
        self.token: str | None = None  # CSRF form token from the last product page
        self.count = 0

    def buy(self, stats: BuyerStats) -> None:
        self.count += 1
        if self.path == "order_path":
            self.order_path(stats)
        else:
            self.journey(stats)

    def order_path(self, stats: BuyerStats) -> None:
        """Checkout, pay page, notify, status JSON; the product page only once per session."""
        steps: dict[str, float] = {}
        start = time.perf_counter()
        if self.token is None:
            self.product_page(stats, steps)
        order_no, location = self.checkout(stats, steps)
        _, trade_no = self.pay_page(stats, steps, location)
        self.notify(stats, steps, trade_no)
        state = self.call(stats, steps, "status", f"{self.base}/orders/{order_no}/status/")
        if state.status_code != 200 or state.json().get("state") != "delivered":
            raise RuntimeError(f"status {state.status_code}: not delivered")
        shown = self.order_page(stats, steps, order_no) if self.count % ORDER_PAGE_EVERY == 0 else None
        stats.record(order_no, start, time.perf_counter(), steps, shown)

    def journey(self, stats: BuyerStats) -> None:
        """Product page, checkout, pay page with its QR image, notify, order page."""
        steps: dict[str, float] = {}
        start = time.perf_counter()
        self.product_page(stats, steps)
        order_no, location = self.checkout(stats, steps)
        page, trade_no = self.pay_page(stats, steps, location)
        src = qr_src(page)
        if src is None:
            raise RuntimeError("pay page has no QR image")
        qr = self.call(stats, steps, "qr_image", self.base + src if src.startswith("/") else src)
        if qr.status_code != 200 or qr.headers.get("Content-Type") != "image/png" or qr.content[:4] != b"\x89PNG":
            raise RuntimeError(f"QR image {qr.status_code}")
        self.notify(stats, steps, trade_no)
        shown = self.order_page(stats, steps, order_no)
        stats.record(order_no, start, time.perf_counter(), steps, shown)

    def call(self, stats: BuyerStats, steps: dict[str, float], step: str, url: str, **kwargs: Any) -> Any:
        """One request to gunicorn, timed under `step`."""
        method = "POST" if "data" in kwargs else "GET"
        t0 = time.perf_counter()
        resp = self.session.request(method, url, timeout=30, **kwargs)
        steps[step] = time.perf_counter() - t0
        stats.requests += 1
        return resp

    def product_page(self, stats: BuyerStats, steps: dict[str, float]) -> None:
        page = self.call(stats, steps, "product_page", f"{self.base}/p/{self.shop.slug}/")
        token = CSRF_RE.search(page.text)
        if page.status_code != 200 or token is None:
            raise RuntimeError(f"product page {page.status_code}")
        self.token = token.group(1)

    def checkout(self, stats: BuyerStats, steps: dict[str, float]) -> tuple[str, str]:
        """POST the product form without following the redirect; returns (order no, pay page path)."""
        url = f"{self.base}/p/{self.shop.slug}/"
        data = {
            "csrfmiddlewaretoken": self.token,
            "quantity": "1",
            "email": f"{self.path}{self.index}-{self.count}@bench.example",
            "query_password": QUERY_PASSWORD,
        }
        resp = self.call(stats, steps, "checkout_post", url, data=data, headers={"Referer": url}, allow_redirects=False)
        if resp.status_code == 403:
            self.token = None  # fetch a fresh form next time
        if resp.status_code != 302:
            raise RuntimeError("out of stock" if "Not enough stock" in resp.text else f"checkout {resp.status_code}")
        location = resp.headers["Location"]
        return location.strip("/").split("/")[1], location

    def pay_page(self, stats: BuyerStats, steps: dict[str, float], location: str) -> tuple[str, str]:
        """The pay page with the buyer's method chosen (Alipay, as the picker's link does) starts the payment at
        the simulator; returns (page HTML, cashier trade no)."""
        pay = self.call(stats, steps, "pay_page", self.base + location + "?method=alipay")
        cashier = CASHIER_RE.search(pay.text)
        if pay.status_code != 200 or cashier is None:
            raise RuntimeError(f"pay page {pay.status_code}")
        return pay.text, cashier.group(1)

    def notify(self, stats: BuyerStats, steps: dict[str, float], trade_no: str) -> None:
        """The buyer pays at the cashier: the simulator sends the signed notify to gunicorn and waits for it."""
        t0 = time.perf_counter()
        ack = self.shop.sim.pay_trade(trade_no)
        steps["notify"] = time.perf_counter() - t0
        stats.requests += 1
        if ack.status_code != 200 or ack.text.strip() != "success":
            raise RuntimeError(f"notify answered {ack.status_code}")

    def order_page(self, stats: BuyerStats, steps: dict[str, float], order_no: str) -> list[str]:
        detail = self.call(stats, steps, "order_page", f"{self.base}/orders/{order_no}/")
        codes = [html.unescape(c) for c in CODE_RE.findall(detail.text)]
        if detail.status_code != 200 or len(codes) != 1:
            raise RuntimeError("order page shows no secret")
        return codes


def buyer_loop(buyer: Buyer, stats: BuyerStats, barrier: threading.Barrier, deadline: list[float]) -> None:
    """One untimed warm-up order, wait for every thread, then buy until the deadline."""
    try:
        buyer.buy(BuyerStats())
    except Exception as exc:  # counted, the run goes on
        stats.errors[f"warmup: {exc}"] += 1
    barrier.wait()
    while time.perf_counter() < deadline[0]:
        try:
            buyer.buy(stats)
        except Exception as exc:
            stats.errors[str(exc)[:80]] += 1
            time.sleep(0.05)


def http_load(
    base: str, shop: Shop, path: str, clients: int, seconds: float, server_pgid: int
) -> tuple[BuyerStats, dict]:
    """Run `clients` buyer threads along `path` for `seconds` after a warm-up; returns merged statistics and CPU use."""
    deadline = [float("inf")]
    barrier = threading.Barrier(clients + 1)
    per_thread = [BuyerStats() for _ in range(clients)]
    threads = [
        threading.Thread(
            target=buyer_loop, args=(Buyer(base, shop, i, path), per_thread[i], barrier, deadline), daemon=True
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    cpu_before = CpuSnapshot.take(server_pgid)
    deadline[0] = time.perf_counter() + seconds
    for t in threads:
        t.join(timeout=seconds + 60)
    cpu_after = CpuSnapshot.take(server_pgid)
    merged = BuyerStats()
    for s in per_thread:
        merged.merge(s)
    return merged, cpu_before.per_order_ms(cpu_after, max(len(merged.done), 1))


def http_path(base: str, pgid: int, shop: Shop, path: str, clients: int, seconds: float) -> dict[str, Any]:
    """One path for `seconds` against a running gunicorn, then its orders checked in the database."""
    log(f"HTTP {PATHS[path]}: {clients} client threads, {seconds:.0f} s")
    stats, cpu = http_load(base, shop, path, clients, seconds, pgid)
    if not stats.done:
        raise RuntimeError(f"no order completed over HTTP ({PATHS[path]}); errors: {dict(stats.errors)}")
    window = max(end for _, _, end in stats.done) - min(start for _, start, _ in stats.done)
    in_db = verify_delivered([order_no for order_no, _, _ in stats.done])
    mismatched = [o for o, shown in stats.shown.items() if sorted(in_db[o]) != sorted(shown)]
    if mismatched:
        raise AssertionError(f"{len(mismatched)} order pages showed secrets other than the sold ones")
    orders = len(stats.done)
    result = {
        "path": PATHS[path],
        "orders": orders,
        "seconds": round(window, 2),
        "orders_per_s": round(orders / window, 1),
        "requests_per_order": round(stats.requests / orders, 2),
        "order_pages_checked": len(stats.shown),
        "notify_ms": latency_ms(stats.steps["notify"]),
        "steps_ms": {step: latency_ms(values) for step, values in stats.steps.items()},
        "cpu_ms_per_order": cpu,
        "errors": dict(stats.errors),
    }
    log(f"HTTP {PATHS[path]}: {result['orders_per_s']} orders/s, notify p99 {result['notify_ms']['p99']} ms")
    return result


def http_run(config: ServerConfig, env: dict[str, str], shop: Shop, clients: int, seconds: float) -> dict[str, Any]:
    """Both paths, one after the other, against one gunicorn with `config`."""
    log(f"HTTP: gunicorn {config}{'' if config.pool else ' (no connection pool)'}")
    with gunicorn_server(config, env) as (base, pgid):
        paths = {path: http_path(base, pgid, shop, path, clients, seconds) for path in PATHS}
    return {"server": str(config), "pooled": config.pool, "clients": clients, "seconds_per_path": seconds, **paths}


# ---------------------------------------------------------------- pgbench


def pgbench(args: argparse.Namespace) -> dict[str, Any]:
    """TPC-B-like default script in a scratch database on the same server; returns tps."""
    seconds = str(args.pgbench_seconds)
    with pgbench_scratch(args, scale=args.pgbench_scale) as run:
        clients = run("-c", str(args.pgbench_clients), "-j", str(args.pgbench_threads), "-T", seconds)
        # pgbench's own default (one client) too: comparisons made elsewhere often use it.
        one_client = run("-T", seconds)
    return {
        "tps": round(pgbench_figure(clients, "tps"), 1),
        "tps_one_client": round(pgbench_figure(one_client, "tps"), 1),
        "scale": args.pgbench_scale,
        "clients": args.pgbench_clients,
        "threads": args.pgbench_threads,
        "seconds": args.pgbench_seconds,
    }


# ---------------------------------------------------------------- report


STEP_LABELS = {
    "product_page": "product page",
    "checkout_post": "checkout POST",
    "pay_page": "pay page",
    "qr_image": "QR image",
    "notify": "notify",
    "status": "status JSON",
    "order_page": "order page",
}


def summary_text(r: dict[str, Any]) -> str:
    svc, http, pg, m, p = r["service"], r["http"], r["pgbench"], r["machine"], r["params"]
    share = r["http_share_of_pgbench"]
    ok = {True: "OK", False: "MISSED"}
    order, journey = http["order_path"], http["journey"]

    def row(label: str, a: Any, b: Any) -> str:
        return f"  {label:<42}{a!s:>17}{b!s:>17}"

    def both(label: str, fmt: Callable[[dict[str, Any]], Any]) -> str:
        return row(label, fmt(order), fmt(journey))

    def steps_line(h: dict[str, Any]) -> str:
        parts = []
        for step, lat in h["steps_ms"].items():
            every = f" (1 in {ORDER_PAGE_EVERY})" if h is order and step == "order_page" else ""
            parts.append(f"{STEP_LABELS.get(step, step)}{every} {lat['p50']}")
        return ", ".join(parts)

    headline = order["orders_per_s"]
    needed = TARGET_HTTP_SHARE * pg["tps"]
    met = r["targets"]["http_share"]
    lines = [
        "=" * 78,
        "cardshop checkout -> pay -> notify -> delivery benchmark (PostgreSQL)",
        "=" * 78,
        f"machine     nproc={m['nproc']}  Python {m['python']}  PostgreSQL {m['postgresql']}"
        f"  (synchronous_commit={m['pg_synchronous_commit']}, shared_buffers={m['pg_shared_buffers']})",
        f"params      orders={p['orders']} history={p['history']} http_seconds={p['http_seconds']} per path"
        f" clients={p['clients']} gunicorn={','.join(p['gunicorn'])}",
        f"            pgbench -s {pg['scale']} -c {pg['clients']} -j {pg['threads']} -T {pg['seconds']}",
        f"setup       {'  '.join(f'{k}={v}s' for k, v in r['setup_seconds'].items())}",
        "tables      " + "  ".join(f"{t.split('_', 1)[1]}={v['rows']} ({v['mb']} MB)" for t, v in r["tables"].items()),
        "-" * 78,
        f"{'SERVICE LEVEL (in-process, sequential)':<46}{'value':>14}   target",
        f"{'  orders/s (checked out + paid + delivered)':<46}{svc['orders_per_s']:>14}",
        f"{'  checkout p50 / p99 ms':<46}{svc['checkout_ms']['p50']:>7} /{svc['checkout_ms']['p99']:>6}",
        f"{'    order_create p50 / p99 ms':<46}{svc['order_create_ms']['p50']:>7} /{svc['order_create_ms']['p99']:>6}",
        f"{'    order_payment_start p50 / p99 ms':<46}{svc['payment_start_ms']['p50']:>7} /{svc['payment_start_ms']['p99']:>6}",
        f"{'  notify handling p50 / p99 ms':<46}{svc['notify_ms']['p50']:>7} /{svc['notify_ms']['p99']:>6}"
        f"   p99 < {TARGET_NOTIFY_P99_MS:.0f} ms: {ok[r['targets']['notify_p99']]}",
        f"{'    without the eager buyer-email task':<46}{svc['notify_without_email_task_ms']['p50']:>7} /"
        f"{svc['notify_without_email_task_ms']['p99']:>6}",
        "-" * 78,
        f"OVER HTTP  gunicorn {http['server']}{'' if http['pooled'] else ' (no pool)'}, {http['clients']} client threads,"
        f" {http['seconds_per_path']:.0f} s per path",
        row("", "order path", "full journey"),
        both("paid + delivered orders/s", lambda h: h["orders_per_s"]),
        both("orders counted / errors", lambda h: f"{h['orders']} / {sum(h['errors'].values())}"),
        both("gunicorn requests per order (with notify)", lambda h: h["requests_per_order"]),
        both("notify round trip p50 / p99 ms", lambda h: f"{h['notify_ms']['p50']} / {h['notify_ms']['p99']}"),
        both("CPU ms per order: gunicorn", lambda h: h["cpu_ms_per_order"]["gunicorn"]),
        both("                  clients + simulator", lambda h: h["cpu_ms_per_order"]["bench_clients_and_simulator"]),
        both("                  rest (mostly PostgreSQL)", lambda h: h["cpu_ms_per_order"]["other_mostly_postgres"]),
        both("machine busy %", lambda h: h["cpu_ms_per_order"]["machine_busy_pct"]),
        row("orders/s / pgbench tps", *(f"{share[path] * 100:.2f} %" for path in PATHS)),
        "  p50 ms per step:",
        f"    order path:   {steps_line(order)}",
        f"    full journey: {steps_line(journey)}",
    ]
    if len(r["http_runs"]) > 1:
        lines.append("  all server configs (orders/s, notify p99 ms):")
        for h in r["http_runs"]:
            mark = "  <- headline" if h is http else ""
            o, j = h["order_path"], h["journey"]
            lines.append(
                f"    {h['server']:<19} order path {o['orders_per_s']:>6} ({o['notify_ms']['p99']:>7})"
                f"   journey {j['orders_per_s']:>6} ({j['notify_ms']['p99']:>7}){mark}"
            )
    lines += [
        "  clients + simulator run in this process and share the CPUs with gunicorn and PostgreSQL.",
        "-" * 78,
        f"{'PGBENCH (TPC-B-like) tps, ' + str(pg['clients']) + ' clients (the target reference)':<60}{pg['tps']:>10}",
        f"{'PGBENCH tps, 1 client (pgbench default, for reference)':<60}{pg['tps_one_client']:>10}",
        f"        order path / 1-client pgbench tps: {headline / pg['tps_one_client'] * 100:.2f} %",
        f"TARGET  order path orders/s >= {TARGET_HTTP_SHARE * 100:.0f} % of pgbench tps, i.e. >= {needed:.1f} orders/s",
        f"        order path {headline} orders/s = {share['order_path'] * 100:.2f} % of pgbench tps:"
        + (" MET" if met else f" NOT MET ({needed / headline:.1f}x short)"),
        f"        (full journey, for reference: {journey['orders_per_s']} orders/s"
        f" = {share['journey'] * 100:.2f} % of pgbench tps)",
        "=" * 78,
    ]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- main


def run(args: argparse.Namespace, stack: ExitStack) -> dict[str, Any]:
    env = bench_env(args.database_url)
    setup: dict[str, float] = {}
    dbname = urlsplit(args.database_url).path.lstrip("/")
    with timed("create database + migrate", setup):
        recreate_database(args, dbname)
        django_setup(env)
        migrate()

    from django.db import connection

    from payments.simulators.epay import EpaySimulator

    sim = EpaySimulator().start()
    stack.callback(sim.stop)
    shop = shop_create(sim)
    with timed(f"history ({args.history} delivered orders)", setup):
        history_load(shop, args.history)
    with timed("free stock import", setup):
        stock_import(shop, args.orders + args.http_stock * len(PATHS) * len(args.gunicorn))
        vacuum_analyze()
    tables = table_sizes()

    log(f"service level: {args.orders} orders")
    service = service_level(shop, args.orders)
    log(f"service level: {service['orders_per_s']} orders/s, notify p99 {service['notify_ms']['p99']} ms")
    connection.close()

    http_runs = [http_run(cfg, env, shop, args.clients, args.http_seconds) for cfg in args.gunicorn]
    best = max(http_runs, key=lambda h: h[HEADLINE_PATH]["orders_per_s"])

    log(f"pgbench -s {args.pgbench_scale} -c {args.pgbench_clients} -T {args.pgbench_seconds}")
    pg = pgbench(args)
    share = {path: round(best[path]["orders_per_s"] / pg["tps"], 4) for path in PATHS}
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "gunicorn"}
    params["gunicorn"] = [str(c) for c in args.gunicorn]
    return {
        "params": params,
        "machine": machine_info(),
        "setup_seconds": setup,
        "tables": tables,
        "service": service,
        "http_runs": http_runs,
        "http": best,
        "pgbench": pg,
        "http_share_of_pgbench": share,
        "targets": {
            "notify_p99": service["notify_ms"]["p99"] < TARGET_NOTIFY_P99_MS,
            "http_share": share[HEADLINE_PATH] >= TARGET_HTTP_SHARE,
            "http_share_path": HEADLINE_PATH,
            "notify_p99_ms_max": TARGET_NOTIFY_P99_MS,
            "http_share_min": TARGET_HTTP_SHARE,
        },
    }


VS_RESULTS = ROOT / "bench" / "results" / "checkout_pay_vs.json"
VS_FIGURES: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
    ("order path orders/s", lambda r: r["http"]["order_path"]["orders_per_s"]),
    ("  CPU ms per order: gunicorn", lambda r: r["http"]["order_path"]["cpu_ms_per_order"]["gunicorn"]),
    ("  PostgreSQL (the rest)", lambda r: r["http"]["order_path"]["cpu_ms_per_order"]["other_mostly_postgres"]),
    ("  clients + simulator", lambda r: r["http"]["order_path"]["cpu_ms_per_order"]["bench_clients_and_simulator"]),
    (
        "  all three",
        lambda r: sum(
            r["http"]["order_path"]["cpu_ms_per_order"][k]
            for k in ("gunicorn", "other_mostly_postgres", "bench_clients_and_simulator")
        ),
    ),
    ("  notify round trip p50 ms", lambda r: r["http"]["order_path"]["notify_ms"]["p50"]),
    ("full journey orders/s", lambda r: r["http"]["journey"]["orders_per_s"]),
    ("service level orders/s", lambda r: r["service"]["orders_per_s"]),
    ("  notify handling p50 ms", lambda r: r["service"]["notify_ms"]["p50"]),
    ("pgbench tps (8 clients)", lambda r: r["pgbench"]["tps"]),
]


def vs_main(args: argparse.Namespace, argv: list[str]) -> int:
    """This benchmark on two checkouts, rounds alternating (before, after, before, ...), medians side by side.

    Each run is this file in a child process with ``--app <checkout>``: the same clients, simulator, history and
    checks drive both shops, each served by its own code. Absolute figures on this shared machine move 2-3x from
    day to day, so only what was measured in the same minutes is compared.
    """
    import statistics

    rest = _without(argv, ("--vs", "--rounds", "--app"))
    sides = {"before": args.vs.resolve(), "after": args.app.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for r in range(args.rounds):
        for side, checkout in sides.items():
            log(f"--vs round {r + 1}/{args.rounds}: {side} ({checkout})")
            out = VAR_DIR / f"checkout_pay_{side}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), *rest, "--app", str(checkout), "--json-out", str(out)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            runs[side].append(json.loads(out.read_text()))
    rows = []
    for label, pick in VS_FIGURES:
        before = statistics.median(pick(run) for run in runs["before"])
        after = statistics.median(pick(run) for run in runs["after"])
        rows.append({"figure": label, "before": round(before, 2), "after": round(after, 2)})
    lines = [
        f"checkout_pay.py --vs: median of {args.rounds} alternating rounds per side",
        f"  before: {sides['before']}",
        f"  after:  {sides['after']}",
        f"  {'':<36}{'before':>10}{'after':>10}{'after/before':>14}",
    ]
    for row in rows:
        ratio = f"{row['after'] / row['before']:.2f}x" if row["before"] else "-"
        lines.append(f"  {row['figure']:<36}{row['before']:>10}{row['after']:>10}{ratio:>14}")
    order = next(r for r in rows if r["figure"] == "order path orders/s")
    cpu = next(r for r in rows if r["figure"] == "  all three")
    lines += [
        f"TARGET  order path orders/s >= 3x before: {order['after'] / order['before']:.2f}x"
        + (" MET" if order["after"] >= 3 * order["before"] else " NOT MET"),
        f"        CPU ms per order <= 1/3 of before: {cpu['after'] / cpu['before']:.2f}x"
        + (" MET" if cpu["after"] * 3 <= cpu["before"] else " NOT MET"),
    ]
    text = "\n".join(lines)
    print(text)
    VS_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    VS_RESULTS.write_text(
        json.dumps(
            {"sides": {k: str(v) for k, v in sides.items()}, "rows": rows, "runs": runs, "summary": lines}, indent=2
        )
        + "\n"
    )
    print(f"results: {VS_RESULTS.relative_to(ROOT)}")
    return 0


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """argv minus the given options and their values."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in options:
            skip = True
            continue
        if any(arg.startswith(o + "=") for o in options):
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.vs is not None:
        return vs_main(args, argv)
    os.chdir(APP)  # Celery's Django fix-up puts the working directory first on sys.path: it must be the app's
    # A plain `kill` still runs the cleanup (gunicorn, simulator, pgbench database).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with ExitStack() as stack:
        result = run(args, stack)
    text = summary_text(result)
    print(text)
    result["summary"] = text.splitlines()
    write_json(result, args.json_out)
    print(f"results: {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
