"""Agents form a tree no deeper than SETTLEMENT_AGENT_MAX_DEPTH; a merchant's chain reads level 1 first."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core.errors import DomainError
from core.models import Agent
from core.parties import agent_chain_for_merchant, agent_create
from tests.factories.core import MerchantFactory

pytestmark = pytest.mark.django_db


def chain_of(depth: int) -> list[Agent]:
    agents = [agent_create(name="a1")]
    for level in range(2, depth + 1):
        agents.append(agent_create(name=f"a{level}", parent_id=agents[-1].pk))
    return agents


def test_a_chain_as_deep_as_the_setting_is_allowed_and_deeper_is_refused():
    agents = chain_of(3)
    assert [a.depth for a in agents] == [1, 2, 3]

    with pytest.raises(DomainError) as refused:
        agent_create(name="a4", parent_id=agents[-1].pk)

    assert refused.value.code == "agent_too_deep"
    assert Agent.objects.count() == 3


def test_the_depth_limit_is_the_setting(settings):
    settings.SETTLEMENT_AGENT_MAX_DEPTH = 2
    agents = chain_of(2)
    with pytest.raises(DomainError):
        agent_create(name="a3", parent_id=agents[-1].pk)
    settings.SETTLEMENT_AGENT_MAX_DEPTH = 4
    assert agent_create(name="a3", parent_id=agents[-1].pk).depth == 3


def test_clean_refuses_a_deeper_chain_and_a_cycle():
    a1, a2, a3 = chain_of(3)
    with pytest.raises(ValidationError) as refused:
        Agent(name="a4", parent=a3).full_clean()
    assert "parent" in refused.value.message_dict

    a1.parent = a2  # a2 is under a1 already
    with pytest.raises(ValidationError):
        a1.full_clean()


def test_an_agent_with_sub_agents_is_not_moved():
    a1, a2 = chain_of(2)
    other = agent_create(name="other")
    a1.parent = other
    with pytest.raises(ValidationError):
        a1.full_clean()


def test_a_merchants_chain_lists_its_agent_first():
    a1, a2, a3 = chain_of(3)
    assert agent_chain_for_merchant(merchant_id=MerchantFactory(agent=a3).pk) == [a3.pk, a2.pk, a1.pk]
    assert agent_chain_for_merchant(merchant_id=MerchantFactory(agent=a1).pk) == [a1.pk]
    assert agent_chain_for_merchant(merchant_id=MerchantFactory().pk) == []
