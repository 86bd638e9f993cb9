"""Checkout: create an order and reserve its stock; start its payment after commit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from cardshop.locks import buyer_lock, card_secrets_free_locked
from cardshop.models import DeliveryKind, Order, OrderState, Product
from cardshop.services.delivery import card_secrets_hold
from cardshop.services.events import order_event_add
from cardshop.services.pricing import coupon_reserve, coupon_use_count, normalise_code, order_price, unit_price_for
from cardshop.services.risk_request import risk_request_build, shop_facts
from core import ids
from core.client_ip import ip_group
from core.errors import DomainError
from core.hashers import QUERY_PASSWORD_HASHER
from core.money import Money, MoneyError, currency_validate
from core.prepared import prepared_cursor
from core.queries import one_or_none
from payments import facade as payments
from payments.contracts import PaymentRequest, PaymentView
from risk import facade as risk
from risk.contracts import Decision, RiskRequest
from settlement import facade as settlement

QUERY_PASSWORD_MIN = 6
QUERY_PASSWORD_MAX = 64


def _validate(
    product: Product, quantity: int, email: str, query_password: str | None, custom_input: dict[str, str]
) -> dict:
    if not product.is_active:
        raise DomainError("not_on_sale", _("This product is not on sale."))
    if not (product.min_quantity <= quantity <= product.max_quantity):
        raise DomainError(
            "quantity",
            _("Quantity must be between %(min)d and %(max)d.")
            % {"min": product.min_quantity, "max": product.max_quantity},
        )
    try:
        validate_email(email)
    except ValidationError:
        raise DomainError("email", _("Enter a valid email address.")) from None
    if query_password is not None and not QUERY_PASSWORD_MIN <= len(query_password) <= QUERY_PASSWORD_MAX:
        raise DomainError("query_password", _("The query password needs 6 to 64 characters."))
    cleaned: dict[str, str] = {}
    if product.delivery_kind == DeliveryKind.MANUAL:
        for f in product.custom_fields:
            value = str(custom_input.get(f["name"], "")).strip()[:500]
            if f.get("required") and not value:
                raise DomainError("custom_field", _("Please fill in %(label)s.") % {"label": f.get("label", f["name"])})
            cleaned[f["name"]] = value
    return cleaned


def product_currency_check(product: Product) -> None:
    """Refuse, before anything is reserved, a product no buyer could pay for: its currency is not one the money
    module supports, or no enabled channel account takes it (e.g. its channel was disabled after it went on sale)."""
    try:
        currency_validate(product.currency)
    except MoneyError:
        raise DomainError(
            "currency_unsupported",
            _("This product cannot be bought: its currency %(currency)s is not supported.")
            % {"currency": product.currency},
        ) from None
    if not payments.payment_options(currency=product.currency):
        raise DomainError(
            "currency_unserved",
            _("This product cannot be paid for at the moment: no payment method accepts %(currency)s.")
            % {"currency": product.currency},
        )


class TooManyPending(DomainError):
    """The pending cap refused a checkout. `order_no` names the buyer's own unpaid order, and only when the cap
    that refused is the email's: a cap reached through a shared IP never shows one buyer's order to another."""

    def __init__(self, message: str, *, scope: str, order_no: str = ""):
        super().__init__("too_many_pending", message)
        self.scope = scope
        self.order_no = order_no


def pending_caps() -> tuple[int, int]:
    """(per email, per IP group). CARDSHOP_MAX_PENDING_PER_BUYER is the old single cap: when set it still sizes
    both, as before; unset it to size them separately (an IP is shared by a NAT, so its cap is the larger)."""
    legacy = getattr(settings, "CARDSHOP_MAX_PENDING_PER_BUYER", None)
    if legacy is not None:
        return legacy, legacy
    return settings.CARDSHOP_MAX_PENDING_PER_EMAIL, settings.CARDSHOP_MAX_PENDING_PER_IP


def _pending_cap_check(*, email: str, ip_key: str, now: datetime) -> None:
    """Runs under the buyer lock of both the email and the IP group, so the counts cannot race."""
    per_email, per_ip = pending_caps()
    own, latest, network = _pending_counts(email=email, ip_key=ip_key, now=now)
    if own >= per_email:
        raise TooManyPending(
            ngettext(
                "You already have an unpaid order: %(order_no)s. Pay or cancel it first.",
                "You already have %(count)d unpaid orders, the latest %(order_no)s. Pay or cancel one first.",
                own,
            )
            % {"count": own, "order_no": latest},
            scope="email",
            order_no=latest,
        )
    if ip_key and network >= per_ip:
        raise TooManyPending(
            ngettext(
                "Your network already has %(count)d unpaid order. Please try again in a few minutes.",
                "Your network already has %(count)d unpaid orders. Please try again in a few minutes.",
                network,
            )
            % {"count": network},
            scope="ip",
        )


# One prepared statement for what the cap reads on every checkout (two ORM queries cost 0.5 ms of CPU more). An
# order waiting for review holds stock as an unpaid one does, and counts the same.
_PENDING_COUNTS_SQL = """
SELECT (SELECT count(*) FROM cardshop_order WHERE email = %s AND state IN (%s, %s) AND expires_at > %s),
       (SELECT order_no FROM cardshop_order WHERE email = %s AND state IN (%s, %s) AND expires_at > %s
        ORDER BY created_at DESC LIMIT 1),
       (SELECT count(*) FROM cardshop_order WHERE buyer_ip_group = %s AND %s <> ''
        AND state IN (%s, %s) AND expires_at > %s)
"""


def _pending_counts(*, email: str, ip_key: str, now: datetime) -> tuple[int, str, int]:
    """(unpaid orders of the email, the latest one's number, unpaid orders of the IP group; 0 without one)."""
    unpaid = [OrderState.PENDING.value, OrderState.REVIEW.value, connection.ops.adapt_datetimefield_value(now)]
    with prepared_cursor() as cursor:
        cursor.execute(_PENDING_COUNTS_SQL, [email, *unpaid, email, *unpaid, ip_key, ip_key, *unpaid])
        own, latest, network = cursor.fetchone()
    return own, latest or "", network


class RiskBlocked(DomainError):
    """Risk refused the checkout or the payment: nothing was reserved or made. The buyer reads why in general words
    only."""

    @classmethod
    def refused(cls) -> RiskBlocked:
        return cls("risk_blocked", _("We cannot take this order. If you think this is a mistake, contact the shop."))


class ChallengeRequired(DomainError):
    """Risk wants the buyer to prove itself first (a mailed code or a captcha); nothing is reserved meanwhile."""

    def __init__(self, *, token: str, kind: str):
        super().__init__("challenge_required", _("Please confirm this order first."))
        self.token = token
        self.kind = kind


def _challenge_mail(*, email: str, code: str, language: str) -> None:
    """The one-time code, mailed at once (the buyer is waiting on the page); never logged or queued."""
    with translation.override(language or settings.LANGUAGE_CODE):
        send_mail(
            subject=_("Your confirmation code"),
            message=_("Your code is %(code)s. It is valid for %(minutes)d minutes.")
            % {"code": code, "minutes": max(1, settings.RISK_CHALLENGE_SECONDS // 60)},
            from_email=None,
            recipient_list=[email],
        )


def order_create(
    *,
    product_id: int,
    quantity: int,
    email: str,
    query_password: str | None,
    buyer_ip: str | None,
    custom_input: dict[str, Any] | None = None,
    language: str = "",
    device: str = "",
    merchant_id: int | None = None,
    coupon_code: str = "",
) -> Order:
    """Create an order and reserve its stock (and its coupon's use) in one transaction, or change nothing.

    Risk decides first, before anything is reserved: allow makes a PENDING order; review makes a REVIEW order (its
    stock held for an operator); challenge raises ChallengeRequired (the checkout resumes through
    `order_create_after_challenge`); block raises RiskBlocked. `merchant_id` limits the product to that merchant's;
    `query_password` None makes an order no password finds (the merchant API's: no PBKDF2 spent on it)."""
    email = email.strip().lower()
    products = Product.objects.filter(pk=product_id)
    product = one_or_none(products if merchant_id is None else products.filter(merchant_id=merchant_id))
    if product is None:
        raise DomainError("not_found", _("No such product."))
    cleaned = _validate(product, quantity, email, query_password, custom_input or {})
    product_currency_check(product)
    language = language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE
    checkout = {
        "product_id": product.pk,
        "quantity": quantity,
        "email": email,
        "query_password_hash": make_password(query_password, hasher=QUERY_PASSWORD_HASHER),  # None: unusable
        "custom_input": cleaned,
        "language": language,
        "buyer_ip": buyer_ip or "",
        "device": device,
        "coupon_code": normalise_code(coupon_code),
    }
    # The number is drawn first so that the assessment names the order it makes (a block makes none), and a
    # challenged checkout resumes under the number assessed.
    checkout["order_no"] = ids.order_no()
    if not settings.RISK_ENABLED:
        return _order_make(product, checkout, None, review=False)
    risk_request = risk_request_build(
        product=product,
        quantity=quantity,
        email=email,
        ip=buyer_ip or "",
        device=device,
        order_no=checkout["order_no"],
        amount=_list_amount(product, quantity),
    )
    review, started, refused = False, None, None
    # The assessment commits with what it decided (one commit, not two). An order refused for stock or the pending
    # cap is refused before its first write (_order_write), so catching the refusal here leaves nothing half-made
    # and keeps the assessment on record, without a savepoint.
    with transaction.atomic(durable=True):
        outcome = risk.risk_assess(request=risk_request, facts=lambda: shop_facts(product=product, email=email))
        if outcome.decision == Decision.CHALLENGE:
            started = risk.challenge_start(
                kind=risk.risk_challenge_kind(), assessment_id=outcome.assessment_id, payload=checkout
            )
        elif outcome.decision != Decision.BLOCK:
            review = outcome.decision == Decision.REVIEW
            try:
                order = _order_write(product, checkout, risk_request, review=review)
            except DomainError as exc:
                refused = exc
    if outcome.decision == Decision.BLOCK:
        raise RiskBlocked.refused()
    if started is not None:
        if started.code:
            _challenge_mail(email=email, code=started.code, language=language)
        raise ChallengeRequired(token=started.token, kind=started.kind)
    if refused is not None:
        raise refused
    return order


def order_create_for_merchant(
    *,
    merchant_id: int,
    product_id: int,
    quantity: int,
    email: str,
    buyer_ip: str | None = None,
    custom_input: dict[str, Any] | None = None,
    language: str = "",
    coupon_code: str = "",
) -> Order:
    """An order the merchant's own site makes for its buyer (the merchant API): the checkout's rules, risk included,
    on one of the merchant's products; another merchant's product is not found. The buyer reaches the order by the
    signed link the API returns and the delivery mail; no query password finds it."""
    return order_create(
        product_id=product_id,
        quantity=quantity,
        email=email,
        query_password=None,
        buyer_ip=buyer_ip,
        custom_input=custom_input,
        language=language,
        merchant_id=merchant_id,
        coupon_code=coupon_code,
    )


class ChallengeFailed(DomainError):
    """A wrong answer; `attempts_left` 0 means the challenge is used up (the buyer orders again)."""

    def __init__(self, *, attempts_left: int):
        super().__init__("challenge_failed", _("That is not right."))
        self.attempts_left = attempts_left


def checkout_challenge_kind(*, token: str) -> str:
    """email_code or captcha for a live challenge; empty when it is unknown, used or expired."""
    return risk.challenge_kind(token=token)


def checkout_captcha_image(*, token: str) -> bytes:
    return risk.challenge_image(token=token)


def checkout_confirm(*, token: str, answer: str) -> Order:
    """The buyer's answer to the challenge: a right one makes the order it was asked for (ChallengeFailed else)."""
    checked = risk.challenge_answer(token=token, answer=answer)
    if not checked.passed:
        raise ChallengeFailed(attempts_left=0 if checked.expired else checked.attempts_left)
    return order_create_after_challenge(token=token)


def order_create_after_challenge(*, token: str) -> Order:
    """The buyer passed the challenge: the checkout it was asked for goes on, once (the token is then used)."""
    checkout = risk.challenge_consume(token=token)
    if checkout is None:
        raise DomainError(
            "challenge_invalid", _("This confirmation has expired or was already used. Please order again.")
        )
    product = Product.objects.filter(pk=checkout["product_id"]).first()
    if product is None or not product.is_active:
        raise DomainError("not_on_sale", _("This product is not on sale."))
    request = None
    if settings.RISK_ENABLED:  # counted as a checkout (no facts: it was assessed), unless risk was switched off
        request = risk_request_build(
            product=product,
            quantity=checkout["quantity"],
            email=checkout["email"],
            ip=checkout["buyer_ip"],
            device=checkout["device"],
            order_no=checkout["order_no"],
            amount=_list_amount(product, checkout["quantity"]),
        )
    return _order_make(product, checkout, request, review=False)


def _list_amount(product: Product, quantity: int) -> Money:
    """What risk weighs at checkout: the amount at the quantity's tier price, before a coupon (known under its
    lock only)."""
    return Money(unit_price_for(product, quantity) * quantity, product.currency)


def _order_make(product: Product, checkout: dict, risk_request: RiskRequest | None, *, review: bool) -> Order:
    with transaction.atomic(durable=True):
        return _order_write(product, checkout, risk_request, review=review)


def _order_write(product: Product, checkout: dict, risk_request: RiskRequest | None, *, review: bool) -> Order:
    """The order and its reserved stock, in the caller's transaction. Every refusal (the pending cap, too little
    stock) is raised before the first write: order_create relies on it to keep the assessment of a refused order."""
    now = timezone.now()
    email, quantity = checkout["email"], checkout["quantity"]
    buyer_ip = checkout["buyer_ip"] or None
    # The cap counts a buyer's network (an IPv6 /64), not one address they can rotate within it.
    ip_key = ip_group(buyer_ip or "")
    buyer_lock(f"email:{email}", f"ip:{ip_key}" if ip_key else "")
    _pending_cap_check(email=email, ip_key=ip_key, now=now)
    taken = []
    if product.delivery_kind == DeliveryKind.UNIQUE:
        taken = card_secrets_free_locked(product_id=product.pk, count=quantity)
        if len(taken) < quantity:
            raise DomainError("out_of_stock", _("Not enough stock left for this quantity."))
    coupon = None
    if checkout.get("coupon_code"):
        coupon = coupon_reserve(code=checkout["coupon_code"], product=product, email=email, now=now)
    price = order_price(product, quantity, coupon=coupon)
    hold = settings.CARDSHOP_REVIEW_SECONDS if review else settings.CARDSHOP_ORDER_TTL_SECONDS
    order = Order.objects.create(
        order_no=checkout["order_no"],
        merchant_id=product.merchant_id,
        product=product,
        quantity=quantity,
        list_price_minor=price.list_price_minor,
        unit_price_minor=price.unit_price_minor,
        discount_minor=price.discount_minor,
        coupon=coupon,
        amount_minor=price.amount_minor,
        currency=product.currency,
        email=email,
        query_password_hash=checkout["query_password_hash"],
        buyer_ip=buyer_ip,
        buyer_ip_group=ip_key,
        buyer_device=checkout.get("device", ""),
        custom_input=checkout["custom_input"],
        language=checkout["language"],
        expires_at=now + timedelta(seconds=hold),
        state=OrderState.REVIEW if review else OrderState.PENDING,
    )
    card_secrets_hold(order=order, secrets=taken)
    if coupon is not None:
        coupon_use_count(coupon)
        order_event_add(order=order, kind="created", quantity=quantity, amount=order.amount_minor, coupon=coupon.code)
    else:
        order_event_add(order=order, kind="created", quantity=quantity, amount=order.amount_minor)
    if review:
        order_event_add(order=order, kind="risk_review")
    if risk_request is not None:
        transaction.on_commit(lambda: risk.checkout_record(request=risk_request))
    return order


def order_payment_start(
    *, order_no: str, client_ip: str, method: str = "alipay", channel_code: str = "", order: Order | None = None
) -> PaymentView:
    """Ask payments for the order's pay page data. Runs after the checkout commit: no lock held.

    The buyer chooses the method (Alipay, WeChat Pay, card, bank); routing chooses the channel account, unless
    `channel_code` names one. A payment already live for the order is returned as it is: a QR the buyer may
    already have scanned is never replaced behind their back. `order` is the caller's copy of it with its
    product, read just before (the pay page's), which spares reading it again: nothing here is locked either way.
    """
    if order is None or order.order_no != order_no:
        order = Order.objects.select_related("product").get(order_no=order_no)
    if order.state != OrderState.PENDING or order.expires_at <= timezone.now():
        raise DomainError("not_payable", _("This order can no longer be paid."))
    base = settings.CARDSHOP_PUBLIC_URL
    return payments.payment_start(
        request=PaymentRequest(
            reference=order.order_no,
            amount=order.amount,
            subject=order.product.name,
            notify_url=base + reverse("notify", args=["CHANNEL"]).replace("CHANNEL", "{channel}"),
            return_url=base + reverse("order_detail", args=[order.order_no]),
            client_ip=client_ip,
            channel_code=channel_code,
            method=method,
            merchant_id=order.merchant_id,
            product_ref=order.product.slug,
            expires_at=order.expires_at,
            split_at_provider=settlement.plan_splits_at_provider(
                merchant_id=order.merchant_id, currency=order.amount.currency
            ),
        ),
        # Risk once more, only when a new payment is to be made: a live one is shown as it is.
        before_new=(lambda: _payment_risk_check(order, client_ip)) if settings.RISK_ENABLED else None,
    )


def _payment_risk_check(order: Order, client_ip: str) -> None:
    """Risk again as a new payment is about to be made (a live one is shown as it is, so a reload assesses
    nothing): the payer's network may have failed payments since the checkout. A block refuses the payment and
    changes nothing; challenge and review were the checkout's to decide, so here they are only recorded."""
    request = risk_request_build(
        product=order.product,
        quantity=order.quantity,
        email=order.email,
        ip=client_ip,
        device=order.buyer_device,
        order_no=order.order_no,
        stage="payment",
        amount=order.amount,
    )
    outcome = risk.risk_assess(request=request, facts=lambda: shop_facts(product=order.product, email=order.email))
    if outcome.decision == Decision.BLOCK:
        raise RiskBlocked.refused()


def order_payment_switch(*, order_no: str, client_ip: str, method: str) -> PaymentView:
    """The buyer picks another method on the pay page. The old trade is closed at the provider first (the one
    payable trade rule); only then is a new one started. Refused, changing nothing, while the old one may
    still be paid: the buyer keeps paying it, or waits."""
    if not payments.payments_close_for_switch(reference=order_no):
        raise DomainError(
            "switch_refused",
            _("This payment can't be changed right now: pay it as shown, or wait until the order expires."),
        )
    return order_payment_start(order_no=order_no, client_ip=client_ip, method=method)
