"""Issue 12, proof 6: an operator starts a reconciliation run in the admin, in a real browser, and sees the run
with its progress and its exceptions: here the epay panel's statement of yesterday lists a trade whose callback
was lost (recovered at once) and one we never heard of (left for the operator)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from tests.cardshop.helpers import buy

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "op-pass-123456"


def test_an_operator_reconciles_yesterday_and_sees_the_exceptions(
    browser, live_server, product, epay_account, epay_sim, artifacts_dir, settings
):
    from django.contrib.auth import get_user_model

    settings.CARDSHOP_ADMIN_OTP_REQUIRED = False
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    get_user_model().objects.create_superuser("op", "op@example.com", PASSWORD)
    yesterday = (timezone.localtime() - timedelta(days=1)).replace(hour=12, minute=0)
    order = buy(product)
    epay_sim.clock = lambda: yesterday
    try:
        payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
        epay_sim.faults.drop_notify = 1  # the buyer paid yesterday; the callback never came
        epay_sim.pay(payment.out_trade_no)
    finally:
        epay_sim.clock = None
    # And a trade on the statement that we never made.
    epay_sim.statement_add_unknown(
        "P-NEVER-OURS", "2026120100000000099", "9.90", endtime=yesterday.strftime("%Y-%m-%d 13:00:00")
    )

    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "op")
        page.fill("#id_password", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#dashboard")
        page.goto(f"{live_server.url}/admin/settlement/reconrun/")
        page.get_by_role("link", name="Reconcile a day").click()
        page.locator("#recon-start select").select_option(str(epay_account.pk))
        page.fill("#recon-start input[name=day]", yesterday.date().isoformat())
        page.locator("#recon-start button[type=submit]").click()
        page.wait_for_url("**/admin/settlement/reconrun/**")
        page.screenshot(path=str(artifacts_dir / "recon-runs.png"), full_page=True)
        runs = page.locator("#result_list").inner_text()
        assert "done" in runs.lower() and "lines" in runs  # the run, finished, with its progress column
        page.goto(f"{live_server.url}/admin/settlement/reconexception/")
        page.screenshot(path=str(artifacts_dir / "recon-exceptions.png"), full_page=True)
        listing = page.locator("#result_list").inner_text()
        assert payment.out_trade_no in listing  # found missing, then recovered
        assert "P-NEVER-OURS" in listing  # left open for the operator
        assert "resolved" in listing.lower() and "open" in listing.lower()
        assert errors == []
    finally:
        context.close()
    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
