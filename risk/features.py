"""Live velocity features: event counters per IP (/64), email, domain, device, product and merchant, read in one
Redis round trip per assessment and written after the checkout commits, by a writer thread (risk.write_behind):
the checkout does not wait for that write.

Each counter is a sorted set of event ids scored by time (ZADD, trimmed to a day, expiring after one): a window's
count is one ZCOUNT, so the 1 minute / 1 hour / 1 day windows of a key are exact, not bucketed. Amounts per IP and
day are hourly INCRBY buckets (24 keys). Each read and each write is one Lua script. Without REDIS_URL (the SQLite
demo) the same counters live in process memory (`MemoryCounters`); with Redis set but unreachable, `CountersDown`
is raised and the caller degrades (risk.services).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from bisect import bisect_left, insort
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

from django.conf import settings

from core.client_ip import ip_group
from risk.write_behind import write_behind

log = logging.getLogger(__name__)
T = TypeVar("T")

WINDOWS = {"1m": 60, "1h": 3600, "1d": 86400}
PREFIX = "risk:v1:"
CONFIG_KEY = PREFIX + "config"  # bumped when operators change rules, lists or settings
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
    """The counter store did not answer: the assessment degrades instead of failing the checkout. `meanwhile` is
    what the caller's overlapped read returned (read_while)."""

    def __init__(self, message: str, *, meanwhile: object = None):
        super().__init__(message)
        self.meanwhile = meanwhile


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
        """Counter dimension -> the value counted under it (worked out once per subject; read, never changed)."""
        return self._keys

    @cached_property
    def _keys(self) -> dict[str, str]:
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


# One script per read and per write: Redis runs the counter commands itself, so the checkout pays one command's
# packing and one reply instead of ~15 or ~20 through a pipeline (~0.15 ms each here). Keys are passed as KEYS, so
# the scripts stay valid on a cluster whose keys share a slot.
# KEYS: the sorted sets (ARGV[1] of them), the amount buckets, and last the configuration stamp (CONFIG_KEY).
_READ_SCRIPT = """
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do out[i] = redis.call('ZCOUNT', KEYS[i], ARGV[i + 1], '+inf') end
local total = 0
for i = n + 1, #KEYS - 1 do
  local v = redis.call('GET', KEYS[i])
  if v then total = total + tonumber(v) end
end
out[n + 1] = total
out[n + 2] = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
return out
"""
# KEYS: the sorted sets, then the amount bucket when ARGV[5] (the amount) is above 0.
_ADD_SCRIPT = """
local now, cutoff, ttl, member = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local amount = tonumber(ARGV[5])
local sets = #KEYS
if amount > 0 then sets = sets - 1 end
for i = 1, sets do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', cutoff)
  redis.call('EXPIRE', KEYS[i], ttl)
end
if amount > 0 then
  redis.call('INCRBY', KEYS[#KEYS], amount)
  redis.call('EXPIRE', KEYS[#KEYS], ARGV[6])
end
return sets
"""


class RedisCounters:
    def __init__(self, url: str):
        import redis  # only where Redis is configured

        self._client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
        self._errors = (redis.RedisError, OSError)
        self._no_script = redis.exceptions.NoScriptError
        self._read = self._client.register_script(_READ_SCRIPT)
        self._add = self._client.register_script(_ADD_SCRIPT)
        self._later = write_behind(self._add_or_log, name="risk-counters")
        self.config_stamp = 0  # as the latest read saw it

    def read(self, subject: Subject, now: float) -> dict[str, int]:
        return self.read_while(subject, now, lambda: None)[0]

    def read_while(self, subject: Subject, now: float, meanwhile: Callable[[], T]) -> tuple[dict[str, int], T]:
        """`read`, with `meanwhile()` run between sending the script and reading its answer: the caller's own
        database read overlaps Redis's round trip. `meanwhile` runs whatever Redis does; CountersDown carries its
        result (`.meanwhile`) when Redis failed."""
        self._later.wait_idle(timeout=0.02)  # this process's own writes first
        asked, keys, args = self._read_plan(subject, now)
        pool = self._client.connection_pool
        connection, answers, error = None, None, None
        try:
            connection = pool.get_connection()
            connection.send_command("EVALSHA", self._read.sha, len(keys), *keys, *args)
        except self._errors as exc:
            error = exc
        try:
            result = meanwhile()
            if error is None:
                try:
                    answers = connection.read_response()
                except self._no_script:  # Redis restarted and forgot the script: load it and ask again
                    answers = self._read(keys=keys, args=args)
        except self._errors as exc:
            error = exc
        finally:
            if connection is not None:
                if answers is None:
                    connection.disconnect()  # an answer may still be on its way: never hand it to the next caller
                pool.release(connection)
        if error is not None:
            raise CountersDown(str(error), meanwhile=result) from error
        counts = dict(zip(asked, answers, strict=False))
        counts["ip_amount_1d"] = int(answers[-2])
        self.config_stamp = int(answers[-1])
        return counts, result

    def _read_plan(self, subject: Subject, now: float) -> tuple[list[str], list[str], list]:
        keys = subject.keys()
        asked, sets, starts = [], [], []
        for feature, dim, window in COUNTED:
            if dim in keys:
                asked.append(feature)
                sets.append(_key(dim, keys[dim]))
                starts.append(repr(now - WINDOWS[window]))
        ip = keys.get("ip", "")
        hour = int(now // HOUR)
        buckets = [_amount_key(ip, hour - i) for i in range(24)] if ip else []
        return asked, [*sets, *buckets, CONFIG_KEY], [len(sets), *starts]

    def config_changed(self) -> None:
        try:
            self._client.incr(CONFIG_KEY)
        except self._errors as exc:
            log.warning("risk counters down (%s): other processes see the change within the fallback TTL", exc)

    def add(self, dims: dict[str, str], now: float, *, amount_minor: int = 0, ip: str = "") -> None:
        keys = [_key(dim, value) for dim, value in dims.items()]
        amount = amount_minor if amount_minor and ip else 0
        if amount:
            keys.append(_amount_key(ip, int(now // HOUR)))
        args = [
            repr(now),
            repr(now - WINDOWS["1d"]),
            WINDOWS["1d"] + 60,
            uuid.uuid4().hex,
            amount,
            WINDOWS["1d"] + HOUR,
        ]
        try:
            self._add(keys=keys, args=args)
        except self._errors as exc:
            raise CountersDown(str(exc)) from exc

    def add_soon(self, dims: dict[str, str], now: float, *, amount_minor: int = 0, ip: str = "") -> None:
        """`add` by this process's writer thread: the caller does not wait for Redis (risk.write_behind)."""
        self._later.put(dims, now, amount_minor=amount_minor, ip=ip)

    def _add_or_log(self, dims: dict[str, str], now: float, *, amount_minor: int = 0, ip: str = "") -> None:
        try:
            self.add(dims, now, amount_minor=amount_minor, ip=ip)
        except CountersDown as exc:
            log.warning("risk counters down (%s): an event is not counted", exc)


class MemoryCounters:
    """The same counters in this process's memory: the demo's embedded default, and tests without Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, list[float]] = defaultdict(list)
        self._amounts: dict[str, int] = defaultdict(int)
        self.config_stamp = 0

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

    add_soon = add  # in memory a write is as quick as a hand-over

    def read_while(self, subject: Subject, now: float, meanwhile: Callable[[], T]) -> tuple[dict[str, int], T]:
        result = meanwhile()
        return self.read(subject, now), result

    def config_changed(self) -> None:
        self.config_stamp += 1

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


def config_stamp() -> int:
    """The operators' configuration stamp as this process's latest counters read saw it (no I/O): risk.services
    reloads its cached rules, lists and settings when it moves."""
    return counters().config_stamp


def config_changed() -> None:
    """Rules, lists or settings changed: every process reloads them on its next read (the stamp rides on it)."""
    counters().config_changed()


def counts_read_while(
    subject: Subject, meanwhile: Callable[[], T], now: float | None = None
) -> tuple[dict[str, int], T]:
    """counts_read, with `meanwhile()` (the caller's own database read) run while Redis answers."""
    found, result = counters().read_while(subject, time.time() if now is None else now, meanwhile)
    return _complete(found), result


def _complete(found: dict[str, int]) -> dict[str, int]:
    return {feature: int(found.get(feature, 0)) for feature, _, _ in COUNTED} | {
        "ip_amount_1d": int(found.get("ip_amount_1d", 0))
    }


def counts_read(subject: Subject, now: float | None = None) -> dict[str, int]:
    """Every counted feature of `subject` (0 where a value is missing), in one round trip."""
    return _complete(counters().read(subject, time.time() if now is None else now))


def checkout_count(subject: Subject, amount_minor: int, now: float | None = None) -> None:
    """One checkout made an order: it counts under its IP, email, domain, device, product and merchant."""
    keys = subject.keys()
    dims = {d: v for d, v in keys.items() if d in ("ip", "email", "domain", "device", "product", "merchant")}
    counters().add_soon(dims, time.time() if now is None else now, amount_minor=amount_minor, ip=keys.get("ip", ""))


def failure_count(kind: str, subject: Subject, now: float | None = None) -> None:
    """A failed or declined payment (`payment_failed`) or a failed order lookup (`lookup_failed`)."""
    keys = subject.keys()
    wanted = {"payment_failed": ("ip_failed", "device_failed"), "lookup_failed": ("ip_lookup_failed",)}[kind]
    dims = {d: keys[d] for d in wanted if d in keys}
    if dims:
        counters().add_soon(dims, time.time() if now is None else now)
