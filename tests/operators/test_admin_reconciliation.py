"""Issue 12: operators see reconciliation runs and their exceptions, and ignore or mark one received, audited."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from core.models import AuditEvent
from settlement.models import ReconException, ReconRun
from tests.operators.auth import operator_login, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def op(db) -> Client:
    return operator_login(Client(), staff_user("op", superuser=True))


def test_runs_and_exceptions_are_listed_and_an_exception_is_ignored_with_an_audit_row(op):
    run = ReconRun.objects.create(channel_account_id=7, day="2026-11-20", state="running", lines_seen=4000)
    gap = ReconException.objects.create(
        run=run, kind="amount", line_kind="payment", our_ref="P1", provider_ref="T1",
        expected_minor=999, actual_minor=1000, currency="CNY",
    )  # fmt: skip

    runs = op.get(reverse("admin:settlement_reconrun_changelist")).content.decode()
    assert "<progress" in runs and "4000" in runs
    listing = op.get(reverse("admin:settlement_reconexception_changelist")).content.decode()
    assert "P1" in listing and "9.99 CNY / 10.00 CNY" in listing

    resp = op.post(
        reverse("admin:settlement_reconexception_changelist"),
        {"action": "ignore", "_selected_action": [gap.pk]},
        follow=True,
    )
    assert resp.status_code == 200
    gap.refresh_from_db()
    assert gap.status == "ignored" and gap.detail["by"] == "op"
    assert AuditEvent.objects.get(action="recon.ignored").target == f"reconexception:{gap.pk}"


def test_starting_a_run_needs_the_finance_power_and_a_day_that_is_over(op, viewer):
    start = reverse("admin:settlement_reconrun_start")
    assert viewer.get(start).status_code == 403
    page = op.post(start, {"channel_account": "", "day": "2999-01-01"})
    assert page.status_code == 200 and "once the day is over" in page.content.decode()
    assert not ReconRun.objects.exists()
