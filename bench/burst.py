"""A burst of buyers at once on the last keys, through the production deployment (nginx + gunicorn).

Each run: a new product with `--keys` codes; `--buyers` threads, one ``requests.Session`` (a browser) each,
open the product page, wait until all have it, read it for `--idle` +- `--jitter` seconds (around gunicorn's
default keep-alive of 2 s), then POST the checkout on the connection the page came on: 200 checkouts within
half a second, some sent just as an idle connection is being closed.
The buyers whose order was made pay it (pay page, the simulator's signed notify, the status poll until
delivered, the order page's code); the rest must get the shop's "not enough stock" page.

Counted per run: connection resets and other connection errors, 5xx answers, orders made, out-of-stock answers,
orders delivered, and every code shown on an order page. Checked in the database: exactly `--keys` orders of
the product, all DELIVERED, each with its own SOLD code, no code in two orders; the shown codes are the sold ones.

Deployments (``--deployment``):
- ``nginx`` (the default, as the README documents for production): nginx from Debian with
  deploy/nginx-cardshop.conf (listen and upstream rewritten to loopback ports) in front of gunicorn started
  with deploy/gunicorn.conf.py.
- ``gunicorn``: gunicorn alone with its defaults (gthread 2x4, keep-alive 2 s), as bench/checkout_pay.py runs
  it, to show what the production setup fixes.

    .venv/bin/python bench/burst.py                      # 3 runs of 200 buyers on 10 keys, nginx + gunicorn
    .venv/bin/python bench/burst.py --deployment gunicorn --runs 1

Needs nginx (``apt-get install nginx-light``) for the default deployment. Writes ``bench/results/burst.json``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
import checkout_pay as cp  # noqa: E402
from common import VAR_DIR, bench_env, recreate_database  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "burst.json"
RUN_DIR = VAR_DIR / "burst"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--buyers", type=int, default=200)
    p.add_argument("--keys", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--idle",
        type=float,
        default=2.0,
        help="mean seconds a buyer reads the page before checking out (default 2, gunicorn's default keep-alive)",
    )
    p.add_argument(
        "--jitter", type=float, default=0.25, help="each buyer's idle is the mean +- up to this (default 0.25)"
    )
    p.add_argument("--deployment", choices=["nginx", "gunicorn"], default="nginx")
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/cardshop_bench_burst"),
    )
    p.add_argument("--admin-db", default="test")
    args = p.parse_args()
    if "bench" not in urlsplit(args.database_url).path:
        p.error("the bench drops and recreates its database: its name must contain 'bench'")
    return args


# ---------------------------------------------------------------- the deployment


@contextmanager
def process(cmd: list[str], env: dict[str, str], log_name: str) -> Iterator[subprocess.Popen]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / log_name, "ab") as log_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=log_file, start_new_session=True)
    try:
        yield proc
    finally:
        cp.stop_process(proc)


def nginx_config(listen: int, upstream: int) -> Path:
    """deploy/nginx-cardshop.conf with loopback ports, inside a main config of its own (pid, logs, temp dirs)."""
    site = (ROOT / "deploy" / "nginx-cardshop.conf").read_text()
    site = re.sub(r"server unix:\S+;", f"server 127.0.0.1:{upstream};", site)
    site = re.sub(r"listen 80;", f"listen 127.0.0.1:{listen} backlog=2048;", site)
    (RUN_DIR / "site.conf").write_text(site)
    temp = RUN_DIR / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    main = f"""
daemon off;
user root;
worker_processes 1;
pid {RUN_DIR / "nginx.pid"};
error_log {RUN_DIR / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {RUN_DIR / "site.conf"};
}}
"""
    path = RUN_DIR / "nginx.conf"
    path.write_text(main)
    return path


@contextmanager
def deployment(kind: str, env: dict[str, str]) -> Iterator[str]:
    """Start the deployment; yields the base URL buyers use."""
    app_port = cp.free_port()
    with ExitStack() as stack:
        if kind == "gunicorn":
            base = f"http://127.0.0.1:{app_port}"
            server_env = {**os.environ, **env, "CARDSHOP_PUBLIC_URL": base}
            cmd = [sys.executable, "-m", "gunicorn", "cardshop.wsgi:application", "-b", f"127.0.0.1:{app_port}"]
            cmd += ["-w", "2", "-k", "gthread", "--threads", "4", "--log-level", "warning"]
            proc = stack.enter_context(process(cmd, server_env, "gunicorn.log"))
            cp.wait_ready(base, proc, RUN_DIR / "gunicorn.log")
            yield base
            return
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise SystemExit("nginx is not installed: apt-get install nginx-light (or --deployment gunicorn)")
        port = cp.free_port()
        base = f"http://127.0.0.1:{port}"
        server_env = {
            **os.environ,
            **env,
            "CARDSHOP_PUBLIC_URL": base,
            "CARDSHOP_CLIENT_IP_HEADER": "HTTP_X_REAL_IP",
            "GUNICORN_BIND": f"127.0.0.1:{app_port}",
        }
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
        cmd += ["cardshop.wsgi:application"]
        proc = stack.enter_context(process(cmd, server_env, "gunicorn.log"))
        cp.wait_ready(f"http://127.0.0.1:{app_port}", proc, RUN_DIR / "gunicorn.log")
        conf = nginx_config(port, app_port)
        front = stack.enter_context(process([nginx, "-c", str(conf)], server_env, "nginx.log"))
        cp.wait_ready(base, front, RUN_DIR / "nginx-error.log")  # /healthz through nginx
        yield base


# ---------------------------------------------------------------- the buyers


@dataclass
class Tally:
    outcomes: Counter = field(default_factory=Counter)
    orders: list[str] = field(default_factory=list)
    shown: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1


def connection_error_kind(exc: Exception) -> str:
    text = repr(exc)
    if "ConnectionResetError" in text or "Connection reset" in text or "RemoteDisconnected" in text:
        return "connection reset"
    return "connection error: " + type(exc).__name__


def buyer(index: int, base: str, shop: cp.Shop, ready: threading.Barrier, idle: float, tally: Tally) -> None:
    """One browser: the page, then (after every buyer has it) `idle` seconds of reading, then the checkout."""
    import requests

    session = requests.Session()
    url = f"{base}/p/{shop.slug}/"
    try:
        page = session.get(url, timeout=60)
        token = cp.CSRF_RE.search(page.text)
        if page.status_code != 200 or token is None:
            tally.count(f"product page {page.status_code}")
            ready.wait()
            return
    except requests.ConnectionError as exc:
        tally.count(connection_error_kind(exc))
        ready.wait()
        return
    ready.wait()  # every buyer has the page: now they all check out at once
    time.sleep(idle)
    form = {"csrfmiddlewaretoken": token.group(1), "quantity": "1", "email": f"burst{index}@bench.example"}
    form["query_password"] = cp.QUERY_PASSWORD
    try:
        resp = session.post(url, data=form, headers={"Referer": url}, allow_redirects=False, timeout=120)
    except requests.ConnectionError as exc:
        tally.count(connection_error_kind(exc))
        return
    if resp.status_code >= 500:
        tally.count(f"checkout {resp.status_code}")
        return
    if resp.status_code != 302:
        error = re.search(r'class="errorlist[^"]*"[^>]*>\s*<li>(.*?)</li>', resp.text, re.S)
        reason = html.unescape(error.group(1)).strip() if error else ""
        # The refusal names the stock, or (none left at all) the page shows the product as sold out.
        sold_out = "stock" in reason.lower() or 'class="stock-out"' in resp.text
        tally.count("out of stock" if sold_out else f"checkout {resp.status_code}: {reason[:60]}")
        return
    tally.count("order made")
    order_no = resp.headers["Location"].strip("/").split("/")[1]
    with tally.lock:
        tally.orders.append(order_no)
    try:
        location = resp.headers["Location"]  # the buyer picks Alipay on the pay page, as checkout_pay.py does
        pay = session.get(base + location + ("&" if "?" in location else "?") + "method=alipay", timeout=120)
        cashier = cp.CASHIER_RE.search(pay.text)
        if pay.status_code != 200 or cashier is None:
            tally.count(f"pay page {pay.status_code}")
            return
        ack = shop.sim.pay_trade(cashier.group(1))
        if ack.status_code != 200 or ack.text.strip() != "success":
            tally.count(f"notify {ack.status_code}")
            return
        state = session.get(f"{base}/orders/{order_no}/status/", timeout=60).json()["state"]
        if state != "delivered":
            tally.count(f"not delivered: {state}")
            return
        detail = session.get(f"{base}/orders/{order_no}/", timeout=60)
        codes = [c for c in cp.CODE_RE.findall(detail.text)]
        with tally.lock:
            tally.shown[order_no] = codes
        tally.count("delivered")
    except requests.ConnectionError as exc:
        tally.count(connection_error_kind(exc))


def product_for_run(first: cp.Shop, run: int) -> cp.Shop:
    """Run 1 buys the bench product; each later run a new product of the same merchant, with its own keys."""
    if run == 0:
        return first
    from dataclasses import replace

    from cardshop.models import Product

    product = Product.objects.get(pk=first.product_id)
    product.pk, product.slug = None, f"{first.slug}-{run + 1}"
    product.save()
    return replace(first, product_id=product.pk, slug=product.slug)


def one_run(args: argparse.Namespace, base: str, first: cp.Shop, run: int) -> dict[str, Any]:
    from django.db import connection

    shop = product_for_run(first, run)
    cp.stock_import(shop, args.keys)
    connection.close()
    tally = Tally()
    ready = threading.Barrier(args.buyers)
    spread = random.Random(run)  # the same idles for every deployment
    idles = [max(0.0, args.idle + spread.uniform(-args.jitter, args.jitter)) for _ in range(args.buyers)]
    threads = [
        threading.Thread(target=buyer, args=(i, base, shop, ready, idles[i], tally), daemon=True)
        for i in range(args.buyers)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    seconds = time.perf_counter() - started
    checked = database_check(shop, tally)
    outcomes = dict(tally.outcomes)
    resets = sum(v for k, v in outcomes.items() if k.startswith("connection"))
    errors_5xx = sum(v for k, v in outcomes.items() if re.search(r" 5\d\d$", k))
    result = {
        "run": run + 1,
        "seconds": round(seconds, 1),
        "outcomes": outcomes,
        "connection_resets_and_errors": resets,
        "5xx": errors_5xx,
        "delivered": outcomes.get("delivered", 0),
        **checked,
    }
    cp.log(
        f"run {run + 1}: {outcomes}; resets {resets}, 5xx {errors_5xx}, delivered {result['delivered']}, "
        f"codes shown twice {checked['codes_shown_twice']}"
    )
    return result


def database_check(shop: cp.Shop, tally: Tally) -> dict[str, Any]:
    """Every order the shop made for the product, and each one's code, as the database holds them."""
    from cardshop.models import Order

    in_db = list(Order.objects.filter(product_id=shop.product_id).values_list("order_no", "state"))
    delivered = [o for o, state in in_db if state == "delivered"]
    by_order = cp.verify_delivered(delivered) if delivered else {}  # each its own sold code, none in two orders
    shown = [c for codes in tally.shown.values() for c in codes]
    mismatched = [o for o, codes in tally.shown.items() if sorted(codes) != sorted(by_order.get(o, []))]
    return {
        "orders_in_db": len(in_db),
        "orders_delivered_in_db": sum(1 for _, s in in_db if s == "delivered"),
        "codes_sold": sum(len(v) for v in by_order.values()),
        "codes_shown_twice": len(shown) - len(set(shown)),
        "order_pages_not_matching_the_db": len(mismatched),
    }


def main() -> int:
    args = parse_args()
    env = bench_env(args.database_url)
    recreate_database(args, urlsplit(args.database_url).path.lstrip("/"))
    cp.django_setup(env)
    cp.migrate()
    from payments.simulators.epay import EpaySimulator

    shutil.rmtree(RUN_DIR, ignore_errors=True)
    runs = []
    with ExitStack() as stack:
        sim = EpaySimulator().start()
        stack.callback(sim.stop)
        base = stack.enter_context(deployment(args.deployment, env))
        cp.log(f"{args.deployment}: {args.buyers} buyers on {args.keys} keys, {args.runs} runs, at {base}")
        first = cp.shop_create(sim)
        for run in range(args.runs):
            runs.append(one_run(args, base, first, run))
    ok = all(
        r["connection_resets_and_errors"] == 0
        and r["5xx"] == 0
        and r["delivered"] == args.keys
        and r["orders_delivered_in_db"] == args.keys == r["orders_in_db"]
        and r["codes_shown_twice"] == 0
        and r["order_pages_not_matching_the_db"] == 0
        for r in runs
    )
    lines = [
        f"burst: {args.buyers} buyers at once on {args.keys} keys, {args.deployment},"
        f" idle {args.idle} +- {args.jitter} s before the checkout"
    ]
    lines.append(
        f"  {'run':<5}{'resets+errors':>15}{'5xx':>6}{'orders':>8}{'delivered':>11}{'sold out':>10}"
        f"{'codes twice':>13}{'seconds':>9}"
    )
    for r in runs:
        lines.append(
            f"  {r['run']:<5}{r['connection_resets_and_errors']:>15}{r['5xx']:>6}{r['orders_in_db']:>8}"
            f"{r['delivered']:>11}{r['outcomes'].get('out of stock', 0):>10}{r['codes_shown_twice']:>13}"
            f"{r['seconds']:>9}"
        )
    lines.append(
        f"TARGET  0 resets, 0 5xx, exactly {args.keys} delivered, 0 codes twice, every run: "
        + ("MET" if ok else "NOT MET")
    )
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"params": vars(args), "runs": runs, "met": ok, "summary": lines}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
