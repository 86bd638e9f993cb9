"""Live velocity features: event counters per IP (/64), email, domain, device, product and merchant, read in one
Redis round trip per assessment and written after the checkout commits.

Each counter is a sorted set of event ids scored by time (ZADD, trimmed to a day, expiring after one): a window's
count is one ZCOUNT, so the 1 minute / 1 hour / 1 day windows of a key are exact, not bucketed. Amounts per IP and
day are hourly INCRBY buckets (24 keys, one MGET). Without REDIS_URL (the SQLite demo) the same counters live in
process memory (`MemoryCounters`); with Redis set but unreachable, `CountersDown` is raised and the caller
degrades (risk.services).
"""

from __future__ import annotations

import threading
import time
import uuid
from bisect import bisect_left, insort
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings

from core.client_ip import ip_group

WINDOWS = {"1m": 60, "1h": 3600, "1d": 86400}
PREFIX = "risk:v1:"
HOUR = 3600

# (feature, counter dimension, window): what `features_read` fills from the counters.
COUNTED: tuple[tuple[str, str, str], ...] = (
    ("ip_orders_1m", "ip", "1m"),
    ("ip_orders_1h", "ip", "1h"),
    ("ip_orders_1d", "ip", "1d"),
    ("email_orders_1h", "email", "1h"),
    ("email_orders_1d", "email", "1d"),
    ("domain_orders_1h", "domain", "1h"),
    ("device_orders_1h", "device", "1h"),
    ("device_orders_1d", "device", "1d"),
    ("product_orders_1h", "product", "1h"),
    ("merchant_orders_1h", "merchant", "1h"),
    ("ip_failed_payments_1h", "ip_failed", "1h"),
    ("device_failed_payments_1h", "device_failed", "1h"),
    ("lookup_failures_ip_1h", "ip_lookup_failed", "1h"),
)


class CountersDown(Exception):
    """The counter store did not answer: the assessment degrades instead of failing the checkout."""


@dataclass(frozen=True)
class Subject:
    """Who and what one event or assessment is about; empty values are not counted."""

    ip: str = ""
    email: str = ""
    device: str = ""
    product: str = ""
    merchant: str = ""

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2].lower() if "@" in self.email else ""

    def keys(self) -> dict[str, str]:
        """Counter dimension -> the value counted under it."""
        ip = ip_group(self.ip)
        values = {
            "ip": ip,
            "email": self.email.strip().lower(),
            "domain": self.domain,
            "device": self.device,
            "product": self.product,
            "merchant": self.merchant,
            "ip_failed": ip,
            "device_failed": self.device,
            "ip_lookup_failed": ip,
        }
        return {dim: value for dim, value in values.items() if value}


def _key(dim: str, value: str) -> str:
    return f"{PREFIX}{dim}:{value}"


def _amount_key(ip: str, hour: int) -> str:
    return f"{PREFIX}ip_amount:{ip}:{hour}"


class RedisCounters:
    def __init__(self, url: str):
        import redis  # only where Redis is configured

        self._client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
        self._errors = (redis.RedisError, OSError)

    def read(self, subject: Subject, now: float) -> dict[str, int]:
        keys = subject.keys()
        pipe = self._client.pipeline(transaction=False)
        asked = []
        for feature, dim, window in COUNTED:
            if dim in keys:
                pipe.zcount(_key(dim, keys[dim]), now - WINDOWS[window], "+inf")
                asked.append(feature)
        ip = keys.get("ip", "")
        hour = int(now // HOUR)
        if ip:
            pipe.mget([_amount_key(ip, hour - i) for i in range(24)])
        try:
            answers = pipe.execute()
        except self._errors as exc:
            raise CountersDown(str(exc)) from exc
        counts = dict(zip(asked, answers, strict=False))
        counts["ip_amount_1d"] = sum(int(v) for v in answers[-1] if v) if ip else 0
        return counts

    def add(self, dims: dict[str, str], now: float, *, amount_minor: int = 0, ip: str = "") -> None:
        member = uuid.uuid4().hex
        pipe = self._client.pipeline(transaction=False)
        for dim, value in dims.items():
            key = _key(dim, value)
            pipe.zadd(key, {member: now})
            pipe.zremrangebyscore(key, "-inf", now - WINDOWS["1d"])
            pipe.expire(key, WINDOWS["1d"] + 60)
        if amount_minor and ip:
            bucket = _amount_key(ip, int(now // HOUR))
            pipe.incrby(bucket, amount_minor)
            pipe.expire(bucket, WINDOWS["1d"] + HOUR)
        try:
            pipe.execute()
        except self._errors as exc:
            raise CountersDown(str(exc)) from exc


class MemoryCounters:
    """The same counters in this process's memory: the demo's embedded default, and tests without Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, list[float]] = defaultdict(list)
        self._amounts: dict[str, int] = defaultdict(int)

    def read(self, subject: Subject, now: float) -> dict[str, int]:
        keys = subject.keys()
        counts: dict[str, int] = {}
        with self._lock:
            for feature, dim, window in COUNTED:
                if dim in keys:
                    times = self._events.get(_key(dim, keys[dim]), [])
                    counts[feature] = len(times) - bisect_left(times, now - WINDOWS[window])
            ip = keys.get("ip", "")
            hour = int(now // HOUR)
            counts["ip_amount_1d"] = (
                sum(self._amounts.get(_amount_key(ip, hour - i), 0) for i in range(24)) if ip else 0
            )
        return counts

    def add(self, dims: dict[str, str], now: float, *, amount_minor: int = 0, ip: str = "") -> None:
        with self._lock:
            for dim, value in dims.items():
                times = self._events[_key(dim, value)]
                insort(times, now)
                del times[: bisect_left(times, now - WINDOWS["1d"])]
            if amount_minor and ip:
                self._amounts[_amount_key(ip, int(now // HOUR))] += amount_minor

    def clear(self) -> None:
        with self._lock:
            self._events.clear()
            self._amounts.clear()


_store_lock = threading.Lock()
_stores: dict[str, RedisCounters | MemoryCounters] = {}


def counters() -> RedisCounters | MemoryCounters:
    """The process's counter store: Redis when REDIS_URL is set, else memory (settings.RISK_COUNTERS_URL wins)."""
    url = getattr(settings, "RISK_COUNTERS_URL", None) or getattr(settings, "REDIS_URL", "")
    with _store_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = RedisCounters(url) if url else MemoryCounters()
        return store


def counts_read(subject: Subject, now: float | None = None) -> dict[str, int]:
    """Every counted feature of `subject` (0 where a value is missing), in one round trip."""
    found = counters().read(subject, time.time() if now is None else now)
    return {feature: int(found.get(feature, 0)) for feature, _, _ in COUNTED} | {
        "ip_amount_1d": int(found.get("ip_amount_1d", 0))
    }


def checkout_count(subject: Subject, amount_minor: int, now: float | None = None) -> None:
    """One checkout made an order: it counts under its IP, email, domain, device, product and merchant."""
    keys = subject.keys()
    dims = {d: v for d, v in keys.items() if d in ("ip", "email", "domain", "device", "product", "merchant")}
    counters().add(dims, time.time() if now is None else now, amount_minor=amount_minor, ip=keys.get("ip", ""))


def failure_count(kind: str, subject: Subject, now: float | None = None) -> None:
    """A failed or declined payment (`payment_failed`) or a failed order lookup (`lookup_failed`)."""
    keys = subject.keys()
    wanted = {"payment_failed": ("ip_failed", "device_failed"), "lookup_failed": ("ip_lookup_failed",)}[kind]
    dims = {d: keys[d] for d in wanted if d in keys}
    if dims:
        counters().add(dims, time.time() if now is None else now)
