"""Where the CPU of one order goes: each request of the order path, profiled in-process.

The order path is the one `bench/checkout_pay.py` times over HTTP: POST checkout -> GET the pay page (which
starts the payment at the epay simulator over real HTTP) -> the provider's notify -> GET the status JSON the
order page polls. Here those four requests go straight into ``cardshop.wsgi.application`` (the callable
gunicorn serves, the whole middleware stack included) from this thread, so ``time.thread_time`` around each
call is the CPU Django spends on it: no network, no server, no client library in the figure. The simulator
runs on its own threads; its CPU is not counted.

One pass over the bench's product with history (as in checkout_pay.py), `--orders` orders:

1. CPU ms per request (median and mean) by thread time, the wall time beside it (the difference is waiting:
   PostgreSQL, Redis, the simulator), and the SQL statements per request (commits not counted).
2. Meanwhile py-spy samples this process (bench/spy.py; only samples holding the GIL, so waits are left out):
   each request's CPU split by layer (the first of spy.LAYERS in the stack: the hash, the provider's HTTP
   client, the PostgreSQL driver, the ORM's SQL compiler, ...) and by use case (inclusive), scaled so that
   a request's layers add up to its mean CPU.

    .venv/bin/python bench/profile_order.py                   # 500 orders, about a minute
    .venv/bin/python bench/profile_order.py --app /tmp/before # another checkout (a git worktree), same driver

Writes ``bench/results/profile_order.json`` and py-spy's raw stacks ``bench/results/profile_order.pyspy.txt``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import checkout_pay as cp  # noqa: E402  (with --app, it puts that checkout first on sys.path)
import spy  # noqa: E402
from common import bench_env, recreate_database  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "profile_order.json"
RAW = ROOT / "bench" / "results" / "profile_order.pyspy.txt"
REQUESTS = ("checkout_post", "pay_page", "notify", "status")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=500, help="orders timed and sampled (default 500)")
    p.add_argument("--history", type=int, default=5000)
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples per second (default 1000)")
    p.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/cardshop_bench_profile"),
    )
    p.add_argument("--admin-db", default="test")
    p.add_argument("--app", type=Path, default=ROOT, help="the checkout to profile (default: this one)")
    args = p.parse_args()
    args.app = str(args.app.resolve())
    if "bench" not in urlsplit(args.database_url).path:
        p.error("the bench drops and recreates its database: its name must contain 'bench'")
    return args


class WsgiBrowser:
    """One browser talking to the WSGI callable directly: cookies kept, CSRF token sent like a form would.

    Not django.test.Client: its handler does test work a server does not (it switches off the closing of old
    database connections, attaches the request and its templates to each response), counted in what this times."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self.app, self.host = app, host
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, data: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        path, _, query = path.partition("?")
        body = urlencode(data).encode() if data is not None else b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": self.host,
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": self.host,
            "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) bench",
            "HTTP_ACCEPT_LANGUAGE": "en",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        if data is not None:
            environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
            environ["CONTENT_LENGTH"] = str(len(body))
            environ["HTTP_REFERER"] = f"http://{self.host}{path}"
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"], captured["headers"] = int(status.split()[0]), headers

        result = self.app(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        headers: dict[str, str] = {}
        for name, value in captured["headers"]:
            if name.lower() == "set-cookie":
                cookie = SimpleCookie(value)
                for key, morsel in cookie.items():
                    if morsel["max-age"] == "0":
                        self.cookies.pop(key, None)
                    else:
                        self.cookies[key] = morsel.coded_value
            headers[name.lower()] = value
        return captured["status"], headers, content


class OrderPath:
    """The four requests of one order, each run through `call(kind, fn)` so the caller can time or profile it."""

    def __init__(self, app: Any, shop: cp.Shop) -> None:
        self.browser, self.shop = WsgiBrowser(app), shop
        status, _, page = self.browser.request("GET", f"/p/{shop.slug}/")
        token = cp.CSRF_RE.search(page.decode())
        if status != 200 or token is None:
            raise RuntimeError(f"product page {status}")
        self.token = token.group(1)
        self.count = 0

    def run(self, call: Any) -> str:
        self.count += 1
        b, slug = self.browser, self.shop.slug
        form = {
            "csrfmiddlewaretoken": self.token,
            "quantity": "1",
            "email": f"profile{self.count}@bench.example",
            "query_password": cp.QUERY_PASSWORD,
        }
        status, headers, body = call("checkout_post", lambda: b.request("POST", f"/p/{slug}/", form))
        if status != 302:
            raise RuntimeError(f"checkout {status}: {body[:300]!r}")
        location = headers["location"]
        order_no = location.strip("/").split("/")[1]
        status, _, page = call("pay_page", lambda: b.request("GET", location + "?method=alipay"))
        cashier = cp.CASHIER_RE.search(page.decode())
        if status != 200 or cashier is None:
            raise RuntimeError(f"pay page {status}")
        sim = self.shop.sim
        trade_no = cashier.group(1)
        sim._mark_paid(trade_no)
        params = sim.notify_params(trade_no)
        notifier = WsgiBrowser(b.app)  # the provider: no cookies
        status, _, ack = call("notify", lambda: notifier.request("GET", f"/notify/epay/?{urlencode(params)}"))
        if status != 200 or ack.strip() != b"success":
            raise RuntimeError(f"notify {status}: {ack[:200]!r}")
        status, _, state = call("status", lambda: b.request("GET", f"/orders/{order_no}/status/"))
        if status != 200 or json.loads(state)["state"] != "delivered":
            raise RuntimeError(f"status {status}: {state[:200]!r}")
        return order_no


def timed_pass(path: OrderPath, n: int) -> tuple[dict[str, list[float]], dict[str, list[float]], list[str]]:
    cpu: dict[str, list[float]] = defaultdict(list)
    wall: dict[str, list[float]] = defaultdict(list)

    def call(kind: str, fn: Any) -> Any:
        w0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        cpu[kind].append(time.thread_time() - c0)
        wall[kind].append(time.perf_counter() - w0)
        return out

    order_nos = [path.run(call) for _ in range(n)]
    return cpu, wall, order_nos


def statements_pass(path: OrderPath, n: int) -> dict[str, dict[str, Any]]:
    """SQL statements (commits included) per request, and the statements of the last order's requests."""
    from django.db import connection

    counts: dict[str, list[int]] = defaultdict(list)
    last: dict[str, list[str]] = {}

    def call(kind: str, fn: Any) -> Any:
        seen: list[str] = []

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            seen.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(wrapper):
            out = fn()
        counts[kind].append(len(seen))
        last[kind] = seen
        return out

    for _ in range(n):
        path.run(call)
    return {k: {"median": statistics.median(v), "last": [s[:200] for s in last[k]]} for k, v in counts.items()}


def query_password_hash_ms(order_no: str, runs: int = 50) -> float:
    """Thread CPU of one make_password with the hasher that hashed `order_no`'s query password."""
    from django.contrib.auth.hashers import identify_hasher, make_password

    from cardshop.models import Order

    algorithm = identify_hasher(Order.objects.get(order_no=order_no).query_password_hash).algorithm
    make_password(cp.QUERY_PASSWORD, hasher=algorithm)
    start = time.thread_time()
    for _ in range(runs):
        make_password(cp.QUERY_PASSWORD, hasher=algorithm)
    return (time.thread_time() - start) * 1000 / runs


def main() -> int:
    args = parse_args()
    os.chdir(cp.APP)  # Celery's Django fix-up puts the working directory first on sys.path
    env = bench_env(args.database_url, CARDSHOP_PUBLIC_URL="http://127.0.0.1")
    recreate_database(args, urlsplit(args.database_url).path.lstrip("/"))
    cp.django_setup(env)
    cp.migrate()
    from django.db import connection

    from cardshop.wsgi import application
    from payments.simulators.epay import EpaySimulator

    sim = EpaySimulator().start()
    try:
        shop = cp.shop_create(sim)
        cp.history_load(shop, args.history)
        cp.stock_import(shop, args.orders + 60)
        cp.vacuum_analyze()
        connection.close()
        path = OrderPath(application, shop)
        timed_pass(path, 20)  # warm-up: imports, template and URL caches, the connection
        with spy.recording(os.getpid(), RAW, rate=args.rate):
            cpu, wall, done = timed_pass(path, args.orders)
        statements = statements_pass(path, 10)
        cp.verify_delivered(done)
    finally:
        sim.stop()

    per_request = {
        kind: {
            "cpu_ms_p50": round(statistics.median(cpu[kind]) * 1000, 2),
            "cpu_ms_mean": round(statistics.fmean(cpu[kind]) * 1000, 2),
            "wall_ms_p50": round(statistics.median(wall[kind]) * 1000, 2),
        }
        for kind in REQUESTS
    }
    # Only this thread's samples inside the WSGI call: the simulator's threads are the provider, not us.
    samples = spy.split(spy.read_raw(RAW), keep=r"WsgiBrowser\.request \(profile_order\.py")
    # The query-password hash runs in hashlib's C code with the GIL released, so the sampler cannot see it: it is
    # timed on its own (the hasher the checkout used) and the checkout's sampled layers share the rest of its CPU.
    hash_ms = query_password_hash_ms(done[-1])
    mean_ms = {k: statistics.fmean(cpu[k]) * 1000 - (hash_ms if k == "checkout_post" else 0.0) for k in REQUESTS}
    scale = {k: max(mean_ms[k], 0.0) / samples[k]["samples"] for k in REQUESTS if k in samples}  # ms a sample
    breakdown = spy.as_ms({k: v for k, v in samples.items() if k in REQUESTS}, scale)
    hash_layer = spy.LAYERS[0][0]
    checkout_part = breakdown["checkout_post"]
    checkout_part["layers"][hash_layer] = round(hash_ms, 2)
    checkout_part["ms"] = round(checkout_part["ms"] + hash_ms, 2)
    per_request["checkout_post"]["query_password_hash_ms"] = round(hash_ms, 2)
    for kind in REQUESTS:
        per_request[kind]["statements"] = statements[kind]["median"]
    result = {"params": vars(args), "per_request": per_request, "breakdown": breakdown, "statements": statements}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    return 0


def report(result: dict) -> str:
    per = result["per_request"]
    lines = [f"Django CPU per request of the order path ({result['params']['orders']} orders, thread CPU time)", ""]
    lines.append(f"  {'request':<16}{'CPU p50 ms':>12}{'CPU mean ms':>13}{'wall p50 ms':>13}{'statements':>12}")
    for kind in REQUESTS:
        r = per[kind]
        lines.append(
            f"  {kind:<16}{r['cpu_ms_p50']:>12}{r['cpu_ms_mean']:>13}{r['wall_ms_p50']:>13}{r['statements']:>12}"
        )
    total = {k: round(sum(per[r][k] for r in REQUESTS), 2) for k in ("cpu_ms_p50", "cpu_ms_mean", "wall_ms_p50")}
    lines.append(
        f"  {'order (4 reqs)':<16}{total['cpu_ms_p50']:>12}{total['cpu_ms_mean']:>13}{total['wall_ms_p50']:>13}"
    )
    lines += ["", "Where it goes (py-spy samples, scaled to each request's mean CPU):", ""]
    lines.append(spy.table(result["breakdown"], list(REQUESTS)))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
