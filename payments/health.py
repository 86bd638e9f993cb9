"""Live channel health per channel account: count-based windows of outcomes and latencies, today's paid volume,
and per-minute buckets for the admin chart.

Shared by every web and worker process through Redis; without REDIS_URL (the SQLite demo) a process-local memory
store stands in. Every record call is one round trip (a script or a pipeline); `snapshot()` reads many accounts in
one.
Pure Python: no models, no ORM; reads only `settings.REDIS_URL` and the optional CARDSHOP_HEALTH_* knobs.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TypeVar

import redis

T = TypeVar("T")
DECAY = 0.97  # per outcome of age, in `recent_success_rate`
DECAY_SPAN = 100  # outcomes it looks at: older ones would weigh under 5 % together (0.97 ** 100)
WINDOW = 200  # outcomes and latencies kept per account (Decision Engine's default bucket is 125)
MIN_SAMPLES = 20  # below this many outcomes the optimistic prior fills the gap
VOLUME_TTL_SECONDS = 2 * 86400  # yesterday's counter outlives midnight in every time zone, then goes
MINUTE_TTL_SECONDS = 26 * 3600  # a day of chart plus slack
MAX_SERIES_MINUTES = MINUTE_TTL_SECONDS // 60


@dataclass(frozen=True)
class ChannelHealth:
    """One account's health as routing sees it. `success_rate` already includes the optimistic prior."""

    account_id: int
    samples: int
    successes: int
    success_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_samples: int
    volume_today_minor: int
    # Outcomes weighted by age (the newest 1, then x DECAY each): a rate that follows a fall or a recovery.
    weighted_successes: float = 0.0
    weighted_samples: float = 0.0

    @property
    def recent_success_rate(self) -> float:
        """The window's outcomes weighted by age, newest first, each older one by DECAY (0.97) less.

        The plain window is steady but slow: a fall from 95 % to 40 % takes ~160 outcomes to show below 50 %,
        and a recovered account needs as many to be believed again. Weighted, the newest ~65 outcomes carry
        most of the rate: a fall shows within ~15, a recovery within ~60. Until an account has MIN_SAMPLES
        outcomes, the missing ones count as successes (the optimistic prior). Routing ranks by this rate.
        """
        missing = max(0, MIN_SAMPLES - self.samples)
        return (self.weighted_successes + missing) / (self.weighted_samples + missing or 1)


@dataclass(frozen=True)
class MinutePoint:
    minute: datetime  # start of the minute, UTC
    ok: int
    fail: int
    latency_avg_ms: float | None


def percentile_rank(p: int, n: int) -> int:
    """1-based nearest rank of the p-th percentile among n sorted values, in integers (0.95 * 20 is not 19.0
    in binary floating point); the Lua script uses the same formula."""
    return max(1, (p * n + 99) // 100)


def latency_percentiles(latencies: Iterable[float]) -> tuple[float | None, float | None, int]:
    """(p50, p95, count) by nearest rank: always a latency that was really observed, no interpolation."""
    lat = sorted(latencies)
    if not lat:
        return None, None, 0
    return lat[percentile_rank(50, len(lat)) - 1], lat[percentile_rank(95, len(lat)) - 1], len(lat)


def success_rate(successes: int, samples: int, min_samples: int) -> float:
    """Success rate with the optimistic prior.

    Decision Engine seeds a new window with all successes; likewise an account with fewer than `min_samples`
    outcomes is scored as if the missing ones were successes:
    success_rate = (successes + missing) / (samples + missing), missing = max(0, min_samples - samples).
    A new channel starts at 1.0 and gets traffic; each real failure pulls it down, and from `min_samples`
    outcomes on the rate is the plain successes / samples.
    """
    missing = max(0, min_samples - samples)
    total = samples + missing
    return (successes + missing) / total if total else 1.0


def _weighted(outcomes: Iterable[bool]) -> dict[str, float]:
    """The memory store's twin of the snapshot script's weighting (outcomes oldest first)."""
    num = den = 0.0
    w = 1.0
    for ok in list(reversed(list(outcomes)))[:DECAY_SPAN]:
        num += w if ok else 0.0
        den += w
        w *= DECAY
    return {"weighted_successes": num, "weighted_samples": den}


def _latency(ms: float) -> float:
    ms = float(ms)
    if not math.isfinite(ms) or ms < 0:
        raise ValueError(f"latency must be a finite number of milliseconds >= 0, not {ms!r}")
    return ms


def _minute(now: float | None) -> int:
    return int((time.time() if now is None else now) // 60)


def _minute_start(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


class HealthStore(ABC):
    """The health API. `window` may be changed at run time: each account's windows are trimmed to it (newest
    kept) or allowed to grow at that account's next record, never wiped."""

    def __init__(self, *, window: int = WINDOW, min_samples: int = MIN_SAMPLES) -> None:
        if window < 1 or min_samples < 0:
            raise ValueError("window must be >= 1 and min_samples >= 0")
        self.window = window
        self.min_samples = min_samples

    @abstractmethod
    def record_outcome(self, account_id: int, ok: bool, *, now: float | None = None) -> None:
        """A payment attempt's outcome: create refused/failed or final failure -> False, finally paid -> True."""

    @abstractmethod
    def record_latency(self, account_id: int, ms: float, *, now: float | None = None) -> None:
        """One provider call's latency in milliseconds."""

    @abstractmethod
    def record_volume(self, account_id: int, amount_minor: int, day: date) -> None:
        """Add a paid amount to the account's volume for `day` (daily caps)."""

    @abstractmethod
    def snapshot(self, account_ids: Iterable[int], *, day: date | None = None) -> dict[int, ChannelHealth]:
        """Health of every account in one round trip; `day` (default date.today()) picks the volume counter."""

    @abstractmethod
    def series(self, account_id: int, minutes: int, *, now: float | None = None) -> list[MinutePoint]:
        """The last `minutes` minutes up to the current one, oldest first, empty minutes included as zeros."""


# Windows are kept so that reading needs no scan: a success count beside the outcome list, and latencies in a
# sorted set (member = sequence number, score = ms) beside a list of sequence numbers that says which is oldest.
# Each record is one script run (one round trip) that pushes, trims to the window and fixes the aggregates
# atomically; a first push into an empty list resets its aggregate, so a window lost to eviction heals itself.
# Trimming to the window given on every write is what makes re-tuning shrink or grow in place, never wipe.
# Reading windows raw instead (a pipeline of LRANGEs) parses 2,000 RESP elements for 5 accounts: ~2.5 ms.

# KEYS: ok list, agg hash, minute hash. ARGV: "1"/"0", window, "ok"/"fail", minute TTL.
_RECORD_OUTCOME_LUA = """
local n = redis.call('LPUSH', KEYS[1], ARGV[1])
if n == 1 then redis.call('HSET', KEYS[2], 'succ', 0) end
if ARGV[1] == '1' then redis.call('HINCRBY', KEYS[2], 'succ', 1) end
local window = tonumber(ARGV[2])
if n > window then
  local gone = 0
  for _, v in ipairs(redis.call('LRANGE', KEYS[1], window, -1)) do
    if v == '1' then gone = gone + 1 end
  end
  redis.call('LTRIM', KEYS[1], 0, window - 1)
  if gone > 0 then redis.call('HINCRBY', KEYS[2], 'succ', -gone) end
end
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('EXPIRE', KEYS[3], ARGV[4])
"""

# KEYS: lat list, agg hash, lat zset, minute hash. ARGV: ms, window, minute TTL.
_RECORD_LATENCY_LUA = """
local seq = redis.call('HINCRBY', KEYS[2], 'lat_seq', 1)
local n = redis.call('LPUSH', KEYS[1], seq)
if n == 1 then redis.call('DEL', KEYS[3]) end
redis.call('ZADD', KEYS[3], ARGV[1], seq)
local window = tonumber(ARGV[2])
if n > window then
  local gone = redis.call('LRANGE', KEYS[1], window, -1)
  for i = 1, #gone, 1000 do
    redis.call('ZREM', KEYS[3], unpack(gone, i, math.min(i + 999, #gone)))
  end
  redis.call('LTRIM', KEYS[1], 0, window - 1)
end
redis.call('HINCRBYFLOAT', KEYS[4], 'lat_sum', ARGV[1])
redis.call('HINCRBY', KEYS[4], 'lat_n', 1)
redis.call('EXPIRE', KEYS[4], ARGV[3])
"""

# KEYS: per account ok list, agg hash, lat zset, volume. Six answers per account; ranks as percentile_rank().
_SNAPSHOT_LUA = """
local out = {}
-- ARGV[3]: how many accounts' groups of 4 keys come first; any keys after them are hashes read with HMGET of the
-- fields ARGV[4..] (routing's breakers), appended in order: the decision's whole read in one command.
local groups = tonumber(ARGV[3]) or (#KEYS / 4)
for k = 1, 4 * groups, 4 do
  local n = redis.call('ZCARD', KEYS[k + 2])
  local p50, p95 = '', ''
  if n > 0 then
    local r50 = math.max(1, math.floor((50 * n + 99) / 100)) - 1
    local r95 = math.max(1, math.floor((95 * n + 99) / 100)) - 1
    p50 = redis.call('ZRANGE', KEYS[k + 2], r50, r50, 'WITHSCORES')[2]
    p95 = redis.call('ZRANGE', KEYS[k + 2], r95, r95, 'WITHSCORES')[2]
  end
  table.insert(out, redis.call('LLEN', KEYS[k]))
  table.insert(out, redis.call('HGET', KEYS[k + 1], 'succ') or '0')
  table.insert(out, n)
  table.insert(out, p50)
  table.insert(out, p95)
  table.insert(out, redis.call('GET', KEYS[k + 3]) or '0')
  local decay, num, den, w = tonumber(ARGV[1]), 0, 0, 1
  for _, v in ipairs(redis.call('LRANGE', KEYS[k], 0, tonumber(ARGV[2]) - 1)) do  -- newest first
    if v == '1' then num = num + w end
    den = den + w
    w = w * decay
  end
  table.insert(out, tostring(num))
  table.insert(out, tostring(den))
end
local fields = #ARGV - 3
for k = 4 * groups + 1, #KEYS do
  local values = redis.call('HMGET', KEYS[k], unpack(ARGV, 4))
  for j = 1, fields do table.insert(out, values[j]) end
end
return out
"""


class RedisHealthStore(HealthStore):
    """Redis layout (account ids in decimal, lists newest first):
    {prefix}ok:{id}            list of "1"/"0": the outcome window
    {prefix}agg:{id}           hash: succ (successes in the outcome window), lat_seq (last latency number)
    {prefix}lat:{id}           list of latency sequence numbers: the latency window
    {prefix}latz:{id}          sorted set: member = sequence number, score = latency ms
    {prefix}vol:{id}:{date}    paid minor units that day (INCRBY), TTL 2 days
    {prefix}min:{id}:{minute}  hash ok/fail/lat_sum/lat_n per epoch minute (unix time // 60), TTL 26 h
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        prefix: str = "cs:health:",
        *,
        window: int = WINDOW,
        min_samples: int = MIN_SAMPLES,
    ) -> None:
        super().__init__(window=window, min_samples=min_samples)
        self.redis = redis_client
        self.prefix = prefix
        self._record_outcome = redis_client.register_script(_RECORD_OUTCOME_LUA)
        self._record_latency = redis_client.register_script(_RECORD_LATENCY_LUA)
        self._snapshot = redis_client.register_script(_SNAPSHOT_LUA)

    def _minute_key(self, account_id: int, minute: int) -> str:
        return f"{self.prefix}min:{account_id}:{minute}"

    def record_outcome(self, account_id: int, ok: bool, *, now: float | None = None) -> None:
        p = self.prefix
        self._record_outcome(
            keys=[f"{p}ok:{account_id}", f"{p}agg:{account_id}", self._minute_key(account_id, _minute(now))],
            args=["1" if ok else "0", self.window, "ok" if ok else "fail", MINUTE_TTL_SECONDS],
        )

    def record_latency(self, account_id: int, ms: float, *, now: float | None = None) -> None:
        p = self.prefix
        self._record_latency(
            keys=[
                f"{p}lat:{account_id}",
                f"{p}agg:{account_id}",
                f"{p}latz:{account_id}",
                self._minute_key(account_id, _minute(now)),
            ],
            args=[_latency(ms), self.window, MINUTE_TTL_SECONDS],
        )

    def record_volume(self, account_id: int, amount_minor: int, day: date) -> None:
        key = f"{self.prefix}vol:{account_id}:{day.isoformat()}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incrby(key, int(amount_minor))
        pipe.expire(key, VOLUME_TTL_SECONDS)
        pipe.execute()

    def snapshot(self, account_ids: Iterable[int], *, day: date | None = None) -> dict[int, ChannelHealth]:
        def read() -> dict[int, ChannelHealth]:
            pipe = self.redis.pipeline(transaction=False)
            parse = self.snapshot_queue(pipe, account_ids, day=day)
            return parse(pipe.execute() if parse.size else [])  # type: ignore[attr-defined]

        return self.with_scripts(read)

    def with_scripts(self, read: Callable[[], T]) -> T:
        """Run `read`; if Redis lost the snapshot script (restart, SCRIPT FLUSH), load it and run once more.
        Pipelines send EVALSHA themselves: redis-py's script objects would add a SCRIPT EXISTS round trip."""
        try:
            return read()
        except redis.exceptions.NoScriptError:
            self.redis.script_load(_SNAPSHOT_LUA)
            return read()

    def snapshot_queue(
        self, pipe: redis.client.Pipeline, account_ids: Iterable[int], *, day: date | None = None
    ) -> Callable[[list], dict[int, ChannelHealth]]:
        """Queue the snapshot on a caller's pipeline (routing reads breakers in the same round trip); the
        returned function turns the pipeline's results, starting at this call's, into the snapshot."""
        ids = list(dict.fromkeys(account_ids))
        keys = self._snapshot_keys(ids, day)
        if ids:
            pipe.evalsha(self._snapshot.sha, len(keys), *keys, DECAY, DECAY_SPAN)

        def parse(results: list) -> dict[int, ChannelHealth]:
            return self._snapshot_parse(ids, results[0]) if ids else {}

        parse.size = 1 if ids else 0  # type: ignore[attr-defined]
        return parse

    def snapshot_with_hashes(
        self, account_ids: Iterable[int], hash_keys: list[str], fields: tuple[str, ...], *, day: date | None = None
    ) -> tuple[dict[int, ChannelHealth], list]:
        """The snapshot and `fields` of each hash in `hash_keys` (routing's breakers), in one script call: one
        command and one round trip, where a pipeline of the script and one HMGET per hash cost redis-py about
        as much CPU again as the ranking (bench/routing_decision.py). The hashes' values come back flat, in order.
        """
        ids = list(dict.fromkeys(account_ids))
        keys = self._snapshot_keys(ids, day) + hash_keys
        if not keys:
            return {}, []

        def read() -> list:
            return self.redis.evalsha(self._snapshot.sha, len(keys), *keys, DECAY, DECAY_SPAN, len(ids), *fields)

        raw = self.with_scripts(read)
        return self._snapshot_parse(ids, raw), raw[8 * len(ids) :]

    def _snapshot_keys(self, ids: list[int], day: date | None) -> list[str]:
        p, day_s = self.prefix, (day or date.today()).isoformat()
        keys = []
        for i in ids:
            keys += (f"{p}ok:{i}", f"{p}agg:{i}", f"{p}latz:{i}", f"{p}vol:{i}:{day_s}")
        return keys

    def _snapshot_parse(self, ids: list[int], raw: list) -> dict[int, ChannelHealth]:
        out = {}
        for n, i in enumerate(ids):
            samples, successes, lat_n, p50, p95, volume, ew_num, ew_den = raw[8 * n : 8 * n + 8]
            samples = int(samples)
            successes = min(max(int(successes), 0), samples)  # only off if Redis evicted one key of the pair
            out[i] = ChannelHealth(
                account_id=i,
                samples=samples,
                successes=successes,
                success_rate=success_rate(successes, samples, self.min_samples),
                latency_p50_ms=float(p50) if lat_n else None,
                latency_p95_ms=float(p95) if lat_n else None,
                latency_samples=int(lat_n),
                volume_today_minor=int(volume),
                weighted_successes=float(ew_num),
                weighted_samples=float(ew_den),
            )
        return out

    def series(self, account_id: int, minutes: int, *, now: float | None = None) -> list[MinutePoint]:
        end = _minute(now)
        span = range(end - min(minutes, MAX_SERIES_MINUTES) + 1, end + 1)
        pipe = self.redis.pipeline(transaction=False)
        for m in span:
            pipe.hmget(self._minute_key(account_id, m), "ok", "fail", "lat_sum", "lat_n")
        points = []
        for m, (ok, fail, lat_sum, lat_n) in zip(span, pipe.execute(), strict=True):
            n = int(lat_n or 0)
            points.append(
                MinutePoint(_minute_start(m), int(ok or 0), int(fail or 0), float(lat_sum) / n if n else None)
            )
        return points


@dataclass
class _Account:
    outcomes: deque[bool] = field(default_factory=deque)  # oldest first
    latencies: deque[float] = field(default_factory=deque)
    volume: dict[date, int] = field(default_factory=dict)
    minutes: dict[int, list[float]] = field(default_factory=dict)  # minute -> [ok, fail, lat_sum, lat_n]


class MemoryHealthStore(HealthStore):
    """Process-local, thread-safe stand-in for the SQLite demo: each process sees only its own traffic."""

    def __init__(self, *, window: int = WINDOW, min_samples: int = MIN_SAMPLES) -> None:
        super().__init__(window=window, min_samples=min_samples)
        self._lock = threading.Lock()
        self._accounts: dict[int, _Account] = {}

    def _account(self, account_id: int) -> _Account:
        return self._accounts.setdefault(account_id, _Account())

    def _push(self, values: deque[bool] | deque[float], value: bool | float) -> None:
        values.append(value)
        while len(values) > self.window:  # same trim-in-place as LTRIM: oldest go first
            values.popleft()

    def _bucket(self, acc: _Account, now: float | None) -> list[float]:
        minute = _minute(now)
        if minute not in acc.minutes:
            oldest = minute - MAX_SERIES_MINUTES
            for m in [m for m in acc.minutes if m <= oldest]:  # once a minute, not on every call
                del acc.minutes[m]
        return acc.minutes.setdefault(minute, [0, 0, 0.0, 0])

    def record_outcome(self, account_id: int, ok: bool, *, now: float | None = None) -> None:
        with self._lock:
            acc = self._account(account_id)
            self._push(acc.outcomes, bool(ok))
            self._bucket(acc, now)[0 if ok else 1] += 1

    def record_latency(self, account_id: int, ms: float, *, now: float | None = None) -> None:
        with self._lock:
            acc = self._account(account_id)
            ms = _latency(ms)
            self._push(acc.latencies, ms)
            bucket = self._bucket(acc, now)
            bucket[2] += ms
            bucket[3] += 1

    def record_volume(self, account_id: int, amount_minor: int, day: date) -> None:
        with self._lock:
            acc = self._account(account_id)
            for d in [d for d in acc.volume if (day - d).days >= 2]:
                del acc.volume[d]
            acc.volume[day] = acc.volume.get(day, 0) + int(amount_minor)

    def snapshot(self, account_ids: Iterable[int], *, day: date | None = None) -> dict[int, ChannelHealth]:
        day = day or date.today()
        out = {}
        with self._lock:
            for i in account_ids:
                acc = self._accounts.get(i) or _Account()
                samples, successes = len(acc.outcomes), sum(acc.outcomes)
                p50, p95, lat_n = latency_percentiles(acc.latencies)
                out[i] = ChannelHealth(
                    account_id=i,
                    samples=samples,
                    successes=successes,
                    success_rate=success_rate(successes, samples, self.min_samples),
                    latency_p50_ms=p50,
                    latency_p95_ms=p95,
                    latency_samples=lat_n,
                    volume_today_minor=acc.volume.get(day, 0),
                    **_weighted(acc.outcomes),
                )
        return out

    def series(self, account_id: int, minutes: int, *, now: float | None = None) -> list[MinutePoint]:
        end = _minute(now)
        points = []
        with self._lock:
            buckets = (self._accounts.get(account_id) or _Account()).minutes
            for m in range(end - min(minutes, MAX_SERIES_MINUTES) + 1, end + 1):
                ok, fail, lat_sum, lat_n = buckets.get(m, (0, 0, 0.0, 0))
                points.append(MinutePoint(_minute_start(m), int(ok), int(fail), lat_sum / lat_n if lat_n else None))
        return points


# ---- process-wide stores -----------------------------------------------------------------------------------

_shared_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
_stores: dict[str, HealthStore] = {}


def redis_client(url: str) -> redis.Redis:
    """One pooled client per URL per process. Short timeouts: health is advisory and must not stall a payment."""
    with _shared_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(
                url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
            )
        return client


def health_store() -> HealthStore:
    """Redis when settings.REDIS_URL is set, else this process's memory store. Keyed by URL so that
    `override_settings(REDIS_URL=...)` gets its own store."""
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", "") or ""
    window = int(getattr(settings, "CARDSHOP_HEALTH_WINDOW", WINDOW))
    min_samples = int(getattr(settings, "CARDSHOP_HEALTH_MIN_SAMPLES", MIN_SAMPLES))
    with _shared_lock:
        store = _stores.get(url)
    if store is None:
        store = RedisHealthStore(redis_client(url)) if url else MemoryHealthStore()
        with _shared_lock:
            store = _stores.setdefault(url, store)
    store.window, store.min_samples = window, min_samples  # re-tuning in settings applies in place
    return store
