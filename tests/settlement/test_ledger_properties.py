"""Issue 11, proof point 3: random interleavings of the money paths keep every invariant of the ledger.

A hypothesis state machine drives the real paths (the epay simulator, the notify view through the Django test
client, the refund path through the simulator, the release beat with the clock moved, an operator's adjustment)
in random order: pay, a duplicate callback, a late payment, an undeliverable order restocked and delivered, a
second payment of a paid order, a refund asked and then settled at the channel, releases, a payout adjustment.
After every step `ledger_check()` finds no problem, every currency sums to zero and no merchant balance is
negative (and owed only while nothing is available), and every payment is booked as its order stands. Each
example runs inside a savepoint rolled back at its end, so examples do not see each other; a fixed walk through
every rule runs too, so a rare rule is never skipped by chance. A failure prints the shrunk sequence of steps.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import order_delivery_retry, orders_expire_due
from cardshop.services.refunds import order_refund_request, refund_sync
from cardshop.services.stock import card_secrets_import
from core.parties import agent_create
from payments import facade as payments
from payments.contracts import RefundStatus
from payments.models import Payment, PaymentStatus, Refund
from settlement import facade
from settlement.checks import ledger_check
from settlement.contracts import AdjustmentLine, SettlementError
from settlement.models import LedgerEntry, LedgerTransaction
from tests.cardshop.helpers import buy, signed_notify
from tests.conftest import make_product
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db

PRICE = 999  # the worked example: 9.99 CNY
MACHINE_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    database=None,  # no .hypothesis directory written in CI
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
REFUNDABLE = (OrderState.PAID, OrderState.DELIVERED, OrderState.UNDELIVERABLE)


@pytest.fixture
def shop(merchant, epay_account, settings):
    """The worked example's merchant (two agent levels, reserve, T+1) and a channel that charges 60 bp."""
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"  # the simulator's own callbacks go nowhere
    top = agent_create(name="Regional")
    merchant.agent = agent_create(name="City", parent_id=top.pk)
    merchant.save(update_fields=["agent"])
    FeePlanFactory(merchant=merchant)
    epay_account.fee_rate_bp = 60
    epay_account.save(update_fields=["fee_rate_bp"])
    return merchant


def ledger_machine(merchant, epay_sim, client) -> type[RuleBasedStateMachine]:
    """The state machine over one merchant's shop, the session's simulator and a test client."""

    class Ledger(RuleBasedStateMachine):
        """The shop's money paths in any order; the ledger checked after every step."""

        def __init__(self):
            super().__init__()
            self.savepoint = transaction.savepoint()
            self.last_callback: dict[str, str] | None = None
            self.buyers = 0

        def teardown(self):
            transaction.savepoint_rollback(self.savepoint)

        # --- helpers --------------------------------------------------------------------------------------------

        def _buyer(self) -> dict[str, str]:
            self.buyers += 1  # one email and one network each: the pending caps never refuse a checkout
            return {"email": f"b{self.buyers}@example.com", "ip": f"10.{self.buyers}.0.1"}

        def _order(self, *, stock: int = 1):
            product = make_product(merchant, secrets_count=stock, price_minor=PRICE)
            return product, buy(product, **self._buyer())

        def _pay(self, out_trade_no: str) -> None:
            """The buyer pays at the simulator; its notify reaches the shop through the notify view."""
            epay_sim.faults.drop_notify = 1  # its own callback would go to a dead port: we deliver it
            epay_sim.pay(out_trade_no)
            params = signed_notify(epay_sim, out_trade_no)
            assert client.get("/notify/epay/", params).content == b"success"
            self.last_callback = params

        def _pick(self, rows: list, pick: int):
            return rows[pick % len(rows)]

        def _orders_in(self, *states: str) -> list[str]:
            return list(Order.objects.filter(state__in=states).order_by("pk").values_list("order_no", flat=True))

        def _refunds_open(self) -> list[str]:
            final = (RefundStatus.SUCCEEDED, RefundStatus.FAILED)
            return list(Refund.objects.exclude(status__in=final).order_by("pk").values_list("refund_no", flat=True))

        # --- rules ----------------------------------------------------------------------------------------------

        @initialize()
        def first_sale(self):
            _, order = self._order()
            self._pay(order_payment_start(order_no=order.order_no, client_ip="10.0.0.1").out_trade_no)

        @rule()
        def pay(self):
            _, order = self._order()
            self._pay(order_payment_start(order_no=order.order_no, client_ip="10.0.0.1").out_trade_no)
            assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED

        @precondition(lambda self: self.last_callback is not None)
        @rule()
        def duplicate_callback(self):
            before = LedgerTransaction.objects.count()
            assert client.get("/notify/epay/", self.last_callback).content == b"success"
            assert LedgerTransaction.objects.count() == before  # a replayed callback books nothing

        @rule(stock_gone=st.booleans())
        def late_payment(self, stock_gone):
            """Paid after the order expired: delivered if stock allows, else undeliverable (held in suspense)."""
            product, order = self._order()
            out_trade_no = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1").out_trade_no
            with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
                orders_expire_due()
                assert Order.objects.get(pk=order.pk).state == OrderState.EXPIRED
                if stock_gone:  # someone else buys (and pays) the last secret first
                    other = buy(product, **self._buyer())
                    self._pay(order_payment_start(order_no=other.order_no, client_ip="10.0.0.2").out_trade_no)
                self._pay(out_trade_no)
            expected = OrderState.UNDELIVERABLE if stock_gone else OrderState.DELIVERED
            assert Order.objects.get(pk=order.pk).state == expected

        @precondition(lambda self: Order.objects.filter(state=OrderState.UNDELIVERABLE).exists())
        @rule(pick=st.integers(min_value=0))
        def restock_and_deliver(self, pick):
            order = Order.objects.get(order_no=self._pick(self._orders_in(OrderState.UNDELIVERABLE), pick))
            card_secrets_import(product_id=order.product_id, text=f"RESTOCK-{uuid.uuid4().hex}")
            assert order_delivery_retry(order_no=order.order_no, actor="operator") is True
            assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED

        @rule(second_first=st.booleans())
        def second_payment(self, second_first):
            """Two live payments of one order are both paid: one is the sale, the other is held in suspense
            and refunded automatically (the refund settles in `refund_settle`)."""
            _, order = self._order()
            first = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1").out_trade_no
            # The first QR lapsed (as in tests/cardshop/test_ledger_wiring.py) and the buyer got a new one...
            Payment.objects.filter(out_trade_no=first).update(status=PaymentStatus.CLOSED, next_query_at=None)
            second = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1").out_trade_no
            assert second != first
            # ...and both were paid, in either order.
            for out_trade_no in (second, first) if second_first else (first, second):
                self._pay(out_trade_no)
            assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED

        @precondition(lambda self: Order.objects.filter(state__in=REFUNDABLE).exists())
        @rule(pick=st.integers(min_value=0), settle=st.booleans())
        def refund(self, pick, settle):
            """An operator refunds a paid order in full; the channel answers now or in a later step."""
            order_no = self._pick(self._orders_in(*REFUNDABLE), pick)
            view = order_refund_request(order_no=order_no, actor="operator", reason="buyer asked")
            assert Order.objects.get(order_no=order_no).state == OrderState.REFUNDING
            if settle:
                assert refund_sync(refund_no=view.refund_no) == RefundStatus.SUCCEEDED
                assert Order.objects.get(order_no=order_no).state == OrderState.REFUNDED

        @precondition(lambda self: bool(self._refunds_open()))
        @rule(pick=st.integers(min_value=0))
        def refund_settle(self, pick):
            refund_no = self._pick(self._refunds_open(), pick)
            assert refund_sync(refund_no=refund_no) == RefundStatus.SUCCEEDED
            assert LedgerTransaction.objects.filter(idempotency_key=f"refund:{refund_no}").exists()

        @rule(days=st.integers(min_value=0, max_value=10))
        def releases(self, days):
            with time_machine.travel(timezone.now() + timedelta(days=days, hours=1), tick=False):
                facade.releases_due(now=timezone.now())

        @rule(amount=st.integers(min_value=1, max_value=3 * PRICE))
        def payout_adjustment(self, amount):
            """An operator books a payout out of available: allowed up to what is available, refused beyond."""
            available = facade.merchant_balances(merchant_id=merchant.pk, currency="CNY").available_minor
            lines = [
                AdjustmentLine("merchant", merchant.pk, "merchant_available", amount),
                AdjustmentLine("merchant", merchant.pk, "payouts_in_transit", -amount),
            ]
            before = LedgerTransaction.objects.count()
            try:
                with transaction.atomic():
                    facade.adjustment_post(currency="CNY", lines=lines, reason="payout", actor="operator")
            except SettlementError as refused:
                assert refused.code == "insufficient_funds" and amount > available
                assert LedgerTransaction.objects.count() == before
            else:
                assert amount <= available

        # --- invariants, after every step -----------------------------------------------------------------------

        @invariant()
        def ledger_check_finds_nothing(self):
            assert ledger_check().problems == ()

        @invariant()
        def every_currency_sums_to_zero(self):
            sums = LedgerEntry.objects.values("currency").annotate(s=Sum("amount_minor"))
            assert {row["currency"]: row["s"] for row in sums if row["s"]} == {}

        @invariant()
        def every_payment_is_booked_as_its_order_stands(self):
            """A delivered order's payment is a sale, an undeliverable one's waits in suspense, a second payment
            is never a sale; a refunded order's payment was refunded."""
            keys = set(LedgerTransaction.objects.values_list("idempotency_key", flat=True))
            paid_by = dict(Order.objects.exclude(paid_by="").values_list("paid_by", "state"))
            for out_trade_no in payments.payments_succeeded_out_trade_nos():  # every payment that took money
                state = paid_by.get(out_trade_no)
                if state == OrderState.DELIVERED:
                    assert f"sale:{out_trade_no}" in keys
                elif state == OrderState.UNDELIVERABLE or state is None:
                    assert f"suspense:{out_trade_no}" in keys and f"sale:{out_trade_no}" not in keys
            refunded = set(
                Refund.objects.filter(status=RefundStatus.SUCCEEDED).values_list("payment__out_trade_no", flat=True)
            )
            assert {o for o, state in paid_by.items() if state == OrderState.REFUNDED} <= refunded

        @invariant()
        def no_merchant_balance_is_negative(self):
            b = facade.merchant_balances(merchant_id=merchant.pk, currency="CNY")
            assert min(b.pending_minor, b.available_minor, b.reserve_minor, b.owed_minor) >= 0
            assert not (b.available_minor and b.owed_minor)  # owed is netted before anything is available

        def invariants_hold(self):
            for check in (
                self.ledger_check_finds_nothing,
                self.every_currency_sums_to_zero,
                self.every_payment_is_booked_as_its_order_stands,
                self.no_merchant_balance_is_negative,
            ):
                check()

    return Ledger


def test_random_interleavings_keep_every_ledger_invariant(shop, epay_sim, client):
    run_state_machine_as_test(ledger_machine(shop, epay_sim, client), settings=MACHINE_SETTINGS)


def test_one_walk_through_every_rule(shop, epay_sim, client):
    """Random runs may skip a rare rule; this fixed walk takes every rule (and both answers of each choice)
    at least once in every run, the invariants checked after each step."""
    machine = ledger_machine(shop, epay_sim, client)()

    seen: dict[str, int] = {}

    def money():
        return facade.merchant_balances(merchant_id=shop.pk, currency="CNY")

    steps = [
        machine.first_sale,
        machine.pay,
        machine.duplicate_callback,
        lambda: machine.late_payment(stock_gone=False),
        lambda: machine.late_payment(stock_gone=True),
        lambda: machine.restock_and_deliver(pick=0),
        lambda: machine.second_payment(second_first=True),
        lambda: machine.second_payment(second_first=False),
        lambda: machine.refund_settle(pick=0),  # the automatic refunds of the second payments
        lambda: machine.refund_settle(pick=0),
        lambda: machine.releases(days=6),  # T+1 pending released, the 7-day reserves still held
        lambda: money().available_minor > 0,
        lambda: machine.payout_adjustment(amount=1),
        lambda: machine.payout_adjustment(amount=money().available_minor - 100),  # paid out all but 1.00
        lambda: machine.refund(pick=0, settle=False),  # the first sale, released: 1.00 left to cover 8.39
        lambda: machine.refund_settle(pick=0),
        lambda: money().owed_minor > 0,
        lambda: machine.refund(pick=0, settle=True),
        lambda: machine.payout_adjustment(amount=3 * PRICE),  # more than is available: refused
        lambda: seen.update(owed=money().owed_minor),
        lambda: machine.releases(days=10),  # the reserves too: what is owed is paid from them first
        lambda: money().owed_minor < seen["owed"],
        machine.duplicate_callback,
    ]
    try:
        for number, step in enumerate(steps):
            assert step() is not False, f"step {number}"
            machine.invariants_hold()
    finally:
        machine.teardown()
