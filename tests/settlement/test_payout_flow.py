"""Issue 12, proof 1 through settlement: a payout is sent through the bank gateway's real SOAP adapter to its
simulator, and whatever happens on the way (timeout, 5xx, refusal, a worker killed between the send and the
answer) the bank executes exactly one transfer and the ledger ends exact."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from payments.models import ChannelAccount
from payments.simulators.bankgw import BankGatewaySimulator
from settlement import payouts
from settlement.checks import ledger_check
from settlement.models import Payout, PayoutDestination
from settlement.payouts import payout_create, payout_submit, payouts_resolve_due
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory
from tests.settlement.test_payouts import balance, sold

pytestmark = pytest.mark.django_db

PAYEE = "CN12BANK0000123456789"


@pytest.fixture(scope="module")
def sim() -> Iterator[BankGatewaySimulator]:
    s = BankGatewaySimulator().start()
    yield s
    s.stop()


@pytest.fixture
def bank(sim):
    sim.faults.reset()
    sim.faults.hang_seconds = 3.0
    sim.scripted_transfer.clear()
    sim.closed_accounts.clear()
    at_bank = sim.new_merchant(balance_minor=100_000)
    acct = sim.account_for(at_bank)
    account = ChannelAccount.objects.create(
        code="bankgw",
        name="bank (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant, cycle="T+0", agent_commission_bp=[], reserve_bp=0, reserve_days=0)
    destination = PayoutDestination.objects.create(
        party_kind="merchant", party_id=merchant.pk, currency="CNY", channel_account=account,
        payee=PAYEE, payee_name="Zhang San",
    )  # fmt: skip
    sold(merchant, account)  # 939 available
    yield sim, at_bank, merchant, account, destination
    sim.faults.reset()


def later(minutes: int = 90):
    return timezone.now() + timedelta(minutes=minutes)


def test_a_payout_is_paid_once_at_the_bank_and_leaves_the_ledger_exact(bank):
    sim, at_bank, merchant, account, destination = bank
    payout = payout_create(destination_id=destination.pk)

    assert payout_submit(payout_no=payout.payout_no) == "paid"

    executed = sim.executed_transfers(at_bank.merchant_id)
    assert list(executed) == [payout.payout_no] and executed[payout.payout_no]["amount_minor"] == 939
    assert sim.balance(at_bank.merchant_id) == 100_000 - 939
    assert balance("merchant", merchant.pk, "merchant_available") == 0
    assert balance("merchant", merchant.pk, "payouts_in_transit") == 0
    assert balance("channel_account", account.pk, "channel_clearing") == 993 - 939
    assert payout_submit(payout_no=payout.payout_no) == "paid"  # the task again: nothing more
    assert len(sim.executed_transfers(at_bank.merchant_id)) == 1 and ledger_check().ok


def test_a_timeout_is_unknown_then_the_janitor_finds_it_paid(bank, settings):
    sim, at_bank, merchant, _, destination = bank
    payout = payout_create(destination_id=destination.pk)
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (1.0, 0.5)
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.5  # the bank executes, the answer comes too late

    assert payout_submit(payout_no=payout.payout_no) == "unknown"
    assert len(sim.executed_transfers(at_bank.merchant_id)) == 1
    assert balance("merchant", merchant.pk, "payouts_in_transit") == 939  # held: nothing is known yet

    assert payouts_resolve_due(now=later()) == 1
    assert Payout.objects.get(pk=payout.pk).state == "paid"
    assert len(sim.executed_transfers(at_bank.merchant_id)) == 1  # asked about, never sent anew
    assert ledger_check().ok


def test_a_5xx_before_the_bank_acted_is_sent_again_under_the_same_number(bank):
    sim, at_bank, _, _, destination = bank
    payout = payout_create(destination_id=destination.pk)
    sim.faults.fail_5xx = 1

    assert payout_submit(payout_no=payout.payout_no) == "unknown"
    assert sim.executed_transfers(at_bank.merchant_id) == {}

    payouts_resolve_due(now=later())  # the bank does not know it: the same number goes again

    assert Payout.objects.get(pk=payout.pk).state == "paid"
    assert list(sim.executed_transfers(at_bank.merchant_id)) == [payout.payout_no]


def test_a_refused_payout_fails_and_its_hold_goes_back(bank):
    sim, at_bank, merchant, _, destination = bank
    sim.closed_accounts.add(PAYEE)
    payout = payout_create(destination_id=destination.pk)

    assert payout_submit(payout_no=payout.payout_no) == "failed"

    assert Payout.objects.get(pk=payout.pk).failure_reason == "ACCOUNT_CLOSED"
    assert sim.executed_transfers(at_bank.merchant_id) == {}
    assert balance("merchant", merchant.pk, "merchant_available") == 939
    assert balance("merchant", merchant.pk, "payouts_in_transit") == 0
    assert ledger_check().ok


def test_a_worker_killed_between_the_send_and_the_answer_is_resolved_by_the_janitor(bank, monkeypatch):
    sim, at_bank, _, _, destination = bank
    payout = payout_create(destination_id=destination.pk)
    real_apply = payouts.payout_outcome_apply

    def killed(**kwargs):
        raise SystemExit("worker killed after the bank answered")

    monkeypatch.setattr(payouts, "payout_outcome_apply", killed)
    with pytest.raises(SystemExit):
        payout_submit(payout_no=payout.payout_no)
    monkeypatch.setattr(payouts, "payout_outcome_apply", real_apply)
    left = Payout.objects.get(pk=payout.pk)
    assert (left.state, left.submit_attempts) == ("created", 1)  # the attempt was counted before the send
    assert len(sim.executed_transfers(at_bank.merchant_id)) == 1

    assert payouts_resolve_due(now=timezone.now()) == 0  # not due yet: the worker may still be answering
    assert payouts_resolve_due(now=later()) == 1

    assert Payout.objects.get(pk=payout.pk).state == "paid"
    assert len(sim.executed_transfers(at_bank.merchant_id)) == 1  # queried first: exactly one transfer
    assert ledger_check().ok


def test_a_payout_whose_dispatch_was_lost_is_sent_by_the_janitor(bank):
    sim, at_bank, _, _, destination = bank
    payout = payout_create(destination_id=destination.pk)  # its after-commit task never ran (broker down)

    assert payouts_resolve_due(now=later()) == 1

    assert Payout.objects.get(pk=payout.pk).state == "paid"
    assert list(sim.executed_transfers(at_bank.merchant_id)) == [payout.payout_no]


def test_the_payout_tasks_are_registered_in_every_process():
    from celery import current_app

    assert {"settlement.payout_submit", "settlement.payouts_create_due", "settlement.payouts_resolve_due"} <= set(
        current_app.tasks
    )
