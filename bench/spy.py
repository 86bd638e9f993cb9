"""py-spy samples of a running process, split by request and by what the CPU was doing.

py-spy (a sampling profiler in Rust, no instrumentation of the sampled process) records stacks with
``--format raw``: one line per distinct stack, ``frame;frame;...;frame count``. Only samples of a thread holding the GIL are kept
(``--gil``): a thread waiting for PostgreSQL, Redis or a socket has released it, while py-spy's own idle test
counts psycopg's wait for an answer as busy (checked with a loop of ``SELECT pg_sleep(0.005)``). So every sample is
CPU in the interpreter; C code that releases the GIL while it works (hashlib on large inputs) is missed.

A sample belongs to a request by the view in its stack (``REQUEST_VIEWS``), and to one layer: the first of
``LAYERS`` with a frame in the stack, in that order, so PBKDF2 inside the checkout view is "hash", SQL
compiled inside the risk engine is "ORM". ``USE_CASES`` are inclusive: every sample under the named service.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REQUEST_VIEWS: list[tuple[str, str]] = [
    ("checkout_post", r"product_detail \(cardshop/views/storefront\.py"),
    ("pay_page", r"order_pay \(cardshop/views/pay\.py"),
    ("notify", r"provider_notify \(cardshop/views/notify\.py"),
    ("status", r"order_status \(cardshop/views/storefront\.py"),
    ("order_page", r"order_detail \(cardshop/views/storefront\.py"),
]

# (layer, pattern on one frame "function (file:line)"): the first layer with a matching frame takes the sample.
LAYERS: list[tuple[str, str]] = [
    ("query-password hash (timed apart)", r"django/contrib/auth/hashers\.py|core/hashers\.py"),
    ("HTTP client to the provider (requests, urllib3)", r"(requests|urllib3)/"),
    ("PostgreSQL driver (psycopg: send, fetch, commit)", r"psycopg/|psycopg_pool/"),
    ("Redis client", r"redis/|hiredis"),
    ("ORM: SQL compiler", r"django/db/models/sql/compiler\.py"),
    (
        "ORM: querysets, lookups, expressions",
        r"django/db/models/(query|sql/query|sql/where|lookups|expressions|query_utils)\.py",
    ),
    ("ORM: model instances, fields, signals", r"django/db/models/|django/db/backends/|django/dispatch/"),
    ("templates", r"django/template/|django/templatetags/"),
    ("forms", r"django/forms/"),
    ("translation", r"django/utils/translation/|gettext\.py"),
    ("django-fsm", r"django_fsm/"),
    ("Celery / kombu publish", r"celery/|kombu/"),
    ("risk engine (own Python)", r"risk/"),
    ("settlement (own Python)", r"settlement/"),
    ("payments: adapters, signatures, routing (own Python)", r"payments/|cryptography/|alipay/|wechatpayv3/"),
    ("shop services and views (own Python)", r"cardshop/(services|views|selectors|forms|models)"),
    (
        "sessions, CSRF, signing, middleware",
        r"django/contrib/sessions|django/middleware/|django/core/signing|cardshop/(sessions|device)\.py|django/contrib/(auth|messages)/|django_otp/",
    ),
    ("URL resolving", r"django/urls/"),
    ("Django request/response handling", r"django/core/handlers/|django/http/|django/utils/"),
    ("WSGI server (gunicorn)", r"gunicorn/"),
]

USE_CASES: list[tuple[str, str]] = [
    ("risk assessment (risk_assess)", r"risk_assess \("),
    ("order_create", r"order_create \(cardshop/services/checkout\.py"),
    ("order_payment_start", r"order_payment_start \(cardshop/services/checkout\.py"),
    ("routing decision", r"payments/routing\.py|channel_choice\.py"),
    ("payment_notification_handle", r"payment_notification_handle \("),
    ("ledger sale posting", r"settlement/services/"),
    ("delivery", r"cardshop/services/delivery\.py"),
    ("template render", r"render \(django/template/backends/django\.py"),
    ("session load + save", r"django/contrib/sessions|cardshop/sessions\.py"),
]

REQUEST_RES = [(name, re.compile(p)) for name, p in REQUEST_VIEWS]
LAYER_RES = [(name, re.compile(p)) for name, p in LAYERS]
USE_CASE_RES = [(name, re.compile(p)) for name, p in USE_CASES]


@contextmanager
def recording(pid: int, out: Path, *, rate: int = 500) -> Iterator[Path]:
    """py-spy records `pid` while the block runs."""
    cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(pid), "-r", str(rate)]
    cmd += ["--format", "raw", "-o", str(out), "--gil", "--nonblocking"]  # blocking (pausing) slows the target 10x
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield out
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
        _, err = proc.communicate(timeout=60)
        if proc.returncode not in (0, -2) and not out.exists():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def request_of(frames: list[str]) -> str:
    for name, regex in REQUEST_RES:
        if any(regex.search(f) for f in frames):
            return name
    return "other"


def layer_of(frames: list[str]) -> str:
    for name, regex in LAYER_RES:
        if any(regex.search(f) for f in frames):
            return name
    return "other (interpreter, stdlib)"


def split(stacks: list[tuple[list[str], int]], keep: str = "") -> dict[str, dict]:
    """request -> {samples, layers: Counter, use_cases: Counter}; only stacks with a frame matching `keep`."""
    keep_re = re.compile(keep) if keep else None
    out: dict[str, dict] = defaultdict(lambda: {"samples": 0, "layers": Counter(), "use_cases": Counter()})
    for frames, count in stacks:
        if keep_re and not any(keep_re.search(f) for f in frames):
            continue
        entry = out[request_of(frames)]
        entry["samples"] += count
        entry["layers"][layer_of(frames)] += count
        for name, regex in USE_CASE_RES:
            if any(regex.search(f) for f in frames):
                entry["use_cases"][name] += count
    return dict(out)


def as_ms(split_result: dict[str, dict], ms_per_sample: dict[str, float] | float) -> dict[str, dict]:
    """Samples turned into CPU ms per request, given each request's (or one common) ms per sample."""
    out = {}
    for request, entry in split_result.items():
        scale = ms_per_sample if isinstance(ms_per_sample, float) else ms_per_sample.get(request, 0.0)
        out[request] = {
            "samples": entry["samples"],
            "ms": round(entry["samples"] * scale, 2),
            "layers": {k: round(v * scale, 2) for k, v in entry["layers"].most_common()},
            "use_cases": {k: round(v * scale, 2) for k, v in entry["use_cases"].most_common()},
        }
    return out


def table(ms: dict[str, dict], order: list[str], min_ms: float = 0.05) -> str:
    """Layers as rows, requests as columns, CPU ms; then the use cases."""
    requests = [r for r in order if r in ms] + sorted(r for r in ms if r not in order)
    layers = [name for name, _ in LAYERS] + ["other (interpreter, stdlib)"]
    width = 52
    lines = [f"  {'CPU ms per request':<{width}}" + "".join(f"{r:>14}" for r in requests)]
    for layer in layers:
        values = [ms[r]["layers"].get(layer, 0.0) for r in requests]
        if values and max(values) >= min_ms:
            lines.append(f"  {layer:<{width}}" + "".join(f"{v:>14.2f}" for v in values))
    lines.append(f"  {'total':<{width}}" + "".join(f"{ms[r]['ms']:>14.2f}" for r in requests))
    lines.append(f"  {'of which, inclusive:':<{width}}")
    for name, _ in USE_CASES:
        values = [ms[r]["use_cases"].get(name, 0.0) for r in requests]
        if values and max(values) >= min_ms:
            lines.append(f"    {name:<{width - 2}}" + "".join(f"{v:>14.2f}" for v in values))
    return "\n".join(lines)
