"""The settlement back office: fee plans typed in major units, accounts with balances (no query per row), the
append-only ledger read-only, the order's ledger lines, party balances, statements with CSV, agents, and the last
invariant check; every page renders in both languages without minor units."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.models import Agent
from core.parties import agent_create
from payments.models import ChannelAccount
from settlement import facade as settlement
from settlement.checks import LedgerCheckRun, ledger_check_run
from settlement.models import FeePlan, LedgerAccount, LedgerTransaction
from tests.factories.settlement import FeePlanFactory
from tests.operators.auth import operator_login, staff_user
from tests.operators.test_admin_pages import minor_shown

pytestmark = pytest.mark.django_db


@pytest.fixture
def op(db) -> Client:
    return operator_login(Client(), staff_user("op", superuser=True))


@pytest.fixture
def chain(merchant, epay_account):
    """The merchant of the shop's product under a two-level agent chain, on the worked-example plan (T+0, so
    the sale lands in the kept "available" balance); the epay account keeps 60 bp (0.06 of 9.90)."""
    ChannelAccount.objects.filter(pk=epay_account.pk).update(fee_rate_bp=60)
    top = agent_create(name="Regional agent")
    agent = agent_create(name="City agent", parent_id=top.pk)
    merchant.agent = agent
    merchant.save(update_fields=["agent"])
    FeePlanFactory(merchant=merchant, cycle="T+0")
    return merchant, agent, top


@pytest.fixture
def booked(chain, paid_order):
    """The paid 9.90 CNY order, booked in the ledger by the paid path itself."""
    merchant, agent, top = chain
    assert settlement.postings_for_reference(reference=paid_order.order_no)
    ledger_check_run()
    return paid_order, merchant, agent, top


def settlement_urls(merchant, agent) -> dict[str, str]:
    txn = LedgerTransaction.objects.order_by("pk").first()
    account = LedgerAccount.objects.order_by("pk").first()
    today = timezone.localdate().isoformat()
    statement = reverse("admin:settlement_statement")
    return {
        "fee plans": reverse("admin:settlement_feeplan_changelist"),
        "fee plan": reverse("admin:settlement_feeplan_change", args=[FeePlan.objects.get().pk]),
        "fee plan add": reverse("admin:settlement_feeplan_add"),
        "accounts": reverse("admin:settlement_ledgeraccount_changelist"),
        "account": reverse("admin:settlement_ledgeraccount_change", args=[account.pk]),
        "transactions": reverse("admin:settlement_ledgertransaction_changelist"),
        "transaction": reverse("admin:settlement_ledgertransaction_change", args=[txn.pk]),
        "check runs": reverse("admin:settlement_ledgercheckrun_changelist"),
        "check run": reverse("admin:settlement_ledgercheckrun_change", args=[LedgerCheckRun.objects.get().pk]),
        "balances": reverse("admin:settlement_party_balances"),
        "statement form": statement,
        "merchant statement": f"{statement}?party={merchant.pk}&currency=CNY&date_from={today}&date_to={today}",
        "agent statement": f"{statement}?party_kind=agent&party={agent.pk}&currency=CNY"
        f"&date_from={today}&date_to={today}",
        "agents": reverse("admin:core_agent_changelist"),
        "agent": reverse("admin:core_agent_change", args=[agent.pk]),
        "merchant": reverse("admin:core_merchant_change", args=[merchant.pk]),
    }


def test_every_settlement_page_renders_in_both_languages_without_minor_units(op, booked):
    order, merchant, agent, _top = booked
    for lang in ("en", "zh-hans"):
        for name, url in settlement_urls(merchant, agent).items():
            resp = op.get(url, HTTP_ACCEPT_LANGUAGE=lang)
            assert resp.status_code == 200, (lang, name, url, resp.status_code)
            page = resp.content.decode()
            for minor in (990, 984, 822, 838, 99):  # gross, clearing, merchant net... in minor units
                assert not minor_shown(page, minor), f"{name} shows {minor} in minor units"


def test_the_order_page_shows_its_ledger_lines(op, booked):
    order, merchant, agent, top = booked
    page = op.get(reverse("admin:cardshop_order_change", args=[order.pk])).content.decode()
    ledger = re.search(r'<table class="order-ledger">(.*?)</table>', page, re.S).group(1)
    rows = [re.findall(r"<t[dh]>(.*?)</t[dh]>", r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", ledger, re.S)]
    lines = {(r[2], r[3]): r[4] for r in rows[1:]}
    txn = LedgerTransaction.objects.get(reference=order.order_no)
    assert rows[1][0] == txn.idempotency_key and rows[1][1] == "sale"
    account = ChannelAccount.objects.get()
    # 9.90 CNY at 500 bp + 0.10, reserve 1000 bp, agents 200 / 100 bp, channel fee 0.06.
    assert lines == {
        (f"channel account {account.name} ({account.code})", "channel clearing"): "9.84 CNY",
        (f"channel account {account.name} ({account.code})", "channel fee expense"): "0.06 CNY",
        (f"merchant {merchant.name}", "merchant available"): "-8.31 CNY",
        (f"merchant {merchant.name}", "merchant reserve"): "-0.99 CNY",
        ("agent City agent", "agent commission payable"): "-0.20 CNY",
        ("agent Regional agent", "agent commission payable"): "-0.10 CNY",
        ("platform", "platform fee revenue"): "-0.30 CNY",
    }
    assert "Ledger" in page


def test_accounts_list_shows_balances_in_one_query_per_page(op, booked):
    _order, merchant, _agent, _top = booked
    url = reverse("admin:settlement_ledgeraccount_changelist")
    op.get(url)  # warm the session and the content types
    with CaptureQueriesContext(connection) as few:
        page = op.get(url).content.decode()
    assert "8.31 CNY" in page and "0.99 CNY" in page and "0.30 CNY" in page  # normal side: owed reads positive
    assert "Last ledger check" in page
    # More accounts, same number of queries.
    other = agent_create(name="Other agent")
    for kind in ("merchant_pending", "merchant_reserve"):
        LedgerAccount.objects.create(party_kind="merchant", party_id=merchant.pk + 1000, kind=kind, currency="CNY")
    LedgerAccount.objects.create(party_kind="agent", party_id=other.pk, kind="agent_commission_payable", currency="CNY")
    with CaptureQueriesContext(connection) as more:
        op.get(url)
    assert len(more) == len(few)


def test_party_balances_show_pending_available_reserve_and_owed(op, booked):
    _order, merchant, agent, top = booked
    page = op.get(reverse("admin:settlement_party_balances")).content.decode()
    row = re.search(rf'<tr id="party-merchant-{merchant.pk}-CNY"[^>]*>(.*?)</tr>', page, re.S).group(1)
    cells = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells == [f"merchant {merchant.name}", "CNY", "—", "8.31 CNY", "0.99 CNY", "—", "—", "—"]
    agent_row = re.search(rf'<tr id="party-agent-{agent.pk}-CNY"[^>]*>(.*?)</tr>', page, re.S).group(1)
    assert "0.20 CNY" in agent_row
    # A refund after release: available below zero is shown as owed, not as a negative available.
    LedgerAccount.objects.filter(party_kind="merchant", kind="merchant_available").update(
        no_overdraft=False, balance_minor=-150
    )
    page = op.get(reverse("admin:settlement_party_balances")).content.decode()
    row = re.search(rf'<tr id="party-merchant-{merchant.pk}-CNY"[^>]*>(.*?)</tr>', page, re.S).group(1)
    cells = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    assert cells[3:6] == ["0.00 CNY", "0.99 CNY", "1.50 CNY"]


def test_merchant_statement_lists_the_period_and_exports_csv(op, booked):
    order, merchant, agent, _top = booked
    today = timezone.localdate().isoformat()
    base = f"{reverse('admin:settlement_statement')}?party={merchant.pk}&currency=CNY&date_from={today}&date_to={today}"
    page = op.get(base).content.decode()
    totals = re.search(r'<table id="statement-totals".*?</table>', page, re.S).group(0)
    assert "8.31 CNY" in totals and "0.99 CNY" in totals
    resp = op.get(base + "&format=csv")
    assert resp["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    key = LedgerTransaction.objects.get(reference=order.order_no).idempotency_key
    assert sorted((r[1], r[3], r[4], r[5], r[6]) for r in rows[1:]) == [
        (key, order.order_no, "merchant_available", "8.31", "CNY"),
        (key, order.order_no, "merchant_reserve", "0.99", "CNY"),
    ]
    # A period before the sale: no lines, and the sale is the next period's opening balance.
    yesterday = (timezone.localdate() - timezone.timedelta(days=1)).isoformat()
    earlier = base.replace(f"date_from={today}&date_to={today}", f"date_from={yesterday}&date_to={yesterday}")
    assert "No entries in this period." in op.get(earlier).content.decode()


def test_agent_commission_statement(op, booked):
    _order, _merchant, agent, top = booked
    today = timezone.localdate().isoformat()
    url = (
        f"{reverse('admin:settlement_statement')}?party_kind=agent&party={top.pk}&currency=CNY"
        f"&date_from={today}&date_to={today}&format=csv"
    )
    rows = list(csv.reader(io.StringIO(op.get(url).content.decode("utf-8-sig"))))
    assert [(r[4], r[5]) for r in rows[1:]] == [("agent_commission_payable", "0.10")]


def test_a_statement_with_dates_reversed_is_a_form_error(op, booked):
    _order, merchant, _agent, _top = booked
    url = f"{reverse('admin:settlement_statement')}?party={merchant.pk}&currency=CNY&date_from=2026-02-02&date_to=2026-02-01"
    page = op.get(url).content.decode()
    assert "The start date is after the end date." in page and "statement-lines" not in page


def test_a_fee_plan_is_typed_in_major_units_and_replaces_the_active_one(op, chain):
    merchant, _agent, _top = chain
    old = FeePlan.objects.get()
    data = {
        "merchant": merchant.pk,
        "currency": "CNY",
        "platform_rate_bp": 600,
        "platform_fixed_minor": "0.25",
        "cycle": "T+1",
        "n_days": 0,
        "reserve_bp": 500,
        "reserve_days": 14,
        "agent_commission_bp": "[300, 100]",
        "refund_fee_borne_by": "merchant",
    }
    resp = op.post(reverse("admin:settlement_feeplan_add"), data)
    assert resp.status_code == 302, re.findall(r"errorlist.{0,300}", resp.content.decode())
    new = FeePlan.objects.get(is_active=True)
    assert (new.platform_fixed_minor, new.platform_rate_bp, new.agent_commission_bp) == (25, 600, [300, 100])
    assert new.refund_fee_borne_by == "merchant"  # who pays a fee the channel keeps on a refund
    old.refresh_from_db()
    assert old.is_active is False
    listing = op.get(reverse("admin:settlement_feeplan_changelist")).content.decode()
    assert "0.25 CNY" in listing and "0.10 CNY" in listing


def test_a_fee_plan_whose_commissions_exceed_the_fee_is_refused(op, chain):
    merchant, _agent, _top = chain
    data = {
        "merchant": merchant.pk,
        "currency": "CNY",
        "platform_rate_bp": 200,
        "platform_fixed_minor": "0.10",
        "cycle": "T+1",
        "n_days": 0,
        "reserve_bp": 0,
        "reserve_days": 0,
        "agent_commission_bp": "[200, 100]",
        "refund_fee_borne_by": "platform",
    }
    resp = op.post(reverse("admin:settlement_feeplan_add"), data)
    assert resp.status_code == 200
    assert "could exceed the platform fee" in resp.content.decode()
    assert FeePlan.objects.count() == 1 and FeePlan.objects.get().platform_rate_bp == 500


def test_the_ledger_is_read_only_in_the_admin(op, booked):
    txn = LedgerTransaction.objects.get()
    before = list(txn.entries.values_list("pk", "amount_minor"))
    assert op.get(reverse("admin:settlement_ledgertransaction_add")).status_code == 403
    page = op.get(reverse("admin:settlement_ledgertransaction_change", args=[txn.pk])).content.decode()
    assert 'name="_save"' not in page and "-8.31 CNY" in page and "9.84 CNY" in page
    resp = op.post(reverse("admin:settlement_ledgertransaction_change", args=[txn.pk]), {"memo": "edited"})
    assert resp.status_code == 403
    assert (
        op.post(reverse("admin:settlement_ledgertransaction_delete", args=[txn.pk]), {"post": "yes"}).status_code == 403
    )
    assert list(txn.entries.values_list("pk", "amount_minor")) == before
    assert LedgerTransaction.objects.get().memo == ""


def test_agents_show_parent_and_depth_and_a_merchant_is_placed_under_an_agent(op, chain):
    merchant, agent, top = chain
    page = op.get(reverse("admin:core_agent_changelist")).content.decode()
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*City agent(?:(?!</tr>).)*</tr>", page, re.S).group(0)
    assert "Regional agent" in row and re.search(r">\s*2\s*<", row)
    resp = op.post(
        reverse("admin:core_merchant_change", args=[merchant.pk]),
        {"name": merchant.name, "slug": merchant.slug, "email": "", "agent_choice": top.pk, "is_active": "on"},
    )
    assert resp.status_code == 302, re.findall(r"errorlist.{0,300}", resp.content.decode())
    merchant.refresh_from_db()
    assert merchant.agent_id == top.pk


def test_an_agent_too_deep_is_refused(op, chain, settings):
    settings.SETTLEMENT_AGENT_MAX_DEPTH = 2
    _merchant, agent, _top = chain
    resp = op.post(reverse("admin:core_agent_add"), {"name": "Street agent", "parent": agent.pk, "is_active": "on"})
    assert resp.status_code == 200
    assert "at most 2 levels deep" in resp.content.decode()
    assert not Agent.objects.filter(name="Street agent").exists()


def test_the_last_check_run_is_shown_with_its_problems(op, booked):
    order, _merchant, _agent, _top = booked
    LedgerAccount.objects.filter(kind="merchant_available").update(balance_minor=900)
    run = ledger_check_run()
    assert not run.ok
    accounts = op.get(reverse("admin:settlement_ledgeraccount_changelist")).content.decode()
    assert "1 problem(s)" in accounts
    page = op.get(reverse("admin:settlement_ledgercheckrun_change", args=[run.pk])).content.decode()
    assert "kept balance differs from its entries" in page and "9.00 CNY" in page and "8.31 CNY" in page


def test_accounts_are_searched_by_party_id(op, booked):
    _order, merchant, _agent, _top = booked
    url = reverse("admin:settlement_ledgeraccount_changelist")
    found = op.get(url, {"q": str(merchant.pk)}).content.decode()
    assert "8.31 CNY" in found and "0.99 CNY" in found and "0.30 CNY" not in found
    assert op.get(url, {"q": "not a number"}).status_code == 200


def test_a_statement_opens_with_what_came_before_the_period(op, booked):
    _order, merchant, _agent, _top = booked
    tomorrow = (timezone.localdate() + timezone.timedelta(days=1)).isoformat()
    url = (
        f"{reverse('admin:settlement_statement')}?party={merchant.pk}&currency=CNY"
        f"&date_from={tomorrow}&date_to={tomorrow}"
    )
    page = op.get(url).content.decode()
    totals = re.search(r'<table id="statement-totals".*?</table>', page, re.S).group(0)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", totals, re.S)[1:]]
    assert rows == [
        ["merchant available", "8.31 CNY", "0.00 CNY", "8.31 CNY"],
        ["merchant owed", "0.00 CNY", "0.00 CNY", "0.00 CNY"],  # a T+0 sale nets what is owed first: none here
        ["merchant reserve", "0.99 CNY", "0.00 CNY", "0.99 CNY"],
    ]
    assert "No entries in this period." in page
