"""Routing under scripted channel trouble: static priority vs round robin vs our router, side by side.

One run sends the same ``--payments`` payments (20,000 by default) through each of three strategies, one strategy
after the other. Every create goes through the channel's real adapter over HTTP to its loopback simulator (five
simulators, one account each, timeouts 0.5 s connect / 0.15 s read); nothing about a create is faked. The script,
over the payment index i of N, on a simulated clock of 20 payments per second (breaker cool-downs are in simulated
seconds):

- fees differ (see CHANNELS); buyers pay a channel's QR / card form with its base success rate, 93-96 %;
- alipay (X: the cheapest channel and first by priority) sees its buyers' success rate fall to 40 % for
  i in [30 %, 55 %) of N, then recover;
- wechatpay (Y) times out on every create for i in [60 %, 75 %) of N: its simulator records the trade and hangs
  longer than the read timeout, so the adapter raises a real Unknown;
- amounts: 70 % small (5-30 CNY), 25 % medium (30-200 CNY), 5 % large (200-1,000 CNY), from ``--seed``.

Whether a buyer pays is one uniform draw per payment, compared with the scripted success rate of the channel the
payment was created on: the same draws for every strategy. Strategies, each with up to 3 tries per payment (a
failed or timed-out create fails over to the next channel, as payment_start does):

- static priority: alipay, wechatpay, epay, stripe, bankgw, always in that order;
- round robin: payment i starts at channel i mod 5 and fails over along the same rotation;
- ours: ``payments.routing.decide`` fed as ``channel_choice.channels_rank`` feeds it (fresh health and breaker
  stores, half-open probe draw, the RoutingSettings model defaults), with the feedback of ``payment_start`` and
  ``observation_apply``: create latency; a failed create -> outcome False + breaker failure; a created one ->
  breaker success; the buyer's outcome -> outcome True/False (+ volume when paid). The buyer's outcome is recorded
  at once; in production it arrives minutes later, which would make every reaction slower.

Reported per strategy: success rate, fee paid (``routing.fee_minor`` on paid payments), payments lost to X in its bad
phase (created on X, not paid), create timeouts hit, and reaction times over a trailing window of 100 payments
(a payment counts for a channel if any of its tries went there): payments after the fall until the channel's share
drops below 10 %, and after the recovery until it is back to at least 20 % ("never left" when it never dropped).

    .venv/bin/python bench/routing_sim.py                          # 20,000 payments, memory stores
    .venv/bin/python bench/routing_sim.py --payments 2000          # quick run
    .venv/bin/python bench/routing_sim.py --redis                  # health + breakers in Redis db 14

Targets: ours beats static priority on success rate and on fee per paid payment, and stops routing to X within
500 payments. A missed target is printed, not an error; the exit status is non-zero only if the run itself breaks.
Writes ``bench/results/routing_sim.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "routing_sim.json"
sys.path.insert(0, str(ROOT))

CURRENCY = "CNY"
METHOD = "any"  # every channel takes every payment here: routing chooses between all five
TIMEOUTS = (0.5, 0.15)  # connect, read (seconds)
HANG_SECONDS = 0.3  # Y's simulator answers after this, twice the read timeout: the adapter cannot know the outcome
PAYMENTS_PER_SECOND = 20  # the simulated clock
CLOCK_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: fixed, so a seed gives the same run
WINDOW = 100  # trailing payments over which a channel's share is measured
STOP_BELOW, BACK_AT = 0.10, 0.20
STOP_TARGET = 500  # payments
MAX_TRIES = 3
UNSCRIPTED_ERRORS_MAX = 0.01  # more create errors than this share, outside Y's phase, and the run is broken


@dataclass(frozen=True)
class Channel:
    code: str
    priority: int
    fee_rate_bp: int
    fee_fixed_minor: int
    success_rate: float  # buyers who pay once shown the QR / card form
    method: str  # what the adapter is asked for (a method it really supports)


CHANNELS = (
    Channel("alipay", 1, 60, 0, 0.95, "alipay"),
    Channel("wechatpay", 2, 60, 0, 0.94, "wxpay"),
    Channel("epay", 3, 100, 0, 0.93, "alipay"),
    Channel("stripe", 4, 290, 30, 0.96, "card"),
    Channel("bankgw", 5, 20, 100, 0.93, "bank"),
)
X, Y = "alipay", "wechatpay"
X_PHASE = (0.30, 0.55)  # share of N: X's buyers pay at X_BAD_RATE
X_BAD_RATE = 0.40
Y_PHASE = (0.60, 0.75)  # share of N: every create on Y times out
STRATEGIES = ("static", "round_robin", "ours")
TITLES = {"static": "static priority", "round_robin": "round robin", "ours": "ours"}


@dataclass(frozen=True)
class Scenario:
    n: int
    amounts: tuple[int, ...]
    draws: tuple[float, ...]  # the buyer pays iff draw < the channel's scripted success rate
    x_phase: tuple[int, int]
    y_phase: tuple[int, int]

    def success_rate(self, code: str, i: int, base: float) -> float:
        if code == X and self.x_phase[0] <= i < self.x_phase[1]:
            return X_BAD_RATE
        return base

    def y_times_out(self, i: int) -> bool:
        return self.y_phase[0] <= i < self.y_phase[1]


def scenario_build(n: int, seed: int) -> Scenario:
    rng = random.Random(seed)
    amounts, draws = [], []
    for _ in range(n):
        tier = rng.random()
        if tier < 0.70:
            amounts.append(rng.randint(500, 3000))
        elif tier < 0.95:
            amounts.append(rng.randint(3001, 20000))
        else:
            amounts.append(rng.randint(20001, 100000))
        draws.append(rng.random())
    return Scenario(
        n=n,
        amounts=tuple(amounts),
        draws=tuple(draws),
        x_phase=(int(n * X_PHASE[0]), int(n * X_PHASE[1])),
        y_phase=(int(n * Y_PHASE[0]), int(n * Y_PHASE[1])),
    )


def django_setup() -> None:
    """Only to read the RoutingSettings defaults and build adapters as the app does; no database is opened."""
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "cardshop.settings",
            "DEBUG": "0",
            "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'bench' / 'routing-sim-unused.sqlite3'}",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "CARDSHOP_SECRET_KEYS": f"b1:{key}",
            "CARDSHOP_HASH_KEY": secrets.token_urlsafe(32),
            "CARDSHOP_VAR_DIR": str(ROOT / "var" / "bench"),
            "LOG_LEVEL": "ERROR",
        }
    )
    import django

    django.setup()


def production_configs():
    """RoutingConfig and BreakerConfig exactly as channel_choice builds them from an untouched RoutingSettings row."""
    from payments.models import RoutingSettings
    from payments.services import channel_choice

    with mock.patch.object(channel_choice, "_settings", RoutingSettings):
        channel_choice.cache_clear()
        configs = channel_choice.routing_config(), channel_choice.breaker_config()
    channel_choice.cache_clear()
    return configs


def candidates_build(ids: dict[str, int]):
    from payments import routing

    return tuple(
        routing.Candidate(
            account_id=ids[c.code],
            code=c.code,
            name=c.code,
            enabled=True,
            currency=CURRENCY,
            methods=frozenset({METHOD}),
            fee_rate_bp=c.fee_rate_bp,
            fee_fixed_minor=c.fee_fixed_minor,
            min_amount_minor=None,
            max_amount_minor=None,
            daily_cap_minor=None,
            priority=c.priority,
        )
        for c in CHANNELS
    )


def _quiet_client_aborts(server) -> None:
    """Y's simulator answers after the client gave up: a broken pipe there is the scripted fault, not news."""
    original = server.handle_error

    def handle_error(request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            original(request, client_address)

    server.handle_error = handle_error


@dataclass
class Bench:
    """The running simulators, one account and one real adapter per channel."""

    sims: dict
    adapters: dict
    ids: dict[str, int]
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d%H%M%S"))
    counter: int = 0

    def out_trade_no(self) -> str:
        self.counter += 1
        return f"P{self.stamp}{self.counter:010d}"


def bench_start() -> Bench:
    from payments.channels import registry
    from payments.channels.base import AccountConfig
    from payments.simulators.catalog import simulator_class

    registry.load_builtin()
    sims, adapters, ids = {}, {}, {}
    try:
        for account_id, c in enumerate(CHANNELS, start=1):
            sim = sims[c.code] = simulator_class(c.code)().start()
            if getattr(sim, "_server", None) is not None:
                _quiet_client_aborts(sim._server)
            acct = sim.account(webhook_url="http://127.0.0.1:9/")
            if acct.currency != CURRENCY:
                raise SystemExit(f"{c.code} simulator keeps {acct.currency}, the bench pays in {CURRENCY}")
            adapter_cls = registry.get(c.code)
            if c.method not in adapter_cls.methods:
                raise SystemExit(f"{c.code} does not take method {c.method!r}")
            ids[c.code] = account_id
            adapters[c.code] = adapter_cls(
                AccountConfig(
                    account_id=account_id,
                    code=c.code,
                    merchant_no=acct.merchant_no,
                    base_url=acct.base_url,
                    currency=acct.currency,
                    credentials=acct.credentials,
                    timeouts=TIMEOUTS,
                )
            )
    except BaseException:
        for sim in sims.values():
            sim.stop()
        raise
    return Bench(sims=sims, adapters=adapters, ids=ids)


# ---- strategies: each answers the channels to try for payment i, and hears every outcome -----------------------


class Static:
    def __init__(self) -> None:
        self.order = [c.code for c in sorted(CHANNELS, key=lambda c: c.priority)]

    def rank(self, i: int, amount: int, now: float) -> list[str]:
        return self.order[:MAX_TRIES]

    def created(self, code: str, ok: bool, latency_ms: float, now: float) -> None:
        pass

    def final(self, code: str, ok: bool, amount: int, now: float) -> None:
        pass


class RoundRobin(Static):
    def rank(self, i: int, amount: int, now: float) -> list[str]:
        start = i % len(self.order)
        return (self.order[start:] + self.order[:start])[:MAX_TRIES]


class Ours:
    """channels_rank / create_outcome_record / final_outcome_record with fresh stores and the simulated clock."""

    def __init__(self, bench: Bench, seed: int, redis_url: str, prefix: str) -> None:
        from payments import breaker, health

        self.routing_config, self.breaker_config = production_configs()
        self.candidates = candidates_build(bench.ids)
        self.codes = {c.account_id: c.code for c in self.candidates}
        self.account_ids = {c.code: c.account_id for c in self.candidates}
        self.rng = random.Random(seed + 1)  # exploration and probe draws; the scenario's draws stay untouched
        self.approaches: dict[str, int] = {}
        if redis_url:
            client = health.redis_client(redis_url)
            self.health = health.RedisHealthStore(client, prefix=f"{prefix}health:")
            self.breakers = breaker.RedisBreakerStore(client, prefix=f"{prefix}breaker:")
        else:
            self.health = health.MemoryHealthStore()
            self.breakers = breaker.MemoryBreakerStore()
        # As health_store() does with the CARDSHOP_HEALTH_* settings (their defaults unless set).
        from django.conf import settings

        self.health.window = int(getattr(settings, "CARDSHOP_HEALTH_WINDOW", health.WINDOW))
        self.health.min_samples = int(getattr(settings, "CARDSHOP_HEALTH_MIN_SAMPLES", health.MIN_SAMPLES))

    def rank(self, i: int, amount: int, now: float) -> list[str]:
        from payments import routing
        from payments.services import channel_choice

        ids = [c.account_id for c in self.candidates]
        cfg = self.breaker_config
        seen = self.health.snapshot(ids)
        states = self.breakers.states(ids, now, cfg)
        views = {
            a: routing.BreakerView(
                state=st, probe_allowed=st != "half_open" or self.rng.random() < cfg.half_open_probe_share
            )
            for a, st in states.items()
        }
        new = routing.Health(success_rate=1.0, samples=0, latency_p95_ms=None, volume_today_minor=0)
        healths = dict.fromkeys(ids, new)
        healths.update((a, channel_choice.routing_health(h)) for a, h in seen.items())  # as production does
        views.update((a, routing.BreakerView(state="closed", probe_allowed=True)) for a in ids if a not in views)
        request = routing.RoutingRequest(amount_minor=amount, currency=CURRENCY, method=METHOD)
        decision = routing.decide(request, self.candidates, healths, views, (), self.routing_config, self.rng)
        self.approaches[decision.approach] = self.approaches.get(decision.approach, 0) + 1
        return [self.codes[a] for a in decision.ranked]

    def created(self, code: str, ok: bool, latency_ms: float, now: float) -> None:
        account_id = self.account_ids[code]
        self.health.record_latency(account_id, latency_ms, now=now)
        if ok:
            self.breakers.record_success(account_id, now, self.breaker_config)
        else:
            self.health.record_outcome(account_id, False, now=now)
            self.breakers.record_failure(account_id, now, self.breaker_config)

    def final(self, code: str, ok: bool, amount: int, now: float) -> None:
        account_id = self.account_ids[code]
        self.health.record_outcome(account_id, ok, now=now)
        if ok:
            self.health.record_volume(account_id, amount, date.today())


# ---- one strategy over the whole script -----------------------------------------------------------------------


@dataclass
class Run:
    name: str
    touched: list[frozenset[str]] = field(default_factory=list)  # per payment: every channel a try went to
    paid_on: list[str | None] = field(default_factory=list)  # per payment: the channel the buyer paid on
    created_on: list[str | None] = field(default_factory=list)
    fees: int = 0
    paid_volume: int = 0
    timeouts: int = 0
    unscripted_errors: list[str] = field(default_factory=list)
    failed_creates: int = 0  # payments whose every try failed
    creates: int = 0
    seconds: float = 0.0
    approaches: dict[str, int] = field(default_factory=dict)


def run_strategy(name: str, strategy, bench: Bench, sc: Scenario, log: Callable[[str], None]) -> Run:
    from core.money import Money
    from payments.channels.base import ChannelError, CreateOrder, Unknown
    from payments.routing import fee_minor

    fees = {c.code: c for c in candidates_build(bench.ids)}
    base = {c.code: c for c in CHANNELS}
    y_faults = bench.sims[Y].faults
    for sim in bench.sims.values():
        sim.faults.reset()
    y_faults.hang_seconds = HANG_SECONDS
    run = Run(name)
    progress_every = max(1, sc.n // 10)
    started = time.perf_counter()
    for i in range(sc.n):
        now = CLOCK_START + i / PAYMENTS_PER_SECOND
        y_faults.timeout = 10**9 if sc.y_times_out(i) else 0
        amount = sc.amounts[i]
        touched, created_on = set(), None
        for code in strategy.rank(i, amount, now):
            touched.add(code)
            run.creates += 1
            order = CreateOrder(
                out_trade_no=bench.out_trade_no(),
                amount=Money(amount, CURRENCY),
                subject="Gift card",
                notify_url=f"http://127.0.0.1:9/notify/{code}/",
                return_url="",
                client_ip="10.0.0.1",
                method=base[code].method,
            )
            t = time.perf_counter()
            try:
                bench.adapters[code].create(order)
            except ChannelError as exc:
                strategy.created(code, False, (time.perf_counter() - t) * 1000, now)
                if isinstance(exc, Unknown) and exc.code == "timeout":
                    run.timeouts += 1
                if not (code == Y and sc.y_times_out(i)):
                    run.unscripted_errors.append(f"{i}:{code}:{type(exc).__name__}:{exc.code}")
                continue
            strategy.created(code, True, (time.perf_counter() - t) * 1000, now)
            created_on = code
            break
        run.touched.append(frozenset(touched))
        run.created_on.append(created_on)
        paid = created_on is not None and sc.draws[i] < sc.success_rate(created_on, i, base[created_on].success_rate)
        run.paid_on.append(created_on if paid else None)
        if created_on is None:
            run.failed_creates += 1
        else:
            strategy.final(created_on, paid, amount, now)
        if paid:
            run.fees += fee_minor(fees[created_on], amount)
            run.paid_volume += amount
        if (i + 1) % progress_every == 0 or i + 1 == sc.n:
            done = i + 1
            rate = sum(p is not None for p in run.paid_on) / done
            log(
                f"  {TITLES[name]:<15} {done:>6}/{sc.n}  paid {rate:6.1%}  timeouts {run.timeouts:>4}  "
                f"{time.perf_counter() - started:6.1f} s"
            )
    y_faults.reset()
    run.seconds = time.perf_counter() - started
    run.approaches = dict(sorted(getattr(strategy, "approaches", {}).items()))
    return run


# ---- metrics --------------------------------------------------------------------------------------------------


def reaction(run: Run, code: str, phase: tuple[int, int]) -> tuple[int | str, int | str]:
    """(payments after the fall until the channel's share drops below 10 %, payments after the recovery until it
    is back at 20 % or more). Shares are over the trailing WINDOW payments. "not used": the strategy sent it less
    than 10 % before the fall anyway; "never": not within the phase (stop) or the rest of the run (back);
    "never left": it did not stop, so there is nothing to come back from."""
    hits = [code in t for t in run.touched]
    prefix = [0]
    for h in hits:
        prefix.append(prefix[-1] + h)

    def share(j: int) -> float:  # over the WINDOW payments ending at j
        lo = max(0, j + 1 - WINDOW)
        return (prefix[j + 1] - prefix[lo]) / (j + 1 - lo)

    start, end = phase
    if share(start - 1) < STOP_BELOW:
        return "not used", "-"
    stop = next((j - start + 1 for j in range(start, end) if share(j) < STOP_BELOW), None)
    if stop is None:
        return "never", "never left"
    back = next((j - end + 1 for j in range(end, len(hits)) if share(j) >= BACK_AT), None)
    return stop, "never" if back is None else back


def share_series(run: Run, code: str) -> list[float]:
    """The channel's share of each consecutive block of WINDOW payments (a try there counts)."""
    hits = [code in t for t in run.touched]
    return [round(sum(hits[k : k + WINDOW]) / len(hits[k : k + WINDOW]), 2) for k in range(0, len(hits), WINDOW)]


def metrics(run: Run, sc: Scenario) -> dict:
    n = sc.n
    paid = sum(p is not None for p in run.paid_on)
    x0, x1 = sc.x_phase
    lost_x = sum(run.created_on[i] == X and run.paid_on[i] is None for i in range(x0, x1))
    x_stop, x_back = reaction(run, X, sc.x_phase)
    y_stop, y_back = reaction(run, Y, sc.y_phase)
    per_channel = {
        c.code: {
            "tried": sum(c.code in t for t in run.touched),
            "created": sum(p == c.code for p in run.created_on),
            "paid": sum(p == c.code for p in run.paid_on),
        }
        for c in CHANNELS
    }
    return {
        "payments": n,
        "paid": paid,
        "success_rate": paid / n,
        "fee_minor": run.fees,
        "fee_per_paid_minor": run.fees / paid if paid else None,
        "fee_bp_of_paid_volume": run.fees * 10_000 / run.paid_volume if run.paid_volume else None,
        "paid_volume_minor": run.paid_volume,
        "lost_to_x": lost_x,
        "create_timeouts": run.timeouts,
        "failed_creates": run.failed_creates,
        "creates": run.creates,
        "unscripted_create_errors": len(run.unscripted_errors),
        "unscripted_create_errors_first": run.unscripted_errors[:10],
        "x_stop_after": x_stop,
        "x_back_after": x_back,
        "y_stop_after": y_stop,
        "y_back_after": y_back,
        "per_channel": per_channel,
        "share_per_100": {X: share_series(run, X), Y: share_series(run, Y)},
        "approaches": run.approaches,
        "wall_seconds": round(run.seconds, 1),
    }


def table(results: dict[str, dict]) -> list[str]:
    cols = list(results)

    def row(label: str, fmt: Callable[[dict], str]) -> str:
        return f"{label:<34}" + "".join(f"{fmt(results[c]):>17}" for c in cols)

    def money(minor: float | None) -> str:
        return "-" if minor is None else f"{minor / 100:,.2f}"

    x_p = f"{X_PHASE[0]:.0%}-{X_PHASE[1]:.0%}"
    lines = [
        f"{'':<34}" + "".join(f"{TITLES[c]:>17}" for c in cols),
        row("success rate", lambda m: f"{m['success_rate']:.2%}"),
        row("paid payments", lambda m: f"{m['paid']:,}"),
        row("fee paid (CNY)", lambda m: money(m["fee_minor"])),
        row("fee per paid payment (CNY)", lambda m: money(m["fee_per_paid_minor"])),
        row("fee, bp of paid volume", lambda m: f"{m['fee_bp_of_paid_volume']:.1f}"),
        row(f"lost to {X} ({x_p})", lambda m: f"{m['lost_to_x']:,}"),
        row(f"create timeouts hit ({Y})", lambda m: f"{m['create_timeouts']:,}"),
        row("payments with no create", lambda m: f"{m['failed_creates']:,}"),
        row(f"{X}: stop routing after", lambda m: str(m["x_stop_after"])),
        row(f"{X}: back after recovery", lambda m: str(m["x_back_after"])),
        row(f"{Y}: stop routing after", lambda m: str(m["y_stop_after"])),
        row(f"{Y}: back after recovery", lambda m: str(m["y_back_after"])),
        row("creates sent (real HTTP)", lambda m: f"{m['creates']:,}"),
        row("wall time (s)", lambda m: f"{m['wall_seconds']:.1f}"),
    ]
    return lines


def verdicts(results: dict[str, dict]) -> list[tuple[str, bool]]:
    ours, static = results["ours"], results["static"]
    stop = ours["x_stop_after"]
    return [
        (
            f"ours beats static priority on success rate ({ours['success_rate']:.2%} vs {static['success_rate']:.2%})",
            ours["success_rate"] > static["success_rate"],
        ),
        (
            "ours beats static priority on fee per paid payment "
            f"({ours['fee_per_paid_minor'] / 100:.3f} vs {static['fee_per_paid_minor'] / 100:.3f} CNY)",
            ours["fee_per_paid_minor"] < static["fee_per_paid_minor"],
        ),
        (
            f"ours stops routing to {X} within {STOP_TARGET} payments ({stop})",
            isinstance(stop, int) and stop <= STOP_TARGET,
        ),
    ]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--payments", type=int, default=20_000, help="payments per strategy")
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument(
        "--redis",
        nargs="?",
        const=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        default="",
        metavar="URL",
        help="keep our router's health and breakers in Redis (default URL redis://127.0.0.1:6379/14)",
    )
    args = p.parse_args()
    if args.payments < 10 * WINDOW:
        p.error(f"--payments must be at least {10 * WINDOW}: the phases and the {WINDOW}-payment window need room")
    return args


def _redis_cleanup(url: str, prefix: str) -> None:
    from payments import health

    client = health.redis_client(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for k in range(0, len(keys), 500):
        client.delete(*keys[k : k + 500])


def main() -> None:
    args = parse_args()
    django_setup()

    def log(line: str) -> None:
        print(line, flush=True)

    sc = scenario_build(args.payments, args.seed)
    routing_config, breaker_config = production_configs()
    log(f"routing simulation: {sc.n:,} payments x 3 strategies, seed {args.seed}, {PAYMENTS_PER_SECOND} payments/s")
    log(f"  {X}: buyers pay {X_BAD_RATE:.0%} for i in [{sc.x_phase[0]}, {sc.x_phase[1]})")
    log(f"  {Y}: every create times out for i in [{sc.y_phase[0]}, {sc.y_phase[1]})")
    log(f"{'channel':<10} {'priority':>8} {'fee':>16} {'buyers pay':>11}  adapter method")
    for c in CHANNELS:
        fee = f"{c.fee_rate_bp / 100:.2f} % + {c.fee_fixed_minor / 100:.2f}"
        log(f"{c.code:<10} {c.priority:>8} {fee:>16} {c.success_rate:>11.0%}  {c.method}")
    log(f"ours: {routing_config}")
    log(f"      {breaker_config}; health store: {'Redis ' + args.redis if args.redis else 'memory'}")
    prefix = f"bench:routing_sim:{uuid.uuid4().hex[:8]}:"
    bench = bench_start()
    results: dict[str, dict] = {}
    try:
        for name in STRATEGIES:
            if name == "static":
                strategy = Static()
            elif name == "round_robin":
                strategy = RoundRobin()
            else:
                strategy = Ours(bench, args.seed, args.redis, prefix)
            log(f"{TITLES[name]} ...")
            run = run_strategy(name, strategy, bench, sc, log)
            results[name] = metrics(run, sc)
            broken = len(run.unscripted_errors) > UNSCRIPTED_ERRORS_MAX * max(1, run.creates)
            if run.unscripted_errors:
                log(f"  {len(run.unscripted_errors)} unscripted create errors, first: {run.unscripted_errors[:3]}")
            if broken:
                raise SystemExit(f"{TITLES[name]}: too many create errors outside the script; the run is broken")
    finally:
        for sim in bench.sims.values():
            sim.stop()
        if args.redis:
            _redis_cleanup(args.redis, prefix)

    lines = table(results)
    checks = verdicts(results)
    print()
    print(f"routing simulation, {sc.n:,} payments ({platform.machine()}, {os.cpu_count()} cores)")
    for line in lines:
        print(line)
    print(f"ours, approaches: {results['ours']['approaches']}")
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "payments": sc.n,
                "seed": args.seed,
                "payments_per_second": PAYMENTS_PER_SECOND,
                "timeouts": list(TIMEOUTS),
                "health_store": "redis" if args.redis else "memory",
                "channels": [asdict(c) for c in CHANNELS],
                "x": {"code": X, "phase": list(sc.x_phase), "bad_success_rate": X_BAD_RATE},
                "y": {"code": Y, "phase": list(sc.y_phase), "hang_seconds": HANG_SECONDS},
                "routing_config": asdict(routing_config),
                "breaker_config": asdict(breaker_config),
                "strategies": results,
                "checks": [{"check": text, "pass": ok} for text, ok in checks],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
