"""What the benchmarks share: paths, the environment they run Django with, a scratch database, percentiles."""

from __future__ import annotations

import argparse
import base64
import math
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = ROOT / "var" / "bench"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(max(math.ceil(q / 100 * len(ordered)), 1), len(ordered)) - 1]


def with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def admin_execute(args: argparse.Namespace, *statements: str) -> None:
    """Run statements on the admin database named by `args.admin_db` at `args.database_url`'s server."""
    import psycopg

    with psycopg.connect(with_dbname(args.database_url, args.admin_db), autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def recreate_database(args: argparse.Namespace, dbname: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", dbname):
        raise SystemExit(f"refusing odd database name {dbname!r}")
    admin_execute(args, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)', f'CREATE DATABASE "{dbname}"')


def bench_env(database_url: str, **overrides: str) -> dict[str, str]:
    """Settings for a benchmark process (and its servers): keys generated per run, nothing read from var/."""
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return {
        "DJANGO_SETTINGS_MODULE": "cardshop.settings",
        "DEBUG": "0",
        "DATABASE_URL": database_url,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "CARDSHOP_SECRET_KEYS": f"b1:{key}",
        "CARDSHOP_HASH_KEY": secrets.token_urlsafe(32),
        # After commit the notify publishes the buyer-mail task, as with a real broker; nobody consumes it here.
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_BROKER_URL": "memory://localhost/",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        # Benchmark buyers share 127.0.0.1, which the per-buyer pending cap also counts.
        "CARDSHOP_MAX_PENDING_PER_BUYER": "1000000",
        "CARDSHOP_VAR_DIR": str(VAR_DIR),
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


@contextmanager
def pgbench_scratch(args: argparse.Namespace, *, scale: int, dbname: str = "pgbench_ref") -> Iterator:
    """A scratch database on `args.database_url`'s server, initialised by ``pgbench -i -s scale``; yields a function
    that runs pgbench on it with the given options and returns its output. Dropped afterwards."""
    import subprocess

    recreate_database(args, dbname)
    url = urlsplit(args.database_url)
    conn = ["-h", url.hostname or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "root"]

    def run(*options: str) -> str:
        return subprocess.run(["pgbench", *conn, *options, dbname], check=True, capture_output=True, text=True).stdout

    try:
        run("-i", "-q", "-s", str(scale))
        yield run
    finally:
        admin_execute(args, f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def pgbench_figure(output: str, name: str) -> float:
    """`tps` (without the initial connection time) or `latency` (average, ms) from pgbench's output."""
    pattern = {
        "tps": r"tps = ([\d.]+) \(without initial connection time\)",
        "latency": r"latency average = ([\d.]+) ms",
    }
    m = re.search(pattern[name], output)
    if not m:
        raise RuntimeError(f"cannot read {name} from pgbench's output:\n{output}")
    return round(float(m.group(1)), 3)


def pgbench_one_client(args: argparse.Namespace, *, seconds: int = 10, scale: int = 10) -> dict[str, float]:
    """pgbench's default TPC-B-like script, one client: the latency of one small write transaction with its commit
    on this machine right now."""
    with pgbench_scratch(args, scale=scale) as pgbench:
        output = pgbench("-c", "1", "-T", str(seconds))
    return {
        "latency_ms": pgbench_figure(output, "latency"),
        "tps": round(pgbench_figure(output, "tps"), 1),
        "seconds": seconds,
        "scale": scale,
    }
