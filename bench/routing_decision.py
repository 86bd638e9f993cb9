"""Routing decision latency with live health read from Redis: p50/p99 of one `channels_rank` call.

A call is what the pay page pays for every new payment before the first provider call: one Redis command (health's
script, EVALSHA) for the five accounts' health windows (success rate, p95 latency, today's volume) and their
breaker states, then the pure ranking (`payments/routing.py`: eligibility, rules, breakers, elimination, tiers, EV re-rank,
exploration). Accounts, rules and knobs are read from the database once per few seconds per process, as in
production, so the measured calls do not touch the database.

Set-up: a scratch SQLite database under var/bench (the decision does not use it once warm), five channel
accounts with different fees (Alipay and WeChat Pay each compete with the epay aggregator for their method),
each account's health window filled (200 outcomes and latencies) in Redis database 14 by default, breakers
closed except the bank's, half-open. Then `--calls` decisions with varying amounts and methods.

    .venv/bin/python bench/routing_decision.py                    # Redis at 127.0.0.1:6379/14
    .venv/bin/python bench/routing_decision.py --redis-url redis://127.0.0.1:6379/14 --calls 20000

Targets: p99 < 1 ms; p99 at most 5x the same run's Redis round trip (PING p50, measured after the decisions).
Writes bench/results/routing_decision.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "routing_decision.json"
sys.path.insert(0, str(ROOT))
from common import VAR_DIR, bench_env, percentile  # noqa: E402

TARGET_P99_MS = 1.0
TARGET_PING_RATIO = 5.0
CHANNELS = [  # code, priority, fee bp, fixed fee, success rate, typical latency ms
    ("alipay", 1, 60, 0, 0.95, 180),
    ("wechatpay", 2, 60, 0, 0.94, 220),
    ("epay", 3, 100, 0, 0.90, 300),
    ("stripe", 4, 290, 30, 0.97, 400),
    ("bankgw", 5, 20, 100, 0.92, 900),
]


def setup(redis_url: str) -> None:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    db = VAR_DIR / "routing-decision.sqlite3"
    db.unlink(missing_ok=True)
    os.environ.update(bench_env(f"sqlite:///{db}", REDIS_URL=redis_url, LOG_LEVEL="ERROR"))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    p.add_argument("--calls", type=int, default=10000)
    args = p.parse_args()
    setup(args.redis_url)

    import redis

    from payments import breaker, health
    from payments.models import ChannelAccount, RoutingSettings
    from payments.routing import RoutingRequest
    from payments.services import channel_choice

    client = redis.Redis.from_url(args.redis_url)
    for pattern in ("cs:health:*", "cs:breaker:*"):
        keys = list(client.scan_iter(pattern, count=1000))
        if keys:
            client.delete(*keys)
    RoutingSettings.objects.create()  # the model defaults: tiers, 5 % exploration, breaker knobs
    rng = random.Random(7)
    store = health.health_store()
    ids = []
    for code, priority, bp, fixed, sr, latency in CHANNELS:
        a = ChannelAccount.objects.create(
            code=code,
            name=code,
            merchant_no="m",
            base_url="http://127.0.0.1:9",
            currency="CNY",
            credentials="{}",
            priority=priority,
            fee_rate_bp=bp,
            fee_fixed_minor=fixed,
        )
        ids.append(a.pk)
        for _ in range(store.window):
            store.record_outcome(a.pk, rng.random() < sr)
            store.record_latency(a.pk, rng.lognormvariate(0, 0.3) * latency)
    cfg = channel_choice.breaker_config()
    for _ in range(cfg.failure_threshold):  # the bank's breaker tripped long ago: half-open, probing
        breaker.breaker_store().record_failure(ids[4], time.time() - 3600, cfg)

    requests = [
        RoutingRequest(
            amount_minor=rng.choice([500, 990, 2900, 15000, 80000]),
            currency="CNY",
            method=rng.choice(["alipay", "wxpay", "alipay", "card", "bank"]),
            merchant_id=None,
            product_ref="",
        )
        for _ in range(args.calls)
    ]
    for r in requests[:200]:  # warm: accounts, rules and knobs cached; Redis connection open
        channel_choice.channels_rank(request=r)

    timings, approaches = [], {}
    for r in requests:
        t = time.perf_counter()
        decision = channel_choice.channels_rank(request=r)
        timings.append((time.perf_counter() - t) * 1000)
        approaches[decision.approach] = approaches.get(decision.approach, 0) + 1

    ping = []
    for _ in range(2000):
        t = time.perf_counter()
        client.ping()
        ping.append((time.perf_counter() - t) * 1000)

    result = {
        "calls": args.calls,
        "p50_ms": round(statistics.median(timings), 3),
        "p99_ms": round(percentile(timings, 99), 3),
        "max_ms": round(max(timings), 3),
        "redis_ping_p50_ms": round(statistics.median(ping), 3),
        "redis_ping_p99_ms": round(percentile(ping, 99), 3),
        "p99_over_ping_p50": round(percentile(timings, 99) / statistics.median(ping), 2),
        "approaches": approaches,
        "target_met": percentile(timings, 99) < TARGET_P99_MS,
    }
    print(f"routing decision, 5 accounts, health + breakers in Redis ({args.redis_url}), {args.calls} calls")
    print(f"  p50 {result['p50_ms']:.3f} ms   p99 {result['p99_ms']:.3f} ms   max {result['max_ms']:.3f} ms")
    print(
        f"  Redis PING p50 {result['redis_ping_p50_ms']:.3f} ms, p99 {result['redis_ping_p99_ms']:.3f} ms"
        " (one round trip per decision)"
    )
    print(f"  approaches: {json.dumps(approaches, sort_keys=True)}")
    print(f"  target p99 < {TARGET_P99_MS} ms: {'met' if result['target_met'] else 'NOT met'}")
    ratio = result["p99_over_ping_p50"]
    print(
        f"  target p99 <= {TARGET_PING_RATIO:.0f}x PING p50: {ratio}x, {'met' if ratio <= TARGET_PING_RATIO else 'NOT met'}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
