"""Work the services hand to the Celery worker, always after their transaction commits.

Tasks are looked up by name on the app (registered when the app is ready), so services never import
cardshop.tasks: tasks import services, never the other way round. A missing name fails loudly.
"""

from __future__ import annotations

from django.db import transaction

from cardshop.celery import app


def _after_commit(task_name: str, *args: object) -> None:
    transaction.on_commit(lambda: app.tasks[task_name].delay(*args))


def order_delivery_notify(order_id: int) -> None:
    _after_commit("cardshop.order_delivery_notify", order_id)


def order_refund_notify(order_id: int) -> None:
    _after_commit("cardshop.order_refund_notify", order_id)


def order_payments_close(order_no: str) -> None:
    _after_commit("cardshop.order_payments_close", order_no)


def refund_submit(refund_no: str) -> None:
    _after_commit("cardshop.refund_submit", refund_no)


def split_submit(split_no: str) -> None:
    _after_commit("cardshop.split_submit", split_no)


def webhook_deliver(delivery_id: int) -> None:
    _after_commit("cardshop.webhook_deliver", delivery_id)


def merchant_alert_send(alert_id: int) -> None:
    _after_commit("cardshop.merchant_alert_send", alert_id)
