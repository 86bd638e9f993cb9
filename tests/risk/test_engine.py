"""Issue 13, first slice: the risk engine on its own. Rules are validated as they are saved (an expression that
reaches for Python internals is refused), versions are drafted and published once, counters count per IP /64,
email, device and product in real Redis (memory without it), and decisions combine lists, rules and the
counters' fallback as the README says, each stored with what it saw."""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError

from core.errors import DomainError
from core.models import AuditEvent
from core.money import Money
from risk import features
from risk.backtest import ruleset_backtest
from risk.contracts import Decision, RiskRequest
from risk.facade import checkout_record, failure_record, risk_assess
from risk.models import Assessment, ListEntry, RiskSettings, Rule, RuleSetVersion
from risk.rules import RuleInvalid, rule_compile
from risk.schema import FEATURE_NAMES
from risk.services import list_entry_add, risk_caches_clear
from risk.versions import ruleset_draft, ruleset_publish

pytestmark = pytest.mark.django_db


def unique() -> str:
    return uuid.uuid4().hex[:10]


def request_for(*, ip: str = "", email: str = "", **kw) -> RiskRequest:
    fields = dict(
        stage="checkout",
        amount=Money(990, "CNY"),
        quantity=1,
        email=email or f"{unique()}@example.com",
        ip=ip or f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}",
        device=unique(),
        product_ref=f"p-{unique()}",
        merchant_id=1,
        product_stock=10,
    )
    return RiskRequest(**{**fields, **kw})


def publish(*rules: tuple[str, str, str, str, int]) -> RuleSetVersion:
    draft = ruleset_draft(actor="op")
    for name, expression, action, reason, priority in rules:
        rule = Rule(
            version=draft, name=name, expression=expression, action=action, reason_code=reason, priority=priority
        )
        rule.full_clean()
        rule.save()
    ruleset_backtest(number=draft.number, rows=[])
    return ruleset_publish(number=draft.number, actor="op")


# --- rules ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("ip_orders_1h >", "RuleSyntaxError"),
        ("ip_orders_per_hour > 5", "unknown feature 'ip_orders_per_hour'"),
        ("email_domain.__class__", "no attribute '__class__'"),
        ("email_domain.__class__.__mro__", "no attribute '__class__'"),
        ("email_domain =~ '(a+)+$'", "regular expressions"),
        ("amount_minor + 'x' > 1", "EvaluationError"),
        ("", "empty"),
    ],
)
def test_an_invalid_or_unsafe_rule_is_refused_with_its_reason(expression, why):
    with pytest.raises(RuleInvalid) as exc:
        rule_compile(expression)
    assert why in str(exc.value)


def test_a_rule_is_validated_as_it_is_saved_and_only_in_a_draft():
    draft = ruleset_draft(actor="op")
    bad = Rule(version=draft, name="typo", expression="ip_order_1h > 5", action="block", reason_code="typo")
    with pytest.raises(ValidationError) as exc:
        bad.full_clean()
    assert "unknown feature" in exc.value.message_dict["expression"][0]
    live = publish(("burst", "ip_orders_1m > 3", "block", "ip_burst", 10))
    assert live.number == draft.number and live.state == "live"
    frozen = Rule.objects.get(version=live)
    frozen.expression = "ip_orders_1m > 30"
    with pytest.raises(ValidationError):
        frozen.full_clean()  # a published version never changes


def test_publishing_a_draft_retires_the_live_version_and_is_audited():
    first = publish(("a", "quantity > 4", "review", "bulk", 10))
    second_draft = ruleset_draft(actor="op")
    assert list(second_draft.rules.values_list("name", flat=True)) == ["a"]  # a copy of the live rules
    assert ruleset_draft(actor="op") == second_draft  # one draft at a time
    with pytest.raises(DomainError) as refused:
        ruleset_publish(number=second_draft.number, actor="op2")
    assert refused.value.code == "backtest_required"  # never published without a backtest of its rules
    ruleset_backtest(number=second_draft.number, rows=[])
    Rule.objects.filter(version=second_draft).update(expression="quantity > 5")  # changed after the backtest
    with pytest.raises(DomainError):
        ruleset_publish(number=second_draft.number, actor="op2")
    ruleset_backtest(number=second_draft.number, rows=[])
    ruleset_publish(number=second_draft.number, actor="op2")
    first.refresh_from_db()
    assert first.state == "retired" and RuleSetVersion.objects.get(state="live").number == second_draft.number
    assert AuditEvent.objects.filter(action="risk.ruleset_published").count() == 2
    with pytest.raises(DomainError):
        ruleset_publish(number=first.number, actor="op")  # only a draft is published


# --- counters -------------------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request, settings):
    """Both stores: process memory (the demo) and real Redis (required under CI)."""
    if request.param == "redis":
        request.getfixturevalue("require_redis")
        settings.RISK_COUNTERS_URL = settings.REDIS_URL
    else:
        settings.RISK_COUNTERS_URL = ""
        settings.REDIS_URL = ""
    return request.param


def test_counters_count_checkouts_per_ipv6_network_email_device_and_product_in_their_windows(store):
    net = f"2001:db8:{uuid.uuid4().int % 9999:x}:1"
    first = request_for(ip=f"{net}::1")
    now = 1_800_000_000.0
    for i in range(3):
        # Three checkouts from three addresses of one /64, an hour and a half apart for the first.
        at = now - 5400 if i == 0 else now - 30
        features.checkout_count(
            features.Subject(ip=f"{net}::{i + 1}", email=first.email, device=first.device, product=first.product_ref),
            990,
            now=at,
        )
    counts = features.counts_read(features.Subject(ip=f"{net}::99", email=first.email, product=first.product_ref), now)
    assert (counts["ip_orders_1m"], counts["ip_orders_1h"], counts["ip_orders_1d"]) == (2, 2, 3)
    assert (counts["email_orders_1h"], counts["email_orders_1d"]) == (2, 3)
    assert counts["product_orders_1h"] == 2 and counts["ip_amount_1d"] == 3 * 990
    assert counts["device_orders_1h"] == 0  # this subject names no device


def test_the_shops_read_overlaps_the_counters_and_survives_what_redis_does(settings, require_redis):
    """read_while: the caller's read runs between sending the script and reading its answer; its result comes back
    with the counts, or with CountersDown when Redis is gone; a failing read leaves no stray answer behind; a
    Redis that forgot the script (restarted) gets it again."""
    import redis

    settings.RISK_COUNTERS_URL = settings.REDIS_URL
    subject = features.Subject(ip="10.66.0.1", email=f"{unique()}@example.com")
    features.checkout_count(subject, 500)
    counts, fact = features.counts_read_while(subject, lambda: "shop read")
    assert (counts["ip_orders_1h"], counts["ip_amount_1d"], fact) == (1, 500, "shop read")

    def failing():
        raise RuntimeError("the shop's read failed")

    with pytest.raises(RuntimeError):
        features.counts_read_while(subject, failing)
    # The unread answer was dropped with its connection: the next caller gets its own counts.
    other = features.Subject(ip="10.66.0.2")
    assert features.counts_read_while(other, lambda: 1)[0]["ip_orders_1h"] == 0

    redis.Redis.from_url(settings.REDIS_URL).script_flush()
    assert features.counts_read_while(subject, lambda: 2)[0]["ip_orders_1h"] == 1

    settings.RISK_COUNTERS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    with pytest.raises(features.CountersDown) as down:
        features.counts_read_while(subject, lambda: "still read")
    assert down.value.meanwhile == "still read"


def test_failures_count_for_the_ip_and_device(store):
    req = request_for()
    failure_record(kind="payment_failed", ip=req.ip, device=req.device)
    failure_record(kind="lookup_failed", ip=req.ip)
    counts = features.counts_read(features.Subject(ip=req.ip, device=req.device))
    assert (counts["ip_failed_payments_1h"], counts["device_failed_payments_1h"], counts["lookup_failures_ip_1h"]) == (
        1,
        1,
        1,
    )


# --- decisions ------------------------------------------------------------------------------------------------


def test_with_no_rules_an_order_is_allowed_and_the_assessment_keeps_every_feature(store):
    outcome = risk_assess(request=request_for())
    assert (outcome.decision, outcome.reasons) == (Decision.ALLOW, ())
    stored = Assessment.objects.get(pk=outcome.assessment_id)
    assert set(stored.features) == set(FEATURE_NAMES) and stored.ruleset_version is None


def test_rules_decide_by_the_most_severe_match_and_an_allow_rule_first_in_priority_wins(store):
    publish(
        ("regulars", "buyer_paid_before and amount_vs_usual < 3", "allow", "regular_buyer", 5),
        ("bulk", "quantity >= 5", "review", "bulk_order", 20),
        ("burst", "ip_orders_1h >= 2", "block", "ip_burst", 30),
        ("new_bulk", "quantity >= 5 and not buyer_paid_before", "challenge", "new_buyer_bulk", 40),
    )
    req = request_for(quantity=5)
    checkout_record(request=req)
    checkout_record(request=req)
    outcome = risk_assess(request=req)
    assert outcome.decision == Decision.BLOCK
    assert outcome.reasons == ("bulk_order", "ip_burst", "new_buyer_bulk")  # every match, in priority order
    regular = risk_assess(request=request_for(ip=req.ip, quantity=5, buyer_paid_before=True))
    assert (regular.decision, regular.reasons) == (Decision.ALLOW, ("regular_buyer",))
    assert Assessment.objects.get(pk=outcome.assessment_id).ruleset_version == RuleSetVersion.objects.get().number


def test_the_block_list_wins_then_the_allow_list(store):
    publish(("all", "amount_minor > 0", "review", "everything", 10))
    req = request_for()
    list_entry_add(kind="allow", field="email", value=req.email.upper())  # kept lower case
    assert risk_assess(request=req).reasons == ("allow_listed",)
    list_entry_add(kind="block", field="ip", value="10.0.0.0/8")
    blocked = risk_assess(request=req)
    assert (blocked.decision, blocked.reasons) == (Decision.BLOCK, ("block_listed",))
    v6 = request_for(ip="2001:db8:aa:bb::5")
    list_entry_add(kind="block", field="ip", value="2001:db8:aa:bb::/64")
    assert risk_assess(request=v6).decision == Decision.BLOCK


def test_a_change_made_by_another_process_is_seen_on_the_next_checkout(settings, require_redis):
    """The configuration stays cached for a minute, but another process's committed change bumps a stamp that comes
    back with the counters read: the next checkout here reloads."""
    import redis

    settings.RISK_COUNTERS_URL = settings.REDIS_URL
    publish(("all", "amount_minor > 0", "review", "everything", 10))
    req = request_for()
    assert risk_assess(request=req).decision == Decision.REVIEW  # rules and lists now cached here
    ListEntry.objects.create(kind="block", field="email", value=req.email)  # as another process commits it
    assert risk_assess(request=req).decision == Decision.REVIEW  # not seen yet: cached
    redis.Redis.from_url(settings.REDIS_URL).incr(features.CONFIG_KEY)  # that process's features.config_changed
    risk_assess(request=req)  # this read brings the new stamp
    assert risk_assess(request=req).reasons == ("block_listed",)


def test_an_operators_change_bumps_the_stamp_once_committed(
    settings, require_redis, django_capture_on_commit_callbacks
):
    import redis

    settings.RISK_COUNTERS_URL = settings.REDIS_URL
    client = redis.Redis.from_url(settings.REDIS_URL)
    before = int(client.get(features.CONFIG_KEY) or 0)
    with django_capture_on_commit_callbacks(execute=False) as pending:
        list_entry_add(kind="block", field="domain", value="spam.example")
    assert int(client.get(features.CONFIG_KEY) or 0) == before  # not before the commit: others would reload old
    for callback in pending:
        callback()
    assert int(client.get(features.CONFIG_KEY)) == before + 1


def test_a_disposable_email_and_the_stock_share_held_unpaid_are_features(store):
    publish(("hoard", "product_pending_share >= 0.5 and not buyer_paid_before", "challenge", "stock_hoarding", 10))
    held = risk_assess(request=request_for(email=f"{unique()}@mailinator.com", product_stock=10, product_pending=6))
    stored = Assessment.objects.get(pk=held.assessment_id)
    assert stored.features["email_disposable"] is True and stored.features["product_pending_share"] == 0.6
    assert (held.decision, held.reasons) == (Decision.CHALLENGE, ("stock_hoarding",))


def test_when_the_counters_are_down_the_operators_fallback_decides(settings):
    settings.RISK_COUNTERS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    RiskSettings.objects.create(degraded_allow_below_minor=1000)
    risk_caches_clear()
    small = risk_assess(request=request_for(amount=Money(990, "CNY")))
    large = risk_assess(request=request_for(amount=Money(5000, "CNY")))
    assert (small.decision, small.reasons, small.degraded) == (Decision.ALLOW, ("counters_down_small",), True)
    assert (large.decision, large.reasons) == (Decision.REVIEW, ("counters_down",))
    checkout_record(request=request_for())  # counting after commit loses the count, never raises


def test_a_live_model_scores_every_assessment_and_a_shadow_one_is_recorded_beside_it(store):
    from risk import scoring
    from risk.training.generator import TrafficMix
    from risk.training.train import model_train

    live = model_train(TrafficMix(rows=3000), seed=1, rounds=10)
    shadow = model_train(TrafficMix(rows=3000), seed=2, rounds=10)
    scoring.model_promote(live.version)
    scoring.model_shadow(shadow.version)
    outcome = risk_assess(request=request_for())
    stored = Assessment.objects.get(pk=outcome.assessment_id)
    assert 0 <= stored.score <= 1 and stored.score == outcome.score
    assert stored.model_version == live.version and stored.shadow_score is not None
    RiskSettings.objects.create(score_review=0.0, score_block=1.01)  # every score now reaches review
    risk_caches_clear()
    reviewed = risk_assess(request=request_for())
    assert (reviewed.decision, reviewed.reasons) == (Decision.REVIEW, ("score_elevated",))
