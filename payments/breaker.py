"""A circuit breaker per channel account, shared by every web and worker process through Redis (process-local
memory for the SQLite demo), plus the operator's overrides.

CLOSED -> OPEN after `failure_threshold` consecutive failures; OPEN -> HALF_OPEN once `open_seconds` have passed,
worked out on read from the stored opened_at (no timers); HALF_OPEN lets a share of requests probe, closes after
`half_open_successes_to_close` successes and re-opens on any failure. FORCED_OPEN / FORCED_CLOSED freeze it until
`release()`. Time is the caller's `now` (time.time()), so tests and every process agree on one clock source.
Pure Python: no models, no ORM.
"""

from __future__ import annotations

import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

import redis

from payments.health import redis_client

STATUS_FIELDS = ("state", "failures", "probe_successes", "opened_at")  # of each account's breaker hash


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5  # consecutive failures
    open_seconds: float = 30
    half_open_probe_share: float = 0.1
    half_open_successes_to_close: int = 3

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_successes_to_close < 1:
            raise ValueError("failure_threshold and half_open_successes_to_close must be >= 1")
        if self.open_seconds < 0 or not 0 <= self.half_open_probe_share <= 1:
            raise ValueError("open_seconds must be >= 0 and half_open_probe_share within [0, 1]")


@dataclass(frozen=True)
class BreakerStatus:
    """What the admin shows; `failures` counts while CLOSED, `probe_successes` while HALF_OPEN."""

    state: BreakerState
    failures: int = 0
    probe_successes: int = 0
    opened_at: float | None = None


CLOSED = BreakerStatus(BreakerState.CLOSED)


def effective(stored: BreakerStatus, now: float, config: BreakerConfig) -> BreakerStatus:
    """The stored status as of `now`: an OPEN breaker whose cool-down is over reads as HALF_OPEN."""
    if (
        stored.state == BreakerState.OPEN
        and stored.opened_at is not None
        and now - stored.opened_at >= config.open_seconds
    ):
        return replace(stored, state=BreakerState.HALF_OPEN, probe_successes=0)
    return stored


def after_failure(stored: BreakerStatus, now: float, config: BreakerConfig) -> BreakerStatus:
    """The memory backend's transition; _RECORD_LUA is the same rule for Redis."""
    s = effective(stored, now, config)
    if s.state == BreakerState.CLOSED:
        if s.failures + 1 >= config.failure_threshold:
            return BreakerStatus(BreakerState.OPEN, opened_at=now)
        return replace(s, failures=s.failures + 1)
    if s.state == BreakerState.HALF_OPEN:
        return BreakerStatus(BreakerState.OPEN, opened_at=now)
    return s  # OPEN: a late answer to a request sent before it opened must not extend the cool-down; forced: frozen


def after_success(stored: BreakerStatus, now: float, config: BreakerConfig) -> BreakerStatus:
    s = effective(stored, now, config)
    if s.state == BreakerState.CLOSED:
        return CLOSED
    if s.state == BreakerState.HALF_OPEN:
        if s.probe_successes + 1 >= config.half_open_successes_to_close:
            return CLOSED
        return replace(s, probe_successes=s.probe_successes + 1)
    return s  # OPEN: only probes after the cool-down may close it; forced: frozen


class BreakerStore(ABC):
    """The breaker API. `config` given to a call overrides the store's (the operator may re-tune at run time)."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()

    @abstractmethod
    def statuses(
        self, account_ids: Iterable[int], now: float, config: BreakerConfig | None = None
    ) -> dict[int, BreakerStatus]:
        """Every account's status in one round trip."""

    @abstractmethod
    def _record(self, account_id: int, ok: bool, now: float, config: BreakerConfig) -> BreakerState:
        """Apply one outcome atomically across processes; answer the state after it."""

    @abstractmethod
    def _set_mode(self, account_id: int, state: BreakerState | None) -> None:
        """Force a state, or None: back to automatic, CLOSED with no history."""

    def status(self, account_id: int, now: float, config: BreakerConfig | None = None) -> BreakerStatus:
        return self.statuses([account_id], now, config)[account_id]

    def states(
        self, account_ids: Iterable[int], now: float, config: BreakerConfig | None = None
    ) -> dict[int, BreakerState]:
        return {i: s.state for i, s in self.statuses(account_ids, now, config).items()}

    def state(self, account_id: int, now: float, config: BreakerConfig | None = None) -> BreakerState:
        return self.status(account_id, now, config).state

    def allow(self, account_id: int, rng: random.Random, now: float, config: BreakerConfig | None = None) -> bool:
        """May a request go to this account now? HALF_OPEN draws from `rng` for its probe share."""
        cfg = config or self.config
        state = self.state(account_id, now, cfg)
        if state == BreakerState.HALF_OPEN:
            return rng.random() < cfg.half_open_probe_share
        return state in (BreakerState.CLOSED, BreakerState.FORCED_CLOSED)

    def record_success(self, account_id: int, now: float, config: BreakerConfig | None = None) -> BreakerState:
        return self._record(account_id, True, now, config or self.config)

    def record_failure(self, account_id: int, now: float, config: BreakerConfig | None = None) -> BreakerState:
        return self._record(account_id, False, now, config or self.config)

    def force_open(self, account_id: int) -> None:
        self._set_mode(account_id, BreakerState.FORCED_OPEN)

    def force_close(self, account_id: int) -> None:
        self._set_mode(account_id, BreakerState.FORCED_CLOSED)

    def release(self, account_id: int) -> None:
        self._set_mode(account_id, None)


# KEYS[1]: the account's hash. ARGV: "1" success / "0" failure, now, failure_threshold, open_seconds,
# half_open_successes_to_close. Same rules as after_failure/after_success; answers the state after.
# A clean CLOSED breaker is deleted: no key means CLOSED, so healthy accounts cost no memory.
_RECORD_LUA = """
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'probe_successes', 'opened_at')
local state = h[1] or 'closed'
if state == 'forced_open' or state == 'forced_closed' then return state end
local failures = tonumber(h[2] or '0')
local probes = tonumber(h[3] or '0')
local opened_at = h[4] or ''
local now = ARGV[2]
if state == 'open' and tonumber(now) - tonumber(opened_at) >= tonumber(ARGV[4]) then
  state = 'half_open'
  probes = 0
end
if ARGV[1] == '0' then
  if state == 'closed' then
    failures = failures + 1
    if failures >= tonumber(ARGV[3]) then state, failures, opened_at = 'open', 0, now end
  elseif state == 'half_open' then
    state, probes, opened_at = 'open', 0, now
  end
else
  if state == 'closed' then
    failures = 0
  elseif state == 'half_open' then
    probes = probes + 1
    if probes >= tonumber(ARGV[5]) then state, failures, probes, opened_at = 'closed', 0, 0, '' end
  end
end
if state == 'closed' and failures == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'probe_successes', probes, 'opened_at', opened_at)
end
return state
"""


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


class RedisBreakerStore(BreakerStore):
    """One hash per account, {prefix}{account_id}: state, failures, probe_successes, opened_at (unix seconds
    as the caller gave them). No key = CLOSED. No TTL: a forced state stays until an operator releases it."""

    def __init__(
        self, redis_client: redis.Redis, prefix: str = "cs:breaker:", config: BreakerConfig | None = None
    ) -> None:
        super().__init__(config)
        self.redis = redis_client
        self.prefix = prefix
        self._record_script = redis_client.register_script(_RECORD_LUA)

    def statuses(
        self, account_ids: Iterable[int], now: float, config: BreakerConfig | None = None
    ) -> dict[int, BreakerStatus]:
        pipe = self.redis.pipeline(transaction=False)
        parse = self.statuses_queue(pipe, account_ids, now, config)
        return parse(pipe.execute() if parse.size else [])  # type: ignore[attr-defined]

    def statuses_queue(
        self, pipe: redis.client.Pipeline, account_ids: Iterable[int], now: float, config: BreakerConfig | None = None
    ) -> Callable[[list], dict[int, BreakerStatus]]:
        """Queue the reads on a caller's pipeline (routing reads health in the same round trip); the returned
        function turns the pipeline's results, starting at this call's, into statuses."""
        ids = list(dict.fromkeys(account_ids))
        for key in self.status_keys(ids):
            pipe.hmget(key, *STATUS_FIELDS)

        def parse(results: list) -> dict[int, BreakerStatus]:
            return self.statuses_parse(ids, [v for reply in results[: len(ids)] for v in reply], now, config)

        parse.size = len(ids)  # type: ignore[attr-defined]
        return parse

    def status_keys(self, ids: list[int]) -> list[str]:
        """The hash of each account, whose STATUS_FIELDS hold its breaker (routing reads them in health's script)."""
        return [f"{self.prefix}{i}" for i in ids]

    def statuses_parse(
        self, ids: list[int], flat: list, now: float, config: BreakerConfig | None = None
    ) -> dict[int, BreakerStatus]:
        """Statuses from the STATUS_FIELDS values of each account's hash, in `ids` order, flat."""
        cfg = config or self.config
        width = len(STATUS_FIELDS)
        out = {}
        for n, i in enumerate(ids):
            state, failures, probes, opened_at = flat[width * n : width * n + width]
            if state is None:
                out[i] = CLOSED
                continue
            stored = BreakerStatus(
                BreakerState(_text(state)),
                failures=int(failures or 0),
                probe_successes=int(probes or 0),
                opened_at=float(opened_at) if _text(opened_at) else None,
            )
            out[i] = effective(stored, now, cfg)
        return out

    def _record(self, account_id: int, ok: bool, now: float, config: BreakerConfig) -> BreakerState:
        state = self._record_script(
            keys=[f"{self.prefix}{account_id}"],
            args=[
                "1" if ok else "0",
                repr(float(now)),
                config.failure_threshold,
                repr(float(config.open_seconds)),
                config.half_open_successes_to_close,
            ],
        )
        return BreakerState(_text(state))

    def _set_mode(self, account_id: int, state: BreakerState | None) -> None:
        key = f"{self.prefix}{account_id}"
        if state is None:
            self.redis.delete(key)
        else:
            # Replacing the whole hash: a release after a force starts clean, not from pre-force history.
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, "state", state.value)
            pipe.execute()


class MemoryBreakerStore(BreakerStore):
    """Process-local, thread-safe stand-in for the SQLite demo: each process has its own breakers."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._stored: dict[int, BreakerStatus] = {}

    def statuses(
        self, account_ids: Iterable[int], now: float, config: BreakerConfig | None = None
    ) -> dict[int, BreakerStatus]:
        cfg = config or self.config
        with self._lock:
            return {i: effective(self._stored.get(i, CLOSED), now, cfg) for i in account_ids}

    def _record(self, account_id: int, ok: bool, now: float, config: BreakerConfig) -> BreakerState:
        with self._lock:
            after = (after_success if ok else after_failure)(self._stored.get(account_id, CLOSED), now, config)
            if after == CLOSED:
                self._stored.pop(account_id, None)
            else:
                self._stored[account_id] = after
            return after.state

    def _set_mode(self, account_id: int, state: BreakerState | None) -> None:
        with self._lock:
            if state is None:
                self._stored.pop(account_id, None)
            else:
                self._stored[account_id] = BreakerStatus(state)


_stores_lock = threading.Lock()
_stores: dict[str, BreakerStore] = {}


def breaker_store() -> BreakerStore:
    """Redis when settings.REDIS_URL is set, else this process's memory store; one per URL per process.
    Its config is the default: callers holding the operator's knobs pass `config=` to each call."""
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", "") or ""
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = RedisBreakerStore(redis_client(url)) if url else MemoryBreakerStore()
        return store
