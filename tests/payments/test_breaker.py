"""Channel breakers: opening, lazy half-open, probing, closing, operator overrides and concurrency, on both
backends."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
import redis

from payments import breaker
from payments.breaker import BreakerConfig, BreakerState, BreakerStatus, MemoryBreakerStore, RedisBreakerStore

T0 = 1_764_000_000.5
CFG = BreakerConfig(failure_threshold=5, open_seconds=30, half_open_probe_share=0.1, half_open_successes_to_close=3)


@pytest.fixture(params=["memory", "redis"])
def make_store(request, settings):
    """A factory of empty breaker stores; the Redis ones get a unique prefix and are wiped afterwards."""
    prefixes: list[str] = []
    client = None
    if request.param == "redis":
        request.getfixturevalue("require_redis")
        client = redis.Redis.from_url(settings.REDIS_URL)

    def make(config: BreakerConfig = CFG):
        if client is None:
            return MemoryBreakerStore(config)
        prefixes.append(f"test:breaker:{uuid.uuid4().hex}:")
        return RedisBreakerStore(client, prefixes[-1], config)

    yield make
    for prefix in prefixes:
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def store(make_store):
    return make_store()


def _open(store, account_id: int = 1, now: float = T0) -> None:
    for _ in range(CFG.failure_threshold):
        store.record_failure(account_id, now)


def test_opens_after_the_threshold_of_consecutive_failures(store):
    for _ in range(4):
        assert store.record_failure(1, T0) == BreakerState.CLOSED
    assert store.status(1, T0) == BreakerStatus(BreakerState.CLOSED, failures=4)
    assert store.allow(1, random.Random(1), T0)

    assert store.record_failure(1, T0 + 1) == BreakerState.OPEN

    assert store.status(1, T0 + 1) == BreakerStatus(BreakerState.OPEN, opened_at=T0 + 1)
    assert not store.allow(1, random.Random(1), T0 + 1)


def test_any_success_resets_the_failure_count(store):
    for _ in range(4):
        store.record_failure(1, T0)
    store.record_success(1, T0)
    for _ in range(4):
        store.record_failure(1, T0)

    assert store.status(1, T0) == BreakerStatus(BreakerState.CLOSED, failures=4)


def test_half_open_is_computed_lazily_once_the_cooldown_is_over(store):
    _open(store)

    assert store.state(1, T0 + 29.9) == BreakerState.OPEN
    assert store.state(1, T0 + 30) == BreakerState.HALF_OPEN
    assert store.states([1], T0 + 30, BreakerConfig(open_seconds=60)) == {1: BreakerState.OPEN}  # knob per call


def test_a_late_failure_while_open_does_not_extend_the_cooldown(store):
    _open(store)

    assert store.record_failure(1, T0 + 20) == BreakerState.OPEN
    assert store.record_success(1, T0 + 21) == BreakerState.OPEN  # only probes after the cool-down count

    assert store.state(1, T0 + 30) == BreakerState.HALF_OPEN


def test_half_open_lets_through_its_probe_share(store):
    _open(store)
    rng = random.Random(20260301)

    allowed = sum(store.allow(1, rng, T0 + 31) for _ in range(1000))

    expected_rng = random.Random(20260301)
    assert allowed == sum(expected_rng.random() < 0.1 for _ in range(1000))  # one draw per call, nothing else
    assert 70 <= allowed <= 130  # 10 % of 1000, within three standard deviations


def test_half_open_closes_after_enough_probe_successes(store):
    _open(store)

    assert store.record_success(1, T0 + 31) == BreakerState.HALF_OPEN
    assert store.record_success(1, T0 + 32) == BreakerState.HALF_OPEN
    assert store.status(1, T0 + 32) == BreakerStatus(BreakerState.HALF_OPEN, probe_successes=2, opened_at=T0)
    assert store.record_success(1, T0 + 33) == BreakerState.CLOSED

    assert store.status(1, T0 + 33) == BreakerStatus(BreakerState.CLOSED)
    assert store.allow(1, random.Random(1), T0 + 33)


def test_a_failure_in_half_open_reopens_with_a_new_cooldown(store):
    _open(store)
    store.record_success(1, T0 + 31)

    assert store.record_failure(1, T0 + 40) == BreakerState.OPEN

    assert store.status(1, T0 + 40) == BreakerStatus(BreakerState.OPEN, opened_at=T0 + 40)
    assert store.state(1, T0 + 69) == BreakerState.OPEN
    assert store.state(1, T0 + 70) == BreakerState.HALF_OPEN
    store.record_success(1, T0 + 70)
    assert store.status(1, T0 + 70).probe_successes == 1  # the earlier probe success does not carry over


def test_forced_open_refuses_and_ignores_outcomes_until_released(store):
    store.force_open(1)

    assert store.record_success(1, T0) == BreakerState.FORCED_OPEN
    assert store.state(1, T0 + 3600) == BreakerState.FORCED_OPEN
    assert not store.allow(1, random.Random(1), T0)

    store.release(1)
    assert store.status(1, T0) == BreakerStatus(BreakerState.CLOSED)


def test_forced_closed_overrides_an_open_breaker_and_ignores_failures(store):
    _open(store)
    store.force_close(1)

    for _ in range(10):
        assert store.record_failure(1, T0 + 1) == BreakerState.FORCED_CLOSED
    assert store.allow(1, random.Random(1), T0 + 1)

    store.release(1)
    assert store.status(1, T0 + 1) == BreakerStatus(BreakerState.CLOSED)  # back to automatic with no history


def test_states_reads_many_accounts_at_once(store):
    _open(store, 1)
    _open(store, 2, now=T0 - 100)
    store.force_open(3)
    store.record_failure(4, T0)

    assert store.states([1, 2, 3, 4, 5], T0) == {
        1: BreakerState.OPEN,
        2: BreakerState.HALF_OPEN,
        3: BreakerState.FORCED_OPEN,
        4: BreakerState.CLOSED,
        5: BreakerState.CLOSED,
    }
    assert store.states([], T0) == {}
    assert store.states([2], T0)[2] == "half_open"  # a StrEnum: routing compares plain strings


def test_a_config_given_per_call_overrides_the_stores(store):
    quick = BreakerConfig(failure_threshold=2, open_seconds=5, half_open_successes_to_close=1)

    store.record_failure(1, T0, quick)
    assert store.record_failure(1, T0, quick) == BreakerState.OPEN
    assert store.state(1, T0 + 5, quick) == BreakerState.HALF_OPEN
    assert store.record_success(1, T0 + 5, quick) == BreakerState.CLOSED


def _in_two_threads(work) -> list:
    barrier = threading.Barrier(2)
    results: list[list] = [[], []]

    def run(n: int) -> None:
        barrier.wait()
        results[n] = work()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results[0] + results[1]


def test_two_threads_counting_failures_lose_none(make_store):
    store = make_store(BreakerConfig(failure_threshold=10_000))

    _in_two_threads(lambda: [store.record_failure(1, T0) for _ in range(300)])

    assert store.status(1, T0) == BreakerStatus(BreakerState.CLOSED, failures=600)


def test_two_threads_open_the_breaker_exactly_at_the_threshold(make_store):
    store = make_store(BreakerConfig(failure_threshold=100, open_seconds=3600))

    answers = _in_two_threads(lambda: [store.record_failure(1, T0) for _ in range(100)])

    assert answers.count(BreakerState.OPEN) == 101  # the 100th failure opened it, the other 100 found it open
    assert store.status(1, T0) == BreakerStatus(BreakerState.OPEN, opened_at=T0)


def test_two_threads_probing_close_it_exactly_once(make_store):
    store = make_store(BreakerConfig(failure_threshold=1, open_seconds=0, half_open_successes_to_close=400))
    store.record_failure(1, T0)

    answers = _in_two_threads(lambda: [store.record_success(1, T0 + 1) for _ in range(300)])

    assert answers.count(BreakerState.HALF_OPEN) == 399
    assert answers.count(BreakerState.CLOSED) == 201  # the 400th success closed it; the rest found it closed
    assert store.status(1, T0 + 1) == BreakerStatus(BreakerState.CLOSED)


def test_mixed_outcomes_from_two_threads_leave_a_consistent_breaker(make_store):
    store = make_store(BreakerConfig(failure_threshold=3, open_seconds=3600))

    def work() -> list:
        rng = random.Random(threading.get_ident())
        return [store.record_failure(1, T0) if rng.random() < 0.5 else store.record_success(1, T0) for _ in range(200)]

    _in_two_threads(work)

    status = store.status(1, T0)
    assert status.state in (BreakerState.CLOSED, BreakerState.OPEN)
    assert status.failures < 3
    assert (status.state == BreakerState.OPEN) == (status.opened_at == T0)


def test_config_refuses_nonsense():
    with pytest.raises(ValueError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerConfig(half_open_probe_share=1.5)
    with pytest.raises(ValueError):
        BreakerConfig(open_seconds=-1)


def test_breaker_store_follows_redis_url(settings):
    settings.REDIS_URL = ""
    assert isinstance(breaker.breaker_store(), MemoryBreakerStore)
    assert breaker.breaker_store() is breaker.breaker_store()

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing is contacted until a call
    assert isinstance(breaker.breaker_store(), RedisBreakerStore)
