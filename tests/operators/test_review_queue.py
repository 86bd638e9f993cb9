"""Issue 13: the risk review queue in the admin ("Orders in review"). It lists only the orders risk held for review,
the longest wait first, with what their latest assessment found; a reviewer approves (the buyer may pay) or rejects
with a reason (the codes go back on sale) from there, each audited; nobody without the review power sees or acts.
The order's own page shows every assessment of it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from core.models import AuditEvent
from risk import facade as risk
from risk.models import Assessment
from tests.factories.cardshop import OrderFactory, ProductFactory
from tests.factories.risk import AssessmentFactory
from tests.operators.auth import operator_login, staff_user
from tests.risk.test_decision_paths import checkout, publish

pytestmark = pytest.mark.django_db

QUEUE = "/admin/cardshop/orderinreview/"
ORDER_AUDIT = {"action__startswith": "order."}  # publishing the test's rule set is audited too
REVIEWER = ("cardshop.view_order", "cardshop.review_order")


@pytest.fixture
def reviewer() -> Client:
    return operator_login(Client(), staff_user("reviewer", *REVIEWER))


def _rows(page: str) -> list[str]:
    """The order numbers of the queue's rows, top to bottom."""
    body = re.search(r'<table[^>]*id="result_list".*?</table>', page, re.S).group(0)
    return re.findall(r'href="/admin/cardshop/order/\d+/change/">(\w+)</a>', body)


@pytest.fixture
def queue():
    """Three orders in review placed 5, 3 and 1 hours ago (made out of that order), and orders in other states."""
    now = timezone.now()
    product = ProductFactory(name="Gift CNY", price_minor=990)
    made = {}
    made_in = [
        ("middle", 3, "mia@example.com"),
        ("newest", 1, "nora@example.com"),
        ("oldest", 5, "olga.lee@example.com"),
    ]
    for key, hours, email in made_in:
        made[key] = OrderFactory(
            product=product,
            state=OrderState.REVIEW,
            quantity=2,
            email=email,
            created_at=now - timedelta(hours=hours),
            expires_at=now - timedelta(hours=hours) + timedelta(days=1),
        )
    for state in (OrderState.PENDING, OrderState.CANCELLED, OrderState.DELIVERED):
        made[state] = OrderFactory(product=product, state=state, created_at=now - timedelta(hours=9))
    # The oldest was assessed twice: the queue shows the later assessment's reasons and score.
    AssessmentFactory(
        order_no=made["oldest"].order_no,
        decision="review",
        reasons=["first_look"],
        score=0.2,
        created_at=now - timedelta(hours=5, minutes=1),
    )
    AssessmentFactory(
        order_no=made["oldest"].order_no,
        decision="review",
        reasons=["big_order", "new_buyer_bulk"],
        score=0.713,
        created_at=now - timedelta(hours=5),
    )
    AssessmentFactory(order_no=made["middle"].order_no, decision="review", reasons=["counters_down"], degraded=True)
    return made  # "newest" has no assessment stored (yet)


def test_the_queue_lists_only_orders_in_review_oldest_first_with_reasons_and_score(reviewer, queue):
    page = reviewer.get(QUEUE).content.decode()
    assert _rows(page) == [queue["oldest"].order_no, queue["middle"].order_no, queue["newest"].order_no]
    for state in (OrderState.PENDING, OrderState.CANCELLED, OrderState.DELIVERED):
        assert queue[state].order_no not in page
    oldest = re.search(rf"{queue['oldest'].order_no}</a>.*?</tr>", page, re.S).group(0)
    assert "Gift CNY × 2" in oldest and "19.80 CNY" in oldest
    assert "ol***@example.com" in oldest and "olga.lee@example.com" not in page  # masked as on the order list
    assert "<code>big_order</code> <code>new_buyer_bulk</code>" in oldest and "score 0.71" in oldest
    assert "first_look" not in page  # the earlier assessment is not the one shown
    assert "for 5\xa0hours" in oldest  # Django's timesince keeps the number with its unit
    expiry = timezone.localtime(queue["oldest"].expires_at).strftime("%m-%d %H:%M")
    assert expiry in oldest
    middle = re.search(rf"{queue['middle'].order_no}</a>.*?</tr>", page, re.S).group(0)
    assert "<code>counters_down</code>" in middle and "score —" in middle  # the fallback decided: no score
    newest = re.search(rf"{queue['newest'].order_no}</a>.*?</tr>", page, re.S).group(0)
    assert "score" not in newest  # no assessment stored: "—"
    assert f'href="{reverse("admin:cardshop_order_change", args=[queue["oldest"].pk])}"' in page
    assert 'value="review_approve"' in page and 'value="review_reject"' in page


def test_the_latest_assessments_of_a_page_are_one_query(queue, django_assert_num_queries):
    nos = [o.order_no for o in queue.values()]
    with django_assert_num_queries(1):
        latest = risk.assessments_latest_for_orders(order_nos=nos)
    assert set(latest) == {queue["oldest"].order_no, queue["middle"].order_no}
    view = latest[queue["oldest"].order_no]
    assert (view.reasons, view.score_label, view.features) == (("big_order", "new_buyer_bulk"), "0.71", ())


def test_an_empty_queue_says_so(reviewer):
    OrderFactory(state=OrderState.PENDING)
    page = reviewer.get(QUEUE).content.decode()
    assert 'id="review-queue-empty"' in page and "No order waits for review." in page
    assert 'id="result_list"' not in page


@pytest.fixture
def held(merchant, epay_account, client):
    """A real checkout of 3 codes held for review by a rule (as in tests/risk/test_decision_paths)."""
    product = ProductFactory(merchant=merchant, price_minor=990, secrets_count=5)
    publish(("big", "amount_minor >= 2000", "review", "big_order"))
    checkout(client, product, quantity=3)
    order = Order.objects.get()
    assert order.state == OrderState.REVIEW
    return order


def _reserved(order) -> int:
    return CardSecret.objects.filter(order=order, status=SecretStatus.RESERVED).count()


def _act(client, order, action, **extra):
    return client.post(QUEUE, {"action": action, "_selected_action": [order.pk], **extra}, follow=True)


def test_approve_from_the_queue_lets_the_buyer_pay_and_is_audited(reviewer, held):
    assert _rows(reviewer.get(QUEUE).content.decode()) == [held.order_no]
    assert "<code>big_order</code>" in reviewer.get(QUEUE).content.decode()  # the checkout's own assessment
    before = timezone.now()
    resp = _act(reviewer, held, "review_approve", index="0")
    page = resp.content.decode()
    assert resp.status_code == 200 and f"{held.order_no}: approved" in page
    assert 'id="review-queue-empty"' in page  # it left the queue
    held.refresh_from_db()
    assert held.state == OrderState.PENDING and held.expires_at > before and _reserved(held) == 3
    event = AuditEvent.objects.get(**ORDER_AUDIT)
    assert (event.actor, event.action, event.target) == ("reviewer", "order.review_approved", held.order_no)
    assert held.events.filter(kind="review_approved", actor="reviewer").exists()


def test_reject_from_the_queue_asks_a_reason_then_cancels_and_is_audited(reviewer, held):
    first = _act(reviewer, held, "review_reject", index="0")
    page = first.content.decode()
    assert first.status_code == 200 and "Reject these orders?" in page
    assert held.order_no in page and 'name="reason"' in page
    assert f'href="{QUEUE}"' in page  # "No, take me back" goes back to the queue
    blank = _act(reviewer, held, "review_reject", post="yes", reason="   ")
    assert "This field is required." in blank.content.decode()
    held.refresh_from_db()
    assert (
        held.state == OrderState.REVIEW
        and _reserved(held) == 3
        and not AuditEvent.objects.filter(**ORDER_AUDIT).exists()
    )

    done = _act(reviewer, held, "review_reject", post="yes", reason="stolen account pattern")
    assert f"{held.order_no}: rejected" in done.content.decode()
    held.refresh_from_db()
    assert held.state == OrderState.CANCELLED and _reserved(held) == 0
    event = AuditEvent.objects.get(**ORDER_AUDIT)
    assert (event.actor, event.action, event.target) == ("reviewer", "order.review_rejected", held.order_no)
    assert event.detail["reason"] == "stolen account pattern"


def test_staff_without_the_review_power_neither_see_the_queue_nor_act(held):
    viewer = operator_login(Client(), staff_user("viewer", "cardshop.view_order", "risk.view_assessment"))
    assert viewer.get(QUEUE).status_code == 403
    forged = viewer.post(QUEUE, {"action": "review_approve", "_selected_action": [held.pk], "index": "0"})
    assert forged.status_code == 403
    rejected = viewer.post(
        QUEUE, {"action": "review_reject", "_selected_action": [held.pk], "post": "yes", "reason": "forged"}
    )
    assert rejected.status_code == 403
    orders = viewer.get("/admin/cardshop/order/").content.decode()
    assert 'value="review_approve"' not in orders and 'value="review_reject"' not in orders
    assert "/admin/cardshop/orderinreview/" not in viewer.get(reverse("admin:index")).content.decode()
    # Nor through the order list's own actions.
    viewer.post("/admin/cardshop/order/", {"action": "review_approve", "_selected_action": [held.pk], "index": "0"})
    held.refresh_from_db()
    assert (
        held.state == OrderState.REVIEW
        and _reserved(held) == 3
        and not AuditEvent.objects.filter(**ORDER_AUDIT).exists()
    )


def test_a_reviewer_who_may_not_open_orders_gets_the_numbers_without_links(queue):
    client = operator_login(Client(), staff_user("queue-only", "cardshop.review_order"))
    page = client.get(QUEUE).content.decode()
    assert queue["oldest"].order_no in page and _rows(page) == []
    assert 'value="review_reject"' in page


def test_the_order_page_shows_every_assessment_with_features_and_versions(held):
    op = operator_login(Client(), staff_user("op", superuser=True))
    assessment = Assessment.objects.get(order_no=held.order_no)
    Assessment.objects.filter(pk=assessment.pk).update(ruleset_version=7, model_version="gbm-2026-12")
    page = op.get(reverse("admin:cardshop_order_change", args=[held.pk])).content.decode()
    block = re.search(r'<table class="order-assessments">.*?</table>', page, re.S).group(0)
    assert "review</span>" in block and "<code>big_order</code>" in block
    assert ">v7<" in block and "gbm-2026-12" in block and "checkout" in block
    assert "<code>amount_minor</code>: 29.70 CNY" in block and "<code>quantity</code>: 3" in block
    assert "<code>buyer_paid_before</code>: no" in block
    assert reverse("admin:risk_assessment_change", args=[assessment.pk]) in block
    assert "Held by risk for an operator&#x27;s review" in page  # the timeline says it in words

    viewer = operator_login(Client(), staff_user("viewer", "cardshop.view_order"))
    page = viewer.get(reverse("admin:cardshop_order_change", args=[held.pk])).content.decode()
    assert "<code>big_order</code>" in page  # shown, but not linked to risk's pages the viewer may not open
    assert reverse("admin:risk_assessment_change", args=[assessment.pk]) not in page
