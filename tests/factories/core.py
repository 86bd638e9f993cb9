import factory

from core.models import Agent, Merchant


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Merchant {n}")
    slug = factory.Sequence(lambda n: f"merchant-{n}")


class AgentFactory(factory.django.DjangoModelFactory):
    """A top agent; pass `parent=` (and depth follows) through core.parties.agent_create for a sub-agent."""

    class Meta:
        model = Agent

    name = factory.Sequence(lambda n: f"Agent {n}")
