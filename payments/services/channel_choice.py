"""Which channel accounts may take a payment, best first: live health, breakers and rules fed to the pure
ranking core (`payments/routing.py`). Also the feedback side: every create and final outcome goes back into
the shared health windows and breakers."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import date

import redis
from django.db import transaction
from django.utils import timezone

from core.audit import audit_record
from core.money import Money
from payments import breaker, health, routing
from payments.channels import registry
from payments.models import ChannelAccount, RoutingRule, RoutingSettings

log = logging.getLogger(__name__)

_SETTINGS_TTL = 5.0  # seconds a process keeps the operator's knobs and accounts before reading them again
_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, object]] = {}
_rng = random.Random()


def _cached(key: str, load):
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < _SETTINGS_TTL:
            return hit[1]
    value = load()
    with _cache_lock:
        _cache[key] = (now, value)
    return value


def cache_clear() -> None:
    """After an operator edits accounts, rules or settings (admin saves call it; tests too)."""
    with _cache_lock:
        _cache.clear()


def _settings() -> RoutingSettings:
    return RoutingSettings.objects.order_by("pk").first() or RoutingSettings()


def routing_config() -> routing.RoutingConfig:
    s = _cached("settings", _settings)
    return routing.RoutingConfig(
        sr_threshold=s.sr_threshold,
        latency_cap_ms=s.latency_cap_ms,
        exploration_share=s.exploration_share,
        small_below_minor=s.small_below_minor,
        large_above_minor=s.large_above_minor,
        max_attempts=s.max_attempts,
        margin_bp=s.margin_bp,
        cheapest_sr_tolerance=s.cheapest_sr_tolerance,
        sr_tolerance=s.sr_tolerance,
    )


def breaker_config() -> breaker.BreakerConfig:
    s = _cached("settings", _settings)
    return breaker.BreakerConfig(
        failure_threshold=s.breaker_failures,
        open_seconds=s.breaker_open_seconds,
        half_open_probe_share=s.breaker_probe_share,
    )


def _candidates() -> tuple[routing.Candidate, ...]:
    out = []
    for a in ChannelAccount.objects.order_by("priority", "pk"):
        adapter = registry.get(a.code)
        out.append(
            routing.Candidate(
                account_id=a.pk,
                code=a.code,
                name=a.name,
                enabled=a.enabled and adapter is not None,
                currency=a.currency,
                methods=adapter.methods if adapter else frozenset(),
                fee_rate_bp=a.fee_rate_bp,
                fee_fixed_minor=a.fee_fixed_minor,
                min_amount_minor=a.min_amount_minor,
                max_amount_minor=a.max_amount_minor,
                daily_cap_minor=a.daily_cap_minor,
                priority=a.priority,
                owner_merchant_id=a.owner_merchant_id,
            )
        )
    return tuple(out)


def _rules() -> tuple[routing.Rule, ...]:
    return tuple(
        routing.Rule(kind=r.kind, account_id=r.account_id, merchant_id=r.merchant_id, product_ref=r.product_ref)
        for r in RoutingRule.objects.all()
    )


def candidates() -> tuple[routing.Candidate, ...]:
    return _cached("candidates", _candidates)


def channels_rank(
    *, request: routing.RoutingRequest, only_code: str = "", rng: random.Random | None = None
) -> routing.Decision:
    """Rank the accounts for one payment. One Redis round trip for health and one for breakers."""
    rng = rng or _rng
    pool = [c for c in candidates() if not only_code or c.code == only_code]
    healths, views = _pool_state(pool, rng)
    return routing.decide(request, pool, healths, views, _cached("rules", _rules), routing_config(), rng)


def methods_rank(*, requests: list[routing.RoutingRequest]) -> list[routing.Decision]:
    """The pay page's picker: one read of health and breakers, then one decision per method, so the buyer is
    offered only what routing would really take. A half-open breaker counts as admitting (its probe is drawn
    only when the payment starts)."""
    pool = list(candidates())
    healths, views = _pool_state(pool, None)
    rules, config = _cached("rules", _rules), routing_config()
    return [routing.decide(r, pool, healths, views, rules, config, random.Random(0)) for r in requests]


def _pool_state(
    pool: list[routing.Candidate], rng: random.Random | None
) -> tuple[dict[int, routing.Health], dict[int, routing.BreakerView]]:
    ids = [c.account_id for c in pool]
    now = time.time()
    cfg = breaker_config()
    try:
        seen, states = _health_and_breakers(ids, now, cfg)
    except redis.RedisError:
        # Health is advice: without it every account looks new and closed, and payments still go out.
        log.exception("channel health unavailable; routing on static order")
        seen, states = {}, {}
    views = {
        i: routing.BreakerView(
            state=st,
            probe_allowed=st != routing.HALF_OPEN or rng is None or rng.random() < cfg.half_open_probe_share,
        )
        for i, st in states.items()
    }
    healths = {i: _NEW for i in ids}
    healths.update((i, routing_health(h)) for i, h in seen.items())
    views.update((i, routing.BreakerView(state=routing.CLOSED, probe_allowed=True)) for i in ids if i not in views)
    return healths, views


def routing_health(h: health.ChannelHealth) -> routing.Health:
    """What routing weighs: the recent success rate (follows a fall or a recovery within a few dozen
    outcomes), the p95 latency and today's volume."""
    return routing.Health(
        success_rate=h.recent_success_rate,
        samples=h.samples,
        latency_p95_ms=h.latency_p95_ms,
        volume_today_minor=h.volume_today_minor,
    )


def _health_and_breakers(ids: list[int], now: float, cfg: breaker.BreakerConfig) -> tuple[dict, dict]:
    """Both reads in one Redis command when both live in Redis (the decision's whole I/O): health's script reads
    the breakers' hashes too."""
    hs, bs = health.health_store(), breaker.breaker_store()
    if isinstance(hs, health.RedisHealthStore) and isinstance(bs, breaker.RedisBreakerStore):
        seen, flat = hs.snapshot_with_hashes(ids, bs.status_keys(ids), breaker.STATUS_FIELDS)
        statuses = bs.statuses_parse(ids, flat, now, cfg)
        return seen, {i: s.state for i, s in statuses.items()}
    return hs.snapshot(ids), bs.states(ids, now, cfg)


_NEW = routing.Health(success_rate=1.0, samples=0, latency_p95_ms=None, volume_today_minor=0)


# ---- feedback ------------------------------------------------------------------------------------------


def create_outcome_record(*, account_id: int, ok: bool, latency_ms: float) -> None:
    """A create call finished: its latency, and for a failure one bad outcome and a breaker strike."""
    try:
        store = health.health_store()
        store.record_latency(account_id, latency_ms)
        b = breaker.breaker_store()
        if ok:
            b.record_success(account_id, time.time(), breaker_config())
        else:
            store.record_outcome(account_id, False)
            b.record_failure(account_id, time.time(), breaker_config())
    except redis.RedisError:
        log.exception("could not record a create outcome for account %s", account_id)


def call_latency_record(*, account_id: int, latency_ms: float) -> None:
    """Any other provider call (a query): its latency counts towards the account's percentiles."""
    try:
        health.health_store().record_latency(account_id, latency_ms)
    except redis.RedisError:
        log.exception("could not record a call latency for account %s", account_id)


def final_outcome_record_on_commit(*, account_id: int, ok: bool, amount_minor: int) -> None:
    """A payment ended (paid, failed or closed): counted once the transaction that decided it commits."""

    def record() -> None:
        try:
            store = health.health_store()
            store.record_outcome(account_id, ok)
            if ok:
                store.record_volume(account_id, amount_minor, date.today())
        except redis.RedisError:  # the payment is applied and committed; health is advice
            log.exception("could not record a final outcome for account %s", account_id)

    transaction.on_commit(record)


# ---- operators ------------------------------------------------------------------------------------------


def breaker_override(*, account_id: int, action: str, actor: str) -> None:
    """An operator opens a breaker by hand (no traffic), closes it (traffic whatever health says), or gives it
    back to the automatic rules."""
    store = breaker.breaker_store()
    moves = {"open": store.force_open, "close": store.force_close, "auto": store.release}
    if action not in moves:
        raise ValueError(f"unknown breaker action {action!r}")
    # The breaker lives in Redis, outside any transaction: the audit row commits first, so an override that
    # happened is never missing from the trail (at worst a row names an override whose store call then failed).
    with transaction.atomic():
        audit_record(actor=actor, action="channel_account.breaker", target=f"channelaccount:{account_id}", to=action)
    moves[action](account_id)
    log.warning("breaker of account %s set to %s by %s", account_id, action, actor)


def health_dashboard(*, minutes: int) -> dict:
    """Rows and per-minute series for the admin's channel health page."""
    accounts = list(ChannelAccount.objects.order_by("priority", "pk"))
    ids = [a.pk for a in accounts]
    seen = health.health_store().snapshot(ids)
    states = breaker.breaker_store().states(ids, time.time())

    def ms(v: float | None) -> str:
        return "—" if v is None else f"{v:.0f} ms"

    rows = []
    for a in accounts:
        h = seen[a.pk]
        rows.append(
            {
                "account": a,
                "success_rate": f"{h.success_rate:.1%}",
                "samples": h.samples,
                "p50": ms(h.latency_p50_ms),
                "p95": ms(h.latency_p95_ms),
                "volume": str(Money(h.volume_today_minor, a.currency)),
                "fee": f"{a.fee_rate_bp / 100:.2f} % + {Money(a.fee_fixed_minor, a.currency)}",
                "breaker": str(states.get(a.pk, routing.CLOSED)),
            }
        )
    store = health.health_store()
    labels: list[str] = []
    series = []
    for a in accounts:
        points = store.series(a.pk, minutes)
        labels = labels or [timezone.localtime(p.minute).strftime("%H:%M") for p in points]  # the shop's time zone
        series.append(
            {
                "name": a.name,
                "success_rate": [round(p.ok / (p.ok + p.fail), 3) if p.ok + p.fail else None for p in points],
                "latency_ms": [None if p.latency_avg_ms is None else round(p.latency_avg_ms, 1) for p in points],
            }
        )
    return {
        "rows": rows,
        "series": {"labels": labels, "accounts": series},
        "minutes": minutes,
        "window": health.health_store().window,
    }
