"""Issue 12: operators see payouts with their postings, retry a failed one under a new number, freeze a party,
and set when payouts run; every change is audited."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from core.models import AuditEvent
from core.parties import agent_create
from payments.contracts import PayoutOutcome, PayoutResult
from payments.models import ChannelAccount
from settlement.models import Payout, PayoutDestination, PayoutSchedule
from settlement.payouts import payout_create, payout_outcome_apply
from tests.operators.auth import operator_login, staff_user
from tests.settlement.test_agent_payouts import agency  # noqa: F401  (the fixture)
from tests.settlement.test_payouts import shop  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def op(db) -> Client:
    return operator_login(Client(), staff_user("op", superuser=True))


def test_a_failed_payout_is_shown_with_its_postings_and_retried_under_a_new_number(op, shop):  # noqa: F811
    _, _, destination = shop
    first = payout_create(destination_id=destination.pk)
    refused = PayoutOutcome(result=PayoutResult.FAILED, provider_status="PAYEE_NOT_EXIST", failure_reason="no payee")
    payout_outcome_apply(payout_no=first.payout_no, outcome=refused)

    listing = op.get(reverse("admin:settlement_payout_changelist")).content.decode()
    assert first.payout_no in listing and "9.39" in listing
    page = op.get(reverse("admin:settlement_payout_change", args=[first.pk])).content.decode()
    assert "no payee" in page and "PAYEE_NOT_EXIST" in page
    assert page.count("<li>") >= 2  # held, then given back

    resp = op.post(
        reverse("admin:settlement_payout_changelist"),
        {"action": "retry", "_selected_action": [first.pk]},
        follow=True,
    )
    assert resp.status_code == 200
    again = Payout.objects.get(retry_of=first)
    assert again.state == "created" and again.amount_minor == 939
    assert AuditEvent.objects.filter(action="payout.retry").count() == 1


def test_a_frozen_party_gets_no_payout_and_the_freeze_is_audited(op, shop):  # noqa: F811
    _, _, destination = shop
    resp = op.post(
        reverse("admin:settlement_payoutdestination_changelist"),
        {"action": "freeze", "_selected_action": [destination.pk]},
        follow=True,
    )
    assert resp.status_code == 200
    assert PayoutDestination.objects.get(pk=destination.pk).frozen
    assert payout_create(destination_id=destination.pk) is None
    assert AuditEvent.objects.filter(action="payout_destination.freeze").count() == 1


def test_the_schedule_takes_the_minimum_in_major_units(op):
    resp = op.post(
        reverse("admin:settlement_payoutschedule_add"),
        {"currency": "CNY", "enabled": "on", "minimum_minor": "50.00", "window_start": "09:00", "window_end": "21:30"},
    )
    assert resp.status_code == 302
    schedule = PayoutSchedule.objects.get()
    assert (schedule.minimum_minor, str(schedule.window_end)) == (5000, "21:30:00")


def test_only_accounts_that_can_pay_out_are_offered_as_destinations(op, shop):  # noqa: F811
    _, epay, _ = shop  # epay has no payout protocol
    page = op.get(reverse("admin:settlement_payoutdestination_add")).content.decode()
    assert f'value="{epay.pk}"' not in page


def test_an_agents_payout_is_listed_by_party_kind_with_what_it_was_held_from(op, agency, shop):  # noqa: F811
    agent, _, _, destination, _ = agency
    payout = payout_create(destination_id=destination.pk)
    merchants = payout_create(destination_id=shop[2].pk)
    refused = PayoutOutcome(result=PayoutResult.FAILED, provider_status="PAYEE_NOT_EXIST", failure_reason="no payee")
    payout_outcome_apply(payout_no=payout.payout_no, outcome=refused)

    listing = op.get(reverse("admin:settlement_payout_changelist") + "?party_kind__exact=agent").content.decode()
    assert payout.payout_no in listing and agent.name in listing and "0.60" in listing
    assert merchants.payout_no not in listing
    page = op.get(reverse("admin:settlement_payout_change", args=[payout.pk])).content.decode()
    assert "held from the agent&#x27;s commission payable" in page
    assert "failed: the hold went back to the agent&#x27;s commission payable" in page
    destinations = op.get(
        reverse("admin:settlement_payoutdestination_changelist") + "?party_kind__exact=agent"
    ).content.decode()
    assert agent.name in destinations and "agent@example.com" in destinations and "shop@example.com" not in destinations


def test_an_operator_adds_an_agents_destination(op):
    agent = agent_create(name="Regional")
    bank = ChannelAccount.objects.create(
        code="bankgw", name="bank", merchant_no="B1", base_url="http://127.0.0.1:9", currency="CNY", credentials="{}"
    )
    resp = op.post(
        reverse("admin:settlement_payoutdestination_add"),
        {
            "party_kind": "agent",
            "party_id": agent.pk,
            "currency": "CNY",
            "channel_account": bank.pk,
            "payee": "CN12BANK0000123456789",
            "payee_name": "李四",
            "frozen_reason": "",
        },
    )

    assert resp.status_code == 302
    destination = PayoutDestination.objects.get()
    assert (destination.party_kind, destination.party_id, destination.channel_account_id) == (
        "agent",
        agent.pk,
        bank.pk,
    )
    assert AuditEvent.objects.filter(action="payout_destination.add").count() == 1
