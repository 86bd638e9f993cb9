"""Webhooks to merchants, Standard Webhooks v1: endpoints (public URLs only, a `whsec_` secret shown once, rotation
with both secrets signing for a day), events made from the order timeline's outbox rows after commit, and
deliveries retried on the spec's schedule until they succeed; an endpoint failing for 5 days is disabled and its
merchant told.

Headers: `webhook-id` (the event's id, the same on every retry), `webhook-timestamp` (Unix seconds) and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, space-separated during a rotation).
The HTTP call is made with no lock and no transaction open; the delivery is claimed first (its next attempt moved
past the call's longest duration), so a sweeper running meanwhile does not send it again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cardshop import jobs
from cardshop.models import OrderEvent, Product
from cardshop.models.webhooks import (
    EVENT_TYPES,
    PUBLISHED_KINDS,
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from cardshop.selectors import products_low_on_stock
from cardshop.services.merchant_alerts import merchant_alerts_queue
from core.audit import audit_record
from core.errors import DomainError
from core.models import Merchant
from settlement import facade as settlement
from settlement.contracts import PayoutView

log = logging.getLogger(__name__)

# Seconds to wait before attempt 1, 2, ... (the spec's example): immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
# 14 h, 20 h, 24 h; about 3 days in all. After the last, the delivery has failed.
RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
DISABLE_AFTER = timedelta(days=5)
ROTATION_OVERLAP = timedelta(hours=24)
TIMEOUT = (3.0, 10.0)  # connect, read (the spec advises 15-30 s at most; our receivers answer at once)
CLAIM = timedelta(seconds=60)  # longer than a call can take
MAX_URL = 500


def webhook_secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# --- where a webhook may go ----------------------------------------------------------------------------------------


def _private_allowed() -> bool:
    return bool(getattr(settings, "CARDSHOP_WEBHOOKS_ALLOW_PRIVATE", settings.DEBUG))


def webhook_url_check(url: str) -> None:
    """Refuse a URL that is not http(s) or that resolves to an address that is not public (loopback, private
    ranges, link-local such as 169.254.169.254, ...): a webhook must not become a way into our own network. Allowed
    only with DEBUG (the demo's loopback receiver) or CARDSHOP_WEBHOOKS_ALLOW_PRIVATE."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > MAX_URL:
        raise DomainError("webhook_url", _("Give an http or https URL of at most 500 characters."))
    if parts.username or parts.password:
        raise DomainError("webhook_url", _("A webhook URL may not carry a user name or password."))
    if _private_allowed():
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError):
        raise DomainError("webhook_url", _("This host name does not resolve.")) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise DomainError(
                "webhook_url", _("Webhook URLs must reach a public address, not %(address)s.") % {"address": address}
            )


# --- endpoints -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointMade:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _event_types_check(event_types: list[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise DomainError("event_types", _("Unknown event types: %s.") % ", ".join(unknown))
    return sorted(set(event_types))


def webhook_endpoint_create(
    *, merchant_id: int, url: str, description: str = "", event_types: list[str] | None = None, actor: str
) -> EndpointMade:
    webhook_url_check(url)
    types = _event_types_check(event_types or [])
    secret = webhook_secret_new()
    with transaction.atomic(durable=True):
        endpoint = WebhookEndpoint.objects.create(
            merchant_id=merchant_id, url=url, description=description[:200], event_types=types, secret=secret
        )
        audit_record(actor=actor, action="webhook_endpoint_created", target=f"webhook_endpoint:{endpoint.pk}", url=url)
    return EndpointMade(endpoint=endpoint, secret=secret)


def _endpoint_locked(merchant_id: int, endpoint_id: int) -> WebhookEndpoint:
    endpoint = (
        WebhookEndpoint.objects.filter(pk=endpoint_id, merchant_id=merchant_id).select_for_update(of=("self",)).first()
    )
    if endpoint is None:
        raise DomainError("not_found", _("No such webhook endpoint."))
    return endpoint


def webhook_endpoint_secret_rotate(*, merchant_id: int, endpoint_id: int, actor: str) -> EndpointMade:
    """A new secret; the old one keeps signing beside it for 24 hours, so receivers can switch without a gap."""
    secret = webhook_secret_new()
    with transaction.atomic(durable=True):
        endpoint = _endpoint_locked(merchant_id, endpoint_id)
        endpoint.previous_secret, endpoint.secret = endpoint.secret, secret
        endpoint.previous_secret_until = timezone.now() + ROTATION_OVERLAP
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_until"])
        audit_record(actor=actor, action="webhook_secret_rotated", target=f"webhook_endpoint:{endpoint.pk}")
    return EndpointMade(endpoint=endpoint, secret=secret)


def webhook_endpoint_disable(*, merchant_id: int, endpoint_id: int, reason: str, actor: str) -> WebhookEndpoint:
    with transaction.atomic(durable=True):
        endpoint = _endpoint_locked(merchant_id, endpoint_id)
        _disable(endpoint, reason=reason)
        audit_record(actor=actor, action="webhook_endpoint_disabled", target=f"webhook_endpoint:{endpoint.pk}")
    return endpoint


def webhook_endpoint_enable(*, merchant_id: int, endpoint_id: int, actor: str) -> WebhookEndpoint:
    """Send to it again (new events; what was abandoned stays so, and can be replayed)."""
    with transaction.atomic(durable=True):
        endpoint = _endpoint_locked(merchant_id, endpoint_id)
        if not endpoint.is_active:
            webhook_url_check(endpoint.url)
            endpoint.is_active, endpoint.disabled_reason, endpoint.failing_since = True, "", None
            endpoint.save(update_fields=["is_active", "disabled_reason", "failing_since"])
            audit_record(actor=actor, action="webhook_endpoint_enabled", target=f"webhook_endpoint:{endpoint.pk}")
    return endpoint


def _disable(endpoint: WebhookEndpoint, *, reason: str) -> None:
    if not endpoint.is_active:
        return
    endpoint.is_active, endpoint.disabled_reason = False, reason[:200]
    endpoint.save(update_fields=["is_active", "disabled_reason"])
    endpoint.deliveries.filter(state=DeliveryState.PENDING).update(state=DeliveryState.ABANDONED)


# --- events, from the outbox -----------------------------------------------------------------------------------------


def webhook_events_publish(*, limit: int = 200) -> int:
    """Turn what the outboxes hold into events, one delivery per endpoint that wants each, and hand the deliveries
    to the worker after commit: the order timeline's pending rows, the merchants' payouts newly final
    (settlement's flag), and products a delivery left low on stock. Rows another publisher holds are skipped, not
    waited for; each is cleared in the transaction that makes its event, so it is announced once. The number of
    events made."""
    with transaction.atomic(durable=True):
        rows = list(
            OrderEvent.objects.filter(webhook_pending=True)
            .order_by("pk")
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("order")[:limit]
        )
        events = [_order_event(row) for row in rows]
        events += [_payout_event(payout) for payout in settlement.payout_outcomes_take(limit=limit)]
        delivered = {row.order.product_id for row in rows if row.kind == "delivered"}
        events += [_stock_event(product) for product in _products_newly_low(delivered)]
        if rows:
            OrderEvent.objects.filter(pk__in=[r.pk for r in rows]).update(webhook_pending=False)
        endpoints: dict[int, list[WebhookEndpoint]] = {}
        deliveries = []
        for event in events:
            if event.merchant_id not in endpoints:
                endpoints[event.merchant_id] = list(
                    WebhookEndpoint.objects.filter(merchant_id=event.merchant_id, is_active=True)
                )
            deliveries += [
                WebhookDelivery(event=event, endpoint=e, next_attempt_at=timezone.now())
                for e in endpoints[event.merchant_id]
                if e.wants(event.type)
            ]
        WebhookDelivery.objects.bulk_create(deliveries)
        for delivery in deliveries:
            jobs.webhook_deliver(delivery.pk)
        merchant_alerts_queue(events)  # the merchant's own email and Telegram alerts, from the same events
    return len(events)


def _event_new(*, merchant_id: int, type: str, at: datetime, data: dict, source: OrderEvent | None = None):
    payload = {"type": type, "timestamp": at.isoformat(), "data": data}
    return WebhookEvent.objects.create(
        merchant_id=merchant_id,
        event_id="evt_" + secrets.token_hex(12),
        type=type,
        source=source,
        payload=json.loads(json.dumps(payload, default=str)),
    )


def _order_event(row: OrderEvent) -> WebhookEvent:
    from cardshop.api.serializers import OrderSerializer  # how an order looks to its merchant, as in the API

    order = row.order
    data = dict(OrderSerializer(order).data)
    if row.kind == "partially_refunded":
        amount = {"amount_minor": row.detail.get("amount"), "currency": order.currency}
        data["refund"] = {"id": row.detail.get("refund_no"), "amount": amount}
    return _event_new(
        merchant_id=order.merchant_id, type=PUBLISHED_KINDS[row.kind], at=row.created_at, data=data, source=row
    )


def _payout_event(payout: PayoutView) -> WebhookEvent:
    from cardshop.api.serializers import PayoutSerializer

    return _event_new(
        merchant_id=payout.party_id,
        type=f"payout.{payout.state}",  # paid or failed: only final payouts are taken
        at=payout.finished_at or timezone.now(),
        data=PayoutSerializer(payout).data,
    )


def _products_newly_low(product_ids: set[int]) -> list[Product]:
    """Of the products just delivered from, those at or below the low-stock threshold that were not announced
    since their last stock upload; each marked announced by a conditional UPDATE, so two publishers cannot both
    announce one."""
    if not product_ids:
        return []
    low = []
    for product in products_low_on_stock(product_ids=product_ids, threshold=settings.CARDSHOP_LOW_STOCK_THRESHOLD):
        now = timezone.now()
        if Product.objects.filter(pk=product.pk, low_stock_announced_at__isnull=True).update(
            low_stock_announced_at=now
        ):
            low.append(product)
    return low


def _stock_event(product: Product) -> WebhookEvent:
    return _event_new(
        merchant_id=product.merchant_id,
        type="stock.low",
        at=timezone.now(),
        data={
            "product": product.pk,
            "name": product.name,
            "stock": product.free_secrets,
            "threshold": settings.CARDSHOP_LOW_STOCK_THRESHOLD,
        },
    )


# --- deliveries ------------------------------------------------------------------------------------------------------


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery | None:
    with transaction.atomic(durable=True):
        delivery = (
            WebhookDelivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING, next_attempt_at__lte=now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .first()
        )
        if delivery is None:
            return None
        delivery.next_attempt_at = now + CLAIM
        delivery.save(update_fields=["next_attempt_at"])
    return delivery


def _signature(endpoint: WebhookEndpoint, msg_id: str, timestamp: int, body: bytes, now: datetime) -> str:
    signatures = [webhook_sign(secret=endpoint.secret, msg_id=msg_id, timestamp=timestamp, body=body)]
    if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
        signatures.append(webhook_sign(secret=endpoint.previous_secret, msg_id=msg_id, timestamp=timestamp, body=body))
    return " ".join(signatures)


def _send(delivery: WebhookDelivery, now: datetime) -> tuple[int | None, str, int]:
    """POST the event; (status or None, error, milliseconds). No redirect is followed (a 3xx is a failure)."""
    event, endpoint = delivery.event, delivery.endpoint
    body = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": "CardShop-Webhooks/1",
        "webhook-id": event.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": _signature(endpoint, event.event_id, timestamp, body, now),
    }
    started = time.monotonic()
    try:
        webhook_url_check(endpoint.url)  # again at send time: the name may resolve elsewhere now
        answer = requests.post(endpoint.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
        return answer.status_code, "", int((time.monotonic() - started) * 1000)
    except DomainError as exc:
        return None, exc.message[:300], 0
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"[:300], int((time.monotonic() - started) * 1000)


def webhook_delivery_attempt(*, delivery_id: int) -> str:
    """Try one due delivery once; returns its state after the try ("skipped" when it was not due or is taken)."""
    now = timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return "skipped"
    status, error, took = _send(delivery, now)
    ok = status is not None and 200 <= status < 300
    with transaction.atomic(durable=True):
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",)).select_related("endpoint").get(pk=delivery_id)
        )
        endpoint = WebhookEndpoint.objects.select_for_update(of=("self",)).get(pk=delivery.endpoint_id)
        WebhookAttempt.objects.create(delivery=delivery, status_code=status, error=error, duration_ms=took)
        delivery.attempts += 1
        delivery.last_status_code, delivery.last_error = status, error
        if ok:
            delivery.state, delivery.next_attempt_at = DeliveryState.SUCCEEDED, None
            if endpoint.failing_since is not None:
                endpoint.failing_since = None
                endpoint.save(update_fields=["failing_since"])
        else:
            if delivery.attempts < len(RETRY_SCHEDULE):
                delivery.next_attempt_at = now + timedelta(seconds=RETRY_SCHEDULE[delivery.attempts])
            else:
                delivery.state, delivery.next_attempt_at = DeliveryState.FAILED, None
            if endpoint.failing_since is None:
                endpoint.failing_since = now
                endpoint.save(update_fields=["failing_since"])
        delivery.save(update_fields=["attempts", "last_status_code", "last_error", "state", "next_attempt_at"])
        if not ok and endpoint.is_active:
            if status == 410:  # the spec: Gone means "stop sending"
                _disable(endpoint, reason=_("The endpoint answered 410 Gone."))
                _merchant_tell(endpoint)
            elif now - endpoint.failing_since >= DISABLE_AFTER:
                _disable(endpoint, reason=_("Every delivery failed for 5 days."))
                _merchant_tell(endpoint)
        delivery.refresh_from_db(fields=["state"])
    return delivery.state


def _merchant_tell(endpoint: WebhookEndpoint) -> None:
    merchant = Merchant.objects.get(pk=endpoint.merchant_id)
    if not merchant.email:
        log.warning("webhook endpoint %s disabled; merchant %s has no email", endpoint.pk, merchant.pk)
        return
    subject = _("Your webhook endpoint was disabled")
    text = _("We stopped sending webhooks to %(url)s: %(reason)s Fix it, then enable it again.") % {
        "url": endpoint.url,
        "reason": endpoint.disabled_reason,
    }
    address = merchant.email
    transaction.on_commit(lambda: send_mail(subject, text, None, [address], fail_silently=True))


def webhook_deliveries_due(*, limit: int = 200) -> int:
    """The sweeper: hand every due delivery to the worker (those whose immediate hand-over was lost, and the
    retries whose time has come)."""
    due = list(
        WebhookDelivery.objects.filter(state=DeliveryState.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    with transaction.atomic():
        for delivery_id in due:
            jobs.webhook_deliver(delivery_id)
    return len(due)


def webhook_delivery_replay(*, delivery_id: int, actor: str) -> WebhookDelivery:
    """Send a delivery again now (the admin's replay button): one more try, whatever happened before; a failure
    then ends it again. Refused when its endpoint is disabled."""
    with transaction.atomic(durable=True):
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",)).select_related("endpoint").get(pk=delivery_id)
        )
        if not delivery.endpoint.is_active:
            raise DomainError("endpoint_disabled", _("Enable the endpoint first."))
        delivery.state, delivery.next_attempt_at = DeliveryState.PENDING, timezone.now()
        delivery.attempts = min(delivery.attempts, len(RETRY_SCHEDULE) - 1)
        delivery.save(update_fields=["state", "next_attempt_at", "attempts"])
        audit_record(actor=actor, action="webhook_replayed", target=f"webhook_delivery:{delivery.pk}")
        jobs.webhook_deliver(delivery.pk)
    return delivery
