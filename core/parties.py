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

    One query: depth is bounded by SETTLEMENT_AGENT_MAX_DEPTH (checked on save), so the chain is joined in. The
    walk stops at the setting even if a chain was made deeper before the setting was lowered.
    """
    depth = agent_max_depth()
    merchant = Merchant.objects.select_related("agent" + "__parent" * (depth - 1)).filter(pk=merchant_id).first()
    chain: list[int] = []
    agent = merchant.agent if merchant is not None else None
    while agent is not None:
        chain.append(agent.pk)
        if len(chain) == depth:
            break
        agent = agent.parent
    return chain
