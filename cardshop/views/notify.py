"""Provider callbacks. Raw parameters go to one service; the answer is the channel's own ACK.

A rejected callback gets a 4xx with its reason and changes nothing. A failure of ours (database
down) gets a 5xx so the provider retries: nothing is acknowledged that was not applied.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from cardshop.services.orders import payment_notification_handle
from cardshop.services.splits import split_notification_handle
from payments.contracts import NotificationRejected
from payments.facade import channel_notify_methods, split_notification_is

log = logging.getLogger(__name__)


@csrf_exempt
def provider_notify(request: HttpRequest, channel_code: str) -> HttpResponse:
    # Only the methods the channel's provider notifies by, refused before anything is read or verified: a
    # POST-only protocol's signed fields replayed in a GET query (or a link) must never reach the verifier.
    allowed = channel_notify_methods(channel_code) or frozenset({"GET", "POST"})  # unknown channel: 404 below
    if request.method not in allowed:
        return HttpResponseNotAllowed(sorted(allowed))
    body = request.body  # read the raw body first: signature schemes over the body need it unparsed
    params = request.GET if request.method == "GET" else request.POST
    fields = {
        "channel_code": channel_code,
        "params": dict(params.lists()),
        "body": body,
        "headers": dict(request.headers),
    }
    try:
        if split_notification_is(**fields):  # a split's result (Alipay royalty, WeChat profit sharing)
            status, ack, content_type = split_notification_handle(**fields)
            return HttpResponse(ack, status=status, content_type=content_type)
        outcome = payment_notification_handle(**fields)
    except NotificationRejected as exc:
        status = 404 if exc.code == "unknown_channel" else 400
        return HttpResponse(f"fail: {exc.code}: {exc.message}", status=status, content_type="text/plain")
    except DatabaseError:
        log.exception("notify for %s could not be applied; provider will retry", channel_code)
        return HttpResponse("fail: temporarily unavailable", status=503, content_type="text/plain")
    return HttpResponse(outcome.ack_body, status=outcome.ack_status, content_type=outcome.ack_content_type)
