"""Use cases and reads on the parties (agents, merchants) that every app may call. Must not import any app."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from core.errors import DomainError
from core.models import Agent, Merchant, agent_max_depth


def agent_create(*, name: str, parent_id: int | None = None) -> Agent:
    """A new agent, under `parent_id` when given; DomainError("agent_too_deep") past SETTLEMENT_AGENT_MAX_DEPTH."""
    with transaction.atomic():
        parent = Agent.objects.get(pk=parent_id) if parent_id is not None else None
        agent = Agent(name=name, parent=parent)
        try:
            agent.full_clean()
        except ValidationError as exc:
            code = "agent_too_deep" if _has_code(exc, "agent_too_deep") else "agent_invalid"
            raise DomainError(code, "; ".join(exc.messages)) from exc
        agent.save()
        return agent


def _has_code(exc: ValidationError, code: str) -> bool:
    return (
        any(e.code == code for errors in exc.error_dict.values() for e in errors)
        if hasattr(exc, "error_dict")
        else False
    )


def agent_chain_for_merchant(*, merchant_id: int) -> list[int]:
    """The ids of the merchant's agent, its parent, ... (level 1 first); empty for a merchant under no agent.

    Reads at most SETTLEMENT_AGENT_MAX_DEPTH rows: depth is checked on save, and the walk stops there even if a
    chain was made deeper before the setting was lowered.
    """
    agent_id = Merchant.objects.filter(pk=merchant_id).values_list("agent_id", flat=True).first()
    chain: list[int] = []
    while agent_id is not None and len(chain) < agent_max_depth():
        chain.append(agent_id)
        agent_id = Agent.objects.filter(pk=agent_id).values_list("parent_id", flat=True).first()
    return chain
