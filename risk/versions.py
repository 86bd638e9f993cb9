"""Rule set versions: one live, at most one draft. Operators edit the draft (rules are validated as they are
saved, risk.rules), then publish it: the live version is retired, the draft goes live, audited. A published
version is never edited again, so every stored assessment names the exact rules it saw."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.audit import audit_record
from core.errors import DomainError
from risk.backtest import rules_digest
from risk.models import Rule, RuleSetVersion, VersionState
from risk.rules import RuleInvalid, rule_compile
from risk.services import risk_caches_clear


def ruleset_draft(*, actor: str) -> RuleSetVersion:
    """The draft to edit: the one there is, or a new one holding a copy of the live rules."""
    with transaction.atomic():
        draft = RuleSetVersion.objects.select_for_update().filter(state=VersionState.DRAFT).first()
        if draft is not None:
            return draft
        number = (RuleSetVersion.objects.aggregate(n=Max("number"))["n"] or 0) + 1
        draft = RuleSetVersion.objects.create(number=number, state=VersionState.DRAFT, created_by=actor[:150])
        live = RuleSetVersion.objects.filter(state=VersionState.LIVE).first()
        if live is not None:
            Rule.objects.bulk_create(
                Rule(
                    version=draft,
                    name=r.name,
                    expression=r.expression,
                    action=r.action,
                    reason_code=r.reason_code,
                    priority=r.priority,
                    enabled=r.enabled,
                )
                for r in live.rules.all()
            )
        return draft


def ruleset_publish(*, number: int, actor: str) -> RuleSetVersion:
    """The draft goes live (the old live version retires), once every rule in it still parses. Audited."""
    with transaction.atomic():
        draft = RuleSetVersion.objects.select_for_update().filter(number=number).first()
        if draft is None or draft.state != VersionState.DRAFT:
            raise DomainError("not_draft", "only the draft can be published")
        for rule in draft.rules.all():
            try:
                rule_compile(rule.expression)
            except RuleInvalid as exc:
                raise DomainError("rule_invalid", f"{rule.name}: {exc}") from exc
        if draft.backtest.get("rules_digest") != rules_digest(draft):
            raise DomainError("backtest_required", "backtest the draft (as its rules are now) before publishing it")
        previous = RuleSetVersion.objects.select_for_update().filter(state=VersionState.LIVE).first()
        if previous is not None:
            previous.state = VersionState.RETIRED
            previous.save(update_fields=["state"])
        draft.state = VersionState.LIVE
        draft.published_by, draft.published_at = actor[:150], timezone.now()
        draft.save(update_fields=["state", "published_by", "published_at"])
        risk_caches_clear()  # this process at once, and again once committed (a read meanwhile saw the old rules)
        transaction.on_commit(risk_caches_clear)
        audit_record(
            actor=actor,
            action="risk.ruleset_published",
            target=f"v{draft.number}",
            retired=previous.number if previous else None,
            rules=draft.rules.count(),
        )
    return draft
