"""risk_assess: the features of one checkout, the lists, the live rules and the learned score, combined into one
decision with reason codes, stored with everything it saw.

How a decision is made (the README quotes this):
1. The block list wins over everything (`block_listed`), then the allow list (`allow_listed`): a listed buyer
   is decided without rules or score.
2. The counters cannot be read (Redis down): the operator's fallback decides, an order below the setting's amount
   is allowed (`counters_down_small`), a larger one waits for review (`counters_down`). Logged and counted.
3. The live rules are evaluated in priority order (lower first). If the first rule that matches is an allow
   rule, the order is allowed with its reason. Otherwise the decision is the most severe action among the rules
   that matched (block > review > challenge), with every matching rule's reason code.
4. The learned score, when a model is live, adds its own action: at or above the block threshold `score_high`
   (block), at or above the review threshold `score_elevated` (review). The most severe of 3 and 4 stands.
"""

# ruff: noqa: S608 -- only the model's table and column names are formatted into the SQL; every value is a parameter.
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from datetime import datetime

from disposable_email_domains import blocklist as DISPOSABLE_DOMAINS
from django.db import transaction
from django.utils import timezone

from core.prepared import prepared_cursor
from risk import features, scoring
from risk.contracts import Decision, RiskOutcome, RiskRequest, ShopFacts
from risk.models import Assessment, ListEntry, ListField, ListKind, RiskSettings, Rule, RuleSetVersion, VersionState
from risk.rules import compiled_for, rules_matching
from risk.schema import FEATURE_NAMES

log = logging.getLogger(__name__)


# What operators edit (settings, lists, the live rules) is cached per process, not read on every checkout. An edit
# bumps a stamp in Redis after it commits (features.config_changed) and the stamp comes back with every counters
# read at no extra cost, so each process reloads on its first checkout after the change. The TTL only bounds how
# stale a process can be while it cannot see the stamp (Redis down).
CONFIG_TTL_SECONDS = 60.0
_config: dict[str, tuple[float, int, object]] = {}


def _cached(name: str, load):
    now = time.monotonic()
    stamp = features.config_stamp()
    hit = _config.get(name)
    if hit is not None and hit[1] == stamp and now - hit[0] < CONFIG_TTL_SECONDS:
        return hit[2]
    value = load()
    _config[name] = (now, stamp, value)
    return value


def risk_caches_clear(*, here_only: bool = False) -> None:
    """Forget the cached configuration here at once, and in every process once the change is committed."""
    _config.clear()
    if not here_only:
        transaction.on_commit(features.config_changed)


def risk_settings() -> RiskSettings:
    return _cached("settings", lambda: RiskSettings.objects.order_by("pk").first() or RiskSettings())


def _subject(request: RiskRequest) -> features.Subject:
    return features.Subject(
        ip=request.ip,
        email=request.email,
        device=request.device,
        product=request.product_ref,
        merchant=str(request.merchant_id or ""),
    )


def _list_index_load() -> tuple[frozenset[tuple[str, str, str]], tuple[tuple[str, object], ...]]:
    """The lists as the checkout reads them: exact values in a set, IP networks parsed once."""
    exact, networks = set(), []
    for kind, field, value in ListEntry.objects.values_list("kind", "field", "value"):
        if field == ListField.IP and "/" in value:
            try:
                networks.append((kind, ipaddress.ip_network(value, strict=False)))
            except ValueError:
                continue
        elif value:
            exact.add((kind, field, value))
    return frozenset(exact), tuple(networks)


def _listed(subject: features.Subject, keys: dict[str, str]) -> set[str]:
    """Which lists (block, allow) name this buyer: its email, domain, device or IP (an IPv6 by its /64)."""
    exact, networks = _cached("lists", _list_index_load)
    values = {
        ListField.EMAIL: keys.get("email", ""),
        ListField.DOMAIN: keys.get("domain", ""),
        ListField.DEVICE: keys.get("device", ""),
        ListField.IP: keys.get("ip", ""),
    }
    found = {kind for kind in ListKind.values for field, value in values.items() if (kind, field, value) in exact}
    if networks and subject.ip:
        try:
            address = ipaddress.ip_address(subject.ip)
        except ValueError:
            return found
        found |= {kind for kind, network in networks if address in network}
    return found


def _live_rules() -> tuple[int | None, tuple]:
    return _cached("rules", _live_rules_load)


def _live_rules_load() -> tuple[int | None, tuple]:
    live = RuleSetVersion.objects.filter(state=VersionState.LIVE).values_list("number", flat=True).first()
    if live is None:
        return None, ()
    definitions = tuple(
        Rule.objects.filter(version__number=live, enabled=True)
        .order_by("priority", "pk")
        .values_list("name", "expression", "action", "reason_code", "priority")
    )
    return live, compiled_for(live, definitions)


def features_of(
    request: RiskRequest, *, keys: dict[str, str], counts: dict[str, int], listed: set[str], now: datetime
) -> dict:
    """The whole feature vector (risk.schema order) from the counters, the lists and the request; `keys` are the
    subject's counter values (features.Subject.keys)."""
    domain = keys.get("domain", "")
    stock = max(request.product_stock, 0)
    usual = request.usual_amount_minor
    # The checkout being assessed counts in its own windows (as the model was trained: risk.training.generator).
    counted = {f: n + 1 for f, n in counts.items() if _DIMENSION_OF.get(f) in keys and f in CURRENT_COUNTED}
    amount = request.amount.amount_minor if request.ip else 0
    values = {
        **counts,
        **counted,
        "ip_amount_1d": counts.get("ip_amount_1d", 0) + amount,
        "amount_minor": request.amount.amount_minor,
        "quantity": request.quantity,
        "product_pending": request.product_pending,
        "product_pending_share": round(request.product_pending / stock, 4) if stock else 0.0,
        "hour_of_day": timezone.localtime(now).hour,
        "amount_vs_usual": round(request.amount.amount_minor / usual, 4) if usual else 1.0,
        "email_disposable": domain in DISPOSABLE_DOMAINS,
        "buyer_paid_before": request.buyer_paid_before,
        "email_domain": domain,
        "listed_block": ListKind.BLOCK in listed,
        "listed_allow": ListKind.ALLOW in listed,
    }
    return {name: values[name] for name in FEATURE_NAMES}


# Counter features the current checkout belongs to (failures and lookups count earlier events only).
CURRENT_COUNTED = {
    f for f, dim, _ in features.COUNTED if dim in ("ip", "email", "domain", "device", "product", "merchant")
}
_DIMENSION_OF = {f: dim for f, dim, _ in features.COUNTED}


def combine(matched, score: float | None, cfg: RiskSettings) -> tuple[Decision, list[str]]:
    if matched and matched[0].action == Decision.ALLOW:
        return Decision.ALLOW, [matched[0].reason_code]
    decision, reasons = Decision.ALLOW, []
    for rule in matched:
        if rule.action != Decision.ALLOW:
            reasons.append(rule.reason_code)
            decision = max(decision, Decision(rule.action), key=lambda d: d.severity)
    if score is not None and score >= cfg.score_block:
        decision, reasons = Decision.BLOCK, [*reasons, "score_high"]
    elif score is not None and score >= cfg.score_review:
        decision = max(decision, Decision.REVIEW, key=lambda d: d.severity)
        reasons.append("score_elevated")
    return decision, reasons


def risk_assess(*, request: RiskRequest, facts: Callable[[], ShopFacts] | None = None) -> RiskOutcome:
    """Decide one checkout (module docstring) and store the assessment, in the caller's transaction when there is
    one (the checkout's: its row commits with the order it allowed). Never raises for a counter outage.

    `facts`, when given, reads what only the shop knows (its stock held, the buyer's history); it runs while the
    counters' answer is on its way from Redis, so the two round trips overlap, and its figures complete `request`.
    """
    started = time.perf_counter()
    now = timezone.now()
    subject = _subject(request)
    degraded = False
    try:
        counts, known = features.counts_read_while(subject, facts or _no_facts)
    except features.CountersDown as exc:
        log.warning("risk counters down (%s): the fallback setting decides", exc)
        degraded, counts, known = True, {}, exc.meanwhile
    if known is not None:
        request = dataclasses.replace(request, **dataclasses.asdict(known))
    cfg = risk_settings()  # after the read: it brought the configuration stamp
    keys = subject.keys()
    listed = _listed(subject, keys)
    values = features_of(request, keys=keys, counts=counts or _zeros(), listed=listed, now=now)
    version, rules = _live_rules()
    score = None
    if ListKind.BLOCK in listed:
        decision, reasons = Decision.BLOCK, ["block_listed"]
    elif ListKind.ALLOW in listed:
        decision, reasons = Decision.ALLOW, ["allow_listed"]
    elif degraded:
        small = request.amount.amount_minor < cfg.degraded_allow_below_minor
        decision, reasons = (Decision.ALLOW, ["counters_down_small"]) if small else (Decision.REVIEW, ["counters_down"])
    else:
        score = scoring.score(values)
        decision, reasons = combine(rules_matching(rules, values), score, cfg)
    shadow = scoring.shadow_score(values) if not degraded else None
    assessment = Assessment(
        stage=request.stage,
        order_no=request.order_no,
        decision=decision,
        currency=request.amount.currency,
        reasons=reasons,
        score=score,
        shadow_score=shadow,
        features=values,
        ruleset_version=version,
        model_version=scoring.model_version() if score is not None else "",
        degraded=degraded,
        elapsed_us=int((time.perf_counter() - started) * 1e6),
    )
    _assessment_store(assessment)
    return RiskOutcome(
        decision=decision, reasons=tuple(reasons), assessment_id=assessment.pk, score=score, degraded=degraded
    )


# Every checkout writes one assessment: on PostgreSQL its INSERT is prepared once per connection (core.prepared),
# ~0.25 ms less than the ORM's at p50 here. The values are prepared by the model's own fields, as save() would.
_STORED = tuple(f for f in Assessment._meta.concrete_fields if not f.primary_key)
_INSERT = (
    f"INSERT INTO {Assessment._meta.db_table} ({', '.join(f.column for f in _STORED)})"
    f" VALUES ({', '.join(['%s'] * len(_STORED))}) RETURNING {Assessment._meta.pk.column}"
)


def _assessment_store(assessment: Assessment) -> None:
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        assessment.save()
        return
    values = [f.get_db_prep_save(f.pre_save(assessment, True), connection) for f in _STORED]
    with prepared_cursor() as cursor:
        cursor.execute(_INSERT, values)
        assessment.pk = cursor.fetchone()[0]
    assessment._state.adding, assessment._state.db = False, connection.alias


def _no_facts() -> None:
    return None


def _zeros() -> dict[str, int]:
    return {feature: 0 for feature, _, _ in features.COUNTED} | {"ip_amount_1d": 0}


def checkout_record(*, request: RiskRequest) -> None:
    """After the checkout committed: count it (handed to the counters' writer thread, which logs an outage: a
    lost count, never a lost order)."""
    features.checkout_count(_subject(request), request.amount.amount_minor)


def failure_record(*, kind: str, ip: str, device: str = "") -> None:
    """A failed or declined payment, or a failed order lookup, counted for the IP and device."""
    features.failure_count(kind, features.Subject(ip=ip, device=device))


def risk_challenge_kind() -> str:
    """How a challenged checkout is proven: the operator's setting (email_code or captcha)."""
    return risk_settings().challenge_kind


def list_entry_add(*, kind: str, field: str, value: str, note: str = "", actor: str = "") -> ListEntry:
    """Put a value on the block or allow list (emails and domains lower case); effective at once here."""
    value = value.strip().lower() if field in (ListField.EMAIL, ListField.DOMAIN) else value.strip()
    entry, _ = ListEntry.objects.get_or_create(
        kind=kind, field=field, value=value, defaults={"note": note[:200], "created_by": actor[:150]}
    )
    risk_caches_clear()
    return entry
