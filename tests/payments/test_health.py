"""Channel health windows, prior, percentiles, volume and the minute series, against both backends."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import redis

from payments import health
from payments.health import MemoryHealthStore, MinutePoint, RedisHealthStore

T0 = 1_764_000_000.0 + 10  # 10 s into a minute (1_764_000_000 is a multiple of 60)


@pytest.fixture(params=["memory", "redis"])
def make_store(request, settings):
    """A factory of empty stores; the Redis ones get a unique prefix and are wiped afterwards."""
    prefixes: list[str] = []
    client = None
    if request.param == "redis":
        request.getfixturevalue("require_redis")
        client = redis.Redis.from_url(settings.REDIS_URL)

    def make(**kw):
        if client is None:
            return MemoryHealthStore(**kw)
        prefixes.append(f"test:health:{uuid.uuid4().hex}:")
        return RedisHealthStore(client, prefixes[-1], **kw)

    yield make
    for prefix in prefixes:
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)


def test_a_new_account_scores_as_if_its_missing_samples_were_successes(make_store):
    store = make_store(min_samples=20)

    assert store.snapshot([7])[7] == health.ChannelHealth(7, 0, 0, 1.0, None, None, 0, 0)
    for _ in range(5):
        store.record_outcome(7, False)
    h = store.snapshot([7])[7]
    assert (h.samples, h.successes) == (5, 0)
    assert h.success_rate == 15 / 20  # (0 + 15 missing) / (5 + 15)

    for ok in [True] * 10 + [False] * 5:
        store.record_outcome(7, ok)
    h = store.snapshot([7])[7]
    assert (h.samples, h.successes, h.success_rate) == (20, 10, 0.5)  # enough samples: no prior any more


def test_the_window_keeps_only_the_newest_outcomes(make_store):
    store = make_store(window=10, min_samples=0)

    for ok in [False] * 5 + [True] * 10:
        store.record_outcome(1, ok)

    h = store.snapshot([1])[1]
    assert (h.samples, h.successes, h.success_rate) == (10, 10, 1.0)


def test_retuning_the_window_grows_and_shrinks_in_place_without_wiping(make_store):
    store = make_store(window=10, min_samples=0)
    for i in range(10):
        store.record_outcome(1, i % 2 == 0)
        store.record_latency(1, 100 + i)

    store.window = 20
    for _ in range(5):
        store.record_outcome(1, True)
        store.record_latency(1, 500)
    h = store.snapshot([1])[1]
    assert (h.samples, h.successes, h.latency_samples) == (15, 10, 15)  # grew: the old 10 are all still there

    store.window = 4
    store.record_outcome(1, False)
    store.record_latency(1, 1)
    h = store.snapshot([1])[1]
    assert (h.samples, h.successes) == (4, 3)  # newest four: True, True, True, False
    assert (h.latency_samples, h.latency_p50_ms, h.latency_p95_ms) == (4, 500.0, 500.0)


def test_latency_percentiles_by_nearest_rank_over_the_window(make_store):
    store = make_store(window=200)
    values = list(range(1, 101))
    random.Random(3).shuffle(values)
    for v in values:
        store.record_latency(2, v + 0.25)

    h = store.snapshot([2])[2]
    assert (h.latency_samples, h.latency_p50_ms, h.latency_p95_ms) == (100, 50.25, 95.25)
    assert h.samples == 0  # latencies are not outcomes

    small = make_store(window=50)
    for v in range(1, 101):
        small.record_latency(2, v)
    h = small.snapshot([2])[2]
    assert (h.latency_samples, h.latency_p50_ms, h.latency_p95_ms) == (50, 75.0, 98.0)  # only 51..100 remain


def test_equal_latencies_are_all_kept(make_store):
    store = make_store(window=5)
    for _ in range(5):
        store.record_latency(3, 42.0)

    h = store.snapshot([3])[3]
    assert (h.latency_samples, h.latency_p50_ms, h.latency_p95_ms) == (5, 42.0, 42.0)


def test_an_impossible_latency_is_refused_and_nothing_is_recorded(make_store):
    store = make_store()

    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            store.record_latency(4, bad)

    assert store.snapshot([4])[4].latency_samples == 0
    assert store.series(4, 1)[0].latency_avg_ms is None


def test_volume_is_counted_per_day(make_store):
    store = make_store()
    day = date(2026, 3, 1)

    store.record_volume(5, 990, day)
    store.record_volume(5, 10, day)
    store.record_volume(5, 500, day + timedelta(days=1))

    assert store.snapshot([5, 6], day=day)[5].volume_today_minor == 1000
    assert store.snapshot([5, 6], day=day)[6].volume_today_minor == 0
    assert store.snapshot([5], day=day + timedelta(days=1))[5].volume_today_minor == 500
    assert store.snapshot([5], day=day + timedelta(days=2))[5].volume_today_minor == 0


def test_snapshot_reads_many_accounts_at_once(make_store):
    store = make_store(min_samples=0)
    store.record_outcome(1, True)
    store.record_outcome(2, False)
    store.record_latency(2, 80)

    seen = store.snapshot([1, 2, 3, 2])

    assert sorted(seen) == [1, 2, 3]
    assert (seen[1].success_rate, seen[2].success_rate, seen[3].success_rate) == (1.0, 0.0, 1.0)
    assert (seen[1].latency_p95_ms, seen[2].latency_p95_ms) == (None, 80.0)
    assert store.snapshot([]) == {}


def test_minute_series_buckets_outcomes_and_latency(make_store):
    store = make_store()
    store.record_outcome(8, True, now=T0)
    store.record_outcome(8, True, now=T0 + 30)
    store.record_outcome(8, False, now=T0 + 40)
    store.record_latency(8, 100, now=T0)
    store.record_latency(8, 300, now=T0 + 45)
    store.record_outcome(8, False, now=T0 + 60)
    store.record_outcome(9, True, now=T0)  # another account's minute is its own

    points = store.series(8, 3, now=T0 + 60)

    start = datetime.fromtimestamp(T0 - 10, UTC)
    assert points == [
        MinutePoint(start - timedelta(minutes=1), 0, 0, None),
        MinutePoint(start, 2, 1, 200.0),
        MinutePoint(start + timedelta(minutes=1), 0, 1, None),
    ]


def test_concurrent_records_are_all_counted(make_store):
    store = make_store(window=1000, min_samples=0)
    barrier = threading.Barrier(2)

    def hammer(ok: bool) -> None:
        barrier.wait()
        for _ in range(200):
            store.record_outcome(10, ok)
            store.record_latency(10, 5)

    threads = [threading.Thread(target=hammer, args=(ok,)) for ok in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    h = store.snapshot([10])[10]
    assert (h.samples, h.successes, h.latency_samples) == (400, 200, 400)


def test_redis_layout_expiry_and_a_lost_window_heals(request, settings):
    request.getfixturevalue("require_redis")
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = f"test:health:{uuid.uuid4().hex}:"
    store = RedisHealthStore(client, prefix, min_samples=0)
    try:
        store.record_outcome(11, True, now=T0)
        store.record_volume(11, 100, date(2026, 3, 1))
        assert 0 < client.ttl(f"{prefix}vol:11:2026-03-01") <= 2 * 86400
        assert 0 < client.ttl(f"{prefix}min:11:{int(T0 // 60)}") <= 26 * 3600
        assert client.ttl(f"{prefix}ok:11") == -1  # windows are count-based, not timed

        client.delete(f"{prefix}ok:11")  # as if evicted under memory pressure, its success count left behind
        store.record_outcome(11, False)
        h = store.snapshot([11])[11]
        assert (h.samples, h.successes) == (1, 0)
    finally:
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)


def test_health_store_follows_redis_url(settings):
    settings.REDIS_URL = ""
    assert isinstance(health.health_store(), MemoryHealthStore)
    assert health.health_store() is health.health_store()

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing is contacted until a call
    settings.CARDSHOP_HEALTH_WINDOW = 50
    store = health.health_store()
    assert isinstance(store, RedisHealthStore)
    assert store.window == 50


def test_recent_success_rate_follows_a_fall_long_before_the_window_does(make_store):
    store = make_store()
    for _ in range(200):
        store.record_outcome(7, True)
    for _ in range(15):
        store.record_outcome(7, False)
    h = store.snapshot([7])[7]
    assert h.success_rate > 0.9  # the long window barely moved
    weights = [0.97**k for k in range(100)]  # newest first over the newest 100: the failures weigh most
    assert h.recent_success_rate == pytest.approx(sum(weights[15:]) / sum(weights), rel=1e-6)
    assert h.recent_success_rate < 0.7  # fifteen failures in, routing already sees a channel in trouble
    for _ in range(60):
        store.record_outcome(7, True)
    assert store.snapshot([7])[7].recent_success_rate > 0.85  # and sixty good ones later, a recovery


def test_the_snapshot_and_the_breakers_hashes_come_in_one_command(request, settings):
    """Routing's whole read: health's script reads the breakers' hashes too, one EVALSHA, also after Redis lost
    the script (it is loaded again and the read repeated)."""
    from payments.breaker import STATUS_FIELDS, BreakerState, RedisBreakerStore

    request.getfixturevalue("require_redis")
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = f"test:health:{uuid.uuid4().hex}:"
    store = RedisHealthStore(client, prefix, min_samples=0)
    breakers = RedisBreakerStore(client, prefix + "breaker:")
    try:
        store.record_outcome(11, True, now=T0)
        store.record_outcome(12, False, now=T0)
        for _ in range(breakers.config.failure_threshold):
            breakers.record_failure(12, T0, breakers.config)
        client.script_flush()
        commands = []
        real = client.execute_command
        client.execute_command = lambda *args, **kw: commands.append(args[0]) or real(*args, **kw)
        seen, flat = store.snapshot_with_hashes([11, 12], breakers.status_keys([11, 12]), STATUS_FIELDS)
        client.execute_command = real
        assert commands == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]  # the flushed script is loaded once, then read
        assert (seen[11].samples, seen[11].successes, seen[12].successes) == (1, 1, 0)
        statuses = breakers.statuses_parse([11, 12], flat, T0 + 1)
        assert statuses == breakers.statuses([11, 12], T0 + 1)
        assert statuses[11].state == BreakerState.CLOSED and statuses[12].state == BreakerState.OPEN
    finally:
        keys = list(client.scan_iter(prefix + "*"))
        if keys:
            client.delete(*keys)
