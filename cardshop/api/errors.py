"""One error shape for every API failure: {"error": {"type", "code", "message", "param"}} (Stripe's).

Also answers a replayed Idempotency-Key with the answer kept for it, and a server error with the same JSON shape
(logged with its traceback), never an HTML page."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from cardshop.services.checkout import ChallengeRequired
from cardshop.services.merchant_api import IdempotencyConflict, IdempotentAnswer
from core.errors import DomainError

log = logging.getLogger("cardshop.api")

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "invalid_request_error",  # a conflict with the object's state; a used Idempotency-Key says idempotency_error
    415: "invalid_request_error",
    429: "rate_limit_error",
}

# Refusals of a use case that are not the caller's malformed input, and their status.
DOMAIN_STATUS = {
    "not_found": 404,
    "out_of_stock": 409,
    "not_cancellable": 409,
    "challenge_required": 409,
    "risk_blocked": 409,
    "too_many_pending": 409,
    "not_refundable": 409,
    "not_paid": 409,
    "no_refund_channel": 409,
    "refund_in_progress": 409,
    "refund_too_large": 400,
    "no_partial_refund": 409,
    "partial_refund_split": 409,
    "coupon_used_up": 409,
    "coupon_buyer_limit": 409,
}
# The request field a refusal is about, where there is one.
DOMAIN_PARAM = {
    "webhook_url": "url",
    "event_types": "event_types",
    "quantity": "quantity",
    "email": "email",
    "custom_field": "custom_input",
    "not_on_sale": "product",
    "coupon_code_taken": "code",
    "refund_too_large": "amount",
    "no_partial_refund": "amount",
    "coupon_invalid": "coupon",
    "coupon_not_for_product": "coupon",
    "coupon_expired": "coupon",
    "coupon_used_up": "coupon",
    "coupon_buyer_limit": "coupon",
}


class Replayed(Exception):
    """Raised before the view runs when the Idempotency-Key was answered already."""

    def __init__(self, answer: IdempotentAnswer):
        self.answer = answer


def error_body(status_code: int, code: str, message: str, param: str | None = None, kind: str = "") -> dict:
    kind = kind or TYPES.get(status_code, "api_error")
    return {"error": {"type": kind, "code": code, "message": str(message), "param": param}}


def _first_error(detail, path: str = "") -> tuple[str | None, str, str]:
    """The first (param, code, message) in a DRF validation detail (dicts and lists nest)."""
    if isinstance(detail, dict):
        for name, inner in detail.items():
            param = name if name != "non_field_errors" else ""
            return _first_error(inner, f"{path}.{param}" if path and param else (param or path))
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return (path or None), getattr(detail, "code", "invalid"), str(detail)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, Replayed):
        return Response(exc.answer.body, status=exc.answer.status_code, headers={"Idempotent-Replayed": "true"})
    if isinstance(exc, IdempotencyConflict):
        body = error_body(409, exc.code, exc.message, "Idempotency-Key", kind="idempotency_error")
        return Response(body, status=409)
    if isinstance(exc, DomainError):
        code = DOMAIN_STATUS.get(exc.code, 400)
        body = error_body(code, exc.code, exc.message, DOMAIN_PARAM.get(exc.code))
        if isinstance(exc, ChallengeRequired):  # the buyer proves itself there, then lands on the pay page
            path = reverse("checkout_confirm", args=[exc.token])
            body["error"]["confirm_url"] = f"{settings.CARDSHOP_PUBLIC_URL}{path}"
        return Response(body, status=code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(getattr(exc, "message_dict", None) or {"non_field_errors": exc.messages})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        view = context.get("view")
        log.exception("API error in %s", type(view).__name__ if view else "?", exc_info=exc)
        return Response(error_body(500, "server_error", _("Something went wrong on our side.")), status=500)
    if isinstance(exc, exceptions.ValidationError):
        param, code, message = _first_error(exc.detail)
        response.data = error_body(response.status_code, code, message, param)
    elif isinstance(exc, exceptions.NotFound):
        response.data = error_body(404, "resource_missing", _("No such object."))
    elif isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        response.data = error_body(response.status_code, code, str(exc.detail))
    return response
